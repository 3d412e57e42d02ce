"""geosft train on the tiny fixture model: masking on the trainer's real batches, the budget, learning,
the output directory contract (reload + generate), and the config surfaces (CLI, YAML, hyperparameters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sft.core.contract import read_examples, render_completion, render_prompt
from sft.core.errors import UserError
from sft.sample_data import make_examples, write_examples
from sft.training.config import TrainConfig, cli_config

pytest.importorskip("trl")


def _cfg(tmp_path: Path, model_dir: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(write_examples(tmp_path / "train.jsonl", 8, seed=1)),
        model=str(model_dir), output=str(tmp_path / "out"), batch_size=4, max_steps=2,
        eval_sample=0, logging_steps=1,
    )
    return TrainConfig(**{**base, **kw})


def test_masking_on_collated_batch(tmp_path, tiny_model_dir):
    """Every prompt token's label is -100; every answer token, EOS included, is trained on."""
    from sft.training.train import build_trainer

    prep = build_trainer(_cfg(tmp_path, tiny_model_dir, max_length=4096))  # nothing trimmed
    trainer, tok = prep.trainer, prep.tokenizer
    ex = next(read_examples(tmp_path / "train.jsonl"))
    prompt_ids = tok(render_prompt(ex.instruction, ex.input))["input_ids"]
    row = next(r for r in trainer.train_dataset if r["input_ids"][: len(prompt_ids)] == prompt_ids)
    batch = trainer.data_collator([row, trainer.train_dataset[1]])  # padded against a different length
    labels = batch["labels"][0]
    n_prompt = len(prompt_ids)
    n_answer = len(tok(render_completion(ex.output), add_special_tokens=False)["input_ids"]) + 1  # + EOS
    assert (labels[:n_prompt] == -100).all()
    answer_labels = labels[n_prompt : n_prompt + n_answer]
    assert (answer_labels != -100).all()
    assert answer_labels[-1].item() == tok.eos_token_id
    assert tok.decode(answer_labels[:-1]) == render_completion(ex.output)
    assert (labels[n_prompt + n_answer :] == -100).all()  # padding, if any
    assert (batch["attention_mask"][0][: n_prompt + n_answer] == 1).all()
    # dynamic padding: the batch is as long as its longest row, not max_length
    assert batch["input_ids"].shape[1] == max(len(row["input_ids"]), len(trainer.train_dataset[1]["input_ids"]))
    # Validation keeps the loss only: no [batch, seq, vocab] logits come back to be gathered in memory.
    loss, logits, _ = trainer.prediction_step(trainer.model, dict(batch), trainer.args.prediction_loss_only)
    assert loss is not None and logits is None


def test_answer_only_lm_head_matches_standard_loss_and_gradients(tmp_path, tiny_model_dir):
    """The training loss projects only the answer positions through the LM head, and is still exactly the
    standard causal-LM loss (mean over answer tokens) with the same gradients on the LoRA weights."""
    import torch

    from sft.training.train import build_trainer

    prep = build_trainer(_cfg(tmp_path, tiny_model_dir, lora_dropout=0.0))
    trainer = prep.trainer
    model = trainer.model
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    n_answer = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < n_answer < batch["labels"][:, 1:].numel() // 2  # the prompt dominates: most positions unlabelled
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter non-trivial so its gradients are informative
        for p in (p for n, p in lora.items() if "lora_B" in n):
            p.normal_(0, 0.5)

    head_rows = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: head_rows.append(i[0].shape[:-1]))
    model.train()
    ours = trainer.compute_loss(model, dict(batch))
    ours.backward()
    ours_grads = {n: p.grad.clone() for n, p in lora.items()}
    model.zero_grad()
    assert head_rows == [torch.Size([n_answer])]  # only the answer positions reached the LM head

    standard = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    hook.remove()
    assert standard.logits.shape[:2] == batch["input_ids"].shape  # the standard path: every position
    standard.loss.backward()
    assert abs(ours.item() - standard.loss.item()) < 1e-5
    assert any(g.abs().sum() > 0 for n, g in ours_grads.items() if "lora_A" in n)
    assert all(g.abs().sum() > 0 for n, g in ours_grads.items() if "lora_B" in n)
    for n, p in lora.items():
        torch.testing.assert_close(ours_grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)
    assert trainer._metrics["train"]["mean_token_accuracy"]  # TRL's metrics still logged from our outputs


