"""Serving on a GPU, checked on CPU: every tensor the decoder makes goes to the model's device, and the model is
loaded in the device's dtype on the device."""

from __future__ import annotations

import pytest

from sft.core.contract import Feature, LawContext

torch = pytest.importorskip("torch")


def test_every_decoding_tensor_is_created_on_the_models_device(tiny_model_dir):
    """torch's default device is made ``meta`` (a stand-in for "not the model's device"): a tensor created
    without ``device=model.device`` lands there and the first forward pass mixing it with the model's
    weights fails. Constrained (prefill, candidate scoring, reason generation) and free decoding both run."""
    from sft.inference.predictor import Predictor

    predictor = Predictor.load(tiny_model_dir)
    item = (Feature(name="Teen curfew", description="Block logins at night in Utah"),
            [LawContext(id="us_ut#1", law_id="us_ut", title="Utah Social Media Regulation Act", citation="13-63-105",
                        jurisdiction="US-UT", snippet="curfew for minors")], None)
    torch.set_default_device("meta")
    try:
        assert torch.empty(1).device.type == "meta"  # the stand-in is in force
        constrained = predictor.predict([item, item])
        free = predictor.predict([item], constrained=False)
    finally:
        torch.set_default_device(None)
    assert all(r.prediction.valid for r in constrained) and len(free) == 1
    assert constrained[0].prediction.answer.citation in ("13-63-105", None)


def test_gpu_serving_loads_in_the_devices_dtype_on_the_device():
    from sft.core.device import decide_precision, serve_batch_size, serve_load_kwargs

    t4, a10g = decide_precision((7, 5), flash_attn_installed=True), decide_precision((8, 6), flash_attn_installed=True)
    assert serve_load_kwargs(t4) == {"dtype": torch.float16, "device_map": {"": 0}}
    assert serve_load_kwargs(a10g) == {"dtype": torch.bfloat16, "device_map": {"": 0}}
    assert serve_load_kwargs(decide_precision(None, flash_attn_installed=False)) == {}  # CPU: as before
    assert serve_batch_size(a10g) == 16 and serve_batch_size(decide_precision(None, flash_attn_installed=False)) == 8
