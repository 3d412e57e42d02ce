"""geoprep extract / index / search as a user runs them (real subprocess, real files)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import CORPUS


def _geoprep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data_prep.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_extract_index_search_round_trip(tmp_path: Path):
    src = tmp_path / "laws"
    src.mkdir()
    shutil.copy(CORPUS / "pdfs/CA_SB976_2024_leginfo_print.pdf", src)
    shutil.copy(CORPUS / "laws/us_18usc2258a.txt", src)
    (src / "us_fl_hb3_broken.pdf").write_bytes(b"%PDF-1.7\n garbage")
    repo = Path(__file__).resolve().parents[2]
    r = _geoprep("extract", str(src), "--out", str(tmp_path / "chunks.jsonl"), "--workers", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "us_fl_hb3_broken.pdf" in r.stderr and "corrupt" in r.stderr
    report = json.loads((tmp_path / "chunks.report.json").read_text())
    assert set(report["chunks_per_law"]) == {"us_ca_sb976", "us_18usc2258a"}

    r = _geoprep("index", str(tmp_path / "chunks.jsonl"), "--out", str(tmp_path / "idx"), cwd=repo)
    assert r.returncode == 0, r.stderr
    r = _geoprep("search", "notifications to minors at night", "--index", str(tmp_path / "idx"),
                 "--jurisdiction", "US-CA", "-k", "2", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "Cal. Health & Saf. Code § 27002(a)" in r.stdout


def test_search_without_index_is_a_one_line_error(tmp_path: Path):
    repo = Path(__file__).resolve().parents[2]
    r = _geoprep("search", "anything", "--index", str(tmp_path), cwd=repo)
    assert r.returncode == 1
    assert r.stderr.startswith("geoprep: error:") and "not a geoprep index" in r.stderr
    assert "Traceback" not in r.stderr
