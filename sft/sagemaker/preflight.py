"""Memory preflight: will LoRA / QLoRA training of this model fit on this instance's GPU?

    geosft preflight --model deepseek-ai/deepseek-llm-7b-base --instance ml.g5.2xlarge [--quantize 4bit]

Per-GPU estimate, from the model's architecture (config.json):
  weights      bf16: 2 B/param; 4-bit nf4 + double quant: ~0.53 B/param for the transformer's linear layers
               (embeddings and lm_head stay 16-bit: bitsandbytes does not quantize them)
  LoRA         params fp32 4 B + grads 4 B + AdamW moments 8 B = 16 B per trainable parameter
  activations  per token per layer ~34*hidden bytes without checkpointing (Korthikanti et al. 2022, with
               fused attention so the seq^2 term is gone); with checkpointing only each layer's input
               (2*hidden bytes) plus one layer's full activations while it is recomputed
  logits       per token: vocab x (2 B bf16 logits + 4 B fp32 upcast in the loss + 4 B its gradient)
  overhead     CUDA context + allocator fragmentation: 1 GiB + 8%

Checked against a public measurement: Qwen2.5-7B loaded in 4-bit nf4 with double quantization has a
5.44 GB footprint (https://dev.to/sumanpro/qlora-fine-tuning-a-7b-model-on-a-16gb-gpu-it-shrank-to-54gb-in-front-of-me-28n4);
our weights estimate for that config is 5.55 GB, 2% above it (tests/sft/sagemaker/test_preflight.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft.core.errors import UserError
from sft.training.config import TrainConfig

GB = 1e9
GIB = 2**30

# Instance -> (GPUs, GiB per GPU, GPU). Per-GPU memory is what matters for data-parallel LoRA.
INSTANCES: dict[str, tuple[int, float, str]] = {
    **{f"ml.g5.{s}": (1, 24, "A10G") for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g5.12xlarge": (4, 24, "A10G"), "ml.g5.24xlarge": (4, 24, "A10G"), "ml.g5.48xlarge": (8, 24, "A10G"),
    **{f"ml.g6.{s}": (1, 24, "L4") for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6.12xlarge": (4, 24, "L4"), "ml.g6.48xlarge": (8, 24, "L4"),
    **{f"ml.g6e.{s}": (1, 48, "L40S") for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6e.12xlarge": (4, 48, "L40S"), "ml.g6e.48xlarge": (8, 48, "L40S"),
    "ml.g4dn.xlarge": (1, 16, "T4"), "ml.g4dn.2xlarge": (1, 16, "T4"), "ml.g4dn.12xlarge": (4, 16, "T4"),
    "ml.p3.2xlarge": (1, 16, "V100"), "ml.p3.8xlarge": (4, 16, "V100"),
    "ml.p4d.24xlarge": (8, 40, "A100"), "ml.p4de.24xlarge": (8, 80, "A100"),
    "ml.p5.48xlarge": (8, 80, "H100"), "ml.p5e.48xlarge": (8, 141, "H200"),
}

# Architectures we can estimate without a download (the default model, and the one the measurement used).
KNOWN_ARCHS: dict[str, dict[str, Any]] = {
    "deepseek-ai/deepseek-llm-7b-base": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=30, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=102400, tie_word_embeddings=False),
    "Qwen/Qwen2.5-7B": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


@dataclass(frozen=True)
class Arch:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> Arch:
        try:
            return cls(c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_attention_heads"],
                       c.get("num_key_value_heads") or c["num_attention_heads"], c["vocab_size"],
                       bool(c.get("tie_word_embeddings", False)))
        except KeyError as e:
            raise UserError(f"model config has no {e.args[0]!r}: not a decoder-only transformer we can size") from None

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers in one decoder layer (Llama-style attention + gated MLP)."""
        kv = self.hidden // self.heads * self.kv_heads
        h, i = self.hidden, self.intermediate
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def lora_params(self, r: int) -> int:
        return self.layers * sum(r * (a + b) for a, b in self.linear_shapes())


@dataclass
class Estimate:
    weights: float
    lora: float
    activations: float
    logits: float
    overhead: float
    gpu_gib: float
    gpus: int
    gpu: str

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_gib * GIB


