"""A token pasted where a secret's *name* belongs is refused on every path and never echoed (issue 16, item 3:
``geosft train --set hf_token_secret=<token>`` and the image's hyperparameters printed it to stderr and to the
failure file SageMaker shows as FailureReason)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sft.core.errors import UserError
from sft.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[3]
TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"  # the probe's shape: hf_ + 34 letters and digits


def test_every_config_path_refuses_a_token_without_echoing_it(tmp_path):
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text(f"hf_token_secret: {TOKEN}\n")
    for build in (
        lambda: TrainConfig.from_dict({"hf_token_secret": TOKEN}, where="--set"),
        lambda: TrainConfig.from_yaml(yaml_file),
        lambda: TrainConfig.from_yaml(yaml_file, {"output": TOKEN}),
        lambda: TrainConfig.from_hyperparameters({"hf_token_secret": TOKEN}),
        lambda: TrainConfig(hf_token_secret=TOKEN),
    ):
        with pytest.raises(UserError, match="looks like a token itself") as e:
            build()
        assert TOKEN not in str(e.value) and TOKEN[:10] not in str(e.value)
    assert TrainConfig(hf_token_secret="prod/hf_token").hf_token_secret == "prod/hf_token"  # a name is fine


def test_aws_read_refuses_a_token_as_secret_id():
    from sft.sagemaker.aws import read_token_secret

    with pytest.raises(UserError, match="looks like a token") as e:
        read_token_secret(TOKEN, "us-west-2", what="hf_token_secret")
    assert TOKEN not in str(e.value)


def test_cli_and_image_keep_the_token_out_of_stderr_and_the_failure_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = subprocess.run([sys.executable, "-m", "sft.cli", "train", "--data", str(tmp_path / "x.jsonl"),
                          "--set", f"hf_token_secret={TOKEN}"], capture_output=True, text=True, env=env, timeout=120)
    assert cli.returncode == 1 and TOKEN not in cli.stdout + cli.stderr
    assert "looks like a token" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1

    root = tmp_path / "ml"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "data" / "train").mkdir(parents=True)
    (root / "input" / "data" / "train" / "train.jsonl").write_text("")
    for hp in ({"hf_token_secret": TOKEN}, {"epochs": TOKEN}):  # a refused field, and a value echoed by an error
        (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
        failure = root / "output" / "failure"
        failure.unlink(missing_ok=True)
        job = subprocess.run([sys.executable, str(REPO / "container" / "train")], capture_output=True, text=True,
                             env={**env, "GEOCOMPLY_OPT_ML": str(root)}, timeout=120)
        assert job.returncode != 0 and failure.is_file()
        assert TOKEN not in failure.read_text() + job.stdout + job.stderr, failure.read_text()
