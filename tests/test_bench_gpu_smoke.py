"""bench/gpu_smoke.sh in its CPU-fallback mode, so the script a GPU machine will run cannot rot: it trains the
tiny model in 16-bit (fp32 on CPU) and 4-bit for 2 steps, serves one request, and prints its table and verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("trl")


def test_cpu_fallback_trains_serves_and_passes(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.run([str(REPO / "bench" / "gpu_smoke.sh"), "--cpu", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "gpu_smoke: PASS" in proc.stdout and "tokens/s" in proc.stdout
    rows = {r["case"]: r for r in json.loads(out.read_text())}
    assert rows["tiny-16bit"]["precision"] == "float32" and rows["tiny-16bit"]["steps"] == 2
    assert rows["tiny-16bit"]["tokens_per_s"] > 0 and rows["tiny-16bit"]["estimate_gib"] > 0
    assert rows["serve 1 request"]["device"] == "cpu" and rows["serve 1 request"]["valid"]
    if "tiny-4bit" in rows:  # bitsandbytes installed (the qlora extra)
        assert rows["tiny-4bit"]["pass"], rows["tiny-4bit"]


def test_refuses_gpu_mode_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(REPO / "bench" / "gpu_smoke.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "no CUDA GPU here; run with --cpu" in proc.stderr