def test_overlong_example_keeps_full_response(tmp_path, tiny_model_dir):
    from sft.models import load_model_and_tokenizer
    from sft.training.data import prepare_split

    _, tok = load_model_and_tokenizer(tiny_model_dir)
    path = write_examples(tmp_path / "long.jsonl", 6, seed=3, min_words=150, max_words=200)
    split = prepare_split("train", path, tok, 450)
    report = split.report.as_dict()
    assert report["trimmed"] >= 1
    originals = {ex.id: ex for ex in read_examples(path)}
    for ex, row in zip(split.examples, split.rows, strict=True):
        assert row["completion"] == render_completion(originals[ex.id].output)
        assert len(tok(row["prompt"] + row["completion"])["input_ids"]) + 1 <= 450
    assert report["fit"] + report["trimmed"] + report["dropped"] == 6


def test_balance_labels_oversamples_training_split_only(tmp_path, tiny_model_dir):
    """--set balance_labels=true: every label as common as the most common one, every example still there,
    validation untouched (its metrics describe the real distribution)."""
    from collections import Counter

    from sft.training.train import build_trainer

    want = {"Needs Geo-Compliance": 4, "No Geo-Compliance Needed": 1, "Not Enough Information": 2}
    skewed = []
    for line in write_examples(tmp_path / "all.jsonl", 12, seed=4).read_text().splitlines():
        label = json.loads(json.loads(line)["output"])["compliance_flag"]
        if want[label] > 0:
            want[label] -= 1
            skewed.append(line)
    data = tmp_path / "skewed.jsonl"
    data.write_text("\n".join(skewed) + "\n")
    before = Counter(e.answer.compliance_flag for e in read_examples(data))
    assert sorted(before.values()) == [1, 2, 4], before
    val = write_examples(tmp_path / "val.jsonl", 5, seed=9)
    prep = build_trainer(_cfg(tmp_path, tiny_model_dir, data=str(data), validation=str(val), balance_labels=True,
                              max_length=4096))
    completions = Counter(prep.tokenizer.decode(r["input_ids"]) for r in prep.trainer.train_dataset)
    after = Counter()
    for e in read_examples(data):
        rendered = render_prompt(e.instruction, e.input) + render_completion(e.output)
        n = sum(c for text, c in completions.items() if rendered in text)
        assert n >= 1, e.id  # nothing dropped
        after[e.answer.compliance_flag] += n
    assert set(after.values()) == {max(before.values())}, after
    assert len(prep.trainer.eval_dataset) == 5


def test_eval_loss_sample_keeps_label_shares(tmp_path, tiny_model_dir):
    """--set eval_loss_sample=N: the Trainer's evaluation loss (and best-checkpoint choice) reads N validation
    examples, each label's share of the split kept, the same rows on every build; 0 keeps the whole split."""
    from collections import Counter

    from sft.training.train import build_trainer

    val = write_examples(tmp_path / "val.jsonl", 30, seed=9)
    split = Counter(e.answer.compliance_flag.value for e in read_examples(val))
    assert len(split) == 3 and min(split.values()) >= 5, split

    def eval_prompts(n: int) -> list[str]:
        prep = build_trainer(_cfg(tmp_path, tiny_model_dir, validation=str(val), max_length=4096,
                                  eval_loss_sample=n))
        return [prep.tokenizer.decode(r["input_ids"]) for r in prep.trainer.eval_dataset]

    sample = eval_prompts(10)
    assert len(sample) == 10 and sample == eval_prompts(10)
    by_prompt = {render_prompt(e.instruction, e.input): e.answer.compliance_flag.value for e in read_examples(val)}
    got = Counter(next(label for p, label in by_prompt.items() if p in text) for text in sample)
    for label, n in split.items():
        assert abs(got[label] - 10 * n / 30) < 1, (got, split)
    assert len(eval_prompts(0)) == 30


