"""``geoprep kb-load``: put geoprep's law chunks into an Amazon Bedrock knowledge base, shaped for
:class:`sft.core.retrieval.BedrockKBRetriever`.

Knowledge Bases read an S3 data source: one chunk is one object ``PREFIX/<chunk-id>.txt`` (the law text alone,
as Kendra gets it) plus the sidecar ``PREFIX/<chunk-id>.txt.metadata.json`` =
``{"metadataAttributes": {...}}`` carrying the attributes the retriever reads back and filters on (names defined
once, ``KB_ATTR_*`` in retrieval.py). Then bedrock-agent ``StartIngestionJob`` syncs the data source; we poll
``GetIngestionJob`` (progress on the log) and, when documents failed, list them with
``ListKnowledgeBaseDocuments`` and name each chunk and Bedrock's reason.

* Resumable and incremental: ``<chunks>.kb-<kb id>-<data source id>.json`` maps each uploaded chunk id to a
  digest of its two objects, rewritten atomically every 50 uploads and at the end, plus whether an ingestion
  is still owed. A re-run uploads only new or changed chunks and starts an ingestion only when something
  changed (or the last one did not finish); a failed document is dropped from the state so the next run
  re-sends it.
* Bedrock ignores a metadata file over 10 KB; such a chunk is reported without being uploaded.
* The clientToken of StartIngestionJob is a digest of what was uploaded: a retried call never starts twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.upload import parse_s3_uri
from sft.core.chunks import read_chunks
from sft.core.contract import LawContext
from sft.core.errors import UserError
from sft.core.files import write_json_atomic
from sft.core.retrieval import (
    KB_ATTR_ARTICLE,
    KB_ATTR_CHUNK_ID,
    KB_ATTR_CITATION,
    KB_ATTR_DATE,
    KB_ATTR_DOC_KIND,
    KB_ATTR_FOUND_BY,
    KB_ATTR_JURISDICTION,
    KB_ATTR_LAW_ID,
    KB_ATTR_PAGE,
    KB_ATTR_SECTION,
    KB_ATTR_TITLE,
    KB_ATTR_URI,
)

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 10 * 1024  # Knowledge Bases: a .metadata.json sidecar may be at most 10 KB
STATE_FORMAT = 1
SAVE_EVERY = 50  # uploads between state rewrites: an interruption re-sends at most 50 chunks
DONE = ("COMPLETE", "FAILED", "STOPPED")
FAILED_DOC = ("FAILED", "PARTIALLY_INDEXED", "METADATA_PARTIALLY_INDEXED", "METADATA_UPDATE_FAILED", "IGNORED")


def check_id(value: str | None, what: str) -> str:
    if not re.fullmatch(r"[0-9a-zA-Z]{10}", value or ""):
        raise UserError(f"kb-load: {what} {value!r} is not an id (10 letters/digits, e.g. 'ABCDEFGHIJ')")
    return value or ""


def object_key(prefix: str, chunk_id: str) -> str:
    """``PREFIX/<chunk id>.txt``; characters S3 or the console mangle become '_', with a digest so two ids
    never share a key."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", chunk_id)
    if safe != chunk_id:
        safe += "-" + hashlib.sha256(chunk_id.encode()).hexdigest()[:8]
    return "/".join(p for p in (prefix, f"{safe}.txt") if p)


def chunk_objects(chunk: LawContext) -> tuple[bytes, bytes]:
    """The text object and its ``.metadata.json`` sidecar for one chunk."""
    attrs: dict[str, Any] = {KB_ATTR_CHUNK_ID: chunk.id, KB_ATTR_JURISDICTION: chunk.jurisdiction,
                             KB_ATTR_LAW_ID: chunk.law_id, KB_ATTR_CITATION: chunk.citation,
                             KB_ATTR_TITLE: chunk.title, KB_ATTR_DOC_KIND: chunk.doc_kind}
    if chunk.found_by:
        attrs[KB_ATTR_FOUND_BY] = chunk.found_by
    if chunk.page is not None:
        attrs[KB_ATTR_PAGE] = chunk.page
    if chunk.uri:
        attrs[KB_ATTR_URI] = chunk.uri
    if chunk.date:
        attrs[KB_ATTR_DATE] = chunk.date
    if chunk.article:
        attrs[KB_ATTR_ARTICLE] = chunk.article
    if chunk.section:
        attrs[KB_ATTR_SECTION] = chunk.section
    meta = json.dumps({"metadataAttributes": attrs}, ensure_ascii=False, sort_keys=True).encode()
    return chunk.snippet.encode(), meta


