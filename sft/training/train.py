"""LoRA fine-tuning, readable top to bottom: config -> data -> model -> trainer -> outputs.

    run_training(TrainConfig(data="train.jsonl", validation="val.jsonl", model="demo", output="runs/x"))

Output directory (eval/predict/serve and the image rely on it):
    adapter_model.safetensors, adapter_config.json, tokenizer files   (root; loadable by sft.models)
    train_config.json   resolved config (no secrets)
    metrics.json        losses, generated-answer metrics per evaluation, best checkpoint, throughput
    budget.json         per split: fit / trimmed / dropped counts and drop reasons
    label_head.*        the flag head fitted on the trained model's hidden states (sft.core.label_head)
    merged/             with --merge: full weights + tokenizer
    index/              with --index: the retrieval index used by serving
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.core.errors import UserError
from sft.core.files import write_json_atomic
from sft.training.config import TrainConfig

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- device


@dataclass(frozen=True)
class Device:
    cuda: bool
    bf16: bool

    @classmethod
    def for_capability(cls, capability: tuple[int, int] | None) -> Device:
        """bf16 (and with it FlashAttention-2, see ``model_load_kwargs``) only from compute capability 8.0: a T4
        (7.5) reports ``is_bf16_supported()`` True through emulation, then crashes in flash-attn. See sft.core.device."""
        from sft.core.device import decide_precision

        precision = decide_precision(capability, flash_attn_installed=False)
        return cls(cuda=precision.cuda, bf16=precision.bf16)

    @classmethod
    def detect(cls) -> Device:
        from sft.core.device import gpu_capability

        return cls.for_capability(gpu_capability())

    @property
    def dtype(self) -> Any:
        import torch

        # CPU: fp32 (bf16 matmuls on most CPUs are slower and lose precision). Pre-Ampere GPUs: fp16.
        if not self.cuda:
            return torch.float32
        return torch.bfloat16 if self.bf16 else torch.float16

    def describe(self) -> str:
        if not self.cuda:
            return "cpu (fp32)"
        import torch

        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()} ({'bf16' if self.bf16 else 'fp16'})"


# ------------------------------------------------------------------------------------------- secrets


def hf_token(config: TrainConfig) -> str | None:
    """The hub token: ``HF_TOKEN`` or the Secrets Manager secret named by ``hf_token_secret``. Never logged."""
    if config.hf_token_secret:
        from sft.sagemaker.aws import read_token_secret

        return read_token_secret(config.hf_token_secret, config.aws_region, what="hf_token_secret")
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


# ------------------------------------------------------------------------------------------- model


def wants_checkpointing(config: TrainConfig, device: Device) -> bool:
    # Checkpointing trades ~30% more compute for activations that no longer scale with depth: worth it on a
    # 24 GB GPU with a 7B model, pointless on CPU where memory is not the limit and time is.
    return device.cuda if config.gradient_checkpointing is None else config.gradient_checkpointing


def flash_attention_available() -> bool:
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available()


def model_load_kwargs(config: TrainConfig, device: Device) -> dict[str, Any]:
    """``from_pretrained`` arguments: the compute dtype and, for QLoRA, the 4-bit quantization."""
    kwargs: dict[str, Any] = {"dtype": device.dtype}
    if device.bf16 and flash_attention_available():  # FlashAttention-2 needs Ampere or newer (bf16 = Ampere+)
        kwargs["attn_implementation"] = "flash_attention_2"  # varlen kernel: padding-free batches
    elif config.padding_free and device.cuda:
        # SDPA and eager attention would let the flattened examples attend to each other: refuse before loading.
        raise UserError("padding_free on a GPU needs flash attention (an Ampere or newer GPU and the flash-attn "
                        "package); leave padding_free unset to get dynamic padding")
    if config.quantize == "4bit":
        from transformers import BitsAndBytesConfig

        # nf4 + double quantization: the QLoRA paper's recipe (~0.5 byte/param for the frozen base); matmuls
        # run in the device's dtype (bf16 on Ampere+, fp16 before, fp32 on CPU).
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=device.dtype,
        )
        # One whole copy per process: under torchrun each rank quantizes onto its own GPU.
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0)) if device.cuda else "cpu"}
    return kwargs


def load_model(config: TrainConfig, source: Any, device: Device, token: str | None) -> Any:
    from sft.models import load_base_model

    if config.quantize == "4bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("quantize=4bit needs bitsandbytes: pip install 'geocomply[qlora]'")
    if config.quantize == "4bit" and not device.cuda:
        # bitsandbytes' CPU backend runs nf4 (slowly): useful to try a QLoRA config before paying for a GPU.
        log.warning("quantize=4bit on CPU: bitsandbytes' CPU backend works but is slower than fp32 LoRA, and "
                    "memory is rarely the limit here; QLoRA is meant for GPUs")
    model = load_base_model(source, token=token, **model_load_kwargs(config, device))
    if config.quantize == "4bit":
        from peft import prepare_model_for_kbit_training

        if not device.cuda:
            # On avx512-bf16 CPUs bitsandbytes repacks the 4-bit weights in place the first time a layer runs
            # without gradients (evaluation), which asserts on widths that are not a multiple of 32 and leaves
            # training to continue on the repacked weights: keep evaluation on the training path.
            for module in model.modules():
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False

        # Casts the non-quantized parameters (norms, embeddings) to fp32 for stable training.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=wants_checkpointing(config, device))
    return model


def fp32_trainable_for_fp16(model: Any, device: Device) -> int:
    """fp16 training (pre-Ampere GPUs): make every trainable parameter fp32; returns how many were cast.

    TRL casts a 4-bit model's LoRA weights to bf16 (the QLoRA paper's choice, made for bf16 GPUs). Under fp16
    the gradient scaler then unscales bf16 gradients, which CUDA has no kernel for
    ("_amp_foreach_non_finite_check_and_unscale_cuda not implemented for 'BFloat16'", at the first clip), and
    it refuses fp16 ones ("Attempting to unscale FP16 gradients"): mixed precision wants fp32 master weights.
    LoRA weights are ~0.3% of a 7B's parameters (20M x 4 B = 80 MB), so fp32 costs nothing that matters.
    """
    if not device.cuda or device.bf16:
        return 0
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def lora_config(config: TrainConfig, model: Any = None) -> Any:
    """LoRA on every layer, or on the top ``config.lora_layers`` layers of ``model`` (the flag is read off the last
    layers' states; below the lowest adapted layer nothing needs a gradient, so backward stops there)."""
    from peft import LoraConfig

    targets, top = config.target_modules, None
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if config.lora_layers and layers and config.lora_layers < layers:
        top = list(range(layers - config.lora_layers, layers))
        if isinstance(targets, str):  # PEFT takes a layer subset only with module names, not 'all-linear'
            import torch

            targets = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                              if isinstance(m, torch.nn.Linear) and ".layers." in name})
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        layers_to_transform=top,
        task_type="CAUSAL_LM",
        bias="none",
    )