def test_train_learns_saves_reloads_and_generates(tmp_path, tiny_model_dir):
    import torch

    from sft.models import load_model_and_tokenizer
    from sft.training.train import run_training

    val = write_examples(tmp_path / "val.jsonl", 4, seed=9)
    index = tmp_path / "index"
    (index / "shards").mkdir(parents=True)
    (index / "shards" / "bm25.json").write_text("{}")
    # The team's own instruction (a seed file's, say): inference must prompt with it, not with the default.
    own = tmp_path / "t4.jsonl"
    own.write_text("".join(ex.model_copy(update={"instruction": "Flag geo-compliance needs."}).to_json() + "\n"
                           for ex in make_examples(4, seed=1)))
    cfg = _cfg(tmp_path, tiny_model_dir, data=str(own),
               validation=str(val), max_steps=12, learning_rate=5e-2, warmup_ratio=0.0, eval_sample=2,
               max_new_tokens=8, save_steps=6, lora_dropout=0.0, merge=True, index=str(index))
    metrics = run_training(cfg)
    losses = [x["loss"] for x in metrics["train_loss"]]
    # The same 4 examples every step, no dropout: only learning lowers the loss. (The fixture's logits are
    # tiny, hidden 16 with a frozen lm_head, so the achievable drop is ~0.08 nats.)
    assert losses[-1] < losses[0] - 0.05, losses
    assert [e["step"] for e in metrics["eval"]] == [6, 12]
    assert metrics["best_checkpoint"].endswith(f"checkpoint-{min(metrics['eval'], key=lambda e: e['eval_loss'])['step']}")
    assert len(metrics["generation"]) == 2 and {"json_valid_rate", "label_accuracy"} <= set(metrics["generation"][0])

    out = Path(cfg.output)
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train_config.json",
                 "metrics.json", "budget.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        Path(tiny_model_dir).resolve())
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["learning_rate"] == 5e-2 and saved["target_modules"] == "all-linear"
    from sft.inference.predictor import model_instruction

    assert saved["instruction"] == model_instruction(out) == model_instruction(out / "merged") == (
        "Flag geo-compliance needs.")
    budget = json.loads((out / "budget.json").read_text())["train"]
    assert budget["fit"] + budget["trimmed"] == 4 and budget["max_length"] == 512

    assert (out / "index" / "shards" / "bm25.json").is_file()  # shipped for serving
    # The flag head, fitted on the trained model's hidden states (the tiny model's 2 layers: the middle is 1), on
    # the 4 training examples as read, chosen on the 4 validation ones; predict/eval/serve load it from either dir.
    from sft.inference.predictor import Predictor

    head = metrics["label_head"]
    assert head["layer"] == 1 and head["train_examples"] == 4 and head["validation_examples"] == 4, head
    assert json.loads((out / "metrics.json").read_text())["label_head"] == head
    assert (out / "label_head.safetensors").is_file() and (out / "label_head.json").is_file()
    assert Predictor.load(out).label_head.layer == Predictor.load(out / "merged").label_head.layer == 1
    assert not (out / "reasons.json").exists(), "reasons follow one rule (sft.core.reasons): nothing saved"
    merged, _ = load_model_and_tokenizer(out / "merged")  # full weights, no adapter needed
    assert not type(merged).__name__.startswith("Peft")
    model, tok = load_model_and_tokenizer(out)
    ids = tok("### Response:\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():  # merged weights compute what base + adapter compute
        assert torch.allclose(merged(ids).logits, model(ids).logits, atol=1e-4)
    assert type(model).__name__.startswith("Peft")
    ex = make_examples(1)[0]
    enc = tok(render_prompt(ex.instruction, ex.input), return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] > enc["input_ids"].shape[1]


def test_config_surfaces(tmp_path):
    assert TrainConfig().model == "deepseek-ai/deepseek-llm-7b-base"
    assert (TrainConfig().epochs, TrainConfig().learning_rate, TrainConfig().max_length) == (3, 5e-5, 512)
    assert TrainConfig(target_modules=["all"]).target_modules == "all-linear"
    assert TrainConfig(target_modules="all").target_modules == "all-linear"
    assert TrainConfig(target_modules='["q_proj","v_proj"]').target_modules == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match="7b-base"):
        TrainConfig(model="deepseek-ai/deepseek-llm-8b-base")
    hp = {"epochs": "1", "merge": "True", "resume": "false", "learning_rate": "1e-4", "target_modules": '["all"]'}
    from sft.sagemaker.env import decode_hyperparameter

    cfg = TrainConfig.from_hyperparameters({k: decode_hyperparameter(v) for k, v in hp.items()})
    assert (cfg.epochs, cfg.merge, cfg.resume, cfg.learning_rate) == (1.0, True, False, 1e-4)
    with pytest.raises(UserError, match="HF_TOKEN"):
        TrainConfig.from_dict({"hf_token": "hf_secret"})
    with pytest.raises(UserError, match="unknown setting 'lora_rank'"):
        TrainConfig.from_dict({"lora_rank": 4})
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 2\nlora_r: 16\nmodel: demo\n")
    cfg = cli_config(y, {"epochs": 5.0, "data": None}, ["lora_alpha=32"])
    assert (cfg.epochs, cfg.lora_r, cfg.lora_alpha, cfg.model) == (5.0, 16, 32, "demo")  # flags beat YAML
    with pytest.raises(UserError, match=r"c.yaml: lora_r: expected int"):
        cli_config(y, {}, ["lora_r=x"])


