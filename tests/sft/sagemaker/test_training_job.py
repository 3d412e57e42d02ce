"""Container mode against a temp /opt/ml tree: a normal run, spot interruption + resume, a bad channel, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sft.sample_data import write_examples

pytest.importorskip("trl")
REPO = Path(__file__).resolve().parents[3]
TRAIN = REPO / "container" / "train"


def _opt_ml(root: Path, hp: dict[str, str], *, validation: bool = True) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    write_examples(root / "input" / "data" / "train" / "train.jsonl", 8, seed=1)
    if validation:
        write_examples(root / "input" / "data" / "validation" / "part-0.jsonl", 2, seed=2)
    return root


def _start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "GEOCOMPLY_OPT_ML": str(root), "COLUMNS": "200"}  # wide: log lines stay whole
    env.pop("LOCAL_RANK", None)
    log = open(root / "log.txt", "w")  # a file, not a pipe: a full pipe would stall the job
    return subprocess.Popen([sys.executable, str(TRAIN)], env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, root: Path, timeout: float) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return (root / "log.txt").read_text()


def _stop_after_first_checkpoint(root: Path, *, start_s: float, stop_s: float) -> tuple[subprocess.Popen, str]:
    """Start the job, SIGTERM it (what SageMaker sends on a spot reclaim) once a checkpoint exists, wait."""
    proc = _start(root)
    deadline = time.time() + start_s
    while not list((root / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint written: " + (root / "log.txt").read_text()[-3000:])
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    return proc, _wait(proc, root, stop_s)


def test_interrupted_run_checkpoints_and_next_job_resumes(tmp_path, tiny_model_dir):
    hp = {"model": str(tiny_model_dir), "max_steps": "1000", "save_steps": "2", "eval_sample": "0",
          "batch_size": "2", "logging_steps": "1", "merge": "False"}
    root = _opt_ml(tmp_path / "ml", hp, validation=False)
    ckpts = root / "checkpoints"
    proc, out = _stop_after_first_checkpoint(root, start_s=120, stop_s=120)
    assert proc.returncode == 143, out[-3000:]
    saved = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert saved >= 2 and saved < 1000
    assert not (root / "model" / "adapter_model.safetensors").exists()  # no half-finished model
    assert not (root / "output" / "failure").exists()

    # The next job (same checkpoint S3 path): resumes from the latest checkpoint and finishes.
    hp["max_steps"] = str(saved + 2)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    proc = _start(root)
    out = _wait(proc, root, 180)
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(f"checkpoint-{saved}")
    assert metrics["global_step"] == saved + 2
    state = json.loads((ckpts / f"checkpoint-{saved + 2}" / "trainer_state.json").read_text())
    assert state["global_step"] == saved + 2 and state["log_history"][0]["step"] == 1  # history carried over
    assert (root / "model" / "adapter_model.safetensors").is_file()
    assert json.loads((root / "model" / "train_config.json").read_text())["checkpoint_dir"] == str(ckpts)


def test_bad_channel_writes_failure_file(tmp_path, tiny_model_dir, monkeypatch):
    from sft.sagemaker.training_job import main

    root = _opt_ml(tmp_path / "ml", {"model": str(tiny_model_dir), "epochs": "1"}, validation=False)
    bad = root / "input" / "data" / "validation"
    bad.mkdir(parents=True)
    (bad / "val.csv").write_text("a,b\n")
    monkeypatch.setenv("GEOCOMPLY_OPT_ML", str(root))
    assert main() == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("channel 'validation'") and "no .jsonl file" in failure and "val.csv" in failure


def test_bad_hyperparameter_and_secret_refused(tmp_path, tiny_model_dir, monkeypatch):
    from sft.sagemaker.training_job import main

    root = _opt_ml(tmp_path / "ml", {"model": str(tiny_model_dir), "hf_token": "hf_abc"})
    monkeypatch.setenv("GEOCOMPLY_OPT_ML", str(root))
    assert main() == 1
    failure = (root / "output" / "failure").read_text()
    assert "HF_TOKEN" in failure and "hf_abc" not in failure


def test_data_parallel_two_cpu_processes(tmp_path, tiny_model_dir):
    """The multi-GPU QLoRA recipe (one 4-bit copy per process, gradient checkpointing, DDP), over gloo."""
    hp = {"model": str(tiny_model_dir), "max_steps": "2", "eval_sample": "0", "batch_size": "2",
          "processes_per_host": "2", "logging_steps": "1", "quantize": "4bit", "gradient_checkpointing": "true"}
    root = _opt_ml(tmp_path / "ml", hp)
    proc = _start(root)
    out = _wait(proc, root, 180)
    assert proc.returncode == 0, out[-4000:]
    assert "torch.distributed.run" in out
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    assert (root / "model" / "adapter_model.safetensors").is_file()


def test_sigterm_under_torchrun_checkpoints_every_rank_at_the_same_step(tmp_path, tiny_model_dir):
    """A spot stop on a multi-GPU host: PID 1 forwards SIGTERM to torchrun's workers, which agree on one stop
    step (an all-reduce of their flags), all save at it and exit; the job exits 143."""
    import re

    hp = {"model": str(tiny_model_dir), "max_steps": "1000", "save_steps": "2", "eval_sample": "0",
          "batch_size": "1", "processes_per_host": "2", "logging_steps": "1", "merge": "False"}
    root = _opt_ml(tmp_path / "ml", hp, validation=False)
    ckpts = root / "checkpoints"
    proc, out = _stop_after_first_checkpoint(root, start_s=90, stop_s=60)
    assert proc.returncode == 143, out[-4000:]
    stops = [int(n) for n in re.findall(r"stop requested: saving a checkpoint at step (\d+)", out)]
    assert len(stops) == 2 and stops[0] == stops[1], out[-4000:]  # both ranks, the same step
    last = ckpts / f"checkpoint-{stops[0]}"
    assert max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*")) == stops[0]
    assert (last / "rng_state_0.pth").is_file() and (last / "rng_state_1.pth").is_file()  # every rank saved
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == stops[0]
    assert not (root / "output" / "failure").exists()


@pytest.mark.parametrize(("given", "expected"), [(None, True), ("false", False), ("True", True)])
def test_model_channel_ships_merged_weights_unless_told_otherwise(tmp_path, tiny_model_dir, given, expected):
    """An endpoint has no 'model' channel: an adapter whose base lives there could not be served."""
    import shutil

    from sft.sagemaker.env import OptMl
    from sft.sagemaker.training_job import container_config

    hp = {"max_steps": "1"} if given is None else {"max_steps": "1", "merge": given}
    root = _opt_ml(tmp_path / "ml", hp)
    shutil.copytree(tiny_model_dir, root / "input" / "data" / "model" / "base")
    config = container_config(OptMl(root))
    assert config.model == str(root / "input" / "data" / "model" / "base")
    assert config.merge is expected