def weight_bytes(arch: Arch, quantize: str | None) -> float:
    if quantize == "4bit":
        # nf4: 0.5 B/param + one fp8 absmax per 64 params, and double quant's fp32 per 256 of those blocks.
        per_param = 0.5 + 1 / 64 + 4 / (64 * 256)
        return arch.linear_params * per_param + arch.embedding_params * 2
    return (arch.linear_params + arch.embedding_params) * 2


def estimate(arch: Arch, instance: str, *, quantize: str | None = None, max_length: int = TrainConfig.default("max_length"),
             batch_size: int = TrainConfig.default("batch_size"), lora_r: int = TrainConfig.default("lora_r"),
             checkpointing: bool = True) -> Estimate:
    if instance not in INSTANCES:
        raise UserError(f"unknown instance {instance!r}; known: {', '.join(sorted(INSTANCES))}")
    gpus, gib, gpu = INSTANCES[instance]
    tokens = max_length * batch_size  # worst case: a batch of examples at the full budget
    h = arch.hidden
    if checkpointing:
        act = arch.layers * tokens * 2 * h + tokens * 34 * h
    else:
        act = arch.layers * tokens * 34 * h
    weights = weight_bytes(arch, quantize)
    core = weights + arch.lora_params(lora_r) * 16 + act + tokens * arch.vocab * 10
    return Estimate(
        weights=weights, lora=arch.lora_params(lora_r) * 16, activations=act, logits=tokens * arch.vocab * 10,
        overhead=GIB + 0.08 * core, gpu_gib=gib, gpus=gpus, gpu=gpu,
    )


def load_arch(spec: str) -> Arch:
    if spec in KNOWN_ARCHS:
        return Arch.from_config(KNOWN_ARCHS[spec])
    import json
    from pathlib import Path

    from sft.models import resolve

    source = resolve(spec)
    if source.kind in ("dir", "adapter"):
        path = Path((source.base or source).path if source.kind == "adapter" else source.path)
        return Arch.from_config(json.loads((path / "config.json").read_text()))
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(source.path, **({"gguf_file": Path(source.path).name} if
                                                          source.kind == "gguf" else {}))
    except Exception as e:  # offline hub, gated repo...
        raise UserError(f"{spec}: cannot read its config ({type(e).__name__}); pass a local model directory") from None
    return Arch.from_config(cfg.to_dict())


def advice(est: Estimate, quantize: str | None, batch_size: int, max_length: int) -> list[str]:
    if est.fits:
        return []
    tips = []
    if quantize != "4bit":
        tips.append("--quantize 4bit (QLoRA) cuts the frozen weights by ~3.5x")
    if batch_size > 1:
        tips.append(f"--batch-size {batch_size // 2} --set grad_accum=2 (same effective batch, half the activations)")
    if max_length > 256:
        tips.append(f"--max-length {max_length // 2} (law context gets trimmed to fit)")
    tips.append("a larger GPU: ml.g6e.xlarge (48 GiB L40S) or ml.p4de.24xlarge (80 GiB A100)")
    return tips


def report(spec: str, instance: str, *, quantize: str | None, max_length: int, batch_size: int,
           lora_r: int = TrainConfig.default("lora_r")) -> tuple[Estimate, str]:
    arch = load_arch(spec)
    est = estimate(arch, instance, quantize=quantize, max_length=max_length, batch_size=batch_size, lora_r=lora_r)
    lines = [
        f"{spec} on {instance} ({est.gpus} x {est.gpu} {est.gpu_gib:.0f} GiB), "
        f"{'QLoRA 4-bit' if quantize == '4bit' else 'LoRA bf16'}, batch {batch_size} x {max_length} tokens:",
        f"  weights      {est.weights / GIB:6.2f} GiB",
        f"  LoRA+Adam    {est.lora / GIB:6.2f} GiB  (r={lora_r}, {arch.lora_params(lora_r) / 1e6:.1f}M params)",
        f"  activations  {est.activations / GIB:6.2f} GiB  (gradient checkpointing on)",
        f"  logits       {est.logits / GIB:6.2f} GiB  (vocab {arch.vocab})",
        f"  overhead     {est.overhead / GIB:6.2f} GiB",
        f"  total        {est.total / GIB:6.2f} GiB of {est.gpu_gib:.0f} GiB -> "
        + ("fits" if est.fits else "DOES NOT FIT"),
    ]
    lines += [f"  try: {t}" for t in advice(est, quantize, batch_size, max_length)]
    return est, "\n".join(lines)
