"""The container image, for real: built from the offline base, `train` failure contract, and a SageMaker SDK
local-mode job whose artefacts the same image serves. Needs a Docker engine (CI starts one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sft.mainjob import compose_available, docker_answers
from tests.conftest import REPO

docker = pytest.mark.docker
TAG = "geocomply:test"


def _skip_or_fail(reason: str) -> None:
    """Skip on a developer machine without Docker; in CI (CI=true) the image path must run, so fail."""
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(f"CI must run the image test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> str:
    if not docker_answers():
        _skip_or_fail("no Docker engine answers (CI starts one: .ci/run)")
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([str(REPO / "container" / "build_local.sh"), "--base", "offline", "--tag", TAG],
                   check=True, env=env, timeout=900)  # fmt: skip
    return TAG


def docker_run(image: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", *args[:-1], image, args[-1]],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@docker
@pytest.mark.slow
def test_entry_points_come_first_on_path(image):
    res = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                          "command -v train; command -v serve; python3 -c 'import torch, sft; print(torch.__version__)'"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:2] == ["/opt/geocomply/bin/train", "/opt/geocomply/bin/serve"]
    # CMD is exec-form `train` (SDK local mode passes no command) and nothing wraps it (no ENTRYPOINT shell
    # that would swallow SIGTERM).
    config = json.loads(subprocess.check_output(["docker", "image", "inspect", "-f", "{{json .Config}}", image]))
    assert config["Cmd"] == ["train"]
    assert not config.get("Entrypoint")


@docker
@pytest.mark.slow
def test_train_with_a_broken_hyperparameter_writes_the_failure_file(image, tmp_path):
    from sft.sample_data import write_examples

    opt = tmp_path / "opt_ml"
    (opt / "input" / "config").mkdir(parents=True)
    (opt / "input" / "data" / "train").mkdir(parents=True)
    write_examples(opt / "input" / "data" / "train" / "train.jsonl", 4)
    (opt / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"learning_rate": "fast", "epochs": "1"}))
    res = docker_run(image, "-v", f"{opt}:/opt/ml", "train")
    assert res.returncode != 0
    failure = (opt / "output" / "failure").read_text()
    assert "learning_rate" in failure, failure


@docker
@pytest.mark.slow
def test_sagemaker_local_mode_trains_and_the_image_serves_the_artefacts(image, tmp_path):
    pytest.importorskip("sagemaker")
    if not compose_available():
        _skip_or_fail("SageMaker local mode needs docker-compose or `docker compose`")
    res = subprocess.run([sys.executable, str(REPO / "container" / "local_mode.py"), "--image", image,
                          "--work", str(tmp_path / "lm")], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "training job done" in res.stdout and "/ping ok" in res.stdout
    answer = json.loads(res.stdout.split("/invocations -> ", 1)[1].splitlines()[0])
    row = answer[0] if isinstance(answer, list) else answer
    assert "compliance_flag" in json.dumps(row)


@pytest.mark.slow
def test_direct_mode_runs_the_same_job_through_the_entry_points_without_docker(tmp_path):
    """What `./local_run.sh local-mode` falls back to without Docker: container/train and container/serve on
    the host, against the same /opt/ml layout and model.tar.gz round trip."""
    res = subprocess.run([sys.executable, str(REPO / "container" / "local_mode.py"), "--direct",
                          "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert (tmp_path / "opt_ml" / "output" / "model.tar.gz").is_file()
    assert (tmp_path / "model" / "merged" / "config.json").is_file()
    answer = json.loads(res.stdout.split("/invocations -> ", 1)[1].splitlines()[0])
    assert answer["id"] == "f1" and answer["compliance_flag"] in {
        "Needs Geo-Compliance", "No Geo-Compliance Needed", "Not Enough Information"}  # fmt: skip


def container_logs(cid: str) -> str:
    res = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
    return res.stdout + res.stderr


@docker
@pytest.mark.slow
def test_docker_stop_reaches_python_which_checkpoints(image, tmp_path):
    """`docker stop` (what a spot reclaim or StopTrainingJob does) sends SIGTERM to `train` itself."""
    import time

    from sft.sample_data import write_examples
    from sft.testing import build_tiny_model

    opt = tmp_path / "opt_ml"
    for d in ("input/config", "input/data/train", "input/data/model"):
        (opt / d).mkdir(parents=True)
    write_examples(opt / "input" / "data" / "train" / "train.jsonl", 8)
    build_tiny_model(opt / "input" / "data" / "model")
    hp = {"model": "/opt/ml/input/data/model", "max_steps": "100000", "batch_size": "1", "max_length": "512",
          "logging_steps": "1", "eval_sample": "0"}  # fmt: skip
    (opt / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    cid = subprocess.check_output(["docker", "run", "-d", "--network", "none", "-v", f"{opt}:/opt/ml", image],
                                  text=True).strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "'loss'" not in container_logs(cid):
            state = subprocess.check_output(["docker", "inspect", "-f", "{{.State.Running}}", cid], text=True)
            assert state.strip() == "true", container_logs(cid)[-3000:]
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(1)
        subprocess.run(["docker", "stop", "-t", "60", cid], check=True, capture_output=True)
        code = int(subprocess.check_output(["docker", "inspect", "-f", "{{.State.ExitCode}}", cid], text=True))
        logs = container_logs(cid)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    assert code != 137, "SIGTERM was not handled: docker had to SIGKILL the container"
    assert "SIGTERM" in logs
    assert any((opt / "checkpoints").glob("checkpoint-*")), sorted(p.name for p in opt.rglob("*"))[:20]
