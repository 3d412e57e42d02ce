"""Container mode: what the image's ``train`` runs inside a SageMaker training job.

Reads the hyperparameters and the train / validation / model / index channels, writes the adapter to the
model directory, checkpoints to the checkpoint directory and the reason of a failure to the failure file
(the paths: :mod:`sft.sagemaker.env`). SIGTERM (spot reclaim, StopTrainingJob) saves a checkpoint at the
end of the current step and exits 143; the next job resumes from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import traceback

from sft.core.errors import UserError, report_user_error
from sft.sagemaker.env import OptMl
from sft.training.config import TrainConfig

log = logging.getLogger(__name__)
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process stopped by SIGTERM


def channel_file(opt: OptMl, name: str, *, required: bool) -> str | None:
    """The one JSONL file of a data channel (``<name>.jsonl`` preferred when there are several)."""
    path = opt.channel(name)
    if not path.is_dir():
        if required:
            raise UserError(f"channel '{name}' is missing ({path}); give the training job a '{name}' input")
        return None
    files = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    if not files:
        found = ", ".join(sorted(p.name for p in path.iterdir())[:5]) or "nothing"
        raise UserError(f"channel '{name}' ({path}) has no .jsonl file (found: {found})")
    preferred = [p for p in files if p.name == f"{name}.jsonl"]
    if len(files) > 1 and not preferred:
        raise UserError(f"channel '{name}' ({path}) has {len(files)} .jsonl files; name the one to use {name}.jsonl")
    return str(preferred[0] if preferred else files[0])


def model_channel(opt: OptMl) -> str | None:
    """Base weights from the ``model`` channel: a model directory (config.json somewhere inside) or a .gguf."""
    path = opt.channel("model")
    if not path.is_dir():
        return None
    configs = sorted(path.rglob("config.json"), key=lambda p: len(p.parts))
    if configs:
        return str(configs[0].parent)
    ggufs = sorted(path.rglob("*.gguf"))
    if ggufs:
        return str(ggufs[0])
    raise UserError(f"channel 'model' ({path}) has neither a model directory (config.json) nor a .gguf file")


def container_config(opt: OptMl) -> TrainConfig:
    hp = opt.hyperparameters()
    config = TrainConfig.from_hyperparameters(hp)
    model = model_channel(opt)
    if model:
        log.info("base model from the 'model' channel: %s (hyperparameter model=%s ignored)", model, config.model)
        if "merge" not in hp:
            # An endpoint has no 'model' channel: an adapter pointing at it could not be served. Ship merged
            # weights unless the user said otherwise.
            log.info("merge=true (the base came from a channel; the endpoint needs self-contained weights)")
            config = config.replace(merge=True)
    index = opt.channel("index")
    return config.replace(
        data=channel_file(opt, "train", required=True),
        validation=channel_file(opt, "validation", required=False),
        model=model or config.model,
        output=str(opt.model_dir),
        checkpoint_dir=str(opt.checkpoint_dir),
        index=str(index) if index.is_dir() else config.index,
    )


def worker_pids(parent: int) -> list[int]:
    """The direct children of ``parent`` (torchrun's workers), read from /proc."""
    from pathlib import Path

    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
            pids.append(int(entry.name))
    return pids


def host_memory_gib() -> float | None:
    """MemTotal of this host (or container cgroup-less view), in GiB; None where /proc/meminfo is missing."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return None


def check_merge_fits(config: TrainConfig, host_gib: float | None) -> None:
    """merge=true reloads the unquantized base on the host after training: refuse now, not hours later."""
    if not config.merge or host_gib is None:
        return
    from sft.sagemaker.preflight import check_merge_host, load_arch

    try:
        arch = load_arch(config.model)
    except UserError as e:  # a config we cannot read offline: the merge may still fit, so do not refuse
        log.warning("merge: host memory not checked (%s)", e)
        return
    check_merge_host(arch, host_gib, "this host")


def launch_data_parallel(opt: OptMl, config: TrainConfig) -> int | None:
    """Re-run this entry point under torchrun when there is more than one process to run; else None.

    SIGTERM (spot reclaim, StopTrainingJob) goes to this process, PID 1. It is forwarded to torchrun's workers
    themselves, not to torchrun: torchrun starts each worker in its own session (a signal to torchrun's
    process group never reaches them), and a torchrun that hears SIGTERM gives its workers 30 s before
    SIGKILL, less than a 7B step + checkpoint may need of the 120 s spot notice. The workers agree on the stop
    step (sft.training.train.agree_across_ranks), checkpoint, and exit; torchrun then exits on its own.
    """
    import time

    from sft.sagemaker.distributed import inside_launcher, plan

    if inside_launcher():
        return None
    launch = plan(opt.resource_config(), config.processes_per_host)
    if launch.world_size == 1:
        return None
    cmd = launch.command("sft.sagemaker.training_job")
    log.info("data-parallel: %d host(s) x %d process(es): %s", launch.nnodes, launch.nproc_per_node, " ".join(cmd))
    stopping = False
    signalled: set[int] = set()

    def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        log.warning("SIGTERM: forwarding to the training processes (checkpoint at the next step, then exit)")
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        if stopping:  # also reaches workers torchrun starts after the signal came
            for pid in set(worker_pids(proc.pid)) - signalled:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                signalled.add(pid)
        time.sleep(0.2)
    # Stopped workers exit 143, which torchrun reports as a failed child (exit 1): the job was stopped.
    return EXIT_INTERRUPTED if stopping else proc.returncode


def main() -> int:
    from sft.core.console import setup_logging

    setup_logging()
    opt = OptMl.from_env()
    try:
        config = container_config(opt)
        check_merge_fits(config, host_memory_gib())
        code = launch_data_parallel(opt, config)
        if code is not None:
            if code not in (0, EXIT_INTERRUPTED):
                opt.write_failure(f"a training process failed (exit code {code}); see the job's logs")
            return code
        from sft.training.train import RunState, run_training

        run = RunState()

        def on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
            log.warning("SIGTERM: will checkpoint after the current step and exit")
            run.stop_requested = True

        signal.signal(signal.SIGTERM, on_sigterm)
        metrics = run_training(config, run)
        return EXIT_INTERRUPTED if metrics["interrupted"] else 0
    except UserError as e:
        opt.write_failure(str(e))
        report_user_error("train", e)
        return 1
    except Exception as e:  # the failure file is the only thing the job's user sees first: say what broke
        opt.write_failure(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
        traceback.print_exc()
        return 1


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()

