"""The training configuration: one dataclass, settable from CLI flags, a YAML file or SageMaker hyperparameters.

Precedence: defaults < YAML file < CLI flags / hyperparameters. Defaults are the seed project's settings
(3 epochs, lr 5e-5, max_length 512, LoRA r 8 / alpha 16 on all linear layers, DeepSeek 7B base).

The Hugging Face token is never a field: it comes from ``HF_TOKEN`` or from a Secrets Manager secret whose
*name* is ``hf_token_secret``, so it can never end up in hyperparameters, logs or ``train_config.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sft.core.errors import UserError
from sft.core.secrets import looks_like_credential

DEFAULT_MODEL = "deepseek-ai/deepseek-llm-7b-base"
QUANTIZE_CHOICES = (None, "4bit")
# Keys that would smuggle a secret into the config; refused with a pointer to the right mechanism.
SECRET_KEYS = {"hf_token", "token", "huggingface_token", "hub_token", "use_auth_token"}


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


# Paths a SageMaker job's container derives from its channels and its layout (sft.sagemaker.env): never hyperparameters.
CONTAINER_SET = ("data", "validation", "output", "checkpoint_dir")


@dataclass
class TrainConfig:
    # data and model
    data: str | None = _f(None, "Training JSONL (contract or seed-shaped: instruction, input, output).")
    validation: str | None = _f(None, "Validation JSONL; validation loss every epoch, best checkpoint kept.")
    model: str = _f(DEFAULT_MODEL, "Base model: hub id, local dir, .gguf file, or 'demo' (SmolLM2-135M).")
    output: str = _f("runs/latest", "Output directory: adapter, tokenizer, train_config.json, metrics.json.")
    index: str | None = _f(None, "A geoprep retrieval index directory to copy into OUTPUT/index for serving.")
    hf_token_secret: str | None = _f(None, "Name of an AWS Secrets Manager secret holding the HF token.")
    aws_region: str | None = _f(None, "Region of hf_token_secret (default: the AWS SDK's).")
    # optimisation
    epochs: float = _f(3.0, "Training epochs.")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: run all epochs).")
    learning_rate: float = _f(5e-5, "Peak learning rate (linear decay after warmup).")
    warmup_ratio: float = _f(0.03, "Fraction of steps used for linear warmup.")
    batch_size: int = _f(4, "Examples per device per step.")
    grad_accum: int = _f(1, "Gradient accumulation steps.")
    max_length: int = _f(512, "Token budget per example (prompt + answer + EOS); law context is trimmed to fit.")
    balance_labels: bool = _f(False, "Oversample the training split so every label is as common as the most common "
                                     "one (small models otherwise learn to answer the majority label).")
    seed: int = _f(42, "Random seed.")
    # LoRA
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    target_modules: Any = _f("all-linear", "LoRA targets: 'all-linear' ('all' accepted) or a list of module names.")
    lora_layers: int = _f(0, "LoRA on the top N transformer layers only (0: every layer). Backpropagation then stops "
                             "below them: fewer FLOPs per step, so more steps in the same time on a CPU.")
    quantize: str | None = _f(None, "'4bit' for QLoRA (bitsandbytes nf4 + double quant; for GPUs, runs slowly on CPU).")
    # speed / memory
    gradient_checkpointing: bool | None = _f(None, "Recompute activations (default: on for CUDA, off on CPU).")
    label_loss_weight: float = _f(1.0, "Loss weight of the answer's first tokens (the compliance flag) relative to the "
                                       "rest (the law, citation and reason). >1 makes a small model learn the decision "
                                       "before the reason's wording.")
    label_head: bool = _f(True, "After training, fit a linear flag head on the model's hidden states (sft.core."
                                "label_head) and save it with the adapter; decoding takes the flag from it. A small "
                                "model's hidden states separate the labels long before its LM head says them.")
    label_head_layer: float = _f(0.5, "Where the label head reads the hidden states, as a fraction of the model's "
                                      "depth (0.5: the middle layer; 1: the last).")
    label_head_pooling: str = _f("prompt+spec", "How the label head pools that layer: 'prompt' (the mean over the "
                                                "prompt) or 'prompt+spec' (that, and the mean up to the end of the "
                                                "feature spec: the decision turns on the spec, the prompt is mostly "
                                                "law text).")
    label_head_facts: bool = _f(True, "Let the validation split decide whether the label head also reads the spec's "
                                      "stated facts (place named/unnamed/everywhere, law named, legal/business reason "
                                      "words, undecided scope, applicable law in the prompt: sft.core.spec_facts) "
                                      "beside the hidden states. False: hidden states only.")
    fast_dropout: bool = _f(True, "On CPU, draw LoRA dropout masks from 16-bit random slices (same distribution "
                                  "up to p in steps of 1/65536; ~12% faster steps than torch's per-element draws).")
    padding_free: bool | None = _f(None, "Compute no pad tokens. Default: on a CPU, one example per forward pass "
                                         "(accumulated to batch_size) when examples average 256+ tokens; on a GPU, "
                                         "flattened batches where flash attention runs (Ampere+ and flash-attn; True "
                                         "is refused without it). False: dynamic padding, length-grouped batches.")
    # evaluation and checkpoints
    eval_sample: int = _f(16, "Validation examples to generate answers for at each evaluation (0: off).")
    max_new_tokens: int = _f(96, "Generation budget for those answers.")
    eval_loss_sample: int = _f(0, "Validation examples the loss at each evaluation (and so the best checkpoint) is "
                                  "computed on, each label's share kept (0: the whole split).")
    save_steps: int = _f(0, "Evaluate + checkpoint every N steps (0: every epoch).")
    checkpoint_minutes: float = _f(15.0, "Also checkpoint when this many minutes have passed since the last "
                                         "checkpoint (0: off), so a job killed without its stop checkpoint "
                                         "(past the 120 s spot notice, a crash) loses at most that much.")
    save_total_limit: int = _f(2, "Checkpoints kept (the best one is always kept).")
    checkpoint_dir: str | None = _f(None, "Where checkpoints go (default OUTPUT/checkpoints).")
    resume: bool = _f(True, "Resume from the latest checkpoint in checkpoint_dir when there is one.")
    logging_steps: int = _f(10, "Log the training loss every N steps.")
    merge: bool = _f(False, "Also write merged full weights to OUTPUT/merged for serving.")
    processes_per_host: int = _f(0, "Data-parallel processes per host in container mode (0: one per GPU, 1 on CPU).")

    def __post_init__(self) -> None:
        from sft.models import check_model_id

        # Every path (YAML, --set, hyperparameters, the launcher) builds a TrainConfig: a token pasted into
        # hf_token_secret (or any text field) stops here, before it is used as a SecretId, printed in an error
        # or written to train_config.json / the job's failure file. The message never repeats the value.
        for f in fields(self):
            if looks_like_credential(getattr(self, f.name)):
                raise UserError(f"{f.name}: holds what looks like a token itself (not shown); tokens go in the "
                                "HF_TOKEN environment variable or a Secrets Manager secret named by hf_token_secret")

        check_model_id(self.model)
        self.target_modules = normalize_targets(self.target_modules)
        if self.quantize in ("", "none", "None", False):
            self.quantize = None
        if self.quantize not in QUANTIZE_CHOICES:
            raise UserError(f"quantize: expected '4bit' or nothing, got {self.quantize!r}")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha", "logging_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("eval_sample", "eval_loss_sample", "save_steps", "max_new_tokens", "save_total_limit",
                     "processes_per_host", "lora_layers"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_minutes < 0:
            raise UserError(f"checkpoint_minutes: must be >= 0, got {self.checkpoint_minutes}")
        if self.learning_rate <= 0 or self.epochs <= 0:
            raise UserError("learning_rate and epochs must be > 0")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise UserError("lora_dropout and warmup_ratio must be in [0, 1)")
        from sft.core.label_head import POOLINGS

        if self.label_head_pooling not in POOLINGS:
            raise UserError(f"label_head_pooling: one of {', '.join(POOLINGS)}, got {self.label_head_pooling!r}")
        if not 0 < self.label_head_layer <= 1:
            raise UserError(f"label_head_layer: a fraction of the model's depth in (0, 1], got {self.label_head_layer}")
        if not 1.0 <= self.label_loss_weight <= 100.0:
            raise UserError(f"label_loss_weight: 1 to 100, got {self.label_loss_weight}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"max_steps: -1 (all epochs) or >= 1, got {self.max_steps}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default: the one place it is stated (the CLIs and preflight read it from here)."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys and secret-looking keys are errors that name ``where``."""
        secret = sorted(SECRET_KEYS & set(values))
        if secret:
            raise UserError(
                f"{where}: {secret[0]!r} looks like a token; pass it as the HF_TOKEN environment variable or "
                "name a Secrets Manager secret with hf_token_secret (tokens never go in configs)"
            )
        known = cls.field_names()
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        typed = {}
        for f in fields(cls):
            if f.name in values:
                typed[f.name] = _coerce(f, values[f.name], where)
        return cls(**typed)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: invalid YAML ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of settings")
        return cls.from_dict({**data, **(overrides or {})}, where=str(path))

    @classmethod
    def from_hyperparameters(cls, hp: dict[str, Any], *, where: str = "hyperparameters.json") -> TrainConfig:
        """SageMaker hyperparameters (already decoded). The launcher runs this too, before paying for an instance."""
        hp = {k: v for k, v in hp.items() if not k.startswith("sagemaker_")}  # keys SageMaker's own tooling adds
        for key in CONTAINER_SET:
            if key in hp:
                raise UserError(f"{where}: '{key}' is set by the container from its channels; remove it")
        return cls.from_dict(hp, where=where)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as written to ``train_config.json`` (no secrets: there are no secret fields)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def normalize_targets(value: Any) -> str | list[str]:
    """'all', ['all'] and 'all-linear' mean every linear layer (PEFT's 'all-linear'); else a module list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = [p.strip() for p in text.split(",") if p.strip()]
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"target_modules: expected 'all-linear' or a list of module names, got {value!r}")
    if len(value) == 1 and value[0].lower() in ("all", "all-linear", "all_linear"):
        return "all-linear"
    return list(value)


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    """YAML/hyperparameter values -> the field's type, with an error naming the field."""
    kind = str(f.type)
    if value is None or f.name == "target_modules":
        return value
    try:
        if kind.startswith("bool"):
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {f.name}: expected {kind.split(' ')[0]}, got {value!r}") from None
    return value


def cli_config(yaml_path: str | Path | None, flags: dict[str, Any], sets: list[str]) -> TrainConfig:
    """CLI: YAML (if any) < ``--set KEY=VALUE`` < explicit flags. Values of ``--set`` are decoded like
    SageMaker hyperparameters ('true', '3', '5e-5', '["q_proj"]')."""
    from sft.sagemaker.env import decode_hyperparameter

    overrides: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip().replace("-", "_")] = decode_hyperparameter(value)
    overrides.update({k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if v is not None})
    if yaml_path is not None:
        return TrainConfig.from_yaml(yaml_path, overrides)
    return TrainConfig.from_dict(overrides, where="command line")
