"""``geoprep kendra-load``: put geoprep's law chunks into an Amazon Kendra index, shaped for KendraRetriever.

One chunk is one Kendra document (``Id`` = chunk id, the law text as a PLAIN_TEXT blob) carrying the
attributes :func:`sft.core.retrieval._kendra_item` reads back (names defined once, in retrieval.py):
``jurisdiction``, ``law_id``, ``citation``, ``page`` (custom index fields, declared here by
:func:`ensure_index_fields`) plus Kendra's own ``_source_uri``, ``_language_code`` and ``_created_at``.

* Resumable: ``<chunks>.kendra-<index>.json`` maps each accepted chunk id to a digest of the document sent;
  it is rewritten atomically after every batch, so a re-run after an interruption sends only what is new or
  changed. Delete it to force a full reload.
* BatchPutDocument takes at most 10 documents and 5 MB of inline documents per call, and 5 MB of text per
  document (Kendra quotas); batches are packed within those limits.
* A document in ``FailedDocuments`` with a transient error (``InternalError``, throttling) is re-sent a few
  times with back-off; any other failure is reported with the chunk id and Kendra's reason once everything
  else is loaded. Throttling of a whole call is retried by botocore (adaptive retry mode).
* Kendra indexes asynchronously: "accepted" means BatchPutDocument did not reject the document; indexing
  errors after that land in the index's CloudWatch log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sft.core.chunks import read_chunks
from sft.core.contract import LawContext
from sft.core.errors import UserError
from sft.core.files import write_json_atomic
from sft.core.retrieval import (
    KENDRA_ATTR_CITATION,
    KENDRA_ATTR_DATE,
    KENDRA_ATTR_JURISDICTION,
    KENDRA_ATTR_LANGUAGE,
    KENDRA_ATTR_LAW_ID,
    KENDRA_ATTR_PAGE,
    KENDRA_ATTR_URI,
)

log = logging.getLogger(__name__)

MAX_BATCH = 10  # BatchPutDocument / BatchDeleteDocument: at most 10 documents per call
MAX_CALL_BYTES = 5 * 1024 * 1024  # inline documents: 5 MB in total per BatchPutDocument call
MAX_DOC_TEXT_BYTES = 5 * 1024 * 1024  # text Kendra extracts from one document: 5 MB
MAX_ATTR_CHARS = 2048  # DocumentAttributeStringValue and DocumentId: 1..2048 characters
STATE_FORMAT = 1


def _search(facetable: bool, searchable: bool) -> dict[str, bool]:
    # Displayable everywhere: Retrieve only returns displayable attributes, and the retriever needs them all.
    return {"Facetable": facetable, "Searchable": searchable, "Displayable": True, "Sortable": False}


# The custom index fields our documents carry. jurisdiction and law_id are facetable: the retriever filters
# on jurisdiction (EqualsTo / OrAllFilters), and law_id lets a user narrow to one law. Codes and ids are not
# searchable (a query word "US" must not rank by it); the citation is ("DSA Article 28" finds the article).
INDEX_FIELDS: tuple[dict[str, Any], ...] = (
    {"Name": KENDRA_ATTR_JURISDICTION, "Type": "STRING_VALUE", "Search": _search(True, False)},
    {"Name": KENDRA_ATTR_LAW_ID, "Type": "STRING_VALUE", "Search": _search(True, False)},
    {"Name": KENDRA_ATTR_CITATION, "Type": "STRING_VALUE", "Search": _search(False, True)},
    {"Name": KENDRA_ATTR_PAGE, "Type": "LONG_VALUE", "Search": _search(False, False)},
)
# What an existing field must allow for the retriever to work; other settings of the user's are kept.
_NEEDED = {KENDRA_ATTR_JURISDICTION: ("Facetable", "Displayable"), KENDRA_ATTR_LAW_ID: ("Displayable",),
           KENDRA_ATTR_CITATION: ("Displayable",), KENDRA_ATTR_PAGE: ("Displayable",)}


def make_client(region: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    # Adaptive retries back off on ThrottlingException (BatchPutDocument has a small TPS quota).
    return boto3.client("kendra", region_name=region, config=Config(retries={"max_attempts": 8, "mode": "adaptive"}))


def check_index_id(index_id: str) -> str:
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-]{35}", index_id or ""):
        raise UserError(f"kendra: {index_id!r} is not an index id (36 characters, e.g. "
                        "'0a1b2c3d-...'; the index's Id, not its name)")
    return index_id


# ------------------------------------------------------------------------------------------ index fields


def wait_active(client: Any, index_id: str, *, timeout_s: float = 1800, poll_s: float = 15,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """DescribeIndex until the index is ACTIVE (an UpdateIndex takes minutes); a bounded wait."""
    waited = 0.0
    while True:
        desc = client.describe_index(Id=index_id)
        status = desc.get("Status")
        if status == "ACTIVE":
            return desc
        if status in ("FAILED", "DELETING"):
            raise UserError(f"kendra index {index_id} is {status}: {desc.get('ErrorMessage') or 'no reason given'}")
        if waited >= timeout_s:
            raise UserError(f"kendra index {index_id} still {status} after {waited:.0f} s; re-run when it is ACTIVE")
        log.info("kendra index %s is %s; waiting for ACTIVE", index_id, status)
        sleep(poll_s)
        waited += poll_s


def missing_fields(desc: dict[str, Any]) -> list[dict[str, Any]]:
    """The field configurations to send so the index serves our attributes (empty: nothing to change).

    A field that exists with another type cannot be changed by UpdateIndex: that is a user error."""
    have = {c["Name"]: c for c in desc.get("DocumentMetadataConfigurations", [])}
    updates = []
    for want in INDEX_FIELDS:
        cur = have.get(want["Name"])
        if cur is None:
            updates.append(want)
            continue
        if cur["Type"] != want["Type"]:
            raise UserError(f"kendra index field {want['Name']!r} is {cur['Type']}, geoprep needs {want['Type']} "
                            "(an index field's type cannot be changed; use a new index)")
        search = dict(cur.get("Search") or {})
        lacking = [k for k in _NEEDED[want["Name"]] if not search.get(k, k == "Displayable")]
        if lacking:
            updates.append({**cur, "Search": {**search, **{k: True for k in lacking}}})
    return updates


def ensure_index_fields(client: Any, index_id: str, *, timeout_s: float = 1800, poll_s: float = 15,
                        sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Declare the custom fields our documents carry (UpdateIndex), skipping those already there as needed.

    Returns the names of the fields added or updated; a re-run returns [] and changes nothing."""
    desc = wait_active(client, index_id, timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)
    updates = missing_fields(desc)
    if not updates:
        return []
    names = [u["Name"] for u in updates]
    log.info("kendra index %s: declaring fields %s", index_id, ", ".join(names))
    client.update_index(Id=index_id, DocumentMetadataConfigurationUpdates=updates)
    wait_active(client, index_id, timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)
    return names


