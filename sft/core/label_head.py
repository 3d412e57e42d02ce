"""The flag from a linear head on the fine-tuned model's own hidden states.

Why (#13, measured 2026-12-03 on the realistic set, 146 hand-written specs never trained on, 2 CPU cores): after
the main job's 180 LoRA steps the demo model's flag step (the three label continuations' likelihoods) scores
macro-F1 0.43; 600 steps reach 0.56, and the label it prefers swings from checkpoint to checkpoint. The decision
is in the model's hidden states long before the LM head learns to say it: a multinomial logistic regression on
the mean of one middle layer's hidden states over the prompt, fitted on the same training split in seconds,
scores 0.80-0.83 (numbers in docs/model-quality.md). So training fits such a head after the LoRA steps and saves it
with the adapter; constrained decoding takes the flag from it and the LM writes law, citation and reason after
that flag, exactly as it was trained to (the answer's text and its grounding rules do not change).

The head:
- features: the output of decoder layer ``layer`` (``hidden_states[layer]``; for the last layer, before the final
  norm), averaged over the prompt's tokens (the prompt exactly as training and inference render it, with the
  tokenizer's BOS), and with ``pooling="prompt+spec"`` (the default since 2026-12-04) also averaged over the
  tokens up to the end of the feature spec, the two means side by side. Causal attention makes them independent
  of anything after the prompt, and one forward pass that stops at that layer computes them. Why the spec's own
  mean: the decision turns on the spec's stated reason and place, and the whole-prompt mean is mostly law text
  (three snippets against a one-line spec). Chosen on the validation split, after the LoRA steps of one main-job
  run (2026-12-04, layer 15): macro-F1 0.889 -> 0.922, its 41 hand-written rows 0.817 -> 0.876; of 38 variants
  (layers 3-30; prompt, spec, last-token and paired means) it was the best. The realistic set was then scored
  for that choice and the old one only (docs/model-quality.md);
- with ``facts`` (chosen on the validation split since 2026-12-05): the spec's nine stated facts after them
  (:mod:`sft.core.spec_facts`: where, which reason, undecided or not, law that applies), computed from the
  prompt's own text, so training and inference read them alike. On the same features of one main-job run,
  validation macro-F1 0.917 without them, 0.953 with (docs/model-quality.md, session 11);
- standardised with the training split's mean and deviation, then ``W x + b`` over the three labels;
- fitted by L-BFGS on the training split (each label weighted by its inverse frequency, so a skewed split does
  not become a prior), its L2 strength chosen by macro-F1 on the validation split.

It is saved as ``label_head.safetensors`` (tensors) + ``label_head.json`` (layer, labels, how it was fitted) in the
model directory. The temperature of :mod:`sft.inference.calibration` is fitted on its log-probabilities like on
the LM's, so ``confidence`` means the same thing either way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.core.contract import LABELS
from sft.core.files import write_json_atomic

log = logging.getLogger(__name__)

WEIGHTS = "label_head.safetensors"
META = "label_head.json"
# L2 strengths tried (on standardised features, mean weighted loss); the validation split picks one. Measured on
# the demo model: 1e-3..1e-1 all land within 0.02 macro-F1 of each other on the realistic set.
ALPHAS = (1e-1, 1e-2, 1e-3)
DEFAULT_ALPHA = 1e-2
# "prompt": the mean over the prompt; "prompt+spec": that and the mean up to the end of the feature spec.
POOLINGS = ("prompt", "prompt+spec")
DEFAULT_POOLING = "prompt+spec"
# PromptInput.render writes the feature first, then these keys: the spec ends where the first of them begins.
# (Inside the spec's JSON strings a quote is escaped, so its text cannot match.)
_AFTER_SPEC = ('"glossary": {', '"law_context": [')


class _Stop(Exception):
    """Raised by the layer hook: nothing above the head's layer needs computing."""


def decoder_layers(model: Any) -> Any:
    """The model's stack of transformer blocks (through a PEFT wrapper too)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if isinstance(layers, torch.nn.ModuleList):
        return layers
    n = getattr(base.config.get_text_config(), "num_hidden_layers", None)
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"{type(base).__name__}: no list of {n} decoder layers found for the label head")


def layer_for(model: Any, fraction: float) -> int:
    """``hidden_states`` index at ``fraction`` of the model's depth (1 .. number of layers)."""
    n = len(decoder_layers(model))
    return min(n, max(1, round(fraction * n)))


def spec_end(prompt: str) -> int:
    """Character offset where the prompt's feature spec ends (its glossary or law context begins), or its
    length when neither follows."""
    found = [i for i in (prompt.find(k) for k in _AFTER_SPEC) if i >= 0]
    return min(found) if found else len(prompt)


