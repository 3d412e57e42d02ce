"""Precision and attention as functions of a simulated GPU: what a T4, an A10G, an H100 and a CPU get."""

from __future__ import annotations

import pytest

from sft.core.device import Precision, decide_precision, serve_batch_size

T4, A10G, H100 = (7, 5), (8, 6), (9, 0)


@pytest.mark.parametrize(("capability", "flash", "dtype", "attention"), [
    (T4, True, "float16", None),  # bf16 is only emulated and flash-attn refuses pre-Ampere, installed or not
    (T4, False, "float16", None),
    (A10G, True, "bfloat16", "flash_attention_2"),
    (A10G, False, "bfloat16", None),  # no flash-attn package: SDPA, still native bf16
    (H100, True, "bfloat16", "flash_attention_2"),
    ((8, 0), True, "bfloat16", "flash_attention_2"),  # A100: the first Ampere
    (None, True, "float32", None),  # CPU
])
def test_precision_follows_compute_capability(capability, flash, dtype, attention):
    p = decide_precision(capability, flash_attn_installed=flash)
    assert (p.cuda, p.dtype, p.attention) == (capability is not None, dtype, attention)
    assert p.flash_attention == (attention == "flash_attention_2")


def test_serving_batch_is_per_device():
    cpu, gpu = decide_precision(None, flash_attn_installed=False), decide_precision(A10G, flash_attn_installed=False)
    assert serve_batch_size(gpu) > serve_batch_size(cpu)
    assert Precision(cuda=False, dtype="float32", attention=None).torch_dtype().is_floating_point


def test_training_device_from_capability(tmp_path, monkeypatch):
    """The trainer's settings for a simulated T4 and A10G: the T4 never gets bf16 or FlashAttention-2."""
    pytest.importorskip("trl")
    import torch

    import sft.training.train as train
    from sft.training.config import TrainConfig

    monkeypatch.setattr(train, "flash_attention_available", lambda: True)  # flash-attn installed
    cfg = TrainConfig(model="demo", data="t.jsonl")
    for capability, dtype, flash in ((T4, torch.float16, False), (A10G, torch.bfloat16, True),
                                     (H100, torch.bfloat16, True), (None, torch.float32, False)):
        device = train.Device.for_capability(capability)
        load = train.model_load_kwargs(cfg, device)
        args = train.trainer_arguments(cfg, device, checkpoint_dir=tmp_path, has_validation=False,
                                       flash_attention=load.get("attn_implementation") == "flash_attention_2",
                                       mean_tokens=100.0)
        assert load["dtype"] == dtype, capability
        assert (load.get("attn_implementation") == "flash_attention_2") == flash, capability
        assert (args["bf16"], args["fp16"]) == (dtype == torch.bfloat16, dtype == torch.float16), capability
        assert args["ddp_find_unused_parameters"] is False  # LoRA uses every adapter weight every step