def test_cli_train_and_bad_data(tmp_path, tiny_model_dir):
    geosft = Path(sys.executable).parent / "geosft"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "i", "input": "x", "output": "{\\"compliance_flag\\": \\"maybe\\"}"}\n')
    proc = subprocess.run([str(geosft), "train", "--data", str(bad), "--model", str(tiny_model_dir),
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"{bad}:1: field 'output.compliance_flag'" in proc.stderr and "Traceback" not in proc.stderr
    data = write_examples(tmp_path / "d.jsonl", 4)
    proc = subprocess.run([str(geosft), "train", "--data", str(data), "--model", str(tiny_model_dir),
                           "--output", str(tmp_path / "o"), "--max-steps", "1", "--set", "eval_sample=0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["global_step"] == 1


def test_hf_token_from_secrets_manager_never_in_outputs(tmp_path, tiny_model_dir, aws_env, monkeypatch, caplog):
    import boto3

    from sft.training.train import hf_token, run_training

    token = "hf_tokenvalue_0123456789"
    sm = boto3.client("secretsmanager", region_name="us-west-2")
    sm.create_secret(Name="geocomply/hf", SecretString=json.dumps({"HF_TOKEN": token}))
    assert hf_token(TrainConfig(hf_token_secret="geocomply/hf")) == token
    with pytest.raises(UserError, match="'geocomply/missing': cannot read it"):
        hf_token(TrainConfig(hf_token_secret="geocomply/missing"))

    monkeypatch.setenv("HF_TOKEN", token)
    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=1, hf_token_secret="geocomply/hf")
    with caplog.at_level("DEBUG"):
        run_training(cfg)
    assert token not in caplog.text
    files = [p for p in Path(cfg.output).rglob("*") if p.is_file()]
    assert files and not [p for p in files if token.encode() in p.read_bytes()]
    assert json.loads((Path(cfg.output) / "train_config.json").read_text())["hf_token_secret"] == "geocomply/hf"


# ------------------------------------------------------------------------------- the GPU path, on CPU


def test_precision_checkpointing_and_quantization_follow_the_device(tmp_path, monkeypatch):
    """What a g5 (A10G, Ampere), a g4dn (T4, pre-Ampere) and a CPU get: checked on the real settings objects."""
    import torch
    from trl import SFTConfig

    import sft.training.train as train

    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(train, "flash_attention_available", lambda: True)  # flash-attn installed
    ampere, turing, cpu = train.Device(cuda=True, bf16=True), train.Device(cuda=True, bf16=False), train.Device(False, False)
    cfg = TrainConfig(model="demo", data="t.jsonl", quantize="4bit")

    def settings(device, config=cfg, mean_tokens=400.0):
        load = train.model_load_kwargs(config, device)
        args = train.trainer_arguments(config, device, checkpoint_dir=tmp_path, has_validation=True,
                                       flash_attention=load.get("attn_implementation") == "flash_attention_2",
                                       mean_tokens=mean_tokens)
        return load, args

    load, args = settings(ampere)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (4, 1)  # real batches
    q = load["quantization_config"]
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == (True, "nf4", True)
    assert load["dtype"] == q.bnb_4bit_compute_dtype == torch.bfloat16 and load["device_map"] == {"": 1}
    assert (args["bf16"], args["fp16"], args["use_cpu"], args["gradient_checkpointing"]) == (True, False, False, True)
    assert load["attn_implementation"] == "flash_attention_2" and args["padding_free"]

    load, args = settings(turing)  # no bf16, no FlashAttention-2 before Ampere
    assert load["dtype"] == load["quantization_config"].bnb_4bit_compute_dtype == torch.float16
    assert (args["bf16"], args["fp16"], args["gradient_checkpointing"], args["padding_free"]) == (False, True, True, False)
    assert "attn_implementation" not in load

    monkeypatch.delenv("LOCAL_RANK")  # a single process from here on
    load, args = settings(cpu)
    assert load["dtype"] == load["quantization_config"].bnb_4bit_compute_dtype == torch.float32
    assert load["device_map"] == {"": "cpu"}
    assert (args["bf16"], args["fp16"], args["use_cpu"], args["gradient_checkpointing"]) == (False, False, True, False)
    # CPU: one example per pass, accumulated to the batch (no pad token computed; TRL's flattening stays off),
    # once examples are long enough to fill the matmuls alone; shorter ones are batched, padded and grouped.
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"], args["padding_free"]) == (1, 4, False)
    assert args["train_sampling_strategy"] == "group_by_length"  # groups of 1 x 4: the padded batches' steps
    short = train.CPU_PER_EXAMPLE_MIN_TOKENS - 1
    for config, mean_tokens in [(TrainConfig(model="demo", data="t.jsonl", padding_free=False, grad_accum=2), 400.0),
                                (TrainConfig(model="demo", data="t.jsonl", grad_accum=2), short)]:
        _, padded = settings(cpu, config, mean_tokens)
        assert (padded["per_device_train_batch_size"], padded["gradient_accumulation_steps"]) == (4, 2)
        assert padded["train_sampling_strategy"] == "group_by_length" and not padded["padding_free"]
    _, forced = settings(cpu, TrainConfig(model="demo", data="t.jsonl", padding_free=True), short)
    assert forced["per_device_train_batch_size"] == 1
    assert SFTConfig(**args).completion_only_loss and SFTConfig(**args).max_length is None  # the real object accepts it

    _, args = settings(ampere, TrainConfig(model="demo", data="t.jsonl", gradient_checkpointing=False))
    assert not args["gradient_checkpointing"]  # an explicit setting beats the device default
    # Forced padding-free without a varlen kernel would let flattened examples attend to each other: refused
    # before any weights are loaded.
    with pytest.raises(UserError, match="padding_free on a GPU needs flash attention"):
        settings(turing, TrainConfig(model="demo", data="t.jsonl", padding_free=True))


def test_qlora_recipe_trains_adapter_only_and_ships_merged_weights(tmp_path, tiny_model_dir):
    """The g5 QLoRA recipe (nf4 + double quant, gradient checkpointing, LoRA on every linear layer) run end to
    end through bitsandbytes' CPU backend: the 4-bit base stays frozen, every LoRA layer learns, the layers are
    recomputed, and the outputs load without bitsandbytes in the way (merged into full-precision weights)."""
    import bitsandbytes as bnb
    import torch

    from sft.models import load_model_and_tokenizer
    from sft.testing import count_layer_calls
    from sft.training.train import build_trainer, save_outputs

    cfg = _cfg(tmp_path, tiny_model_dir, quantize="4bit", gradient_checkpointing=True, max_steps=3,
               learning_rate=5e-2, warmup_ratio=0.0, lora_dropout=0.0, merge=True, save_steps=2,
               padding_free=False,  # real batches, as on the GPU
               validation=str(write_examples(tmp_path / "val.jsonl", 2, seed=9)))  # evaluation mid-training
    prep = build_trainer(cfg)
    model = prep.trainer.model
    quantized = {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(quantized) == 2 * 7  # every linear layer of both decoder layers (q k v o gate up down)
    assert all(m.weight.quant_state.quant_type == "nf4" and m.weight.quant_state.nested for m in quantized.values())
    frozen = {n: m.weight.detach().clone() for n, m in quantized.items()}
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert len(lora_b) == len(quantized) and all(p.requires_grad for p in lora_b.values())
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)

    calls = count_layer_calls(model)
    prep.trainer.train()
    evaluated = [h["eval_loss"] for h in prep.trainer.state.log_history if "eval_loss" in h]
    assert len(evaluated) == 2  # steps 2 and 3 (the end)
    assert calls[0] == 2 * 3 + 2  # checkpointing: the first layer ran twice per step (+ once per evaluation)
    assert all(p.abs().sum() > 0 for p in lora_b.values()), "a LoRA layer got no gradient"  # B starts at zero
    assert all(torch.equal(frozen[n], m.weight) for n, m in quantized.items())

    out = save_outputs(cfg, prep, {"global_step": prep.trainer.state.global_step})
    merged, tok = load_model_and_tokenizer(out / "merged")
    adapter, _ = load_model_and_tokenizer(out)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert merged.dtype == torch.float32  # served in full precision, not with 4-bit error baked in
    ids = tok("### Response:\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapter(ids).logits, atol=1e-4)


def test_one_example_per_pass_on_cpu_makes_the_padded_batch_step(tmp_path, tiny_model_dir):
    """CPU (the default for examples of 256+ tokens): each example runs alone (no pad token computed) and the
    gradients are accumulated to the batch. The optimizer sees the same gradient as from one padded batch of the
    same examples (the loss is the mean over all the batch's answer tokens, not a mean of per-example means)."""
    import torch
    from transformers import TrainerCallback, set_seed

    from sft.training.fast_dropout import FastDropout, lora_dropouts
    from sft.training.train import build_trainer

    data = write_examples(tmp_path / "t4.jsonl", 4, seed=1)  # 4 lengths: the padded batch has padding

    def one_step(padding_free: bool) -> tuple[dict, list, object]:
        grads, passes = {}, []

        class Grab(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})

        set_seed(0)
        trainer = build_trainer(_cfg(tmp_path, tiny_model_dir, data=str(data), output=str(tmp_path / str(padding_free)),
                                     max_steps=1, lora_dropout=0.1, padding_free=padding_free)).trainer
        drops = [d for _, dropouts in lora_dropouts(trainer.model) for d in dropouts.values()]
        assert drops and all(type(d) is FastDropout for d in drops)  # installed on CPU
        for d in drops:  # off for this comparison: the masks would differ between the runs
            d.p = 0.0
        trainer.args.max_grad_norm = 0  # compare raw gradients, not clipped ones
        trainer.add_callback(Grab())
        hook = trainer.model.get_input_embeddings().register_forward_hook(
            lambda m, i, o: passes.append(tuple(i[0].shape)))
        with torch.no_grad():  # a non-zero LoRA B, so that lora_A gets gradients too
            for n, p in trainer.model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.1)
        trainer.train()
        hook.remove()
        return grads, passes, trainer

    alone, alone_passes, trainer = one_step(True)
    batched, batched_passes, _ = one_step(False)
    lengths = sorted(len(row["input_ids"]) for row in trainer.train_dataset)
    assert len(set(lengths)) > 1
    assert sorted(s[1] for s in alone_passes) == lengths and all(s[0] == 1 for s in alone_passes)  # no padding
    assert batched_passes == [(4, lengths[-1])]  # one padded batch
    assert alone.keys() == batched.keys() and len(alone) > 0
    assert all(g.abs().sum() > 0 for g in alone.values())
    for n, g in alone.items():
        torch.testing.assert_close(g, batched[n], rtol=1e-4, atol=1e-7, msg=n)


def test_fp16_keeps_4bit_lora_weights_fp32_for_the_grad_scaler(tmp_path, tiny_model_dir, monkeypatch):
    """A T4 trains in fp16: TRL casts a 4-bit model's LoRA weights to bf16, which CUDA's gradient scaler cannot
    unscale. The real QLoRA trainer, built on CPU, then given the fp16 device's fix: every trainable weight fp32,
    and the scaler's unscale (the step that crashed) runs on their gradients."""
    pytest.importorskip("bitsandbytes")
    import torch

    import sft.training.train as train

    prep = train.build_trainer(_cfg(tmp_path, tiny_model_dir, quantize="4bit"))
    model = prep.trainer.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {torch.bfloat16}  # what TRL does to a 4-bit model
    assert train.fp32_trainable_for_fp16(model, train.Device.for_capability((8, 6))) == 0  # bf16 GPU: as TRL left it
    assert train.fp32_trainable_for_fp16(model, train.Device.for_capability((7, 5))) == len(trainable)
    assert {p.dtype for p in trainable} == {torch.float32}
    for p in trainable:
        p.grad = torch.ones_like(p)
    opt = torch.optim.AdamW(trainable)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    scaler.scale(torch.ones(()))  # the loss is scaled first; that creates the scale
    scaler.unscale_(opt)  # fp16 / bf16 gradients: "Attempting to unscale FP16 gradients" / no bf16 kernel on CUDA
    assert all(torch.allclose(p.grad, torch.full_like(p, 0.5)) for p in trainable)


def _agree(rank: int, port: int, flags: tuple[bool, bool], out) -> None:
    import torch.distributed as dist

    from sft.training.train import agree_across_ranks

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out.put((rank, agree_across_ranks(flags, "cpu")))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_a_stop_only_one_of_them_heard():
    """SIGTERM reached rank 1 only (or before rank 0's check): both ranks see the stop at the same step."""
    import multiprocessing as mp

    from sft.sagemaker.distributed import free_port
    from sft.training.train import agree_across_ranks

    assert agree_across_ranks((True, False), "cpu") == (True, False)  # one process: unchanged
    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_agree, args=(r, port, ((False, False), (True, False))[r], out)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert results == {0: (True, False), 1: (True, False)}


def test_checkpoints_by_time_between_epoch_checkpoints(tmp_path, tiny_model_dir):
    """checkpoint_minutes: a checkpoint whenever that much time has passed, whatever save_steps says (here
    every step, as the clock is made to pass ~0 minutes); off with 0."""
    from sft.training.train import run_training

    cfg = _cfg(tmp_path, tiny_model_dir, max_steps=3, batch_size=2, save_steps=0, save_total_limit=0,
               checkpoint_minutes=1e-9)
    run_training(cfg)
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "out" / "checkpoints").glob("checkpoint-*"))
    assert steps == [1, 2, 3]
    off = cfg.replace(output=str(tmp_path / "off"), checkpoint_minutes=0.0)
    run_training(off)
    assert sorted(p.name for p in (tmp_path / "off" / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]


def test_lora_on_the_top_layers_only_trains_nothing_below_them(tmp_path, tiny_model_dir):
    """``lora_layers`` N: adapters on the last N layers only, so backward stops there (fewer FLOPs per step)."""
    import re

    from sft.training.train import build_trainer

    prep = build_trainer(_cfg(tmp_path, tiny_model_dir, lora_layers=1))
    layers = prep.trainer.model.base_model.model.config.num_hidden_layers
    trained = {int(m.group(1)) for n, p in prep.trainer.model.named_parameters()
               if p.requires_grad and (m := re.search(r"\.layers\.(\d+)\.", n))}
    assert layers > 1 and trained == {layers - 1}
    with pytest.raises(UserError, match="lora_layers"):
        TrainConfig(data="x.jsonl", lora_layers=-1)


def test_without_a_label_head_no_stale_head_is_left_behind(tmp_path, tiny_model_dir):
    """label_head off: the LM's own flag step decides, so a head an earlier run left in the dir must go."""
    from sft.inference.predictor import Predictor
    from sft.training.train import run_training

    out = tmp_path / "out"
    out.mkdir()
    (out / "label_head.json").write_text("{}")
    (out / "label_head.safetensors").write_bytes(b"old")
    metrics = run_training(_cfg(tmp_path, tiny_model_dir, label_head=False))
    assert "label_head" not in metrics
    assert not (out / "label_head.json").exists() and not (out / "label_head.safetensors").exists()
    assert Predictor.load(out).label_head is None
