"""Training throughput: the reference way vs ours, same model, same examples, same run.

    python bench/train_throughput.py [--data features,geoprep|synthetic|FILE] [--model demo|tiny|SPEC]
                                     [--examples 8] [--batch-size 4] [--repeats 2] [--ablate]

Workloads (--data, comma-separated; default both of the first two), each a seeded sample of --examples:
  features  the seed's data shape: the bundled features as "Feature: name / Description: ...", no retrieved law
            text, as in the seed's training files; variable, ~200 tokens of a 512 budget with the instruction;
  geoprep   our own training data (``geoprep pipeline examples/corpus --tokenizer demo``, run here into a temp dir):
            feature + glossary + retrieved law context, trimmed to fit 512, so ~445 tokens on average, ~85% prompt;
  synthetic the contract's sample examples (1-4 law-context items of 10-120 words), or FILE: any train.jsonl.
Model: the real demo model (SmolLM2-135M: 30 layers, width 576, a 49,152-token vocabulary, so the LM head is ~20%
of the FLOPs per position, as in real small models); 'tiny' is the tests' tiny Llama (overhead-bound).

(i) reference (the seed project): a plain transformers Trainer on prompt + answer text padded to max_length 512,
    labels = input ids (loss on the prompt and the padding too, so the model projects all 512 positions through
    the full-vocabulary LM head), gradient checkpointing on (verified: the first layer runs twice per step), PEFT's
    own dropout;
(ii) ours (sft.training.train.build_trainer, CPU defaults): one example per forward pass accumulated to the batch (no pad
    token computed), loss on the answer only with only the answer positions projected through the LM head, no
    checkpointing on CPU, LoRA dropout masks from 16-bit random slices (sft/training/fast_dropout.py).
--ablate adds ours with padded length-grouped batches and torch's dropout (this project's way before both).

Both train one epoch with LoRA (same r, targets, optimizer, learning rate, batch size, examples). Prints useful
tokens/s (answer tokens, the only ones the task needs learned) for each, the ratio, and achieved model FLOP/s
against a matmul peak measured in this run. Model FLOPs count what each way must compute, batch by batch: the
linear layers 2 FLOPs/param/token forward and 2 backward (LoRA: activation gradients only; the frozen weights
get none), attention scores over the padded length (backward 2x forward), the LM head on the positions that
carry a label, and one more forward of the layers when checkpointing recomputes it. LoRA's own FLOPs and
dropout are left out. The model-FLOP ratio is what skipping work alone buys at equal FLOP/s: for examples that
fill the budget (geoprep's) it is ~1.75x, because the answer attends to every prompt position, so the backbone's
forward + backward over the prompt must stay; the rest of a speedup is doing the same work faster.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def workload(name: str, tmp: Path, n: int, seed: int) -> Path:
    """A seeded sample of ``n`` training examples for the workload ``name`` (see the docstring)."""
    if name == "synthetic":
        from sft.sample_data import write_examples

        return write_examples(tmp / "synthetic.jsonl", n, seed=seed)
    if name in ("geoprep", "features"):
        prep = tmp / "prep"
        if not (prep / "train.jsonl").is_file():
            from data_prep.pipeline import PipelineConfig, run_pipeline

            run_pipeline(PipelineConfig(input_dir=ROOT / "examples" / "corpus", out_dir=prep, tokenizer="demo"),
                         progress=False)
        source = prep / "train.jsonl"
    else:
        source = Path(name)
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    lines = random.Random(seed).sample(lines, min(n, len(lines)))
    if name == "features":
        lines = [seed_shaped(line) for line in lines]
    out = tmp / f"{Path(name).stem}.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


def seed_shaped(line: str) -> str:
    """The same example as the seed shaped it: the feature's name and description, no glossary or law text."""
    from sft.core.contract import Example, PromptInput

    ex = Example.model_validate_json(line)
    feature = PromptInput.parse(ex.input).feature
    return ex.model_copy(update={"input": f"Feature: {feature['name']}\nDescription: {feature['description']}"}).to_json()


def batch_flops(config, n_body: int, batches: list[tuple[int, int, int]], checkpointing: bool) -> float:
    """Model FLOPs of training on ``batches`` of (rows, padded length, labelled positions); see the docstring."""
    h, layers = config.hidden_size, config.num_hidden_layers
    d_attn = config.num_attention_heads * (getattr(config, "head_dim", None) or h // config.num_attention_heads)
    total = 0.0
    for rows, length, labelled in batches:
        linear = 2 * n_body * rows * length
        attention = layers * 4 * rows * length**2 * d_attn
        head = 2 * config.vocab_size * h * labelled
        total += 2 * (linear + head) + 3 * attention + (linear + attention if checkpointing else 0)
    return total


def body_params(model) -> int:
    """Frozen parameters of the transformer layers (not the embedding lookup, not the LM head)."""
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and "lora_" not in n)


def run_ours(cfg) -> tuple[float, list[tuple[int, int, int]], object, float]:
    from sft.testing import count_layer_calls
    from sft.training.train import build_trainer

    trainer = build_trainer(cfg).trainer
    calls = count_layer_calls(trainer.model)
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    batches = [(b["input_ids"].shape[0], b["input_ids"].shape[1], int((b["labels"][:, 1:] != -100).sum()))
               for b in trainer.get_train_dataloader()]
    return elapsed, batches, trainer.model, calls[0] / len(batches)