# ------------------------------------------------------------------------------------------- documents


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def chunk_document(chunk: LawContext, language: str = "en") -> dict[str, Any]:
    """The BatchPutDocument document for one chunk. The blob is the law text alone (no citation prefix), so
    Retrieve's passages are law text as in the local index; the citation is a searchable field instead."""
    attrs: list[tuple[str, dict[str, Any]]] = [
        (KENDRA_ATTR_JURISDICTION, {"StringValue": chunk.jurisdiction}),
        (KENDRA_ATTR_LAW_ID, {"StringValue": chunk.law_id}),
        (KENDRA_ATTR_CITATION, {"StringValue": chunk.citation}),
        (KENDRA_ATTR_LANGUAGE, {"StringValue": language}),
    ]
    if chunk.uri:
        attrs.append((KENDRA_ATTR_URI, {"StringValue": chunk.uri}))
    if chunk.page is not None:
        attrs.append((KENDRA_ATTR_PAGE, {"LongValue": chunk.page}))
    if (date := _date(chunk.date)) is not None:
        attrs.append((KENDRA_ATTR_DATE, {"DateValue": date}))
    return {
        "Id": chunk.id,
        "Title": chunk.title,
        "Blob": chunk.snippet.encode("utf-8"),
        "ContentType": "PLAIN_TEXT",
        # Kendra rejects empty string values (min length 1): an empty field is left out, not sent as "".
        "Attributes": [{"Key": k, "Value": v} for k, v in attrs if v.get("StringValue", "x") != ""],
    }


