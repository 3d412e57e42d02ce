"""The one-command pipeline: extract -> index -> mine -> features -> build, resumable; also against Kendra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import pipeline
from data_prep.pipeline import PipelineConfig, run_pipeline
from sft.core.contract import Label, PromptInput, parse_output, read_examples
from sft.core.errors import UserError
from tests.conftest import REPO
from tests.data_prep.conftest import law_subset

LAWS = ("us_ut_sb152_2023.txt", "us_ca_sb976_2024.txt", "us_18usc2258a.txt")
TITLES = {"Utah Social Media Regulation Act (SB 152)",
          "California SB 976 (Protecting Our Kids from Social Media Addiction Act)",
          "18 U.S.C. § 2258A (Reporting requirements of providers)"}


def _check_dataset(out: Path) -> list:
    examples = [e for s in ("train", "validation") for e in read_examples(out / f"{s}.jsonl")]
    # A legal driver retrieval did not cover is Needs without a citation (law None).
    assert {e.answer.law for e in examples if e.answer.compliance_flag == Label.NEEDS} - {None} == TITLES
    share = sum(e.answer.compliance_flag == Label.NEI for e in examples) / len(examples)
    assert 0.15 <= share <= 0.35, share
    for e in examples:
        if e.answer.citation is not None:
            assert parse_output(e.output, PromptInput.parse(e.input)).grounded
    report = json.loads((out / "qc_report.json").read_text())
    assert not any("citation" in reason for reason in report["dropped"])
    return examples


def _geoprep(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "data_prep.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_one_command_then_resume_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    corpus, out = law_subset(tmp_path, *LAWS), tmp_path / "data"
    first = _geoprep("pipeline", str(corpus), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "| Not Enough Information |" in first.stdout and "train /" in first.stdout
    examples = _check_dataset(out)
    train = (out / "train.jsonl").read_bytes()

    again = _geoprep("pipeline", str(corpus), "--out", str(out))
    assert again.returncode == 0 and "build skipped (up to date)" in again.stdout

    # Interrupted during build: the splits were never renamed into place (atomic writes), stages before are done.
    (out / "train.jsonl").unlink()
    (out / "validation.jsonl").unlink()
    result, ran = run_pipeline(PipelineConfig(input_dir=corpus, out_dir=out), progress=False)
    assert ran == {"extract": False, "index": False, "mine": False, "features": False, "build": True}
    assert (out / "train.jsonl").read_bytes() == train
    resumed = [e for s in ("train", "validation") for e in read_examples(out / f"{s}.jsonl")]
    assert len(resumed) == len({e.id for e in resumed}) == len(examples)

    # A changed parameter re-runs only the stages it affects.
    _, ran = run_pipeline(PipelineConfig(input_dir=corpus, out_dir=out, per_law=5), progress=False)
    assert ran == {"extract": False, "index": False, "mine": False, "features": True, "build": True}

    # New code for a stage (an upgraded geocomply) re-runs that stage; the build after it re-runs only if the
    # stage's output changed.
    real = pipeline.code_digest
    monkeypatch.setattr(pipeline, "code_digest", lambda *m: real(*m) + ("new" if "data_prep.features" in m else ""))
    _, ran = run_pipeline(PipelineConfig(input_dir=corpus, out_dir=out, per_law=5), progress=False)
    assert ran == {"extract": False, "index": False, "mine": False, "features": True, "build": False}


def test_bad_option_is_a_one_line_error(tmp_path: Path):
    res = _geoprep("pipeline", str(tmp_path), "--retriever", "kendra")
    assert res.returncode == 1
    assert "needs --kendra-index-id" in res.stderr and "Traceback" not in res.stderr


INDEX = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake_kendra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A boto3 Kendra client under botocore's Stubber. Each Retrieve call is answered from a BM25 index of
    the same chunks (so answers depend on the query), and every request and response is validated
    against the Kendra service model by the Stubber."""
    import boto3
    from botocore.stub import Stubber

    from data_prep.extract import run_extract
    from sft.core.retrieval import LocalRetriever, build_local_index

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    corpus = law_subset(tmp_path, *LAWS)
    backing = tmp_path / "kendra_backing"
    run_extract(corpus, backing / "chunks.jsonl", progress=False)
    build_local_index(backing / "chunks.jsonl", backing / "index")
    local = LocalRetriever(backing / "index")
    client = boto3.client("kendra", region_name="us-west-2")
    stub = Stubber(client)
    calls = []

    def answer(params, **_):
        # The place asked for is the shortest jurisdiction value in the filter ("US" OR "US-CA" ... for "US"; a
        # place no law covers, such as "GB", alone).
        flt = json.dumps(params.get("AttributeFilter", {}))
        asked = re.findall(r'"Key": "jurisdiction", "Value": \{"StringValue": "([^"]+)"\}', flt)
        jur = min(asked, key=len) if asked else None
        hits = local.search(params["QueryText"], k=params["PageSize"], jurisdiction=jur)
        items = [{
            "Id": c.id, "DocumentId": f"s3://laws/{c.law_id}.txt", "DocumentTitle": c.title, "Content": c.snippet,
            "DocumentAttributes": [{"Key": k, "Value": {"StringValue": v}} for k, v in
                                   (("jurisdiction", c.jurisdiction), ("citation", c.citation), ("law_id", c.law_id))],
            "ScoreAttributes": {"ScoreConfidence": "HIGH"},
        } for c in hits]
        calls.append(params["QueryText"])
        stub.add_response("retrieve", {"QueryId": f"q{len(calls)}", "ResultItems": items}, dict(params))

    with stub:
        # provide-client-params fires before the Stubber checks the request: queue the answer, then it checks.
        client.meta.events.register("provide-client-params.kendra.Retrieve", answer)
        yield corpus, client, calls