def state_path(chunks_path: str | Path, kb_id: str, ds_id: str) -> Path:
    p = Path(chunks_path)
    return p.with_name(f"{p.name}.kb-{kb_id}-{ds_id}.json")


@dataclass
class KBState:
    path: Path
    location: str  # s3://bucket/prefix the documents went to
    documents: dict[str, str] = field(default_factory=dict)  # chunk id -> digest of its two objects
    ingestion_owed: bool = False

    @classmethod
    def read(cls, path: Path, location: str) -> KBState:
        if not path.exists():
            return cls(path, location)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != STATE_FORMAT:
                raise ValueError("written by another version")
            docs = {str(k): str(v) for k, v in data["documents"].items()}
            owed = bool(data.get("ingestion_owed"))
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise UserError(f"{path}: unreadable kb-load state ({e}); delete it to reload every chunk") from None
        if data.get("location") != location:  # another bucket/prefix holds none of these documents
            log.info("kb-load: %s was for %s; loading everything to %s", path, data.get("location"), location)
            return cls(path, location, ingestion_owed=owed)
        return cls(path, location, docs, owed)

    def save(self) -> None:
        write_json_atomic(self.path, {"format": STATE_FORMAT, "location": self.location,
                                      "ingestion_owed": self.ingestion_owed,
                                      "documents": dict(sorted(self.documents.items()))})


@dataclass
class KBLoadReport:
    knowledge_base_id: str
    data_source_id: str
    state: str
    total: int = 0
    uploaded: int = 0
    unchanged: int = 0
    deleted: int = 0
    job_id: str | None = None
    job_status: str | None = None
    statistics: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (chunk id or S3 uri, reason)


def upload_chunks(s3: Any, chunks_path: str | Path, bucket: str, prefix: str, state: KBState,
                  report: KBLoadReport, delete_stale: bool = False) -> dict[str, str]:
    """Upload new/changed chunks (text + sidecar); returns S3 uri -> chunk id for every chunk."""
    uris: dict[str, str] = {}
    since_save = 0
    keep: set[str] = set()
    for chunk in read_chunks(chunks_path):
        report.total += 1
        key = object_key(prefix, chunk.id)
        uris[f"s3://{bucket}/{key}"] = chunk.id
        keep.add(chunk.id)
        body, meta = chunk_objects(chunk)
        if len(meta) > MAX_METADATA_BYTES:
            report.failed.append((chunk.id, f"metadata is {len(meta)} bytes; Knowledge Bases allow "
                                            f"{MAX_METADATA_BYTES}"))
            continue
        digest = hashlib.sha256(body + b"\0" + meta).hexdigest()
        if state.documents.get(chunk.id) == digest:
            report.unchanged += 1
            continue
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain; charset=utf-8")
        s3.put_object(Bucket=bucket, Key=key + ".metadata.json", Body=meta, ContentType="application/json")
        state.documents[chunk.id] = digest
        state.ingestion_owed = True
        report.uploaded += 1
        since_save += 1
        if since_save >= SAVE_EVERY:
            state.save()
            since_save = 0
    if delete_stale:
        for cid in sorted(set(state.documents) - keep):
            key = object_key(prefix, cid)
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".metadata.json"}],
                                                     "Quiet": True})
            del state.documents[cid]
            state.ingestion_owed = True
            report.deleted += 1
    state.save()
    return uris


def wait_ingestion(agent: Any, kb_id: str, ds_id: str, job_id: str, *, poll_s: float = 10,
                   timeout_s: float = 3600, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """GetIngestionJob until it ends (bounded), logging its progress."""
    waited = 0.0
    while True:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)
        job = job["ingestionJob"]
        stats = job.get("statistics") or {}
        log.info("ingestion job %s: %s; scanned %d, indexed %d new + %d modified, deleted %d, failed %d",
                 job_id, job["status"], stats.get("numberOfDocumentsScanned", 0),
                 stats.get("numberOfNewDocumentsIndexed", 0), stats.get("numberOfModifiedDocumentsIndexed", 0),
                 stats.get("numberOfDocumentsDeleted", 0), stats.get("numberOfDocumentsFailed", 0))
        if job["status"] in DONE:
            return job
        if waited >= timeout_s:
            raise UserError(f"ingestion job {job_id} still {job['status']} after {waited:.0f} s; it goes on at "
                            "AWS; re-run to wait again")
        sleep(poll_s)
        waited += poll_s


