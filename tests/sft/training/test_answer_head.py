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