def _tokenize(tokenizer: Any, prompt: str, pooling: str) -> tuple[list[int], int]:
    """``prompt``'s token ids, and how many of them start before :func:`spec_end` (0 for ``pooling="prompt"``):
    from one call's character offsets with a fast tokenizer, else by tokenising the text up to there."""
    if pooling == "prompt":
        return list(tokenizer(prompt)["input_ids"]), 0
    cut = spec_end(prompt)
    try:
        enc = tokenizer(prompt, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        ids = list(tokenizer(prompt)["input_ids"])
        return ids, max(1, min(len(ids), len(tokenizer(prompt[:cut])["input_ids"])))
    return list(enc["input_ids"]), max(1, sum(1 for start, _ in offsets if start < cut))


def prompt_features(model: Any, tokenizer: Any, prompts: Sequence[str], layer: int,
                    progress: Callable[[int], None] | None = None, pooling: str = DEFAULT_POOLING) -> Any:
    """(len(prompts), hidden) float32 tensor: the mean of ``hidden_states[layer]`` over each prompt's tokens;
    with ``pooling="prompt+spec"`` (len(prompts), 2 * hidden): that mean, then the mean over the tokens up to the
    end of the feature spec (:func:`spec_end`).

    One prompt per forward pass, stopped after the layer: no padding to mask, and on 2 CPU cores examples of ~300
    tokens are no faster batched (sft.training.train, CPU_PER_EXAMPLE_MIN_TOKENS). ~0.2 s a prompt for the demo
    model at its middle layer there; a GPU makes it noise.
    """
    import torch

    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r}: one of {', '.join(POOLINGS)}")
    block = decoder_layers(model)[layer - 1]
    captured: list[Any] = []
    spec_n = [0]

    def hook(_module: Any, _args: Any, output: Any) -> None:
        h = (output[0] if isinstance(output, tuple) else output)[0].float()
        captured.append(h.mean(0) if pooling == "prompt" else torch.cat([h.mean(0), h[: spec_n[0]].mean(0)]))
        raise _Stop

    handle = block.register_forward_hook(hook)
    rows = []
    try:
        with torch.inference_mode():
            for i, prompt in enumerate(prompts):
                tokens, spec_n[0] = _tokenize(tokenizer, prompt, pooling)
                ids = torch.tensor([tokens], device=model.device)
                try:
                    model(input_ids=ids, use_cache=False)
                except _Stop:
                    pass
                rows.append(captured.pop().cpu())
                if progress:
                    progress(i + 1)
    finally:
        handle.remove()
    width = model.config.get_text_config().hidden_size * (1 if pooling == "prompt" else 2)
    return torch.stack(rows) if rows else torch.zeros((0, width))


