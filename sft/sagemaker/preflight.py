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
  QLoRA        peft's prepare_model_for_kbit_training casts the non-quantized embeddings / lm_head to fp32:
               +2 B/param over the 16-bit load (+1.5 GiB for the 7B's 0.8B embedding params)

Against what CUDA can actually allocate, not the nominal size: an A10G or L4 "24 GB" shows 23028 MiB
(~22.5 GiB), a T4 "16 GB" 15360 MiB (15 GiB).

Host memory (``--merge``): merging reloads the unquantized base in 16-bit on the CPU (2 B/param, 12.9 GiB for
the 7B) while the training process still holds its own (~3 GiB: CUDA context, torch, the datasets), plus ~1 GiB
for the OS: a 16 GiB ml.g4dn.xlarge or ml.g5.xlarge cannot merge a 7B.

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

# What CUDA can allocate per GPU (nvidia-smi's total, in GiB), by (GPU, nominal GiB).
USABLE_GIB: dict[tuple[str, float], float] = {
    ("A10G", 24): 22.5, ("L4", 24): 22.5, ("L40S", 48): 45.0, ("T4", 16): 15.0, ("V100", 16): 15.8,
    ("A100", 40): 39.4, ("A100", 80): 79.2, ("H100", 80): 79.6, ("H200", 141): 139.8,
}

# Host memory (GiB) of each instance: the merge step runs on the host.
HOST_GIB: dict[str, float] = {
    **{f"ml.{fam}.{s}": gib for fam in ("g5", "g6") for s, gib in (
        ("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64), ("8xlarge", 128), ("16xlarge", 256), ("12xlarge", 192),
        ("24xlarge", 384), ("48xlarge", 768))},
    **{f"ml.g6e.{s}": gib for s, gib in (("xlarge", 32), ("2xlarge", 64), ("4xlarge", 128), ("8xlarge", 256),
                                         ("16xlarge", 512), ("12xlarge", 384), ("48xlarge", 1536))},
    "ml.g4dn.xlarge": 16, "ml.g4dn.2xlarge": 32, "ml.g4dn.12xlarge": 192,
    "ml.p3.2xlarge": 61, "ml.p3.8xlarge": 244, "ml.p4d.24xlarge": 1152, "ml.p4de.24xlarge": 1152,
    "ml.p5.48xlarge": 2048, "ml.p5e.48xlarge": 2048,
}
TRAINING_PROCESS_HOST_GIB = 3.0  # CUDA context + torch + datasets, still resident while the merge runs
OS_HOST_GIB = 1.0


def merge_host_bytes(arch: Arch) -> float:
    """Host memory the merge needs: the unquantized base in 16-bit beside the training process and the OS."""
    return (arch.linear_params + arch.embedding_params) * 2 + (TRAINING_PROCESS_HOST_GIB + OS_HOST_GIB) * GIB


def merge_instance(arch: Arch, instance: str) -> str | None:
    """The smallest instance of the same GPU and count whose host memory holds the merge (None: none known)."""
    gpus, gib, gpu = INSTANCES[instance]
    need = merge_host_bytes(arch)
    fits = [(HOST_GIB[name], name) for name, spec in INSTANCES.items()
            if spec == (gpus, gib, gpu) and HOST_GIB.get(name, 0) * GIB >= need]
    return min(fits)[1] if fits else None


def check_merge_host(arch: Arch, host_gib: float, where: str, instance: str | None = None) -> None:
    """Refuse merge=true where host memory cannot hold it, naming what to do instead."""
    need = merge_host_bytes(arch)
    if host_gib * GIB >= need:
        return
    pick = merge_instance(arch, instance) if instance in INSTANCES else None
    raise UserError(
        f"merge: needs ~{need / GIB:.1f} GiB of host memory (the unquantized base in 16-bit, "
        f"{(need / GIB) - TRAINING_PROCESS_HOST_GIB - OS_HOST_GIB:.1f} GiB, beside the training process); {where} "
        f"has {host_gib:.0f} GiB: set merge=false (serve the adapter on its base)"
        + (f" or train on {pick} ({HOST_GIB[pick]:.0f} GiB)" if pick else " or pick an instance with more memory"))


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
    usable_gib: float
    host_gib: float
    merge_host: float
    """Host bytes the merge would need (0: no merge asked)."""

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.usable_gib * GIB

    @property
    def host_fits(self) -> bool:
        return self.merge_host <= self.host_gib * GIB


def weight_bytes(arch: Arch, quantize: str | None) -> float:
    if quantize == "4bit":
        # nf4: 0.5 B/param + one fp8 absmax per 64 params, and double quant's fp32 per 256 of those blocks.
        per_param = 0.5 + 1 / 64 + 4 / (64 * 256)
        return arch.linear_params * per_param + arch.embedding_params * 2
    return (arch.linear_params + arch.embedding_params) * 2


def estimate(arch: Arch, instance: str, *, quantize: str | None = None, max_length: int = TrainConfig.default("max_length"),
             batch_size: int = TrainConfig.default("batch_size"), lora_r: int = TrainConfig.default("lora_r"),
             checkpointing: bool = True, merge: bool = False) -> Estimate:
    if instance not in INSTANCES:
        raise UserError(f"unknown instance {instance!r}; known: {', '.join(sorted(INSTANCES))}")
    gpus, gib, gpu = INSTANCES[instance]
    usable = USABLE_GIB.get((gpu, gib), gib * 0.94)
    tokens = max_length * batch_size  # worst case: a batch of examples at the full budget
    h = arch.hidden
    if checkpointing:
        act = arch.layers * tokens * 2 * h + tokens * 34 * h
    else:
        act = arch.layers * tokens * 34 * h
    weights = weight_bytes(arch, quantize)
    if quantize == "4bit":
        weights += arch.embedding_params * 2  # prepare_model_for_kbit_training: 16-bit embeddings -> fp32
    core = weights + arch.lora_params(lora_r) * 16 + act + tokens * arch.vocab * 10
    return Estimate(
        weights=weights, lora=arch.lora_params(lora_r) * 16, activations=act, logits=tokens * arch.vocab * 10,
        overhead=GIB + 0.08 * core, gpu_gib=gib, gpus=gpus, gpu=gpu, usable_gib=usable,
        host_gib=HOST_GIB.get(instance, 0), merge_host=merge_host_bytes(arch) if merge else 0.0,
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


def advice(est: Estimate, quantize: str | None, batch_size: int, max_length: int,
           checkpointing: bool = True) -> list[str]:
    if est.fits:
        return []
    tips = []
    if not checkpointing:
        tips.append("gradient_checkpointing=true: activations of one layer instead of all of them")
    if quantize != "4bit":
        tips.append("--quantize 4bit (QLoRA) cuts the frozen weights by ~3.5x")
    if batch_size > 1:
        tips.append(f"--batch-size {batch_size // 2} --set grad_accum=2 (same effective batch, half the activations)")
    if max_length > 256:
        tips.append(f"--max-length {max_length // 2} (law context gets trimmed to fit)")
    tips.append("a larger GPU: ml.g6e.xlarge (48 GiB L40S) or ml.p4de.24xlarge (80 GiB A100)")
    return tips


def report(spec: str, instance: str, *, quantize: str | None, max_length: int, batch_size: int,
           lora_r: int = TrainConfig.default("lora_r"), checkpointing: bool = True,
           merge: bool = False) -> tuple[Estimate, str]:
    arch = load_arch(spec)
    est = estimate(arch, instance, quantize=quantize, max_length=max_length, batch_size=batch_size, lora_r=lora_r,
                   checkpointing=checkpointing, merge=merge)
    lines = [
        f"{spec} on {instance} ({est.gpus} x {est.gpu} {est.gpu_gib:.0f} GiB), "
        f"{'QLoRA 4-bit' if quantize == '4bit' else 'LoRA bf16'}, batch {batch_size} x {max_length} tokens:",
        f"  weights      {est.weights / GIB:6.2f} GiB" + ("  (embeddings fp32 for k-bit training)" if quantize else ""),
        f"  LoRA+Adam    {est.lora / GIB:6.2f} GiB  (r={lora_r}, {arch.lora_params(lora_r) / 1e6:.1f}M params)",
        f"  activations  {est.activations / GIB:6.2f} GiB  (gradient checkpointing {'on' if checkpointing else 'OFF'})",
        f"  logits       {est.logits / GIB:6.2f} GiB  (vocab {arch.vocab})",
        f"  overhead     {est.overhead / GIB:6.2f} GiB",
        f"  total        {est.total / GIB:6.2f} GiB of {est.usable_gib:.1f} GiB usable -> "
        + ("fits" if est.fits else "DOES NOT FIT"),
    ]
    lines += [f"  try: {t}" for t in advice(est, quantize, batch_size, max_length, checkpointing)]
    if merge:
        lines.append(f"  merge (host) {est.merge_host / GIB:6.2f} GiB of {est.host_gib:.0f} GiB host memory -> "
                     + ("fits" if est.host_fits else "DOES NOT FIT"))
        if not est.host_fits:
            pick = merge_instance(arch, instance)
            lines.append("  try: merge=false (serve the adapter on its base)"
                         + (f", or {pick} ({HOST_GIB[pick]:.0f} GiB host memory)" if pick else ""))
    return est, "\n".join(lines)
