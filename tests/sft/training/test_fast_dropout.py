"""LoRA dropout from 16-bit random slices: the distribution of nn.Dropout, and what the trainer installs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sft.training.fast_dropout import FastDropout, install_fast_lora_dropout, lora_dropouts  # noqa: E402


def test_masks_have_dropouts_distribution_and_gradient():
    torch.manual_seed(0)
    drop = FastDropout(0.05)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.05) < 0.002  # binomial sd 0.0002
    assert torch.allclose(y[kept], torch.full_like(y[kept], drop.scale))  # kept values scaled by 1/keep
    assert abs(y.mean().item() - 1) < 0.002  # E[y] = x
    # Neighbouring elements come from the same 64-bit draw: their masks must still be independent.
    both = (~kept[:, 0::2] & ~kept[:, 1::2]).float().mean().item()
    assert abs(both - 0.05**2) < 5e-4
    y.backward(torch.full_like(y, 3.0))
    assert torch.equal(x.grad, torch.where(kept, 3.0 * drop.scale, 0.0))  # the same mask, the same scale


def test_is_deterministic_and_identity_when_off():
    x = torch.randn(64, 33)
    masks = []
    for _ in range(2):
        torch.manual_seed(7)
        masks.append(FastDropout(0.3)(x) == 0)
    assert torch.equal(*masks) and masks[0].any()
    assert FastDropout(0.3).eval()(x) is x and FastDropout(0.0)(x) is x
    assert abs(FastDropout(0.3)(torch.ones(200_000)).eq(0).float().mean().item() - 0.3) < 0.005


def test_swaps_every_lora_dropout_of_a_cpu_peft_model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from sft.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM"))
    n_lora = len(list(lora_dropouts(model)))
    assert install_fast_lora_dropout(model) == n_lora == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    drops = [d for _, dropouts in lora_dropouts(model) for d in dropouts.values()]
    assert all(type(d) is FastDropout and d.p == 0.1 and d.training for d in drops)
    assert install_fast_lora_dropout(model) == 0  # idempotent
