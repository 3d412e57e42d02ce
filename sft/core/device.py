"""Precision and attention from the GPU's compute capability: pure functions, so a T4, an A10G or an H100 can
be simulated on a CPU (tests/sft/core/test_device.py).

Why the capability and not ``torch.cuda.is_bf16_supported()``: that returns True on a T4 (sm_75), where bf16
is emulated (several times slower than fp16) and FlashAttention-2 refuses to run ("FlashAttention only
supports Ampere GPUs or newer"). Native bf16 tensor cores and FlashAttention-2 both start at sm_80 (Ampere).

    T4 (7.5) -> fp16, SDPA        A10G (8.6), L4 (8.9), A100 (8.0), H100 (9.0) -> bf16, FlashAttention-2
    CPU      -> fp32, SDPA        (FlashAttention-2 only where the flash-attn package is installed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AMPERE = (8, 0)  # first compute capability with native bf16 and FlashAttention-2


@dataclass(frozen=True)
class Precision:
    """What a device computes in: ``dtype`` is a torch dtype name; ``attention`` a transformers
    ``attn_implementation`` (None: let transformers choose, SDPA where it can)."""

    cuda: bool
    dtype: str
    attention: str | None

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    @property
    def fp16(self) -> bool:
        return self.dtype == "float16"

    @property
    def flash_attention(self) -> bool:
        return self.attention == "flash_attention_2"

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def decide_precision(capability: tuple[int, int] | None, *, flash_attn_installed: bool) -> Precision:
    """``capability``: ``torch.cuda.get_device_capability()`` of the GPU, or None on a CPU."""
    if capability is None:
        # CPU: fp32 (bf16 matmuls on most CPUs are slower and lose precision).
        return Precision(cuda=False, dtype="float32", attention=None)
    if tuple(capability) >= AMPERE:
        return Precision(cuda=True, dtype="bfloat16",
                         attention="flash_attention_2" if flash_attn_installed else None)
    return Precision(cuda=True, dtype="float16", attention=None)


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return (major, minor)


def flash_attn_installed() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available()


def detect_precision() -> Precision:
    capability = gpu_capability()
    return decide_precision(capability, flash_attn_installed=capability is not None and flash_attn_installed())


# Sequences per forward pass when serving. Constrained decoding scores 3 labels + a few citations per prompt
# against a shared prompt cache, so a batch of 8 prompts is ~40 short sequences: on a CPU more only queues
# behind the same cores. On a 24 GiB GPU a merged 7B (~13 GiB bf16) leaves ~9 GiB usable: the KV cache of
# 16 prompts x 512 tokens is ~3.8 GiB (0.47 MiB/token for a 7B), held twice while candidates are scored
# against a copy of it; 32 prompts would need ~15 GiB and not fit.
SERVE_BATCH = {"cpu": 8, "cuda": 16}


def serve_batch_size(precision: Precision) -> int:
    return SERVE_BATCH["cuda" if precision.cuda else "cpu"]


def serve_load_kwargs(precision: Precision) -> dict[str, Any]:
    """``from_pretrained`` arguments for serving: on a GPU, the weights in its dtype, placed on it (a 7B left on
    the host's CPUs answers in minutes). On a CPU nothing changes: transformers' default placement and dtype."""
    if not precision.cuda:
        return {}
    return {"dtype": precision.torch_dtype(), "device_map": {"": 0}}