@dataclass
class LabelHead:
    layer: int
    mean: Any  # (d,) tensors
    std: Any
    weight: Any  # (len(labels), d)
    bias: Any  # (len(labels),)
    labels: list[str] = field(default_factory=lambda: [label.value for label in LABELS])
    fitted: dict[str, Any] = field(default_factory=dict)
    """How it was fitted: examples, chosen L2, validation macro-F1 of the head and of the LM's own flag step."""
    pooling: str = DEFAULT_POOLING
    """How its features pool the layer (:data:`POOLINGS`); heads saved before 2026-12-04 read "prompt"."""
    facts: bool = False
    """Whether the spec's facts (:mod:`sft.core.spec_facts`) follow the hidden states in its features."""

    def features(self, model: Any, tokenizer: Any, prompts: Sequence[str]) -> Any:
        """This head's features of ``prompts``: :func:`prompt_features` at its layer, pooled its way, then the
        spec's facts when it reads them."""
        x = prompt_features(model, tokenizer, prompts, self.layer, pooling=self.pooling)
        return with_facts(x, prompts) if self.facts else x

    def logits(self, features: Any) -> Any:
        return ((features - self.mean) / self.std) @ self.weight.T + self.bias

    def log_probs(self, features: Any) -> list[dict[str, float]]:
        import torch

        lp = torch.log_softmax(self.logits(features.float()), dim=-1)
        return [{label: float(row[j]) for j, label in enumerate(self.labels)} for row in lp]

    def save(self, model_dir: str | Path) -> None:
        from safetensors.torch import save_file

        out = Path(model_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (WEIGHTS + ".tmp")
        save_file({k: getattr(self, k).contiguous() for k in ("mean", "std", "weight", "bias")}, str(tmp))
        tmp.replace(out / WEIGHTS)
        write_json_atomic(out / META, {"layer": self.layer, "pooling": self.pooling, "facts": self.facts,
                                       "labels": self.labels, "fitted": self.fitted})

    @classmethod
    def load(cls, model_dir: str | Path) -> LabelHead | None:
        """The head saved in ``model_dir`` (or its parent: a ``merged/`` dir), or None when there is none."""
        from safetensors.torch import load_file

        for d in (Path(model_dir), Path(model_dir).parent):
            if (d / META).is_file() and (d / WEIGHTS).is_file():
                meta = json.loads((d / META).read_text())
                t = load_file(str(d / WEIGHTS))
                if meta.get("labels") != [label.value for label in LABELS]:
                    raise ValueError(f"{d / META}: labels {meta.get('labels')} are not this version's")
                pooling = meta.get("pooling", "prompt")
                if pooling not in POOLINGS:
                    raise ValueError(f"{d / META}: pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
                return cls(meta["layer"], t["mean"], t["std"], t["weight"], t["bias"], meta["labels"],
                           meta.get("fitted", {}), pooling, bool(meta.get("facts", False)))
        return None


def with_facts(x: Any, prompts: Sequence[str]) -> Any:
    """``x`` (one row per prompt) with the spec's facts (:func:`sft.core.spec_facts.facts`) appended."""
    import torch

    from sft.core.spec_facts import facts

    return torch.cat([x, torch.tensor([facts(p) for p in prompts], dtype=x.dtype).reshape(len(prompts), -1)], dim=1)


def macro_f1(gold: Sequence[int], pred: Sequence[int], k: int = len(LABELS)) -> float:
    """Unweighted mean F1 over the ``k`` classes that occur in gold or predictions."""
    scores = []
    for c in range(k):
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        n_pred, n_gold = sum(p == c for p in pred), sum(g == c for g in gold)
        if n_pred or n_gold:
            scores.append(2 * tp / (n_pred + n_gold))
    return sum(scores) / len(scores) if scores else 0.0


def _fit(x: Any, y: Any, alpha: float, steps: int = 200) -> tuple[Any, Any]:
    """Class-balanced multinomial logistic regression on standardised ``x``: (weight, bias)."""
    import torch

    k = len(LABELS)
    counts = torch.bincount(y, minlength=k).float()
    sample_w = (len(y) / (k * counts.clamp(min=1)))[y]
    w = torch.zeros(k, x.shape[1], requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(x @ w.T + b, y, reduction="none")
        loss = (ce * sample_w).sum() / sample_w.sum() + alpha * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def fit_label_head(layer: int, train_x: Any, train_y: Sequence[str], val_x: Any = None,
                   val_y: Sequence[str] | None = None, pooling: str = DEFAULT_POOLING,
                   train_prompts: Sequence[str] | None = None, val_prompts: Sequence[str] | None = None) -> LabelHead:
    """Fit on the training features; with a validation split, its macro-F1 picks the L2 strength and, given the
    prompts, whether the head also reads the spec's facts (:mod:`sft.core.spec_facts`; ties keep the hidden states
    alone)."""
    import torch

    index = {label.value: j for j, label in enumerate(LABELS)}
    y = torch.tensor([index[v] for v in train_y])
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    variants = [(False, train_x, val_x)]
    if has_val and train_prompts is not None and val_prompts is not None:
        variants.append((True, with_facts(train_x, train_prompts), with_facts(val_x, val_prompts)))
    tried: dict[str, float] = {}
    best = None
    for use_facts, tx, vx in variants:
        mean = tx.mean(0)
        std = tx.std(0).clamp(min=1e-6) if len(tx) > 1 else torch.ones_like(mean)
        x = (tx - mean) / std
        for alpha in ALPHAS if has_val else (DEFAULT_ALPHA,):
            w, b = _fit(x, y, alpha)
            if has_val:
                pred = (((vx - mean) / std) @ w.T + b).argmax(-1).tolist()
                f1 = macro_f1([index[v] for v in val_y], pred)
                tried[f"{alpha}{' +facts' if use_facts else ''}"] = round(f1, 4)
                # ties keep the stronger regularisation (tried first) and the hidden states alone (tried first)
                if best is None or f1 > best[0] + 1e-9:
                    best = (f1, alpha, w, b, mean, std, use_facts)
            else:
                best = (math.nan, alpha, w, b, mean, std, use_facts)
    assert best is not None
    f1, alpha, w, b, mean, std, use_facts = best
    fitted = {"train_examples": len(y), "label_counts": {LABELS[j].value: int(c) for j, c in
                                                         enumerate(torch.bincount(y, minlength=len(LABELS)))},
              "l2": alpha, "facts": use_facts, "validation_examples": len(val_y) if has_val else 0,
              "validation_macro_f1": None if math.isnan(f1) else round(f1, 4), "l2_tried": tried}
    return LabelHead(layer, mean, std, w, b, fitted=fitted, pooling=pooling, facts=use_facts)
