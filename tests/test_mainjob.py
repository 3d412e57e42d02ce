"""The README's first command, end to end on the real demo model with a reduced budget (issue: main job)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sft.mainjob import docker_answers
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _csv_rows(path: Path, n: int) -> list[str]:
    """The first ``n`` data rows of a CSV whose quoted fields may hold newlines, as CSV text."""
    import csv
    import io

    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[1 : n + 1]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return [buf.getvalue()]


def test_local_run_main_job_produces_every_artefact(tmp_path):
    features = tmp_path / "features.csv"
    rows = (REPO / "examples" / "features.csv").read_text().splitlines()
    features.write_text("\n".join(rows[:4]) + "\n")  # header + 3 feature specs
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # Reuse the environment this test runs in (local_run.sh reinstalls only when pyproject.toml changed).
    # OUT relative to the repo, as a user types it (docker-compose once took a relative volume path for a name).
    env.update(OUT=os.path.relpath(out, REPO), VENV=str(Path(sys.executable).parent.parent), COLUMNS="200")
    realistic = tmp_path / "realistic.csv"  # the yardstick's first 5 specs (the whole set takes ~4 min on CPU)
    realistic.write_text("\n".join((REPO / "examples" / "realistic" / "specs.csv").read_text().splitlines()[:1])
                         + "\n" + "".join(_csv_rows(REPO / "examples" / "realistic" / "specs.csv", 5)))
    cmd = ["./local_run.sh", "--max-steps", "2", "--eval-limit", "10", "--features", str(features),
           "--realistic", str(realistic)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]

    data, model = out / "data", out / "job" / "model"
    for path in (data / "train.jsonl", data / "validation.jsonl", data / "qc_report.json", data / "qc_report.md"):
        assert path.is_file() and path.stat().st_size > 0, path
    # By default the hand-written training specs (examples/handwritten) are in the training data, next to the
    # generated ones.
    with (REPO / "examples" / "handwritten" / "train_specs.csv").open(encoding="utf-8") as fh:
        hand = {row["name"] for row in csv.DictReader(fh)}
    names = [json.loads(json.loads(line)["input"])["feature"]["name"] for line in (data / "train.jsonl").open()]
    assert sum(n in hand for n in names) > 150 and sum(n not in hand for n in names) > 300
    for name in ("adapter_model.safetensors", "adapter_config.json", "train_config.json", "metrics.json", "budget.json",
                 "label_head.safetensors", "label_head.json"):
        assert (model / name).is_file(), name
    # The QC report describes the data training sees: the splits were fitted to training's own budget, so
    # training trims nothing more.
    qc, budget = json.loads((data / "qc_report.json").read_text()), json.loads((model / "budget.json").read_text())
    assert qc["budget"]["max_length"] == budget["train"]["max_length"] == 448
    assert budget["train"]["trimmed"] == budget["train"]["dropped"] == 0
    assert (model / "index").is_dir()  # the law index ships with the model for serving
    if docker_answers():
        # Inside the image (SDK local mode), the base weights came as the 'model' channel: merged weights ship.
        assert "training inside the image geocomply:local" in proc.stderr
        assert (model / "merged" / "config.json").is_file()
    else:
        assert "training through the image's entry point on this machine" in proc.stderr
        assert json.loads((model / "adapter_config.json").read_text())["base_model_name_or_path"] == "demo"

    result = json.loads((out / "eval" / "eval.json").read_text())
    assert result["n"] == 10  # calibration needs at least 10 scored examples
    assert set(result["runs"]) >= {"model", "majority", "keyword"}
    for run in result["runs"].values():
        for key in ("json_valid_rate", "accuracy", "macro_f1", "per_class", "confusion", "law_accuracy",
                    "citation_grounding_rate", "abstention_rate"):
            assert key in run, key
    assert result["runs"]["model"]["json_valid_rate"] == 1.0  # constrained decoding: always valid
    assert (out / "eval" / "report.md").is_file() and (out / "eval" / "confusion.png").stat().st_size > 1000

    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == ["F-101", "F-102", "F-103"]
    assert all(p["flag"] in ("Needs Geo-Compliance", "No Geo-Compliance Needed", "Not Enough Information") for p in preds)
    assert (out / "predictions.csv").is_file()
    summary = (out / "summary.md").read_text()
    assert "macro-F1" in summary and "keyword" in summary and "Realistic hand-written specs (5" in summary
    real = json.loads((out / "eval-realistic" / "eval.json").read_text())
    assert real["n"] == 5 and real["runs"]["model"]["reasons_naming_absent_law"] == 0
    # The flag came from the label head (layer 15 of the demo model's 30), and the LM's own flag step is reported
    # beside it on the same specs.
    assert real["flag"]["source"] == "label_head" and real["flag"]["layer"] == 15
    assert set(real["flag"]["lm_flag_step"]) == {"accuracy", "macro_f1"}
    assert "Flag: the label head on layer 15" in summary
    assert (model / "calibration.json").is_file()  # fitted on the template split, shipped with the model
    assert all("confidence" in p and "needs_review" in p for p in preds)
    assert "macro-F1" in proc.stdout  # the summary table is printed

    # A second run reuses everything: no training, no evaluation, nothing predicted twice.
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train: already done" in again.stderr and "eval: already done" in again.stderr
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
