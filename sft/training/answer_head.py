"""CPU speed-up: the training loss projects only the answer positions through the LM head.

Installed by :func:`sft.training.train.build_trainer` beside :mod:`sft.training.fast_dropout` (the other CPU
speed-up); on CUDA TRL's own fused head already does this and nothing is changed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


# Config fields that change the logits after the LM head projection (Gemma softcapping, Granite/Cohere scaling...):
# models with any of them keep TRL's head, which implements them.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def score_answer_positions_only(model: Any) -> bool:
    """Make the training loss project only the answer positions through the LM head, on CPU.

    TRL's SFTTrainer patches the model's forward with a fused LM head (``fused_lm_head=True``) that scores only the
    positions whose next-token label is not -100 when Triton is there (CUDA). Elsewhere it scores every position,
    in chunks, to keep tile shapes static for compilers: on CPU that means the [tokens x vocab] projection, three
    times (forward, recomputed tile, input gradient), for a prompt that is ~85% of each example and has no loss.
    Here, on CPU, the forward runs the backbone once, gathers the labelled positions, and takes a dense log-softmax
    over just those rows (a few hundred per batch, so the dense logits are small and beat the chunked fold ~2x).
    It returns TRL's own output type with the same per-token fields, so TRL's ``compute_loss`` (mean over answer
    tokens, ``num_items_in_batch`` for gradient accumulation and DDP, entropy / token-accuracy metrics, eval loss)
    is unchanged, and the call still goes through PEFT and the DDP wrapper, so gradients are synchronised.
    Returns whether it was installed.
    """
    import functools
    import types

    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text_config = base.config.get_text_config()
    if base.device.type != "cpu" or any(getattr(text_config, f, None) is not None for f in _LOGIT_TRANSFORMS) \
            or getattr(text_config, "output_router_logits", False):
        return False  # TRL's head: answer-only already on CUDA (Triton), or a logit transform / MoE loss to apply
    # TRL's private output type of its fused head (TRL >= 1.15). Imported only here, where it is used: a TRL
    # without it (or one that moved it) trains with its own head, just without this CPU speed-up.
    try:
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError:
        log.warning("this TRL has no fused LM head output (trl.trainer.utils.FusedCausalLMOutput): "
                    "training scores every position on CPU (slower, same loss)")
        return False
    trl_forward = base.forward

    @functools.wraps(type(base).forward)  # generate() validates its kwargs against this signature
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or labels is None:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        log_probs_all = self.get_output_embeddings()(hidden[mask]).float().log_softmax(-1)
        answer = targets[mask]
        log_probs = log_probs_all.gather(-1, answer[:, None]).squeeze(-1)
        with torch.no_grad():  # metrics only
            entropy = -(log_probs_all.exp() * log_probs_all).sum(-1)
            is_top1 = log_probs_all.argmax(-1) == answer

        def full(x: Any) -> Any:  # back to [batch, seq-1], zero where there is no label, like TRL's output
            return x.new_zeros(mask.shape).masked_scatter(mask, x)

        log_probs = full(log_probs)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=full(entropy), is_top1=full(is_top1),
                                   label_mask=mask)

    base.forward = types.MethodType(forward, base)
    return True


def weight_label_tokens(model: Any, n_tokens: int, weight: float) -> bool:
    """Weight the loss of each answer's first ``n_tokens`` tokens (the JSON frame and the flag) by ``weight``.

    The flag decides the answer, yet it is ~5 of ~70 answer tokens: with a plain mean, a small model fits the
    reason's wording long before it learns the decision, and answers the majority label (measured on the realistic
    set, demo model, 100 steps: 92 % of answers "No Geo-Compliance Needed"). Scaling those positions' log-likelihood
    in TRL's fused-head output changes the loss TRL computes from it (sum / answer tokens), on any device. Returns
    whether it was installed (``weight == 1`` or a TRL without the fused output: no).
    """
    import functools
    import types

    if weight == 1.0:
        return False
    try:
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError:
        log.warning("label_loss_weight needs TRL's fused LM head output (TRL >= 1.15); training without it")
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = base.forward

    @functools.wraps(type(base).forward)
    def forward(self, *args, **kwargs):
        out = inner(*args, **kwargs)
        if isinstance(out, FusedCausalLMOutput) and out.label_mask is not None:
            mask = out.label_mask
            first = mask & (mask.long().cumsum(-1) <= n_tokens)
            out.log_probs = out.log_probs * (1.0 + (weight - 1.0) * first.to(out.log_probs.dtype))
        return out

    base.forward = types.MethodType(forward, base)
    return True


def label_token_count(tokenizer: Any) -> int:
    """Tokens from the answer's start through the longest label: what :func:`weight_label_tokens` weights."""
    from sft.core.contract import LABELS

    return max(len(tokenizer(f'{{"compliance_flag": "{label.value}"', add_special_tokens=False)["input_ids"])
               for label in LABELS)
