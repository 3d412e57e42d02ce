"""The CPU answer-only LM head depends on a private TRL class: a TRL without it must still train."""

from __future__ import annotations

import pytest

from sft.sample_data import write_examples
from sft.training.config import TrainConfig


def test_a_trl_without_the_fused_head_output_trains_with_its_own_head(tmp_path, tiny_model_dir, monkeypatch,
                                                                      caplog: pytest.LogCaptureFixture):
    import builtins

    from sft.training.train import run_training

    # TRL < 1.15 has no FusedCausalLMOutput: importing it from our module raises ImportError, as it does on those
    # releases (the class stays in place for TRL's own code, which this TRL needs).
    real_import = builtins.__import__

    def old_trl_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "trl.trainer.utils" and "FusedCausalLMOutput" in (fromlist or ()):
            raise ImportError("cannot import name 'FusedCausalLMOutput' from 'trl.trainer.utils'")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", old_trl_import)
    cfg = TrainConfig(data=str(write_examples(tmp_path / "train.jsonl", 8, seed=1)), model=str(tiny_model_dir),
                      output=str(tmp_path / "out"), batch_size=4, max_steps=2, eval_sample=0, logging_steps=1)
    with caplog.at_level("WARNING"):
        metrics = run_training(cfg)
    assert metrics["global_step"] == 2 and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert "FusedCausalLMOutput" in caplog.text  # said once, with what it costs


def test_the_answer_only_head_is_installed_where_trl_has_it(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from sft.training.answer_head import score_answer_positions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    forward = model.forward
    assert score_answer_positions_only(model) is True
    assert model.forward != forward


def test_label_loss_weight_scales_exactly_the_flag_tokens(tmp_path, tiny_model_dir):
    """With label_loss_weight w the loss is (w * flag-token NLL + the rest) / answer tokens: the decision weighs more,
    nothing else changes."""
    import torch

    from sft.training.answer_head import label_token_count
    from sft.training.train import build_trainer

    def loss_and_parts(weight):
        cfg = TrainConfig(data=str(write_examples(tmp_path / f"t{weight}.jsonl", 8, seed=1)), model=str(tiny_model_dir),
                          output=str(tmp_path / f"o{weight}"), batch_size=4, max_steps=1, eval_sample=0,
                          lora_dropout=0.0, label_loss_weight=weight)
        prep = build_trainer(cfg)
        trainer, model = prep.trainer, prep.trainer.model
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        model.eval()
        with torch.no_grad():
            loss = trainer.compute_loss(model, dict(batch))
            out = model(**batch, fused_lm_head=True)
        return loss, out, label_token_count(prep.tokenizer)

    plain, out1, k = loss_and_parts(1.0)
    weighted, out5, _ = loss_and_parts(5.0)
    mask = out1.label_mask
    first = mask & (mask.long().cumsum(-1) <= k)
    nll = -out1.log_probs
    expect = (5.0 * nll[first].sum() + nll[mask & ~first].sum()) / mask.sum()
    assert 3 <= k <= 16 and first.sum() == k * mask.shape[0]
    assert torch.isclose(plain, nll[mask].sum() / mask.sum(), rtol=1e-4)
    assert torch.isclose(weighted, expect, rtol=1e-4)
