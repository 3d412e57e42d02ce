"""The SageMaker container contract in one place: every ``/opt/ml`` path, every ``SM_*`` / ``SAGEMAKER_*``
name, hyperparameters, channels, hosts and the failure file (modelled on sagemaker-training-toolkit's
``params.py``). Nothing else in geocomply spells one of these literals.

Training (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html)::

    /opt/ml/input/config/hyperparameters.json   settings, every value a string ("True"/"true" both work)
    /opt/ml/input/config/resourceconfig.json    hosts of the job (data-parallel over several instances)
    /opt/ml/input/data/train/*.jsonl            required channel
    /opt/ml/input/data/validation/*.jsonl       optional channel
    /opt/ml/input/data/model/                   optional: base weights for network-isolated jobs
    /opt/ml/input/data/index/                   optional: geoprep index shipped with the adapter
    /opt/ml/model/                              outputs (SageMaker uploads them as model.tar.gz)
    /opt/ml/checkpoints/                        synced to S3 by SageMaker; resumed from after a spot interruption
    /opt/ml/output/failure                      why the job failed (shown as FailureReason)

Hosting: the model is unpacked to ``/opt/ml/model``; the server listens on ``SAGEMAKER_BIND_TO_PORT``
(default 8080).

The root defaults to ``/opt/ml`` and is overridden by ``GEOCOMPLY_OPT_ML`` (tests and host runs of the
image's entry points point it at a directory of their own).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.errors import UserError
from sft.core.secrets import redact

ROOT = "/opt/ml"
ROOT_ENV = "GEOCOMPLY_OPT_ML"
BIND_PORT_ENV = "SAGEMAKER_BIND_TO_PORT"  # hosting: the port to listen on
DEFAULT_PORT = 8080
NUM_GPUS_ENV = "SM_NUM_GPUS"  # training: GPUs of this host (set by SageMaker and its DLCs)
# The SageMaker Python SDK reads its config (telemetry opt-out, local mode) from this file.
USER_CONFIG_ENV = "SAGEMAKER_USER_CONFIG_OVERRIDE"


def bind_port() -> int:
    value = os.environ.get(BIND_PORT_ENV, str(DEFAULT_PORT))
    try:
        port = int(value)
    except ValueError:
        raise UserError(f"{BIND_PORT_ENV}={value!r}: expected a port number") from None
    if not 0 <= port <= 65535:
        raise UserError(f"{BIND_PORT_ENV}={value!r}: expected a port number (0-65535)")
    return port


def num_gpus() -> int | None:
    """GPUs SageMaker says this host has, or None outside SageMaker (ask torch then)."""
    value = os.environ.get(NUM_GPUS_ENV)
    return None if value is None else int(value)


@dataclass(frozen=True)
class OptMl:
    root: Path

    @classmethod
    def from_env(cls) -> OptMl:
        return cls(Path(os.environ.get(ROOT_ENV, ROOT)))

    @classmethod
    def in_container(cls) -> OptMl:
        """The paths as a job's container sees them (what a launch request or hyperparameter names)."""
        return cls(Path(ROOT))

    def env(self) -> dict[str, str]:
        """The environment that points the image's entry points (``train``, ``serve``) at this root."""
        return {**os.environ, ROOT_ENV: str(self.root.resolve())}

    # --- inputs
    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    # --- outputs
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    # --- a training job's inputs, laid out on this machine (running the image's ``train`` without SageMaker)
    def write_training_inputs(self, channels: Mapping[str, Path], hyperparameters: Mapping[str, str]) -> None:
        """Copy each channel (a file or a directory) to ``input/data/<name>/`` (replacing what was there)
        and write the hyperparameters, every value a string as SageMaker passes them."""
        for name, src in channels.items():
            dst = self.channel(name)
            if dst.exists():
                shutil.rmtree(dst)
            if Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                dst.mkdir(parents=True)
                shutil.copy2(src, dst / Path(src).name)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.hyperparameters_file.write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}, indent=2))

    def hyperparameters(self) -> dict[str, Any]:
        """Decoded hyperparameters. SageMaker passes every value as a string."""
        path = self.hyperparameters_file
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a JSON object")
        return {k: decode_hyperparameter(v) for k, v in raw.items()}

    def channels(self) -> dict[str, Path]:
        data = self.root / "input" / "data"
        return {p.name: p for p in sorted(data.iterdir()) if p.is_dir()} if data.is_dir() else {}

    def resource_config(self) -> dict[str, Any]:
        path = self.resource_config_file
        if path.is_file():
            return json.loads(path.read_text())
        return {"current_host": "algo-1", "hosts": ["algo-1"]}

    def write_failure(self, message: str) -> None:
        """Write the failure reason once (the first failure is the cause; later ones are fallout)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self.failure_file.exists():  # SageMaker shows it as the FailureReason: no credential in it
            self.failure_file.write_text(redact(message.strip()) + "\n")


def decode_hyperparameter(value: Any) -> Any:
    """'True'/'true' -> True, '3' -> 3, '5e-5' -> 5e-05, '["q_proj"]' -> list, anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return value
