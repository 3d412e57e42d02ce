"""SageMaker SDK v3 local mode, end to end, against the geocomply image.

    python container/local_mode.py --image geocomply:local [--instance local_cpu] [--work runs/local-mode]

1. writes contract-shaped train/validation JSONL and a tiny base model (a ``model`` channel, like a
   network-isolated job) into the work dir;
2. runs a real ``ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)`` job with the image's ``train``;
3. unpacks the job's ``model.tar.gz``, starts the same image with ``serve`` on 127.0.0.1, and checks
   ``/ping`` and ``/invocations``.
Exits non-zero with the reason when any step fails. ``--no-serve`` stops after training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sft.sagemaker.env import BIND_PORT_ENV, DEFAULT_PORT, USER_CONFIG_ENV, OptMl

HERE = Path(__file__).resolve().parent

# Hyperparameters for a CPU job of a minute or two (TrainConfig field names, as strings like SageMaker's).
HYPERPARAMETERS = {
    "model": str(OptMl.in_container().channel("model")),
    "max_steps": "4",
    "batch_size": "2",
    "max_length": "512",  # the prompt gets 512 - 112 tokens (sft.core.prompt: room kept for the answer)
    "eval_sample": "2",
    "max_new_tokens": "16",
    "logging_steps": "1",
    # The base model comes from a channel that an endpoint does not have: ship merged weights to serve.
    "merge": "true",
}


def prepare(work: Path) -> dict[str, Path]:
    from sft.sample_data import write_examples
    from sft.testing import build_tiny_model

    channels = {"train": work / "data" / "train", "validation": work / "data" / "validation", "model": work / "base"}
    for d in channels.values():
        d.mkdir(parents=True, exist_ok=True)
    write_examples(channels["train"] / "train.jsonl", 12, seed=1)
    write_examples(channels["validation"] / "validation.jsonl", 4, seed=2)
    if not (channels["model"] / "config.json").is_file():
        build_tiny_model(channels["model"])
    return channels


def train_local(image: str, instance: str, work: Path, channels: dict[str, Path], hp: dict[str, str]) -> Path:
    """One SDK local-mode training job; returns the model.tar.gz."""
    from sagemaker.core.training.configs import Compute, InputData
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    # Local mode needs no AWS: no telemetry calls to it either (container/sagemaker_config.yaml).
    os.environ.setdefault(USER_CONFIG_ENV, str(HERE / "sagemaker_config.yaml"))
    # docker-compose names the project after this directory: a unique name keeps runs (and their stopped
    # containers) apart, and the containers are removed afterwards.
    # Absolute paths: docker-compose reads a relative volume path as the name of a volume.
    root = work.resolve() / f"sm-local-{os.getpid()}-{int(time.time())}"
    root.mkdir(parents=True, exist_ok=True)
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        training_image=image,
        compute=Compute(instance_type=instance, instance_count=1),
        hyperparameters=hp,
        base_job_name="geocomply-local",
        local_container_root=str(root),
    )
    try:
        trainer.train(input_data_config=[InputData(channel_name=k, data_source=str(Path(v).resolve()))
                                         for k, v in channels.items()])
    finally:
        project = f"label=com.docker.compose.project={root.name}"
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", project], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    found = sorted(root.rglob("model.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"local_mode: error: the job finished but wrote no model.tar.gz under {root}")
    return found[-1]


def train_direct(work: Path, channels: dict[str, Path], hp: dict[str, str]) -> Path:
    """The same job without Docker: ``container/train`` on the host against a SageMaker container layout
    under ``work``, then the model directory packed into model.tar.gz as SageMaker does."""
    opt = OptMl(work / "opt_ml")
    shutil.rmtree(opt.root, ignore_errors=True)
    opt.write_training_inputs(channels, hp)
    res = subprocess.run([sys.executable, str(HERE / "train")], env=opt.env())
    if res.returncode != 0:
        failure = opt.failure_file
        reason = failure.read_text() if failure.is_file() else "(no failure file)"
        raise SystemExit(f"local_mode: error: train exited {res.returncode}: {reason}")
    tarball = opt.output_dir / "model.tar.gz"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as tar:
        for p in sorted(opt.model_dir.iterdir()):
            tar.add(p, arcname=p.name)
    return tarball


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, data: bytes | None = None, timeout: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (127.0.0.1 only)
        return r.status, r.read()


def start_container(image: str, model_dir: Path) -> tuple[int, Any, Any]:
    """``docker run IMAGE serve`` with the artefacts where an endpoint has them, published on 127.0.0.1 only."""
    port = free_port()
    cid = subprocess.check_output([
        "docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:{DEFAULT_PORT}",
        "-v", f"{model_dir.resolve()}:{OptMl.in_container().model_dir}:ro", image, "serve",
    ], text=True).strip()  # fmt: skip

    def logs() -> str:
        r = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        return r.stdout + r.stderr

    return port, logs, lambda: subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def start_direct(model_dir: Path, work: Path) -> tuple[int, Any, Any]:
    """``container/serve`` as a host process, with the same container layout under ``work``."""
    opt = OptMl(work / "serve_opt_ml")
    opt.root.mkdir(parents=True, exist_ok=True)
    if not opt.model_dir.exists():
        opt.model_dir.symlink_to(model_dir.resolve())
    port = free_port()
    log = open(work / "serve.log", "w")  # noqa: SIM115 (closed by stop)
    env = {**opt.env(), BIND_PORT_ENV: str(port)}
    proc = subprocess.Popen([sys.executable, str(HERE / "serve")], env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        proc.wait(30)
        log.close()

    return port, lambda: (work / "serve.log").read_text(), stop


def serve_and_check(start: tuple[int, Any, Any], startup_s: float = 180) -> Any:
    """Wait for /ping, then POST one feature to /invocations; always stops the server."""
    port, logs, stop = start
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                if http(f"http://127.0.0.1:{port}/ping", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"local_mode: error: /ping not healthy after {startup_s:.0f}s\n{logs()}")
            time.sleep(1)
        body = json.dumps({
            "id": "f1", "name": "Teen curfew",
            "description": "Disable push notifications between 22:00 and 06:00 for users under 18 in Florida.",
            "context": [{"id": "fl-hb3#1", "law_id": "fl-hb3", "title": "Florida HB 3", "citation": "Fla. Stat. § 501.1736",
                         "jurisdiction": "US-FL", "snippet": "A social media platform shall prohibit a minor ..."}],
        })  # fmt: skip
        status, out = http(f"http://127.0.0.1:{port}/invocations", body.encode())
        if status != 200:
            raise SystemExit(f"local_mode: error: /invocations answered {status}: {out[:500]!r}")
        return json.loads(out)
    finally:
        stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="geocomply:local")
    ap.add_argument("--instance", default="local_cpu", choices=["local_cpu", "local_gpu"])
    ap.add_argument("--work", type=Path, default=Path("runs/local-mode"))
    ap.add_argument("--hp", action="append", default=[], help="extra hyperparameter KEY=VALUE")
    ap.add_argument("--no-serve", action="store_true")
    ap.add_argument("--direct", action="store_true", help="no Docker: run the entry points on the host")
    args = ap.parse_args(argv)
    hp = dict(HYPERPARAMETERS) | dict(p.split("=", 1) for p in args.hp)
    channels = prepare(args.work)
    t0 = time.monotonic()
    if args.direct:
        tarball = train_direct(args.work, channels, hp)
    else:
        tarball = train_local(args.image, args.instance, args.work, channels, hp)
    print(f"local_mode: training job done in {time.monotonic() - t0:.0f}s -> {tarball}", flush=True)
    model_dir = args.work / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(model_dir, filter="data")
    print(f"local_mode: model.tar.gz unpacked into {model_dir}: {sorted(p.name for p in model_dir.iterdir())}")
    if args.no_serve:
        return 0
    start = start_direct(model_dir, args.work) if args.direct else start_container(args.image, model_dir)
    answer = serve_and_check(start)
    print(f"local_mode: /ping ok; /invocations -> {json.dumps(answer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
