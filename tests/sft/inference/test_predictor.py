"""Using the Predictor as a library must not change process-wide torch state (eval then train in one process)."""

from __future__ import annotations

import pytest

from sft.core.contract import Feature

torch = pytest.importorskip("torch")


def test_predictor_leaves_autograd_on(tiny_model_dir):
    from sft.inference.predictor import Predictor

    predictor = Predictor.load(tiny_model_dir)
    preds = predictor.predict([(Feature(name="Teen curfew", description="Block logins at night in Utah"), [], None)])
    assert preds[0].prediction.valid
    assert torch.is_grad_enabled()
    w = torch.ones(2, requires_grad=True)
    (w * 3).sum().backward()  # what training right after an eval needs
    assert w.grad is not None