def document_digest(doc: dict[str, Any]) -> str:
    """Changes whenever anything we would send changes (text, title or an attribute)."""
    raw = json.dumps({**doc, "Blob": base64.b64encode(doc["Blob"]).decode()}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _doc_bytes(doc: dict[str, Any]) -> int:
    return len(doc["Blob"]) + len(doc["Title"].encode()) + len(json.dumps(doc["Attributes"], default=str))


def local_problem(doc: dict[str, Any]) -> str | None:
    """Why Kendra would refuse this document (checked here: one bad document must not fail its whole batch)."""
    if len(doc["Id"]) > MAX_ATTR_CHARS:
        return f"id longer than {MAX_ATTR_CHARS} characters"
    if not doc["Blob"]:
        return "empty text"
    if len(doc["Blob"]) > MAX_DOC_TEXT_BYTES:
        return f"text is {len(doc['Blob'])} bytes, over Kendra's 5 MB per document"
    for a in doc["Attributes"]:
        if len(a["Value"].get("StringValue", "")) > MAX_ATTR_CHARS:
            return f"attribute {a['Key']} longer than {MAX_ATTR_CHARS} characters"
    return None


def batches(docs: list[dict[str, Any]], size: int = MAX_BATCH, max_bytes: int = MAX_CALL_BYTES
            ) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups of at most ``size`` documents and ``max_bytes`` of documents."""
    cur: list[dict[str, Any]] = []
    cur_bytes = 0
    for doc in docs:
        n = _doc_bytes(doc)
        if cur and (len(cur) == size or cur_bytes + n > max_bytes):
            yield cur
            cur, cur_bytes = [], 0
        cur.append(doc)
        cur_bytes += n
    if cur:
        yield cur


def is_retryable(failed: dict[str, Any]) -> bool:
    """InternalError and throttling are transient; InvalidRequest (a bad attribute, an unknown field) is not."""
    message = failed.get("ErrorMessage", "")
    return failed.get("ErrorCode") == "InternalError" or bool(re.search(r"throttl|rate exceeded|too many",
                                                                        message, re.I))


# ----------------------------------------------------------------------------------------------- state


def state_path(chunks_path: str | Path, index_id: str) -> Path:
    p = Path(chunks_path)
    return p.with_name(f"{p.name}.kendra-{index_id}.json")


def read_state(path: Path, index_id: str) -> dict[str, str]:
    """chunk id -> digest of the document Kendra accepted."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != STATE_FORMAT or data.get("index_id") != index_id:
            raise ValueError("written for another index or by another version")
        return {str(k): str(v) for k, v in data["documents"].items()}
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise UserError(f"{path}: unreadable kendra-load state ({e}); delete it to reload every chunk") from None


def write_state(path: Path, index_id: str, docs: dict[str, str]) -> None:
    write_json_atomic(path, {"format": STATE_FORMAT, "index_id": index_id, "documents": dict(sorted(docs.items()))})


# ------------------------------------------------------------------------------------------------ load


@dataclass
class LoadReport:
    index_id: str
    state: str
    total: int = 0
    sent: int = 0  # accepted by Kendra in this run
    unchanged: int = 0  # accepted by an earlier run, same content: not sent again
    retried: int = 0  # document re-sends after a transient failure
    deleted: int = 0
    fields: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (chunk id, reason)


def _put(client: Any, index_id: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One BatchPutDocument call; returns its FailedDocuments. A call Kendra refuses as a whole
    (ValidationException) fails each of its documents with that reason, and the run goes on."""
    from botocore.exceptions import ClientError

    try:
        resp = client.batch_put_document(IndexId=index_id, Documents=batch)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        reason = e.response["Error"].get("Message", "ValidationException")
        return [{"Id": d["Id"], "ErrorCode": "InvalidRequest", "ErrorMessage": reason} for d in batch]
    return resp.get("FailedDocuments", [])


def _send(client: Any, index_id: str, batch: list[dict[str, Any]], report: LoadReport, retries: int,
          backoff_s: float, sleep: Callable[[float], None]) -> list[str]:
    """Send one batch, re-sending transient failures with back-off; returns the ids Kendra accepted."""
    accepted: list[str] = []
    pending = {d["Id"]: d for d in batch}
    for attempt in range(retries + 1):
        failed = {f.get("Id"): f for f in _put(client, index_id, list(pending.values()))}
        again = {}
        for cid, doc in pending.items():
            f = failed.get(cid)
            if f is None:
                accepted.append(cid)
            elif is_retryable(f) and attempt < retries:
                again[cid] = doc
            else:
                report.failed.append((cid, f"{f.get('ErrorCode', 'error')}: {f.get('ErrorMessage', '')}"))
        if not again:
            break
        report.retried += len(again)
        log.info("kendra: %d document(s) failed transiently; re-sending (attempt %d of %d)",
                 len(again), attempt + 2, retries + 1)
        sleep(backoff_s * 2**attempt)
        pending = again
    return accepted


def load_chunks(client: Any, index_id: str, chunks_jsonl: str | Path, *, batch: int = MAX_BATCH,
                language: str = "en", delete_stale: bool = False, retries: int = 3, backoff_s: float = 2.0,
                sleep: Callable[[float], None] = time.sleep, progress: bool = True) -> LoadReport:
    """BatchPutDocument every chunk not already accepted with the same content (see module doc)."""
    if not 1 <= batch <= MAX_BATCH:
        raise UserError(f"kendra: batch must be 1..{MAX_BATCH} documents (BatchPutDocument's limit), got {batch}")
    check_index_id(index_id)
    chunks_jsonl = Path(chunks_jsonl)
    if not chunks_jsonl.is_file():
        raise UserError(f"{chunks_jsonl}: no such file (run geoprep extract first)")
    docs: dict[str, dict[str, Any]] = {}
    for chunk in read_chunks(chunks_jsonl):  # file:line errors on bad records
        if chunk.id in docs:
            raise UserError(f"{chunks_jsonl}: duplicate chunk id {chunk.id!r}")
        docs[chunk.id] = chunk_document(chunk, language)
    if not docs:
        raise UserError(f"{chunks_jsonl}: no chunks to load")

    spath = state_path(chunks_jsonl, index_id)
    state = read_state(spath, index_id)
    report = LoadReport(index_id=index_id, state=str(spath), total=len(docs))
    todo = []
    for cid, doc in docs.items():
        digest = document_digest(doc)
        if state.get(cid) == digest:
            report.unchanged += 1
        elif (problem := local_problem(doc)) is not None:
            report.failed.append((cid, f"not sent: {problem}"))
        else:
            todo.append((doc, digest))
    digests = {doc["Id"]: d for doc, d in todo}

    with _progress(progress) as bar:
        task = bar.add_task("kendra-load", total=len(todo)) if bar else None
        for group in batches([doc for doc, _ in todo], size=batch):
            for cid in _send(client, index_id, group, report, retries, backoff_s, sleep):
                state[cid] = digests[cid]
                report.sent += 1
            write_state(spath, index_id, state)  # after every batch: an interrupted run resumes here
            if bar:
                bar.advance(task, len(group))
    if delete_stale:
        report.deleted = _delete_stale(client, index_id, spath, state, set(docs), report)
    return report


def _delete_stale(client: Any, index_id: str, spath: Path, state: dict[str, str], keep: set[str],
                  report: LoadReport) -> int:
    """BatchDeleteDocument for ids this loader put before that are no longer in the chunks file."""
    stale = sorted(set(state) - keep)
    deleted = 0
    for i in range(0, len(stale), MAX_BATCH):
        ids = stale[i:i + MAX_BATCH]
        resp = client.batch_delete_document(IndexId=index_id, DocumentIdList=ids)
        failed = {f.get("Id"): f for f in resp.get("FailedDocuments", [])}
        for cid in ids:
            if cid in failed:
                f = failed[cid]
                report.failed.append((cid, f"delete {f.get('ErrorCode', 'error')}: {f.get('ErrorMessage', '')}"))
            else:
                del state[cid]
                deleted += 1
        write_state(spath, index_id, state)
    return deleted


def _progress(enabled: bool):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=True)


# --------------------------------------------------------------------------------------------- command


def _aws_error(e: Exception, index_id: str, region: str | None) -> UserError:
    from data_prep.aws import aws_user_error

    return aws_user_error(e, "kendra", f"index {index_id}" + (f" in {region}" if region else ""))


def kendra_load_command(chunks: Path, index_id: str | None, region: str | None, fields: bool,
                        delete_stale: bool, client: Any = None) -> LoadReport:
    """What ``geoprep kendra-load`` does: fields, documents, stale deletes; failures end it with a UserError."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not index_id:
        raise UserError("kendra-load needs --kendra-index-id")
    check_index_id(index_id)
    try:
        client = client or make_client(region)
        if fields:
            added = ensure_index_fields(client, index_id)
        else:  # the caller may lack kendra:UpdateIndex; still refuse to send documents the index cannot hold
            added = []
            lacking = missing_fields(wait_active(client, index_id))
            if lacking:
                raise UserError(f"kendra index {index_id} lacks fields {[f['Name'] for f in lacking]} "
                                "(run without --no-fields to declare them)")
        report = load_chunks(client, index_id, chunks, delete_stale=delete_stale)
    except (BotoCoreError, ClientError) as e:
        raise _aws_error(e, index_id, region) from None
    report.fields = added
    _print_report(report)
    return report


def _print_report(report: LoadReport) -> None:
    """The summary on stdout; each failed chunk on stderr, then one error line (exit 1) naming them."""
    import typer

    if report.fields:
        typer.echo(f"declared index fields: {', '.join(report.fields)}")
    typer.echo(f"{report.sent} chunks sent, {report.unchanged} unchanged (already loaded), {report.deleted} "
               f"stale deleted, {len(report.failed)} failed -> kendra index {report.index_id} "
               f"(state: {report.state})")
    from data_prep.aws import report_failed

    report_failed(report.failed, "not loaded", "a re-run sends only what is not loaded yet")
