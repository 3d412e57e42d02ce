"""geoprep kendra-load against Kendra's side of the wire: a real boto3 Kendra client under botocore's Stubber
(every request and every answer validated against the real Kendra service model), answered by a small
in-memory index that keeps the documents, fields and status a real index would. Chunks come from the real
extractor run on a bundled PDF (page numbers) and a bundled text law."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from data_prep.kendra import (
    INDEX_FIELDS,
    MAX_BATCH,
    batches,
    chunk_document,
    ensure_index_fields,
    load_chunks,
    state_path,
)
from data_prep.registry import load_registry
from sft.core.chunks import read_chunks, write_chunks
from sft.core.errors import UserError
from sft.core.retrieval import KendraRetriever

INDEX = "b1c2d3e4-0000-4000-8000-00000000cafe"
# Some of the reserved fields every Kendra index has (DescribeIndex lists them with the custom ones).
RESERVED = [{"Name": n, "Type": t, "Search": {"Facetable": f, "Searchable": False, "Displayable": True,
                                               "Sortable": True}}
            for n, t, f in (("_source_uri", "STRING_VALUE", False), ("_language_code", "STRING_VALUE", True),
                            ("_created_at", "DATE_VALUE", True), ("_document_title", "STRING_VALUE", False))]
_VALUE_KEY = {"STRING_VALUE": "StringValue", "LONG_VALUE": "LongValue", "DATE_VALUE": "DateValue"}


class FakeIndex:
    """One Kendra index behind a Stubber. Each call's answer is computed from the index state and queued just
    before the Stubber checks the request (provide-client-params fires first), so the Stubber validates both."""

    def __init__(self, client: Any, stub: Any, fields: list[dict] | None = None, updating_polls: int = 2):
        self.client, self.stub = client, stub
        self.fields = {f["Name"]: copy.deepcopy(f) for f in RESERVED + (fields or [])}
        self.status: list[str] = []  # statuses DescribeIndex reports next; ACTIVE once drained
        self.updating_polls = updating_polls
        self.docs: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.fail: dict[str, list[tuple[str, str]]] = {}  # doc id -> (ErrorCode, ErrorMessage) per put, in order
        self.crash_on_put: tuple[int, str] | None = None  # (n, error code): the n-th put fails as a whole
        for op in ("DescribeIndex", "UpdateIndex", "BatchPutDocument", "BatchDeleteDocument", "Retrieve"):
            client.meta.events.register(f"provide-client-params.kendra.{op}", getattr(self, f"_{op}"))

    def ops(self, name: str) -> list[dict]:
        return [p for op, p in self.calls if op == name]

    def _DescribeIndex(self, params, **_):
        self.calls.append(("DescribeIndex", params))
        status = self.status.pop(0) if self.status else "ACTIVE"
        self.stub.add_response("describe_index", {
            "Id": params["Id"], "Name": "geo-laws", "Edition": "DEVELOPER_EDITION", "Status": status,
            "DocumentMetadataConfigurations": list(self.fields.values())}, dict(params))

    def _UpdateIndex(self, params, **_):
        self.calls.append(("UpdateIndex", params))
        for f in params.get("DocumentMetadataConfigurationUpdates", []):
            self.fields[f["Name"]] = copy.deepcopy(f)
        self.status = ["UPDATING"] * self.updating_polls
        self.stub.add_response("update_index", {}, dict(params))

    def _BatchPutDocument(self, params, **_):
        self.calls.append(("BatchPutDocument", params))
        if self.crash_on_put and self.crash_on_put[0] == len(self.ops("BatchPutDocument")):
            code = self.crash_on_put[1]
            self.stub.add_client_error("batch_put_document", code, f"{code}: boom",
                                       400 if code == "ValidationException" else 500, expected_params=dict(params))
            return
        failed = []
        for doc in params["Documents"]:
            reason = self._reject(doc)
            if reason:
                failed.append({"Id": doc["Id"], "ErrorCode": reason[0], "ErrorMessage": reason[1]})
            else:
                self.docs[doc["Id"]] = doc
        self.stub.add_response("batch_put_document", {"FailedDocuments": failed}, dict(params))

    def _reject(self, doc: dict) -> tuple[str, str] | None:
        if self.fail.get(doc["Id"]):
            return self.fail[doc["Id"]].pop(0)
        for a in doc.get("Attributes", []):  # as Kendra: an attribute needs an index field of its type
            f = self.fields.get(a["Key"])
            if f is None or _VALUE_KEY[f["Type"]] not in a["Value"]:
                return "InvalidRequest", f"attribute {a['Key']} is not an index field of that type"
        return None

    def _BatchDeleteDocument(self, params, **_):
        self.calls.append(("BatchDeleteDocument", params))
        for i in params["DocumentIdList"]:
            self.docs.pop(i, None)
        self.stub.add_response("batch_delete_document", {"FailedDocuments": []}, dict(params))

    def _matches(self, doc: dict, flt: dict) -> bool:
        attrs = {a["Key"]: next(iter(a["Value"].values())) for a in doc.get("Attributes", [])}
        if "AndAllFilters" in flt:
            return all(self._matches(doc, f) for f in flt["AndAllFilters"])
        if "OrAllFilters" in flt:
            return any(self._matches(doc, f) for f in flt["OrAllFilters"])
        eq = flt["EqualsTo"]
        field = self.fields.get(eq["Key"])
        assert field and field["Search"]["Facetable"], f"filter on {eq['Key']}, which is not a facetable field"
        return attrs.get(eq["Key"]) == next(iter(eq["Value"].values()))

    def _Retrieve(self, params, **_):
        """Word-overlap ranking over the stored texts, the AttributeFilter evaluated on the stored attributes,
        and only displayable attributes returned, as Kendra does."""
        self.calls.append(("Retrieve", params))
        words = set(re.findall(r"\w+", params["QueryText"].lower()))
        scored = []
        for doc in self.docs.values():
            if params.get("AttributeFilter") and not self._matches(doc, params["AttributeFilter"]):
                continue
            text = doc["Blob"].decode()
            score = len(words & set(re.findall(r"\w+", text.lower())))
            if score:
                scored.append((score, doc, text))
        scored.sort(key=lambda t: -t[0])
        items = [{
            "Id": f"{doc['Id']}-p1", "DocumentId": doc["Id"], "DocumentTitle": doc["Title"], "Content": text,
            "DocumentAttributes": [a for a in doc["Attributes"] if self.fields[a["Key"]]["Search"]["Displayable"]],
            "ScoreAttributes": {"ScoreConfidence": "HIGH"},
        } for _, doc, text in scored[: params.get("PageSize", 10)]]
        self.stub.add_response("retrieve", {"QueryId": "q1", "ResultItems": items}, dict(params))


@pytest.fixture
def kendra(monkeypatch: pytest.MonkeyPatch):
    import boto3
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("kendra", region_name="us-east-1")
    stub = Stubber(client)
    with stub:
        yield FakeIndex(client, stub, fields=list(INDEX_FIELDS))
    stub.assert_no_pending_responses()


def _load(fake: FakeIndex, path: Path, **kw):
    return load_chunks(fake.client, INDEX, path, progress=False, sleep=lambda s: None, **kw)


# ------------------------------------------------------------------------------------------------ fields


def test_fields_declared_once_with_retriever_settings_then_skipped(kendra: FakeIndex):
    kendra.fields = {f["Name"]: f for f in RESERVED}  # a fresh index: reserved fields only
    sleeps: list[float] = []
    added = ensure_index_fields(kendra.client, INDEX, sleep=sleeps.append, poll_s=5)
    assert sorted(added) == ["citation", "jurisdiction", "law_id", "page"]
    (update,) = kendra.ops("UpdateIndex")
    declared = {f["Name"]: f for f in update["DocumentMetadataConfigurationUpdates"]}
    assert declared["jurisdiction"]["Type"] == "STRING_VALUE" and declared["page"]["Type"] == "LONG_VALUE"
    assert declared["jurisdiction"]["Search"]["Facetable"]  # the retriever filters on it
    assert all(f["Search"]["Displayable"] for f in declared.values())  # Retrieve returns only displayable ones
    assert not any(n.startswith("_") for n in declared)  # Kendra's reserved fields are left alone
    assert sleeps == [5, 5]  # waited through UPDATING until ACTIVE again
    # A re-run finds them and changes nothing.
    assert ensure_index_fields(kendra.client, INDEX, sleep=sleeps.append) == []
    assert len(kendra.ops("UpdateIndex")) == 1


def test_existing_field_is_completed_not_replaced_and_wrong_type_refused(kendra: FakeIndex):
    kendra.fields["jurisdiction"]["Search"] = {"Facetable": False, "Searchable": True, "Displayable": True,
                                               "Sortable": True}
    assert ensure_index_fields(kendra.client, INDEX, sleep=lambda s: None) == ["jurisdiction"]
    (update,) = kendra.ops("UpdateIndex")
    assert update["DocumentMetadataConfigurationUpdates"] == [{
        "Name": "jurisdiction", "Type": "STRING_VALUE",
        "Search": {"Facetable": True, "Searchable": True, "Displayable": True, "Sortable": True}}]
    kendra.fields["page"]["Type"] = "STRING_VALUE"
    with pytest.raises(UserError, match="'page' is STRING_VALUE, geoprep needs LONG_VALUE"):
        ensure_index_fields(kendra.client, INDEX, sleep=lambda s: None)


def test_waiting_for_active_is_bounded(kendra: FakeIndex):
    kendra.fields = {f["Name"]: f for f in RESERVED}
    kendra.updating_polls = 1000
    sleeps: list[float] = []
    with pytest.raises(UserError, match="still UPDATING after 60 s"):
        ensure_index_fields(kendra.client, INDEX, sleep=sleeps.append, poll_s=10, timeout_s=60)
    assert len(sleeps) == 6


# ----------------------------------------------------------------------------------------------- documents


def test_chunks_are_sent_in_batches_of_at_most_10_with_the_retriever_attributes(kendra: FakeIndex,
                                                                                chunks_file: Path):
    chunks = list(read_chunks(chunks_file))
    assert len(chunks) > 3 * MAX_BATCH and any(c.page for c in chunks) and any(c.page is None for c in chunks)
    report = _load(kendra, chunks_file)
    puts = kendra.ops("BatchPutDocument")
    assert all(1 <= len(p["Documents"]) <= MAX_BATCH for p in puts) and all(p["IndexId"] == INDEX for p in puts)
    assert len(puts) == -(-len(chunks) // MAX_BATCH)
    assert report.sent == len(chunks) and not report.failed and set(kendra.docs) == {c.id for c in chunks}
    pdf_chunk = next(c for c in chunks if c.page)
    doc = kendra.docs[pdf_chunk.id]
    assert doc["Title"] == pdf_chunk.title and doc["ContentType"] == "PLAIN_TEXT"
    assert doc["Blob"].decode() == pdf_chunk.snippet
    attrs = {a["Key"]: next(iter(a["Value"].values())) for a in doc["Attributes"]}
    assert attrs == {"jurisdiction": "US-UT", "law_id": "us_ut_sb152", "citation": pdf_chunk.citation,
                     "page": pdf_chunk.page, "_source_uri": pdf_chunk.uri, "_language_code": "en",
                     "_created_at": attrs["_created_at"]}
    assert attrs["_created_at"].date().isoformat() == pdf_chunk.date
    text_chunk = next(c for c in chunks if c.page is None)
    assert "page" not in {a["Key"] for a in kendra.docs[text_chunk.id]["Attributes"]}  # no null attributes


def test_batches_respect_the_per_call_size_limit_too(chunks_file: Path):
    docs = [chunk_document(c) for c in read_chunks(chunks_file)]
    limit = 2000  # bytes; real calls: 5 MB of inline documents
    groups = list(batches(docs, max_bytes=limit))
    assert [d for g in groups for d in g] == docs  # all, in order
    for g in groups:
        assert len(g) <= MAX_BATCH
        assert len(g) == 1 or sum(len(d["Blob"]) for d in g) <= limit
    assert len(groups) > -(-len(docs) // MAX_BATCH)  # the size limit, not only the count, split them


def test_rerun_sends_nothing_and_a_changed_chunk_is_resent(kendra: FakeIndex, chunks_file: Path):
    _load(kendra, chunks_file)
    n_puts = len(kendra.ops("BatchPutDocument"))
    again = _load(kendra, chunks_file)
    assert len(kendra.ops("BatchPutDocument")) == n_puts and again.sent == 0 and again.unchanged == again.total
    chunks = list(read_chunks(chunks_file))
    chunks[7] = chunks[7].model_copy(update={"citation": chunks[7].citation + " (amended)"})
    write_chunks(chunks_file, chunks)
    third = _load(kendra, chunks_file)
    (put,) = kendra.ops("BatchPutDocument")[n_puts:]
    assert [d["Id"] for d in put["Documents"]] == [chunks[7].id] and third.sent == 1
    assert {"Key": "citation", "Value": {"StringValue": chunks[7].citation}} in kendra.docs[chunks[7].id]["Attributes"]


def test_interrupted_load_resumes_where_it_stopped(kendra: FakeIndex, chunks_file: Path):
    from botocore.exceptions import ClientError

    kendra.crash_on_put = (3, "InternalServerException")
    with pytest.raises(ClientError):
        _load(kendra, chunks_file)
    sent_before = {d["Id"] for p in kendra.ops("BatchPutDocument")[:2] for d in p["Documents"]}
    assert len(sent_before) == 2 * MAX_BATCH and state_path(chunks_file, INDEX).exists()
    kendra.crash_on_put = None
    n = len(kendra.ops("BatchPutDocument"))
    report = _load(kendra, chunks_file)
    resent = {d["Id"] for p in kendra.ops("BatchPutDocument")[n:] for d in p["Documents"]}
    assert not resent & sent_before and resent | sent_before == {c.id for c in read_chunks(chunks_file)}
    assert report.unchanged == len(sent_before)


def test_throttled_document_is_retried_and_a_rejected_one_reported(kendra: FakeIndex, chunks_file: Path):
    chunks = list(read_chunks(chunks_file))
    throttled, rejected = chunks[3].id, chunks[15].id
    kendra.fail[throttled] = [("InternalError", "Throttling: Rate exceeded")] * 2
    kendra.fail[rejected] = [("InvalidRequest", "The attribute value for citation is not valid")]
    sleeps: list[float] = []
    report = load_chunks(kendra.client, INDEX, chunks_file, progress=False, sleep=sleeps.append, backoff_s=1)
    assert throttled in kendra.docs and report.retried == 2 and sleeps == [1, 2]
    assert report.failed == [(rejected, "InvalidRequest: The attribute value for citation is not valid")]
    assert set(kendra.docs) == {c.id for c in chunks} - {rejected}  # everything else loaded
    # Once the cause is fixed, a re-run sends only the rejected chunk.
    n = len(kendra.ops("BatchPutDocument"))
    assert _load(kendra, chunks_file).sent == 1
    assert [d["Id"] for p in kendra.ops("BatchPutDocument")[n:] for d in p["Documents"]] == [rejected]


def test_a_batch_refused_as_a_whole_fails_its_documents_and_the_rest_loads(kendra: FakeIndex, chunks_file: Path):
    kendra.crash_on_put = (2, "ValidationException")
    report = _load(kendra, chunks_file)
    refused = [d["Id"] for d in kendra.ops("BatchPutDocument")[1]["Documents"]]
    assert report.failed == [(cid, "InvalidRequest: ValidationException: boom") for cid in refused]
    assert set(kendra.docs) == {c.id for c in read_chunks(chunks_file)} - set(refused)


def test_retries_are_bounded(kendra: FakeIndex, chunks_file: Path):
    cid = next(iter(read_chunks(chunks_file))).id
    kendra.fail[cid] = [("InternalError", "Internal error, please retry")] * 10
    report = _load(kendra, chunks_file, retries=2)
    assert report.failed == [(cid, "InternalError: Internal error, please retry")] and report.retried == 2


def test_a_document_kendra_would_refuse_is_reported_without_failing_its_batch(kendra: FakeIndex, chunks_file: Path):
    chunks = list(read_chunks(chunks_file))
    chunks[0] = chunks[0].model_copy(update={"citation": "x" * 3000})
    write_chunks(chunks_file, chunks)
    report = _load(kendra, chunks_file)
    assert report.failed == [(chunks[0].id, "not sent: attribute citation longer than 2048 characters")]
    assert set(kendra.docs) == {c.id for c in chunks[1:]}


def test_delete_stale_removes_documents_whose_chunk_is_gone(kendra: FakeIndex, chunks_file: Path):
    chunks = list(read_chunks(chunks_file))
    _load(kendra, chunks_file)
    write_chunks(chunks_file, chunks[12:])
    report = _load(kendra, chunks_file, delete_stale=True)
    deletes = kendra.ops("BatchDeleteDocument")
    assert sorted(i for d in deletes for i in d["DocumentIdList"]) == sorted(c.id for c in chunks[:12])
    assert all(len(d["DocumentIdList"]) <= MAX_BATCH for d in deletes) and report.deleted == 12
    assert set(kendra.docs) == {c.id for c in chunks[12:]}
    assert _load(kendra, chunks_file, delete_stale=True).deleted == 0  # the state forgot them


# ------------------------------------------------------------------------------------- the round trip


def test_loaded_chunk_comes_back_through_kendra_retriever_as_the_same_law_context(kendra: FakeIndex,
                                                                                  chunks_file: Path):
    """What kendra-load writes is what KendraRetriever reads: the document of a chunk, found by Retrieve under
    the retriever's own jurisdiction/language filter, maps back to that chunk's law, citation, page, ..."""
    _load(kendra, chunks_file)
    chunks = list(read_chunks(chunks_file))
    chunk = next(c for c in chunks if c.page and len(c.snippet.split()) > 12)
    retriever = KendraRetriever(INDEX, client=kendra.client, jurisdictions=load_registry().jurisdictions())
    query = " ".join(chunk.snippet.split()[:25])
    hits = retriever.search(query, k=10, jurisdiction="US")  # "US" -> OrAllFilters over US, US-UT, US-CA ...
    got = next(h for h in hits if h.source == f"kendra:{chunk.id}")
    assert (got.law_id, got.title, got.citation, got.jurisdiction, got.page, got.uri, got.date, got.snippet) == (
        chunk.law_id, chunk.title, chunk.citation, chunk.jurisdiction, chunk.page, chunk.uri, chunk.date,
        chunk.snippet)
    assert got.prompt_view() == chunk.prompt_view()  # what the model sees is the same
    # The filters select on exactly the attribute values written.
    assert {h.jurisdiction for h in retriever.search(query, k=10, jurisdiction="US-CA")} == {"US-CA"}
    assert retriever.search(query, k=10, jurisdiction="EU") == []
    assert chunk_document(chunk)["Id"] == chunk.id


# --------------------------------------------------------------------------------------------- the command


@pytest.fixture
def geoprep(kendra: FakeIndex, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run the real ``geoprep`` entry point in-process, its boto3 Kendra client being the stubbed one."""
    import boto3

    from tests.data_prep.conftest import geoprep_in_process

    make = boto3.client
    monkeypatch.setattr(boto3, "client", lambda name, *a, **kw: kendra.client if name == "kendra" else
                        make(name, *a, **kw))
    kendra.updating_polls = 0
    return geoprep_in_process(monkeypatch, capsys)