def failed_documents(agent: Any, kb_id: str, ds_id: str) -> list[tuple[str, str]]:
    """(S3 uri, reason) of every document of the data source that did not index cleanly."""
    out, token = [], None
    while True:
        kwargs: dict[str, Any] = {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        resp = agent.list_knowledge_base_documents(**kwargs)
        for d in resp.get("documentDetails", []):
            if d["status"] in FAILED_DOC:
                uri = (d["identifier"].get("s3") or {}).get("uri", "?")
                out.append((uri, f"{d['status']}: {d.get('statusReason') or 'no reason given'}"))
        token = resp.get("nextToken")
        if not token:
            return out


def load_chunks(s3: Any, agent: Any, chunks_path: str | Path, bucket_uri: str, kb_id: str, ds_id: str, *,
                delete_stale: bool = False, wait: bool = True, poll_s: float = 10, timeout_s: float = 3600,
                sleep: Callable[[float], None] = time.sleep) -> KBLoadReport:
    bucket, prefix = parse_s3_uri(bucket_uri)
    spath = state_path(chunks_path, kb_id, ds_id)
    state = KBState.read(spath, f"s3://{bucket}/{prefix}")
    report = KBLoadReport(kb_id, ds_id, str(spath))
    uris = upload_chunks(s3, chunks_path, bucket, prefix, state, report, delete_stale)
    if not state.ingestion_owed:
        return report
    token = hashlib.sha256(json.dumps([kb_id, ds_id, state.documents], sort_keys=True).encode()).hexdigest()
    job = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, clientToken=token,
                                    description="geoprep kb-load")["ingestionJob"]
    report.job_id, report.job_status = job["ingestionJobId"], job["status"]
    if not wait:
        return report  # ingestion stays owed: a re-run starts (or, same token, rejoins) it
    job = wait_ingestion(agent, kb_id, ds_id, report.job_id, poll_s=poll_s, timeout_s=timeout_s, sleep=sleep)
    report.job_status, report.statistics = job["status"], dict(job.get("statistics") or {})
    if job["status"] != "COMPLETE":
        reasons = "; ".join(job.get("failureReasons") or []) or "no reason given"
        raise UserError(f"ingestion job {report.job_id} {job['status']}: {reasons} (the uploads are kept; "
                        "a re-run starts a new ingestion)")
    if report.statistics.get("numberOfDocumentsFailed", 0):
        for uri, reason in failed_documents(agent, kb_id, ds_id):
            cid = uris.get(uri, uri)
            report.failed.append((cid, reason))
            state.documents.pop(cid, None)  # re-sent (and re-ingested) by the next run
    state.ingestion_owed = False
    state.save()
    return report


# --------------------------------------------------------------------------------------------- command


def _aws_error(e: Exception, kb_id: str, region: str | None) -> UserError:
    from data_prep.aws import aws_user_error

    return aws_user_error(e, "kb-load", f"knowledge base {kb_id}" + (f" in {region}" if region else ""))


def kb_load_command(chunks: Path, bucket: str | None, kb_id: str | None, ds_id: str | None, *,
                    region: str | None = None, endpoint_url: str | None = None, delete_stale: bool = False,
                    wait: bool = True, s3: Any = None, agent: Any = None) -> KBLoadReport:
    """What ``geoprep kb-load`` does; failures end it with a one-line UserError after the summary."""
    import typer
    from botocore.exceptions import BotoCoreError, ClientError

    if not bucket:
        raise UserError("kb-load needs --bucket s3://BUCKET/PREFIX (the knowledge base's S3 data source)")
    parse_s3_uri(bucket)
    kb_id, ds_id = check_id(kb_id, "--knowledge-base-id"), check_id(ds_id, "--data-source-id")
    if not chunks.is_file():
        raise UserError(f"{chunks}: no such chunks file (run geoprep extract first)")
    try:
        if s3 is None or agent is None:
            import boto3
            from botocore.config import Config

            # Adaptive retries: StartIngestionJob and GetIngestionJob have small per-second quotas.
            cfg = Config(retries={"max_attempts": 8, "mode": "adaptive"})
            s3 = s3 or boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=cfg)
            agent = agent or boto3.client("bedrock-agent", region_name=region, config=cfg)
        report = load_chunks(s3, agent, chunks, bucket, kb_id, ds_id, delete_stale=delete_stale, wait=wait)
    except (BotoCoreError, ClientError) as e:
        raise _aws_error(e, kb_id, region) from None
    job = f"ingestion job {report.job_id}: {report.job_status}" if report.job_id else "no ingestion needed"
    typer.echo(f"{report.uploaded} chunks uploaded, {report.unchanged} unchanged, {report.deleted} stale deleted, "
               f"{len(report.failed)} failed -> {bucket}; {job} (knowledge base {kb_id}, state: {report.state})")
    from data_prep.aws import report_failed

    report_failed(report.failed, "not in the knowledge base", "a re-run re-sends them")
    return report
