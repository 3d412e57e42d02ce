"""Shared inference: a thread-safe batch Predictor for eval, predict and serve.

Prompts come from the one prompt builder (:mod:`sft.core.prompt`), under the budget rule training used, with the
instruction, ``max_length`` and answer reserve recorded by training (``train_config.json``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sft.core.contract import DEFAULT_INSTRUCTION, Feature, LawContext, Prediction, PromptInput
from sft.core.label_head import LabelHead
from sft.core.prompt import DEFAULT_REASON_TOKENS, build_prompt, prompt_budget
from sft.inference.calibration import Calibration
from sft.inference.decoding import DecodeConfig, decode_constrained, decode_free

log = logging.getLogger(__name__)


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
    cut: dict[str, int] = {}
    """What the budget removed from the prompt: law items, glossary notes, description characters."""


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
    max_reason_tokens: int = DEFAULT_REASON_TOKENS
    """The answer reserve the model was trained with (train_config.json): the budget rule's other half."""
    calibration: Calibration = field(default_factory=Calibration)
    """Temperature and review threshold fitted on validation (calibration.json); defaults without one."""
    label_head: LabelHead | None = None
    """The flag head saved by training (label_head.safetensors); None: the LM's own flag step decides."""
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
        reason_tokens = train_cfg.get("max_reason_tokens", DEFAULT_REASON_TOKENS)
        config = config or DecodeConfig(max_reason_tokens=reason_tokens, batch_size=serve_batch_size(precision))
        return cls(
            model, tok, model_id=str(spec), instruction=model_instruction(spec) if train_cfg else DEFAULT_INSTRUCTION,
            config=config, max_length=max_length if isinstance(max_length, int) else None,
            max_reason_tokens=reason_tokens,
            calibration=(Calibration.load(spec) if Path(str(spec)).is_dir() else None) or Calibration(),
            label_head=LabelHead.load(spec) if Path(str(spec)).is_dir() else None,
        )

    @property
    def budget(self) -> int | None:
        """Prompt tokens allowed: the trained ``max_length`` minus the answer reserve (sft.core.prompt)."""
        return None if self.max_length is None else prompt_budget(self.max_length, self.max_reason_tokens)

    def fit_prompt(
        self, feature: Feature, context: Sequence[LawContext], glossary: dict[str, str] | None
    ) -> tuple[PromptInput, str, list[LawContext], dict[str, int]]:
        """The contract prompt, trimmed by the training rule (:func:`sft.core.prompt.fit_prompt_input`) to the
        trained budget: a model never sees a longer prompt, or a differently trimmed one, than in training."""
        fitted, kept = build_prompt(feature, context, glossary, self.instruction, self.tokenizer, self.budget)
        return fitted.prompt_input, fitted.prompt, kept, fitted.cut

    def predict_prompts(
        self, prompts: Sequence[str], inputs: Sequence[PromptInput | None], *, constrained: bool = True
    ) -> list[Prediction]:
        if not prompts:
            return []
        size = self.config.batch_size
        out: list[Prediction] = []
        import torch

        # inference_mode is per thread and scoped: no process-wide grad switch leaks into other work.
        with self._lock, torch.inference_mode():  # one request at a time; batches bound the KV-cache memory
            for i in range(0, len(prompts), size):
                batch = (self.model, self.tokenizer, prompts[i : i + size], inputs[i : i + size], self.config)
                out += (decode_constrained(*batch, head=self.label_head) if constrained
                        else decode_free(*batch))
        for pred in out:
            self.calibration.apply(pred)
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
        return [Result(pred, prompt, ctx, cut) for pred, (_, prompt, ctx, cut) in zip(preds, built, strict=True)]
