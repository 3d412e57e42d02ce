"""Shared inference: the one prompt builder for predict and serve, and a thread-safe batch Predictor.

``build_prompt`` is the only way a (feature, context, glossary) triple becomes model text outside training
data: it goes through :class:`sft.contract.PromptInput` and :func:`sft.contract.render_prompt`, with the
instruction recorded by training (``train_config.json``) when there is one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.contract import DEFAULT_INSTRUCTION, Feature, LawContext, Prediction, PromptInput, render_prompt
from sft.decoding import DecodeConfig, decode_constrained, decode_free

log = logging.getLogger(__name__)


def build_prompt(
    feature: Feature,
    context: Sequence[LawContext],
    glossary: dict[str, str] | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
) -> tuple[PromptInput, str]:
    prompt_input = PromptInput.build(feature, list(context), glossary)
    return prompt_input, render_prompt(instruction, prompt_input.render())


def model_instruction(model_dir: str | Path) -> str:
    """The instruction the model was trained with (``train_config.json``), else the default."""
    for cand in (Path(model_dir) / "train_config.json", Path(model_dir).parent / "train_config.json"):
        if cand.is_file():
            try:
                value = json.loads(cand.read_text()).get("instruction")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(value, str) and value.strip():
                return value
    return DEFAULT_INSTRUCTION


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, spec: str | Path, config: DecodeConfig | None = None) -> Predictor:
        import torch

        from sft.models import load_model_and_tokenizer

        torch.set_grad_enabled(False)
        path = model_path(spec)
        log.info("loading model %s", path)
        model, tok = load_model_and_tokenizer(path)
        model.eval()
        instruction = model_instruction(spec) if Path(str(spec)).is_dir() else DEFAULT_INSTRUCTION
        return cls(model, tok, model_id=str(spec), instruction=instruction, config=config or DecodeConfig())

    def predict_prompts(
        self, prompts: Sequence[str], inputs: Sequence[PromptInput | None], *, constrained: bool = True
    ) -> list[Prediction]:
        if not prompts:
            return []
        decode = decode_constrained if constrained else decode_free
        with self._lock:
            return decode(self.model, self.tokenizer, prompts, inputs, self.config)

    def predict(
        self,
        items: Sequence[tuple[Feature, Sequence[LawContext], dict[str, str] | None]],
        *,
        constrained: bool = True,
    ) -> list[tuple[Prediction, str]]:
        """(feature, context, glossary notes) -> (prediction, the exact prompt used)."""
        built = [build_prompt(f, c, g, self.instruction) for f, c, g in items]
        preds = self.predict_prompts([p for _, p in built], [pi for pi, _ in built], constrained=constrained)
        return list(zip(preds, [p for _, p in built], strict=True))