def uses_flash_attention(model: Any) -> bool:
    return "flash" in str(getattr(model.config, "_attn_implementation", "") or "")


# ------------------------------------------------------------------------------------------- callbacks


def make_callbacks(config: TrainConfig, val_examples: list[Any], run: RunState) -> list[Any]:
    from transformers import TrainerCallback

    class GeneratedAnswerMetrics(TrainerCallback):
        """After each evaluation: generate answers for a validation sample; JSON-valid rate and label accuracy."""

        def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kw):
            if not config.eval_sample or not val_examples or model is None or not state.is_world_process_zero:
                return
            scores = generation_metrics(model, processing_class, val_examples[: config.eval_sample],
                                        config.max_new_tokens)
            scores = {"step": state.global_step, "epoch": state.epoch, **scores}
            run.generation.append(scores)
            log.info("step %d: generated answers: %.0f%% valid JSON, %.0f%% correct label (n=%d)",
                     state.global_step, 100 * scores["json_valid_rate"], 100 * scores["label_accuracy"], scores["n"])

    class StopOnSignal(TrainerCallback):
        """SIGTERM (spot interruption, job stop): save a checkpoint at the end of this step, then stop. Also a
        checkpoint whenever ``checkpoint_minutes`` have passed since the last one.

        Under torchrun each rank has its own flag and hears the signal at its own moment: the flags are
        combined by one all-reduce (MAX) per step, so every rank saves and stops at the same step (a rank
        that stopped alone would leave the others waiting in the next gradient all-reduce until killed)."""

        def __init__(self) -> None:
            self.last_save = time.monotonic()

        def on_save(self, args, state, control, **kw):
            self.last_save = time.monotonic()

        def on_step_end(self, args, state, control, **kw):
            minutes = config.checkpoint_minutes
            due = bool(minutes) and time.monotonic() - self.last_save >= minutes * 60
            stop, due = agree_across_ranks((run.stop_requested, due), args.device)
            if due and not stop:
                log.info("checkpoint at step %d (%.0f min since the last one)", state.global_step, minutes)
                control.should_save = True
            if stop:
                log.warning("stop requested: saving a checkpoint at step %d and stopping", state.global_step)
                control.should_save = True
                control.should_training_stop = True
                run.interrupted = True
            return control

    return [GeneratedAnswerMetrics(), StopOnSignal()]


