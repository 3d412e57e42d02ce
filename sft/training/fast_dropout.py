"""LoRA dropout from cheap random bits, for training on CPU.

PEFT applies an ``nn.Dropout`` to the input of every LoRA module: 7 per Llama decoder layer, so for SmolLM2-135M
about 150k random draws per token. On CPU torch draws one random float per element (``aten::bernoulli_``, ~6 ns
each here), which was 15% of a training step, more than the attention forward. A dropout mask needs far fewer
random bits: this draws 64-bit integers and compares each 16-bit slice with a threshold, 4 mask elements per draw,
and applies the mask with one multiply in each direction.

Same distribution as ``nn.Dropout`` up to the keep probability being a multiple of 1/65536 (p=0.05 keeps
62259/65536 = 0.949997); kept values are scaled by the inverse of that exact probability, so the expected output
equals the input. Deterministic under ``torch.manual_seed`` like the original (it uses the default generator).
CUDA keeps torch's fused dropout kernel, which is already cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_LEVELS = 1 << 16  # a 16-bit slice of a random 64-bit integer: uniform over [-32768, 32767]


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with masks from 16-bit random slices (4 per draw). A drop-in: same ``p``, same ``train()``/
    ``eval()`` behaviour, no parameters (adapters save and load unchanged)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        kept = round((1 - p) * _LEVELS)
        self.threshold = kept - _LEVELS // 2  # int16 slices below this are kept
        self.scale = _LEVELS / kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        bits = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        keep = bits.view(torch.int16)[:n].view(x.shape) < self.threshold
        # One multiply each way by a float mask: torch's masked_fill_ and bool-to-float promotion inside a multiply
        # are several times slower on CPU than this conversion.
        return x * keep.to(x.dtype).mul_(self.scale)


def lora_dropouts(model: Any) -> Iterator[tuple[nn.Module, nn.ModuleDict]]:
    """Each LoRA layer of a PEFT model with its per-adapter dropout modules."""
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            yield module, dropouts


def install_fast_lora_dropout(model: Any) -> int:
    """Swap every LoRA dropout of a PEFT model on CPU for :class:`FastDropout`; return how many were swapped."""
    swapped = 0
    for layer, dropouts in lora_dropouts(model):
        weight = next(layer.parameters(), None)
        if weight is None or weight.device.type != "cpu":
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is nn.Dropout and dropout.p > 0:
                replacement = FastDropout(dropout.p)
                replacement.train(dropout.training)
                dropouts[name] = replacement
                swapped += 1
    return swapped