def run_reference(cfg, rows) -> tuple[float, list[tuple[int, int, int]], float]:
    """The seed's way: a plain Trainer on prompt + answer text padded to max_length, labels = input ids (the
    loss covers the prompt and the padding too), so the model's own forward projects every one of the 512
    positions through the full-vocabulary LM head; gradient checkpointing on."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    from sft.models import load_model_and_tokenizer
    from sft.testing import count_layer_calls

    model, tok = load_model_and_tokenizer(cfg.model)
    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                             target_modules=cfg.target_modules, task_type="CAUSAL_LM"))
    enc = tok([r["prompt"] + r["completion"] + tok.eos_token for r in rows], padding="max_length",
              truncation=True, max_length=cfg.max_length)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                            "labels": enc["input_ids"]})
    args = TrainingArguments(
        output_dir=str(Path(cfg.output) / "ref"), num_train_epochs=1, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, gradient_checkpointing=True, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=1000, seed=cfg.seed,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=default_data_collator)
    calls = count_layer_calls(model)
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    batches = [(b["input_ids"].shape[0], b["input_ids"].shape[1], int(b["labels"][:, 1:].numel()))
               for b in trainer.get_train_dataloader()]
    assert all(length == cfg.max_length for _, length, _ in batches), "reference must pad to max_length"
    return elapsed, batches, calls[0] / len(batches)


def measure(cfg, data: Path, repeats: int, ablate: bool) -> dict[str, object]:
    """Alternate the ways and keep each one's best of ``repeats``: the first run in a process pays one-off warm-up,
    and on a shared machine other work only ever makes a run slower."""
    from sft.models import load_tokenizer, resolve
    from sft.training.data import prepare_split

    cfg = replace(cfg, data=str(data))
    tok = load_tokenizer(resolve(cfg.model))
    split = prepare_split("train", data, tok, cfg.max_length)
    useful = sum(len(tok(r["completion"], add_special_tokens=False)["input_ids"]) + 1 for r in split.rows)
    lengths = [len(tok(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in split.rows]
    ways = {"ours": cfg, **({"ours, padded + torch dropout": replace(cfg, padding_free=False, fast_dropout=False)}
                            if ablate else {})}
    best: dict[str, float] = {}
    seen: dict[str, tuple] = {}
    for _ in range(repeats):
        t, batches, calls = run_reference(cfg, split.rows)
        best["reference"] = min(best.get("reference", float("inf")), t)
        seen["reference"] = (batches, calls)
        for name, way in ways.items():
            t, batches, model, calls = run_ours(way)
            best[name] = min(best.get(name, float("inf")), t)
            seen[name] = (batches, calls)
    return {"useful": useful, "lengths": lengths, "best": best, "seen": seen, "model": model}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo",
                   help="model spec (default: the real SmolLM2-135M demo model); 'tiny': the tests' tiny Llama")
    p.add_argument("--data", default="features,geoprep",
                   help="comma-separated workloads: features, geoprep, synthetic, or a train.jsonl path")
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--ablate", action="store_true", help="also time ours with padded batches and torch's dropout")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

    import torch

    from sft.training.config import TrainConfig

    torch.manual_seed(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if a.model == "tiny":
            from sft.testing import build_tiny_model

            a.model = str(build_tiny_model(Path(tmp) / "tiny"))
        cfg = TrainConfig(data=None, model=a.model, output=str(Path(tmp) / "out"), epochs=1, batch_size=a.batch_size,
                          eval_sample=0, logging_steps=1000, save_steps=10_000, resume=False)
        peak = matmul_peak()
        for name in a.data.split(","):
            results[name] = measure(cfg, workload(name, Path(tmp), a.examples, seed=0), a.repeats, a.ablate)
        peak = max(peak, matmul_peak(), matmul_peak())

    model = next(iter(results.values()))["model"]
    config, n_body = model.get_base_model().config, body_params(model)
    print(f"model {a.model}: {config.num_hidden_layers} layers, width {config.hidden_size}, vocab "
          f"{config.vocab_size}, {n_body / 1e6:.1f}M layer params | batch {a.batch_size}, max_length "
          f"{cfg.max_length} | torch threads {torch.get_num_threads()}, matmul peak {peak / 1e9:.1f} GFLOP/s | "
          f"ways alternated, best of {a.repeats} each")
    summary = []
    for name, r in results.items():
        lengths = r["lengths"]
        print(f"\n[{name}] {len(lengths)} examples: {sum(lengths) / len(lengths):.0f} tokens on average "
              f"({min(lengths)}-{max(lengths)}), {r['useful']} answer tokens (useful)")
        t_ref = r["best"]["reference"]
        flop_ref = None
        for way, t in r["best"].items():
            batches, calls = r["seen"][way]
            flops = batch_flops(config, n_body, batches, checkpointing=calls > 1.5)  # recompute only where it ran
            flop_ref = flop_ref or flops
            positions = sum(rows * length for rows, length, _ in batches)
            print(f"  {way:30s} {t:7.2f} s {r['useful'] / t:7.1f} useful tok/s  {positions:5d} positions  "
                  f"{calls:.0f} layer pass(es)/batch  {flops / t / 1e9:5.1f} GFLOP/s ({100 * flops / t / peak:.0f}% "
                  f"of peak)  speedup {t_ref / t:4.2f}x  model-FLOP ratio {flop_ref / flops:4.2f}x")
        summary.append(f"{name} {t_ref / r['best']['ours']:.2f}x")
    print(f"\nspeedup of ours over the reference (useful tokens/s): {', '.join(summary)}")


if __name__ == "__main__":
    main()
