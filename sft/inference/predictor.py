"""Shared inference: the one prompt builder for predict and serve, and a thread-safe batch Predictor.

``build_prompt`` is the only way a (feature, context, glossary) triple becomes model text outside training
data: it goes through :class:`sft.core.contract.PromptInput` and :func:`sft.core.contract.render_prompt`, with the
instruction recorded by training (``train_config.json``) when there is one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sft.core.contract import DEFAULT_INSTRUCTION, Feature, LawContext, Prediction, PromptInput, render_prompt
from sft.inference.decoding import DecodeConfig, decode_constrained, decode_free

log = logging.getLogger(__name__)


def build_prompt(
    feature: Feature,
    context: Sequence[LawContext],
    glossary: dict[str, str] | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
) -> tuple[PromptInput, str]:
    prompt_input = PromptInput.build(feature, list(context), glossary)
    return prompt_input, render_prompt(instruction, prompt_input.render())


def _train_config(model_dir: str | Path) -> dict[str, Any]:
    """``train_config.json`` of a training output dir (also found from its ``merged/``), else {}."""
    for cand in (Path(model_dir) / "train_config.json", Path(model_dir).parent / "train_config.json"):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                return data
    return {}


def model_instruction(model_dir: str | Path) -> str:
    """The instruction the model was trained with (``train_config.json``), else the default."""
    value = _train_config(model_dir).get("instruction")
    return value if isinstance(value, str) and value.strip() else DEFAULT_INSTRUCTION


class Result(NamedTuple):
    prediction: Prediction
    prompt: str
    context: list[LawContext]
    """The law context the prompt actually holds (after trimming to the token budget)."""


def model_path(spec: str | Path) -> str:
    """A training output dir with ``merged/`` is served from the merged weights (no adapter overhead)."""
    path = Path(spec)
    if path.is_dir() and (path / "merged" / "config.json").is_file():
        return str(path / "merged")
    return str(spec)


@dataclass
class Predictor:
    """A model loaded once; ``predict`` is serialised by a lock (generation mutates caches/state)."""

    model: Any
    tokenizer: Any
    model_id: str
    instruction: str = DEFAULT_INSTRUCTION
    config: DecodeConfig = field(default_factory=DecodeConfig)
    max_length: int | None = None
    """Token budget the model was trained with (train_config.json); prompts are trimmed to fit it."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, spec: str | Path, config: DecodeConfig | None = None) -> Predictor:

        from sft.core.device import detect_precision, serve_batch_size, serve_load_kwargs
        from sft.models import load_model_and_tokenizer

        path = model_path(spec)
        precision = detect_precision()
        log.info("loading model %s (%s, %s)", path, "cuda" if precision.cuda else "cpu", precision.dtype)
        model, tok = load_model_and_tokenizer(path, **serve_load_kwargs(precision))
        model.eval()
        train_cfg = _train_config(spec) if Path(str(spec)).is_dir() else {}
        max_length = train_cfg.get("max_length")
        return cls(
            model, tok, model_id=str(spec), instruction=model_instruction(spec) if train_cfg else DEFAULT_INSTRUCTION,
            config=config or DecodeConfig(batch_size=serve_batch_size(precision)), max_length=max_length if isinstance(max_length, int) else None,
        )

    def fit_prompt(
        self, feature: Feature, context: Sequence[LawContext], glossary: dict[str, str] | None
    ) -> tuple[PromptInput, str, list[LawContext]]:
        """The contract prompt, dropping the least relevant (last) context items until it fits the budget.

        The budget is the trained ``max_length`` minus room for the answer, the same rule as training
        (``sft.core.budget``): a model never sees a longer prompt than it was trained on.
        """
        context = list(context)
        answer_room = self.config.max_reason_tokens + 64
        while True:
            prompt_input, prompt = build_prompt(feature, context, glossary, self.instruction)
            if self.max_length is None or not context:
                return prompt_input, prompt, context
            if len(self.tokenizer(prompt)["input_ids"]) + answer_room <= self.max_length:
                return prompt_input, prompt, context
            context.pop()

    def predict_prompts(
        self, prompts: Sequence[str], inputs: Sequence[PromptInput | None], *, constrained: bool = True
    ) -> list[Prediction]:
        if not prompts:
            return []
        decode = decode_constrained if constrained else decode_free
        size = self.config.batch_size
        out: list[Prediction] = []
        import torch

        # inference_mode is per thread and scoped: no process-wide grad switch leaks into other work.
        with self._lock, torch.inference_mode():  # one request at a time; batches bound the KV-cache memory
            for i in range(0, len(prompts), size):
                out += decode(self.model, self.tokenizer, prompts[i : i + size], inputs[i : i + size], self.config)
        return out

    def predict(
        self,
        items: Sequence[tuple[Feature, Sequence[LawContext], dict[str, str] | None]],
        *,
        constrained: bool = True,
    ) -> list[Result]:
        """(feature, context, glossary notes) -> (prediction, the exact prompt, the context it holds)."""
        built = [self.fit_prompt(f, c, g) for f, c, g in items]
        preds = self.predict_prompts([b[1] for b in built], [b[0] for b in built], constrained=constrained)
        return [Result(pred, prompt, ctx) for pred, (_, prompt, ctx) in zip(preds, built, strict=True)]
