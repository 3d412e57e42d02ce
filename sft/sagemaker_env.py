"""The SageMaker container contract in one place: ``/opt/ml`` paths, hyperparameters, channels, hosts and
the failure file.

The root defaults to ``/opt/ml`` and is overridden by ``GEOCOMPLY_OPT_ML`` (tests point it at a temp dir).
See https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.errors import UserError

ROOT_ENV = "GEOCOMPLY_OPT_ML"


@dataclass(frozen=True)
class OptMl:
    root: Path

    @classmethod
    def from_env(cls) -> OptMl:
        return cls(Path(os.environ.get(ROOT_ENV, "/opt/ml")))

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
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    # --- facts
    def in_training_container(self) -> bool:
        return self.hyperparameters_file.is_file()

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
        if not self.failure_file.exists():
            self.failure_file.write_text(message.strip() + "\n")


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