def agree_across_ranks(flags: tuple[bool, ...], device: Any) -> tuple[bool, ...]:
    """Each flag set on any rank is set on all (one all-reduce of a few bytes per step: ~0.1 ms over NCCL,
    next to steps of seconds). A single process returns ``flags`` unchanged."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flags
    values = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def generation_metrics(model: Any, tokenizer: Any, examples: list[Any], max_new_tokens: int) -> dict[str, Any]:
    """Greedy answers for ``examples`` parsed with the contract's parser (cheap: left-padded batches of 8)."""
    import torch

    from sft.core.contract import PromptInput, parse_output, render_prompt

    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    valid = correct = 0
    try:
        for i in range(0, len(examples), 8):
            chunk = examples[i : i + 8]
            prompts = [render_prompt(ex.instruction, ex.input) for ex in chunk]
            enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for ex, text in zip(chunk, texts, strict=True):
                pred = parse_output(text, PromptInput.parse(ex.input))
                valid += pred.valid
                correct += bool(pred.valid and pred.answer.compliance_flag == ex.answer.compliance_flag)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    n = len(examples)
    return {"n": n, "json_valid_rate": valid / n, "label_accuracy": correct / n}


# ------------------------------------------------------------------------------------------- trainer


@dataclass
class RunState:
    """What the run shares with its callbacks and the container's signal handler."""

    stop_requested: bool = False
    interrupted: bool = False
    generation: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Prepared:
    trainer: Any
    tokenizer: Any
    budget: dict[str, Any]
    source_spec: str
    device: Device
    run: RunState
    checkpoint_dir: Path
    instruction: str = ""
    """The training data's instruction (its most common one): inference must prompt with it, so it is saved."""
    head_data: tuple[Any, Any] | None = None
    """(train, validation) splits as read, before label balancing: what the label head is fitted and chosen on."""


# CPU: from this mean example length on, one example per forward pass beats a batch. Measured on 2 cores with
# SmolLM2-135M (forward + backward of 4 equal-length examples one at a time vs as one batch, so before any padding):
# 100 tokens 1.36x slower alone, 200 1.12x, 300 0.97x, 450 0.90x; real batches add 10-20% of padding on top.
CPU_PER_EXAMPLE_MIN_TOKENS = 256


