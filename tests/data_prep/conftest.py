"""Shared fixtures for the geoprep tests: one real pipeline run on the corpus; really extracted chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import CORPUS


@pytest.fixture(scope="session")
def corpus_run(tmp_path_factory: pytest.TempPathFactory):
    """``geoprep pipeline examples/corpus`` (local BM25 retriever, default settings), run once per session."""
    from data_prep.pipeline import PipelineConfig, run_pipeline

    out = tmp_path_factory.mktemp("prep") / "data"
    result, ran = run_pipeline(PipelineConfig(input_dir=CORPUS, out_dir=out), progress=False)
    assert result is not None and all(ran.values())
    return out, result


@pytest.fixture(scope="session")
def corpus_chunks(corpus_run) -> list:
    from sft.core.chunks import read_chunks

    return list(read_chunks(corpus_run[0] / "chunks.jsonl"))


def geoprep_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """A runner of the real ``geoprep`` entry point in-process: ``run(*args) -> (exit code, stdout, stderr)``
    (boto3 clients patched by the caller stay in effect)."""
    import logging
    import sys

    from data_prep.cli import main

    handlers, level = logging.root.handlers[:], logging.root.level

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["geoprep", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
        finally:
            logging.root.handlers[:] = handlers  # setup_logging replaced them
            logging.root.setLevel(level)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def law_subset(tmp_path: Path, *names: str) -> Path:
    """A corpus folder holding only the named law texts (and the glossary)."""
    d = tmp_path / "corpus"
    (d / "laws").mkdir(parents=True)
    (d / "glossary").mkdir()
    for name in names:
        (d / "laws" / name).write_bytes((CORPUS / "laws" / name).read_bytes())
    (d / "glossary" / "terminology.csv").write_bytes((CORPUS / "glossary" / "terminology.csv").read_bytes())
    return d


@pytest.fixture(scope="module")
def chunks_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chunks written by the real extractor: Utah SB 152 from its PDF (pages) and California SB 976 as text."""
    from data_prep.extract import run_extract

    src = tmp_path_factory.mktemp("laws")
    shutil.copy(CORPUS / "pdfs" / "UT_2023_SB0152_enrolled.pdf", src)
    shutil.copy(CORPUS / "laws" / "us_ca_sb976_2024.txt", src)
    out = tmp_path_factory.mktemp("chunks") / "chunks.jsonl"
    run_extract(src, out, workers=1, progress=False)
    return out


@pytest.fixture
def chunks_file(chunks_src: Path, tmp_path: Path) -> Path:
    path = tmp_path / "chunks.jsonl"
    shutil.copy(chunks_src, path)
    return path
