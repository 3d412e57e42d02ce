"""geoprep kb-load at the wire (chunks_file: tests/data_prep/conftest.py): S3 is moto's real server on 127.0.0.1, bedrock-agent a real boto3 client under
botocore's Stubber (each request validated against the service model botocore ships)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sft.core.chunks import read_chunks, write_chunks
from sft.core.errors import UserError

KB, DS, JOB = "KB12345678", "DS12345678", "JOB1234567"
BUCKET = "s3://kb-laws/geocomply/chunks"


@pytest.fixture
def s3(aws_env: str):
    import urllib.request

    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{aws_env}/moto-api/reset", method="POST")).close()  # fresh S3
    client = boto3.client("s3", region_name="us-west-2")
    client.create_bucket(Bucket="kb-laws", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    puts: list[str] = []
    client.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append(params["url_path"]))
    client.puts = puts  # type: ignore[attr-defined]
    return client


@pytest.fixture
def agent(aws_env: str):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("bedrock-agent", region_name="us-west-2")
    with Stubber(client) as stub:
        client.stub = stub  # type: ignore[attr-defined]
        yield client
        stub.assert_no_pending_responses()


def _job(status: str, **stats: int) -> dict:
    job = {"knowledgeBaseId": KB, "dataSourceId": DS, "ingestionJobId": JOB, "status": status,
           "startedAt": "2026-12-01T00:00:00Z", "updatedAt": "2026-12-01T00:01:00Z"}
    if stats:
        job["statistics"] = stats
    return {"ingestionJob": job}


def _expect_ingestion(agent, final: str = "COMPLETE", failed: int = 0, reasons: list[str] | None = None) -> None:
    from botocore.stub import ANY

    stub = agent.stub
    stub.add_response("start_ingestion_job", _job("STARTING"),
                      {"knowledgeBaseId": KB, "dataSourceId": DS, "clientToken": ANY, "description": "geoprep kb-load"})
    get = {"knowledgeBaseId": KB, "dataSourceId": DS, "ingestionJobId": JOB}
    stub.add_response("get_ingestion_job", _job("IN_PROGRESS", numberOfDocumentsScanned=3), get)
    done = _job(final, numberOfDocumentsScanned=10, numberOfNewDocumentsIndexed=10 - failed,
                numberOfDocumentsFailed=failed)
    if reasons:
        done["ingestionJob"]["failureReasons"] = reasons
    stub.add_response("get_ingestion_job", done, get)


def _load(s3, agent, chunks: Path, **kw):
    from data_prep.kbload import load_chunks

    return load_chunks(s3, agent, chunks, BUCKET, KB, DS, sleep=lambda s: None, **kw)


def test_each_chunk_becomes_a_text_object_with_its_metadata_sidecar_then_one_ingestion(s3, agent, chunks_file: Path,
                                                                                       caplog):
    chunks = list(read_chunks(chunks_file))
    _expect_ingestion(agent)
    with caplog.at_level(logging.INFO, logger="data_prep.kbload"):
        report = _load(s3, agent, chunks_file)
    assert (report.total, report.uploaded, report.unchanged, report.failed) == (len(chunks), len(chunks), 0, [])
    assert report.job_status == "COMPLETE" and report.statistics["numberOfNewDocumentsIndexed"] == 10
    assert "IN_PROGRESS; scanned 3" in caplog.text  # progress while waiting
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="kb-laws")["Contents"]]
    assert len(keys) == 2 * len(chunks) and all(k.startswith("geocomply/chunks/") for k in keys)
    c = next(c for c in chunks if c.page is not None or c.uri) or chunks[0]
    from data_prep.kbload import object_key

    key = object_key("geocomply/chunks", c.id)
    assert s3.get_object(Bucket="kb-laws", Key=key)["Body"].read().decode() == c.snippet
    meta = json.loads(s3.get_object(Bucket="kb-laws", Key=key + ".metadata.json")["Body"].read())
    attrs = meta["metadataAttributes"]
    assert set(meta) == {"metadataAttributes"}
    assert (attrs["chunk_id"], attrs["jurisdiction"], attrs["law_id"], attrs["citation"]) == (
        c.id, c.jurisdiction, c.law_id, c.citation)
    assert attrs.get("page") == c.page and attrs.get("uri") == c.uri
    state = json.loads(Path(report.state).read_text())
    assert len(state["documents"]) == len(chunks) and state["ingestion_owed"] is False


def test_rerun_sends_nothing_and_a_changed_chunk_alone_is_resent(s3, agent, chunks_file: Path):
    chunks = list(read_chunks(chunks_file))
    _expect_ingestion(agent)
    _load(s3, agent, chunks_file)
    s3.puts.clear()
    again = _load(s3, agent, chunks_file)  # no ingestion queued: a bedrock-agent call would fail the Stubber
    assert (again.uploaded, again.unchanged, again.job_id, s3.puts) == (0, len(chunks), None, [])
    chunks[3] = chunks[3].model_copy(update={"snippet": chunks[3].snippet + " (amended)"})
    write_chunks(chunks_file, chunks)
    _expect_ingestion(agent)
    third = _load(s3, agent, chunks_file)
    assert third.uploaded == 1 and third.unchanged == len(chunks) - 1 and len(s3.puts) == 2  # text + sidecar
    assert third.job_status == "COMPLETE"


def test_failed_documents_are_named_by_chunk_and_resent_next_run(s3, agent, chunks_file: Path):
    from data_prep.kbload import object_key

    chunks = list(read_chunks(chunks_file))
    bad = chunks[2]
    _expect_ingestion(agent, failed=1)
    uri = f"s3://kb-laws/{object_key('geocomply/chunks', bad.id)}"
    agent.stub.add_response("list_knowledge_base_documents", {"documentDetails": [
        {"knowledgeBaseId": KB, "dataSourceId": DS, "status": "INDEXED",
         "identifier": {"dataSourceType": "S3", "s3": {"uri": f"s3://kb-laws/{object_key('geocomply/chunks', chunks[0].id)}"}}},
        {"knowledgeBaseId": KB, "dataSourceId": DS, "status": "FAILED", "statusReason": "Unsupported metadata",
         "identifier": {"dataSourceType": "S3", "s3": {"uri": uri}}},
    ]}, {"knowledgeBaseId": KB, "dataSourceId": DS, "maxResults": 1000})
    report = _load(s3, agent, chunks_file)
    assert report.failed == [(bad.id, "FAILED: Unsupported metadata")]
    s3.puts.clear()
    _expect_ingestion(agent)
    again = _load(s3, agent, chunks_file)
    assert again.uploaded == 1 and len(s3.puts) == 2 and again.failed == []


def test_a_failed_ingestion_job_is_one_error_and_the_next_run_ingests_again(s3, agent, chunks_file: Path):
    _expect_ingestion(agent, final="FAILED", reasons=["Access denied to the embedding model"])
    with pytest.raises(UserError, match=f"ingestion job {JOB} FAILED: Access denied to the embedding model"):
        _load(s3, agent, chunks_file)
    s3.puts.clear()
    _expect_ingestion(agent)  # nothing changed, but the ingestion is still owed
    again = _load(s3, agent, chunks_file)
    assert again.uploaded == 0 and s3.puts == [] and again.job_status == "COMPLETE"


def test_loaded_chunk_comes_back_through_the_retriever_as_the_same_law_context(s3, agent, chunks_file: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """The contract between the sidecar kb-load writes and what BedrockKBRetriever reads: a Retrieve result
    built from the stored objects (as Knowledge Bases return them) maps back to the chunk."""
    import boto3
    from botocore.stub import Stubber

    from data_prep.kbload import object_key
    from sft.core.retrieval import BedrockKBRetriever

    chunks = list(read_chunks(chunks_file))
    _expect_ingestion(agent)
    _load(s3, agent, chunks_file)
    c = chunks[1]
    key = object_key("geocomply/chunks", c.id)
    meta = json.loads(s3.get_object(Bucket="kb-laws", Key=key + ".metadata.json")["Body"].read())
    text = s3.get_object(Bucket="kb-laws", Key=key)["Body"].read().decode()
    runtime = boto3.client("bedrock-agent-runtime", region_name="us-west-2")
    with Stubber(runtime) as stub:
        stub.add_response("retrieve", {"retrievalResults": [{
            "content": {"text": text}, "score": 0.5,
            "location": {"type": "S3", "s3Location": {"uri": f"s3://kb-laws/{key}"}},
            "metadata": {**meta["metadataAttributes"], "x-amz-bedrock-kb-source-uri": f"s3://kb-laws/{key}"}}]})
        hit = BedrockKBRetriever(KB, client=runtime).search("addictive feeds", k=1)[0]
    assert hit.model_dump(exclude={"score", "source"}) == c.model_dump(exclude={"score", "source"})


@pytest.fixture
def geoprep(s3, agent, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """The real ``geoprep`` entry point in-process; its boto3 clients are moto's S3 and the stubbed agent."""
    import boto3

    from tests.data_prep.conftest import geoprep_in_process

    make = boto3.client
    monkeypatch.setattr(boto3, "client", lambda name, *a, **kw: agent if name == "bedrock-agent" else
                        s3 if name == "s3" else make(name, *a, **kw))
    monkeypatch.setattr("data_prep.kbload.time.sleep", lambda s: None)
    return geoprep_in_process(monkeypatch, capsys)