def test_command_loads_then_exits_1_naming_a_rejected_chunk(geoprep, kendra: FakeIndex, chunks_file: Path):
    kendra.fields = {f["Name"]: f for f in RESERVED}
    chunks = list(read_chunks(chunks_file))
    kendra.fail[chunks[5].id] = [("InvalidRequest", "Document is invalid")]
    code, out, err = geoprep("kendra-load", str(chunks_file), "--kendra-index-id", INDEX, "--region", "us-east-1")
    assert code == 1 and "Traceback" not in err
    assert f"failed: {chunks[5].id}: InvalidRequest: Document is invalid" in err
    assert err.strip().splitlines()[-1].startswith(f"geoprep: error: 1 chunk(s) not loaded: {chunks[5].id}")
    assert "declared index fields: jurisdiction, law_id, citation, page" in out
    assert f"{len(chunks) - 1} chunks sent" in out and len(kendra.docs) == len(chunks) - 1
    code, out, err = geoprep("kendra-load", str(chunks_file), "--kendra-index-id", INDEX)
    assert code == 0 and "1 chunks sent" in out and f"{len(chunks) - 1} unchanged" in out


def test_command_errors_are_one_line(geoprep, kendra: FakeIndex, chunks_file: Path, tmp_path: Path):
    def error(*args: str) -> str:
        code, _, err = geoprep("kendra-load", *args)
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err.strip()

    assert error(str(chunks_file)) == "geoprep: error: kendra-load needs --kendra-index-id"
    assert "is not an index id" in error(str(chunks_file), "--kendra-index-id", "my-laws-index")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(chunks_file.read_text().splitlines()[0] + "\n" + '{"id": "x", "law_id": "y"}\n')
    assert re.search(r"bad\.jsonl:2: field '\w+'", error(str(bad), "--kendra-index-id", INDEX))
    kendra.fields = {f["Name"]: f for f in RESERVED}
    assert "lacks fields ['jurisdiction', 'law_id', 'citation', 'page']" in error(
        str(chunks_file), "--kendra-index-id", INDEX, "--no-fields")
    assert not kendra.ops("UpdateIndex") and not kendra.ops("BatchPutDocument")


def test_aws_refusal_is_one_line_naming_the_index(geoprep, kendra: FakeIndex, chunks_file: Path):
    def not_found(params, **_):
        kendra.stub.add_client_error("describe_index", "ResourceNotFoundException", "Index not found", 400,
                                     expected_params=dict(params))

    kendra.client.meta.events.unregister("provide-client-params.kendra.DescribeIndex", kendra._DescribeIndex)
    kendra.client.meta.events.register("provide-client-params.kendra.DescribeIndex", not_found)
    code, _, err = geoprep("kendra-load", str(chunks_file), "--kendra-index-id", INDEX, "--region", "eu-west-1")
    assert code == 1 and err.strip() == (f"geoprep: error: kendra DescribeIndex on index {INDEX} in eu-west-1: "
                                         "ResourceNotFoundException: Index not found")