def trainer_arguments(config: TrainConfig, device: Device, *, checkpoint_dir: Path, has_validation: bool,
                      flash_attention: bool, mean_tokens: float) -> dict[str, Any]:
    """The ``SFTConfig`` for this device: precision, checkpointing, batching, evaluation and checkpoints."""
    # No pad token computed, two ways. GPU: TRL's padding-free flattens a batch into one row; it needs the varlen
    # flash-attention kernel (see model_load_kwargs), else dynamic padding + length-grouped batches keep padding
    # small. CPU: one example per forward pass, accumulated up to batch_size, once examples are long enough to fill
    # the cores' matmuls on their own (SDPA then also takes its causal path, with no mask). The loss is unchanged:
    # the Trainer counts the answer tokens of all accumulated passes and divides by that total.
    allowed = config.padding_free is not False
    flatten = allowed and device.cuda and flash_attention
    per_example = allowed and not device.cuda and (
        config.padding_free is True or mean_tokens >= CPU_PER_EXAMPLE_MIN_TOKENS)
    strategy = "steps" if config.save_steps else "epoch"
    return dict(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio of total steps
        lr_scheduler_type="linear",
        per_device_train_batch_size=1 if per_example else config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum * (config.batch_size if per_example else 1),
        seed=config.seed,
        bf16=device.cuda and device.bf16,
        fp16=device.cuda and not device.bf16,
        use_cpu=not device.cuda,
        # NCCL on GPUs; gloo for CPU data-parallel (only set under torchrun, where WORLD_SIZE > 1).
        ddp_backend="gloo" if not device.cuda and int(os.environ.get("WORLD_SIZE", 1)) > 1 else None,
        gradient_checkpointing=wants_checkpointing(config, device),
        # Every LoRA weight gets a gradient every step: without this, DDP walks the autograd graph after each
        # forward looking for unused parameters (the Trainer's default for a PeftModel is True), and reentrant
        # gradient checkpointing (TRL's choice under PEFT) is incompatible with that search.
        ddp_find_unused_parameters=False,
        # The budget already made every example fit; TRL must never truncate (it would cut the answer).
        max_length=None,
        completion_only_loss=True,
        padding_free=flatten,
        # Length-grouped order in both batching modes: the sampler groups batch_size x accumulation examples, so
        # one example per pass sees exactly the steps a padded batch would (only how a step is computed changes).
        train_sampling_strategy="group_by_length",
        eval_strategy=strategy if has_validation else "no",
        save_strategy=strategy,
        eval_steps=config.save_steps or None,
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit or None,
        # Validation needs the loss only: without this the Trainer gathers every eval batch's full
        # [batch, seq, vocab] logits in memory (7.7 GB for 77 SmolLM2 examples at 512 tokens).
        prediction_loss_only=True,
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False,
        logging_steps=config.logging_steps,
        report_to="none",
        dataset_num_proc=None,
    )


def build_trainer(config: TrainConfig, run: RunState | None = None) -> Prepared:
    """Everything up to ``trainer.train()``: tests inspect the trainer's real collator and datasets."""
    from trl import SFTConfig, SFTTrainer

    from sft.models import load_tokenizer, resolve
    from sft.training.answer_head import label_token_count, score_answer_positions_only, weight_label_tokens
    from sft.training.data import balance_labels, label_sample, prepare_split, to_dataset

    if not config.data:
        raise UserError("no training data: pass --data FILE (or the 'train' channel in a SageMaker job)")
    run = run or RunState()
    device = Device.detect()
    token = hf_token(config)
    source = resolve(config.model)
    tokenizer = load_tokenizer(source, token=token)
    if tokenizer.eos_token is None:
        raise UserError(f"{config.model}: tokenizer has no EOS token; generation could never stop")

    train = as_read = prepare_split("train", config.data, tokenizer, config.max_length)
    if config.balance_labels:
        train = balance_labels(train, config.seed)
    val = prepare_split("validation", config.validation, tokenizer, config.max_length) if config.validation else None
    budget = {"train": train.report.as_dict(), **({"validation": val.report.as_dict()} if val else {})}

    model = load_model(config, source, device, token)
    has_val = val is not None and bool(val.rows)
    checkpoint_dir = Path(config.checkpoint_dir or Path(config.output) / "checkpoints")
    args = SFTConfig(**trainer_arguments(config, device, checkpoint_dir=checkpoint_dir, has_validation=has_val,
                                         flash_attention=uses_flash_attention(model),
                                         mean_tokens=train.report.mean_kept_tokens))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train),
        eval_dataset=to_dataset(label_sample(val, config.eval_loss_sample, config.seed)) if has_val else None,
        processing_class=tokenizer,
        peft_config=lora_config(config, model),
        callbacks=make_callbacks(config, val.examples if val else [], run),
    )
    if fp32_trainable_for_fp16(trainer.model, device):
        log.info("fp16 training: LoRA weights kept in fp32 for the gradient scaler")
    # CPU speed-ups (no-ops on CUDA): the LM head only over answer positions; cheap LoRA dropout masks.
    score_answer_positions_only(trainer.model)
    if weight_label_tokens(trainer.model, label_token_count(tokenizer), config.label_loss_weight):
        log.info("loss weight %.1f on the answer's flag tokens", config.label_loss_weight)
    if config.fast_dropout:
        from sft.training.fast_dropout import install_fast_lora_dropout

        install_fast_lora_dropout(trainer.model)
    log_plan(config, trainer, device)
    instructions = Counter(ex.instruction for ex in train.examples)
    return Prepared(trainer, tokenizer, budget, config.model, device, run, checkpoint_dir,
                    instructions.most_common(1)[0][0] if instructions else "", (as_read, val))


