"""Time per training example with LoRA on every layer vs on the top N layers only (`lora_layers`).

    python bench/lora_layers.py [--data FILE] [--model demo] [--layers 15,8] [--examples 8] [--max-length 448]

Below the lowest adapted layer nothing needs a gradient, so backward stops there: with LoRA on the top half of
SmolLM2-135M's 30 layers a step skips about half of the layers' backward. Each setting builds the trainer the
way `geosft train` does (sft.training.train.build_trainer: one example per pass, answer-only LM head, fast
dropout), then times forward + backward of the same --examples examples, best of two passes. The baseline (every
layer) is measured in the same run; the ratio is printed. --data: a train.jsonl (default: the contract's sample
examples, 1-4 law items each).

Measured 2026-12-03 (2 CPU cores, demo model, `--data runs/demo/data/train.jsonl`, 448 tokens, 8 examples):
every layer 12.75 s, top 15 layers 8.52 s (0.67x), top 8 layers 6.50 s (0.51x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--layers", default="15,8", help="comma-separated N for lora_layers (0 = every layer, always run)")
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=448)
    args = ap.parse_args()

    from sft.sample_data import write_examples
    from sft.training.config import TrainConfig
    from sft.training.train import build_trainer

    tmp = Path(tempfile.mkdtemp(prefix="lora-layers-"))
    data = args.data or write_examples(tmp / "train.jsonl", max(args.examples, 8), seed=0)
    times: dict[int, float] = {}
    for n in [0] + [int(x) for x in args.layers.split(",") if x.strip()]:
        cfg = TrainConfig(data=str(data), model=args.model, output=str(tmp / f"out{n}"), max_steps=1,
                          max_length=args.max_length, lora_layers=n, eval_sample=0)
        trainer = build_trainer(cfg).trainer
        model = trainer.model
        model.train()
        batches = [trainer.data_collator([trainer.train_dataset[i]])
                   for i in range(min(args.examples, len(trainer.train_dataset)))]
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            for b in batches:
                model(**{k: v for k, v in b.items() if k in ("input_ids", "labels", "attention_mask")}).loss.backward()
            best = min(best, time.perf_counter() - t)
        model.zero_grad(set_to_none=True)
        times[n] = best
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"lora_layers {n or 'all'}: {best:.2f} s for {len(batches)} examples "
              f"({trainable / 1e6:.2f}M trainable), {best / times[0]:.2f}x the every-layer time", flush=True)


if __name__ == "__main__":
    main()
