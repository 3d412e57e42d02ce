"""Predictions/s with constrained decoding vs plain greedy generation (the baseline), on CPU.

    python bench/predict_throughput.py                    # the tiny random fixture model (seconds)
    python bench/predict_throughput.py --model demo       # SmolLM2-135M-Instruct

Features come from examples/features.csv; each gets three law-context items cut from the bundled corpus
(a realistic prompt length). Both modes share the same prompts, batch size and reason budget; the plain
mode generates up to the reason budget + 64 tokens (the JSON frame) and stops at EOS. Prints both rates,
their ratio and how many answers were contract-valid in each mode.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def corpus_context() -> list:
    from sft.core.contract import LawContext

    laws = sorted((REPO / "examples" / "corpus" / "laws").glob("*.txt"))[:3]
    out = []
    for path in laws:
        words = path.read_text(encoding="utf-8").split()
        out.append(LawContext(id=f"{path.stem}#1", law_id=path.stem, title=path.stem.replace("_", " "),
                              citation=f"{path.stem} s.1", jurisdiction="EU", snippet=" ".join(words[200:280])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model spec (default: the tiny random fixture model)")
    ap.add_argument("--n", type=int, default=16, help="features to predict per mode")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-reason-tokens", type=int, default=48)
    args = ap.parse_args()

    import torch

    from sft.core.contract import Feature
    from sft.inference.decoding import DecodeConfig
    from sft.inference.predictor import Predictor
    from sft.testing import build_tiny_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model or str(build_tiny_model(Path(tmp) / "tiny"))
        predictor = Predictor.load(spec, DecodeConfig(args.max_reason_tokens, args.batch_size))
        with (REPO / "examples" / "features.csv").open(encoding="utf-8") as fh:
            feats = [Feature(id=r["id"], name=r["name"], description=r["description"]) for r in csv.DictReader(fh)]
        ctx = corpus_context()
        items = [(feats[i % len(feats)], ctx, None) for i in range(args.n)]
        predictor.predict(items[: args.batch_size])  # warm-up
        print(f"model={spec} n={args.n} batch={args.batch_size} threads={torch.get_num_threads()}")
        rates = {}
        for name, constrained in (("unconstrained", False), ("constrained", True)):
            start = time.perf_counter()
            preds = []
            for i in range(0, len(items), args.batch_size):
                preds += predictor.predict(items[i : i + args.batch_size], constrained=constrained)
            rates[name] = len(items) / (time.perf_counter() - start)
            valid = sum(r.prediction.valid for r in preds)
            print(f"{name:>13}: {rates[name]:7.2f} predictions/s  valid {valid}/{len(preds)}")
        print(f"constrained / unconstrained speed: {rates['constrained'] / rates['unconstrained']:.2f}x")


if __name__ == "__main__":
    main()