def log_plan(config: TrainConfig, trainer: Any, device: Device) -> None:
    """The derived numbers, before the first step, so a wrong setting is visible immediately."""
    ds, args = trainer.train_dataset, trainer.args
    world = args.world_size
    micro, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    effective = micro * accum * world
    steps_per_epoch = max(1, len(ds) // effective)
    total = config.max_steps if config.max_steps > 0 else int(steps_per_epoch * config.epochs)
    trainable, params = trainer.model.get_nb_trainable_parameters()
    lengths = [len(x) for x in ds["input_ids"]]
    log.info(
        "device %s | %d train examples, mean %d / max %d tokens | effective batch %d (%d x %d accum x %d procs) | "
        "%d steps/epoch, %d steps | LoRA r=%d alpha=%d on %s: %.2fM trainable of %.0fM (%.3f%%) | "
        "checkpointing %s, padding %s",
        device.describe(), len(ds), sum(lengths) / len(lengths), max(lengths), effective, micro, accum, world,
        steps_per_epoch, total, config.lora_r, config.lora_alpha,
        f"{config.target_modules}" + (f" of the top {config.lora_layers} layers" if config.lora_layers else ""),
        trainable / 1e6,
        params / 1e6, 100 * trainable / params, args.gradient_checkpointing,
        "none (flattened batches)" if args.padding_free
        else "none (one example per pass)" if micro == 1 else "dynamic, length-grouped",
    )


# ------------------------------------------------------------------------------------------- outputs


def latest_checkpoint(checkpoint_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None


def adapter_base_spec(spec: str) -> str:
    """What serving should load as the base: 'demo' or the hub id as given; a local path made absolute."""
    from sft.models import DEMO

    if spec == DEMO or not Path(spec).expanduser().exists():
        return spec
    return str(Path(spec).expanduser().resolve())


def fit_head(config: TrainConfig, prep: Prepared) -> Any:
    """The label head (sft.core.label_head) on the trained model: features of every training and validation
    prompt as training rendered them (one forward pass each, stopped at the head's layer), then a few seconds of
    L-BFGS. On 2 CPU cores ~0.2 s a prompt for the demo model; on a GPU the features take seconds."""
    from sft.core.label_head import fit_label_head, layer_for, prompt_features

    assert prep.head_data is not None
    train, val = prep.head_data
    model = prep.trainer.model
    was_training = model.training
    model.eval()
    layer = layer_for(model, config.label_head_layer)
    t0 = time.perf_counter()

    def features(split: Any) -> Any:
        prompts = [row["prompt"] for row in split.rows]
        step = max(1, len(prompts) // 4)
        return prompt_features(model, prep.tokenizer, prompts, layer, pooling=config.label_head_pooling,
                               progress=lambda i: (log.info("label head: %s features %d/%d", split.name, i,
                                                            len(prompts)) if i % step == 0 else None))

    train_x = features(train)
    val_x = features(val) if val is not None and val.rows else None
    head = fit_label_head(layer, train_x, [ex.answer.compliance_flag.value for ex in train.examples],
                          val_x, [ex.answer.compliance_flag.value for ex in val.examples] if val_x is not None else None,
                          pooling=config.label_head_pooling,
                          train_prompts=[row["prompt"] for row in train.rows] if config.label_head_facts else None,
                          val_prompts=[row["prompt"] for row in val.rows] if config.label_head_facts and val_x
                          is not None else None)
    head.fitted["seconds"] = round(time.perf_counter() - t0, 1)
    model.train(was_training)
    log.info("label head at layer %d fitted on %d examples in %.0f s (L2 %g; validation macro-F1 %s)", layer,
             head.fitted["train_examples"], head.fitted["seconds"], head.fitted["l2"],
             head.fitted["validation_macro_f1"])
    return head


def save_outputs(config: TrainConfig, prep: Prepared, metrics: dict[str, Any], head: Any = None) -> Path:
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    model = prep.trainer.model
    for peft_cfg in model.peft_config.values():
        peft_cfg.base_model_name_or_path = adapter_base_spec(prep.source_spec)
    # Write into a temp dir beside the outputs and move files in, so a crash never leaves half an adapter.
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    prep.tokenizer.save_pretrained(tmp)
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()
    # The instruction goes with the config: predict, eval and serve prompt with what training saw (a seed file's
    # own instruction, say), not with today's default.
    write_json_atomic(out / "train_config.json", {**config.to_dict(), "instruction": prep.instruction})
    write_json_atomic(out / "budget.json", prep.budget)
    write_json_atomic(out / "metrics.json", metrics)
    # An earlier run's, same dir (reasons.json: models before 2026-12-04 saved "No"/NEI sentences to choose from).
    for stale in ("label_head.safetensors", "label_head.json", "reasons.json"):
        (out / stale).unlink(missing_ok=True)
    if head is not None:
        head.save(out)
    if config.index:
        if not Path(config.index).is_dir():
            raise UserError(f"index: {config.index} is not a directory")
        shutil.copytree(config.index, out / "index", dirs_exist_ok=True)
    if config.merge:
        merge_weights(out, prep.device)
    return out


def merge_weights(out: Path, device: Device) -> None:
    """Full weights for serving (vLLM / TGI without LoRA support). Reloads the base unquantized: merging into
    a 4-bit base would bake quantization error into the served weights."""
    from sft.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(out, merge=True, dtype=device.dtype)
    tmp = out / ".merged-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(out / "merged", ignore_errors=True)
    os.replace(tmp, out / "merged")
    log.info("merged weights written to %s", out / "merged")


# ------------------------------------------------------------------------------------------- run


def run_training(config: TrainConfig, run: RunState | None = None) -> dict[str, Any]:
    """Train, keep the best checkpoint, write the output directory; return the metrics."""
    from transformers import set_seed

    set_seed(config.seed)
    prep = build_trainer(config, run)
    trainer = prep.trainer
    resume = latest_checkpoint(prep.checkpoint_dir) if config.resume else None
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.perf_counter() - t0
    state = trainer.state
    eval_losses = [
        {"step": h["step"], "epoch": h.get("epoch"), "eval_loss": h["eval_loss"]}
        for h in state.log_history if "eval_loss" in h
    ]
    metrics = {
        "interrupted": prep.run.interrupted,
        "resumed_from": resume,
        "global_step": state.global_step,
        "world_size": trainer.args.world_size,
        "train": result.metrics,
        "train_seconds": elapsed,
        "train_loss": [{"step": h["step"], "loss": h["loss"]} for h in state.log_history if "loss" in h],
        "eval": eval_losses,
        "generation": prep.run.generation,
        "best_checkpoint": state.best_model_checkpoint,
        "best_eval_loss": state.best_metric,
        "device": prep.device.describe(),
        "budget": prep.budget,
    }
    if prep.run.interrupted:
        log.warning("interrupted at step %d; checkpoint in %s", state.global_step, prep.checkpoint_dir)
        return metrics
    if trainer.is_world_process_zero():
        head = fit_head(config, prep) if config.label_head else None
        if head is not None:
            metrics["label_head"] = {"layer": head.layer, **head.fitted}
        out = save_outputs(config, prep, metrics, head)
        log.info("adapter, tokenizer and metrics written to %s", out)
    return metrics