def test_pipeline_with_kendra_retriever(fake_kendra, tmp_path: Path):
    corpus, client, calls = fake_kendra
    out = tmp_path / "kendra_data"
    cfg = PipelineConfig(input_dir=corpus, out_dir=out, retriever="kendra", kendra_index_id=INDEX)
    result, ran = run_pipeline(cfg, kendra_client=client, progress=False)
    assert "index" not in ran and ran["build"]
    assert calls, "the build queried Kendra"
    _check_dataset(out)
    # Re-building (e.g. after an interruption) is served from the sqlite cache: no further Kendra calls.
    n = len(calls)
    (out / "train.jsonl").unlink()
    run_pipeline(cfg, kendra_client=client, progress=False)
    assert len(calls) == n


def test_pipeline_with_bedrock_kb_retriever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """--retriever bedrock-kb through the whole pipeline: each Retrieve (a Stubber'd bedrock-agent-runtime
    client, requests validated against the service model) is answered from a BM25 index of the same chunks;
    a re-build is served from the sqlite cache."""
    from data_prep.extract import run_extract
    from sft.core.retrieval import LocalRetriever, build_local_index
    from tests.conftest import kb_result, stub_bedrock_retrieve

    corpus = law_subset(tmp_path, *LAWS)
    backing = tmp_path / "kb_backing"
    run_extract(corpus, backing / "chunks.jsonl", progress=False)
    build_local_index(backing / "chunks.jsonl", backing / "index")
    local = LocalRetriever(backing / "index")

    def results_for(params: dict) -> list[dict]:
        vector = params["retrievalConfiguration"]["vectorSearchConfiguration"]
        flt = json.dumps(vector.get("filter", {}))
        jur = min((v for v in ("US-UT", "US-CA", "US") if f'"{v}"' in flt), key=len, default=None)
        hits = local.search(params["retrievalQuery"]["text"], k=vector["numberOfResults"], jurisdiction=jur)
        return [kb_result(c.id, c.law_id, c.citation, c.jurisdiction, c.snippet, c.score or 0.0, c.title)
                for c in hits]

    client, stub, calls = stub_bedrock_retrieve(monkeypatch, results_for)
    out = tmp_path / "kb_data"
    cfg = PipelineConfig(input_dir=corpus, out_dir=out, retriever="bedrock-kb", knowledge_base_id="KB12345678")
    with stub:
        _, ran = run_pipeline(cfg, bedrock_client=client, progress=False)
        assert "index" not in ran and ran["build"] and calls
        _check_dataset(out)
        n = len(calls)
        (out / "train.jsonl").unlink()
        run_pipeline(cfg, bedrock_client=client, progress=False)
    assert len(calls) == n and (out / "bedrock_kb_cache.sqlite").is_file()
    with pytest.raises(UserError, match="needs --knowledge-base-id"):
        PipelineConfig(input_dir=corpus, out_dir=out, retriever="bedrock-kb")
