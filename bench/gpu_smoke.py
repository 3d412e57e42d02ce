"""GPU smoke test: the GPU path end to end in a few minutes, ready for the first machine with a GPU.

    bench/gpu_smoke.sh            # a GPU: demo (SmolLM2-135M) + a random ~0.57B Llama, each in 16-bit and
                                  # 4-bit, a few steps; one request served on the GPU (<= 10 min on one GPU)
    bench/gpu_smoke.sh --cpu      # CPU fallback (what CI runs, < 60 s): the tests' tiny Llama, 2 steps

For each training case it prints the precision the device got (sft.core.device: bf16 from compute capability
8.0, fp16 before), training tokens/s, the peak GPU memory reserved against preflight's estimate for the same
model and settings (sft.sagemaker.preflight), and PASS/FAIL. A case passes when it runs its steps with a finite
loss, and (on a GPU) the measured peak is within preflight's estimate: preflight must never say "fits" for
something that does not. Serving passes when the answer is valid JSON and the model sits on the GPU.
Exit code: 0 when every check passed, 1 otherwise.

The ~0.57B model is built here with random weights (hidden 1280, 24 layers, 20 heads of 64, 4 KV heads, MLP
5120), so the machine needs no download: memory and speed depend on the shape, not on the weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# GPU name -> an instance with it (preflight sizes by instance; only the per-GPU estimate is used here).
INSTANCE_OF_GPU = {"A10G": "ml.g5.xlarge", "T4": "ml.g4dn.xlarge", "L4": "ml.g6.xlarge", "L40S": "ml.g6e.xlarge",
                   "V100": "ml.p3.2xlarge", "A100": "ml.p4de.24xlarge", "H100": "ml.p5.48xlarge",
                   "H200": "ml.p5e.48xlarge"}


def build_half_b(out: Path) -> Path:
    """A random Llama of ~0.57B parameters with the tests' tokenizer (FlashAttention-friendly head size 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sft.testing import build_tiny_model

    build_tiny_model(out)  # tokenizer (and a tiny model we overwrite)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=1280, intermediate_size=5120, num_hidden_layers=24,
                         num_attention_heads=20, num_key_value_heads=4, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    del model
    return out


def instance_for_gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        return "ml.g5.xlarge"
    name = torch.cuda.get_device_name(0)
    return next((inst for gpu, inst in INSTANCE_OF_GPU.items() if gpu in name), "ml.g5.xlarge")


def train_case(name: str, model: str, quantize: str | None, steps: int, work: Path, data: Path) -> dict:
    import torch

    from sft.core.device import detect_precision
    from sft.sagemaker.preflight import GIB, estimate, load_arch
    from sft.training.config import TrainConfig
    from sft.training.train import run_training

    cuda = torch.cuda.is_available()
    config = TrainConfig(model=model, data=str(data), output=str(work / name), quantize=quantize, max_steps=steps,
                         batch_size=4, max_length=512, eval_sample=0, save_steps=0, checkpoint_minutes=0,
                         logging_steps=1, save_total_limit=1, merge=False)
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    metrics = run_training(config)
    wall = time.perf_counter() - t0
    tokens = steps * config.batch_size * config.grad_accum * metrics["budget"]["train"]["mean_kept_tokens"]
    losses = [x["loss"] for x in metrics["train_loss"]]
    est = estimate(load_arch(model), instance_for_gpu(), quantize=quantize, max_length=config.max_length,
                   batch_size=config.batch_size, checkpointing=cuda)
    row = {"case": name, "precision": detect_precision().dtype, "steps": metrics["global_step"],
           "tokens_per_s": tokens / metrics["train_seconds"], "wall_s": wall, "loss": losses[-1] if losses else None,
           "estimate_gib": est.total / GIB, "peak_gib": torch.cuda.max_memory_reserved() / GIB if cuda else None}
    checks = [metrics["global_step"] == steps, bool(losses) and all(math.isfinite(x) for x in losses)]
    if cuda:
        checks.append(row["peak_gib"] <= row["estimate_gib"])
    row["pass"] = all(checks)
    return row


def serve_case(model_dir: Path) -> dict:
    import torch

    from sft.core.contract import Feature
    from sft.inference.predictor import Predictor

    predictor = Predictor.load(model_dir)
    feature = Feature(name="Teen curfew", description="Block logins between 22:00 and 06:00 for minors in Utah.")
    t0 = time.perf_counter()
    result = predictor.predict([(feature, [], None)])[0]
    seconds = time.perf_counter() - t0
    device = predictor.model.device.type
    ok = result.prediction.valid and (device == "cuda") == torch.cuda.is_available()
    return {"case": "serve 1 request", "device": device, "seconds": seconds, "valid": result.prediction.valid,
            "pass": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="CPU fallback: the tiny test model, 2 steps")
    ap.add_argument("--steps", type=int, default=None, help="training steps per case (GPU 10, CPU 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import importlib.util

    import torch

    from sft.core.console import setup_logging
    from sft.sample_data import write_examples
    from sft.testing import build_tiny_model

    setup_logging()
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_smoke: error: no CUDA GPU here; run with --cpu for the CPU fallback", file=sys.stderr)
        return 1
    steps = args.steps or (2 if args.cpu else 10)
    quantized = importlib.util.find_spec("bitsandbytes") is not None
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-") as tmp:
        work = Path(tmp)
        data = write_examples(work / "train.jsonl", 32, seed=1)
        if args.cpu:
            models = {"tiny": str(build_tiny_model(work / "tiny"))}
        else:
            models = {"demo": "demo", "0.57B": str(build_half_b(work / "half-b"))}
        for label, spec in models.items():
            for quantize in (None, "4bit") if quantized else (None,):
                name = f"{label}-{'4bit' if quantize else '16bit'}"
                try:
                    rows.append(train_case(name, spec, quantize, steps, work, data))
                except Exception as e:  # a smoke test reports every case, then fails
                    rows.append({"case": name, "pass": False, "error": f"{type(e).__name__}: {e}"})
        served = next((r["case"] for r in reversed(rows) if r["pass"] and r["case"].endswith("16bit")), None)
        if served:
            try:
                rows.append(serve_case(work / served))
            except Exception as e:
                rows.append({"case": "serve 1 request", "pass": False, "error": f"{type(e).__name__}: {e}"})
        else:
            rows.append({"case": "serve 1 request", "pass": False, "error": "no 16-bit model trained"})

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"\ngpu_smoke on {device} ({'CPU fallback' if args.cpu else 'GPU'}), {steps} steps per case")
    print(f"{'case':<16} {'precision':<9} {'tokens/s':>9} {'peak GiB':>9} {'preflight':>9}  result")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<16} {'':<9} {'':>9} {'':>9} {'':>9}  FAIL ({r['error'][:200]})")
        elif r["case"].startswith("serve"):
            print(f"{r['case']:<16} {r['device']:<9} {r['seconds']:>8.2f}s {'':>9} {'':>9}  "
                  f"{'PASS' if r['pass'] else 'FAIL'} (valid={r['valid']})")
        else:
            peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "n/a"
            print(f"{r['case']:<16} {r['precision']:<9} {r['tokens_per_s']:>9.0f} {peak:>9} "
                  f"{r['estimate_gib']:>9.2f}  {'PASS' if r['pass'] else 'FAIL'}")
    ok = all(r["pass"] for r in rows)
    print("gpu_smoke:", "PASS" if ok else "FAIL")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