def test_command_summary_and_one_line_errors(geoprep, agent, chunks_file: Path):
    n = len(list(read_chunks(chunks_file)))
    _expect_ingestion(agent)
    code, out, err = geoprep("kb-load", str(chunks_file), "--bucket", BUCKET, "--knowledge-base-id", KB,
                             "--data-source-id", DS)
    assert code == 0, err
    assert f"{n} chunks uploaded, 0 unchanged" in out and f"ingestion job {JOB}: COMPLETE" in out
    code, out, err = geoprep("kb-load", str(chunks_file), "--bucket", BUCKET, "--knowledge-base-id", KB,
                             "--data-source-id", DS)
    assert code == 0 and f"0 chunks uploaded, {n} unchanged" in out and "no ingestion needed" in out
    code, _, err = geoprep("kb-load", str(chunks_file), "--bucket", BUCKET, "--knowledge-base-id", "my kb",
                           "--data-source-id", DS)
    assert code == 1 and err.strip() == "geoprep: error: kb-load: --knowledge-base-id 'my kb' is not an id " \
                                        "(10 letters/digits, e.g. 'ABCDEFGHIJ')"
    code, _, err = geoprep("kb-load", str(chunks_file), "--knowledge-base-id", KB, "--data-source-id", DS)
    assert code == 1 and "needs --bucket s3://BUCKET/PREFIX" in err and "Traceback" not in err
