"""Retrieval: local BM25 over real extracted chunks; Kendra checked against the real service model with
botocore's Stubber; the sqlite cache in front of both."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data_prep.extract import run_extract
from data_prep.registry import load_registry
from sft.core.errors import UserError
from sft.core.retrieval import (
    BedrockKBRetriever,
    CachedRetriever,
    KendraRetriever,
    LocalRetriever,
    Retriever,
    build_local_index,
    check_retriever,
    jurisdiction_matches,
    open_retriever,
)
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("laws")
    for p in ("pdfs/CA_SB976_2024_leginfo_print.pdf", "pdfs/FL_2024_HB3_hb0003-04-er.pdf",
              "laws/us_18usc2258a.txt", "laws/eu_dsa_2022_2065.txt"):
        shutil.copy(CORPUS / p, src)
    chunks = tmp_path_factory.mktemp("chunks") / "chunks.jsonl"
    run_extract(src, chunks, progress=False)
    out = tmp_path_factory.mktemp("idx") / "index"
    build_local_index(chunks, out)
    return out


def test_local_search_ranks_the_right_provision_first(index_dir: Path):
    r = open_retriever("local", index_dir=index_dir)
    assert isinstance(r, Retriever)
    hits = r.search("report apparent child sexual abuse material to the NCMEC CyberTipline", k=3)
    assert hits[0].law_id == "us_18usc2258a"
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True) and hits[0].score > 0
    hits = r.search("advertising based on profiling of minors", k=5, jurisdiction="EU")
    assert "DSA Art. 28(2)" in [h.citation for h in hits]
    # stemmed: the law says "advertisements ... minor"; the query's word forms differ
    assert r.meta["stemmer"] == "english"
    assert r.search("advertisement profile minor", k=3, jurisdiction="EU")[0].citation == "DSA Art. 28(2)"


def test_jurisdiction_filter_is_a_prefix_match(index_dir: Path):
    r = LocalRetriever(index_dir)
    us = r.search("minor social media account parental consent", k=20, jurisdiction="US")
    assert us and {h.jurisdiction for h in us} <= {"US", "US-CA", "US-FL"} and len({h.jurisdiction for h in us}) > 1
    ca = r.search("minor social media account parental consent", k=20, jurisdiction="us-ca")
    assert ca and {h.jurisdiction for h in ca} == {"US-CA"}
    assert r.search("minor social media", jurisdiction="US-TX") == []
    assert jurisdiction_matches("US-CA", "US") and not jurisdiction_matches("US", "US-CA")
    assert not jurisdiction_matches("USX", "US")


def test_index_dir_is_self_contained(index_dir: Path, tmp_path: Path):
    moved = tmp_path / "model" / "law_index"
    shutil.copytree(index_dir, moved)
    a = LocalRetriever(moved).search("addictive feed", k=3)
    b = LocalRetriever(index_dir).search("addictive feed", k=3)
    assert [x.id for x in a] == [x.id for x in b] and a[0].law_id == "us_ca_sb976"


def test_missing_index_is_a_clear_error(tmp_path: Path):
    with pytest.raises(UserError, match="not a geoprep index"):
        LocalRetriever(tmp_path)
    with pytest.raises(UserError, match="unknown retriever"):
        open_retriever("faiss", index_dir=tmp_path)


# ------------------------------------------------------------------------------------------- kendra

LONG_QUERY = " ".join(f"word{i}" for i in range(45))


@pytest.fixture
def kendra(monkeypatch: pytest.MonkeyPatch):
    import boto3
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("kendra", region_name="us-west-2")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _response() -> dict:
    return {
        "QueryId": "q-1",
        "ResultItems": [
            {
                "Id": "r-1",
                "DocumentId": "s3://laws/eu_dsa.pdf",
                "DocumentTitle": "EU Digital Services Act",
                "Content": "Providers of online platforms accessible to minors shall put in place measures.",
                "DocumentURI": "https://eur-lex.europa.eu/eli/reg/2022/2065/oj",
                "DocumentAttributes": [
                    {"Key": "_source_uri", "Value": {"StringValue": "s3://laws/eu_dsa.pdf"}},
                    {"Key": "jurisdiction", "Value": {"StringValue": "EU"}},
                    {"Key": "citation", "Value": {"StringValue": "DSA Art. 28(1)"}},
                    {"Key": "law_id", "Value": {"StringValue": "eu_dsa"}},
                    {"Key": "page", "Value": {"LongValue": 60}},
                ],
                "ScoreAttributes": {"ScoreConfidence": "HIGH"},
            },
            {
                "Id": "r-2",
                "DocumentId": "doc-2",
                "DocumentTitle": "Some US law",
                "Content": "Other text.",
                "DocumentAttributes": [{"Key": "jurisdiction", "Value": {"StringValue": "US-CA"}}],
                "ScoreAttributes": {"ScoreConfidence": "LOW"},
            },
        ],
    }


def _expected(query: str, jurisdiction_filter: dict | None) -> dict:
    lang = {"EqualsTo": {"Key": "_language_code", "Value": {"StringValue": "en"}}}
    return {
        "IndexId": "0123456789abcdef0123456789abcdef01234567",
        "QueryText": query,
        "PageSize": 5,
        "AttributeFilter": {"AndAllFilters": [lang, jurisdiction_filter]} if jurisdiction_filter else lang,
    }


INDEX = "0123456789abcdef0123456789abcdef01234567"


def test_kendra_request_and_mapping(kendra):
    client, stub = kendra
    cut = " ".join(LONG_QUERY.split()[:30])
    us = {"OrAllFilters": [{"EqualsTo": {"Key": "jurisdiction", "Value": {"StringValue": j}}}
                           for j in ("US", "US-CA", "US-FL", "US-UT")]}
    stub.add_response("retrieve", _response(), _expected(cut, None))
    stub.add_response("retrieve", {"QueryId": "q-2", "ResultItems": []}, _expected("minors", us))
    r = KendraRetriever(INDEX, client=client, page_size=10, jurisdictions=load_registry().jurisdictions())
    hits = r.search(LONG_QUERY, k=5)
    first = hits[0]
    assert (first.citation, first.law_id, first.jurisdiction, first.page) == ("DSA Art. 28(1)", "eu_dsa", "EU", 60)
    assert first.uri == "s3://laws/eu_dsa.pdf" and first.title == "EU Digital Services Act"
    assert first.snippet.startswith("Providers of online platforms") and first.score == 0.75
    assert hits[1].citation == "Some US law" and hits[1].score == 0.25 and hits[1].page is None
    assert r.search("minors", k=5, jurisdiction="US") == []


def test_default_kendra_client_retries_adaptively(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    r = KendraRetriever(INDEX, region="us-west-2")
    assert r.client.meta.config.retries["mode"] == "adaptive"
    assert r.client.meta.region_name == "us-west-2"
    with pytest.raises(UserError, match="index id"):
        KendraRetriever("", client=r.client)


def test_cache_avoids_repeat_calls_and_survives_restart(kendra, tmp_path: Path):
    client, stub = kendra
    stub.add_response("retrieve", _response(), _expected("age checks for teens", None))
    cache = tmp_path / "cache.sqlite"
    first = CachedRetriever(KendraRetriever(INDEX, client=client), cache)
    a = first.search("age checks for teens", k=5)
    b = first.search("age checks for teens", k=5)  # a second backend call would hit the empty Stubber
    assert a == b and first.misses == 1 and first.hits == 1
    first.close()
    again = CachedRetriever(KendraRetriever(INDEX, client=client), cache)  # "restarted" process
    assert again.search("age checks for teens", k=5) == a and again.misses == 0
    from botocore.exceptions import StubResponseError

    with pytest.raises((StubResponseError, AssertionError)):  # a different filter is a different key
        again.search("age checks for teens", k=5, jurisdiction="EU")


def test_local_cache_keys_on_the_index_content(index_dir: Path, tmp_path: Path):
    cached = CachedRetriever(LocalRetriever(index_dir), tmp_path / "c.sqlite")
    assert cached.search("addictive feed", k=2) == cached.search("addictive feed", k=2)
    assert (cached.hits, cached.misses) == (1, 1)


# ------------------------------------------------------------------------------ bedrock knowledge bases

KB = "KB12345678"


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch):
    """A real bedrock-agent-runtime client under botocore's Stubber: every request is validated against the
    service model shipped with botocore, so a malformed filter fails here as it would at AWS."""
    import boto3
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    client = boto3.client("bedrock-agent-runtime", region_name="us-west-2")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def _kb_result(chunk_id: str, jurisdiction: str, score: float, citation: str = "DSA Art. 28(1)") -> dict:
    return {
        "content": {"text": f"Text of {citation}.", "type": "TEXT"},
        "location": {"type": "S3", "s3Location": {"uri": f"s3://laws/chunks/{chunk_id}.txt"}},
        "metadata": {"chunk_id": chunk_id, "jurisdiction": jurisdiction, "law_id": "eu_dsa", "citation": citation,
                     "page": 60.0, "title": "EU Digital Services Act", "uri": "https://eur-lex.europa.eu/x",
                     "x-amz-bedrock-kb-chunk-id": "1%3A0%3Aabc"},
        "score": score,
    }


def _kb_request(query: str, n: int, flt: dict | None = None, token: str | None = None) -> dict:
    vector: dict = {"numberOfResults": n}
    if flt:
        vector["filter"] = flt
    req = {"knowledgeBaseId": KB, "retrievalQuery": {"text": query},
           "retrievalConfiguration": {"vectorSearchConfiguration": vector}}
    if token:
        req["nextToken"] = token
    return req


def test_bedrock_kb_request_filter_pagination_and_mapping(bedrock):
    client, stub = bedrock
    us = {"orAll": [{"equals": {"key": "jurisdiction", "value": j}} for j in ("US", "US-CA", "US-FL", "US-UT")]}
    # Page 1 holds 1 of the 3 asked for: the retriever follows nextToken until it has k.
    stub.add_response("retrieve", {"retrievalResults": [_kb_result("c1", "US-CA", 0.61, "Cal. § 27001")],
                                   "nextToken": "t2"}, _kb_request("minor feeds", 3, us))
    stub.add_response("retrieve", {"retrievalResults": [_kb_result("c2", "US", 0.72, "18 U.S.C. § 2258A(a)"),
                                                        _kb_result("c3", "US-UT", 0.40, "Utah Code § 13-63-102")]},
                      _kb_request("minor feeds", 3, us, "t2"))
    stub.add_response("retrieve", {"retrievalResults": [_kb_result("c9", "EU", 0.9)]},
                      _kb_request("profiling ads", 5, {"equals": {"key": "jurisdiction", "value": "EU"}}))
    stub.add_response("retrieve", {"retrievalResults": []}, _kb_request("anything", 2))
    r = open_retriever("bedrock-kb", knowledge_base_id=KB, jurisdictions=load_registry().jurisdictions())
    assert isinstance(r, BedrockKBRetriever) and isinstance(r, Retriever)
    r.client = client
    hits = r.search("minor feeds", k=3, jurisdiction="us")
    assert [h.id for h in hits] == ["c2", "c1", "c3"]  # most relevant first, across pages
    first = hits[0]
    assert (first.citation, first.law_id, first.jurisdiction, first.page, first.score) == (
        "18 U.S.C. § 2258A(a)", "eu_dsa", "US", 60, 0.72)
    assert first.uri == "https://eur-lex.europa.eu/x" and first.snippet == "Text of 18 U.S.C. § 2258A(a)."
    assert first.source == "bedrock-kb:s3://laws/chunks/c2.txt"
    assert [h.citation for h in r.search("profiling ads", k=5, jurisdiction="EU")] == ["DSA Art. 28(1)"]
    assert r.search("anything", k=2) == []


def test_bedrock_kb_result_without_our_metadata_still_maps():
    from sft.core.retrieval import _kb_item

    c = _kb_item({"content": {"text": "x"}, "location": {"type": "S3", "s3Location": {"uri": "s3://b/p/abc.txt"}},
                  "score": 0.3})
    assert (c.id, c.citation, c.jurisdiction, c.page, c.uri) == ("abc", "abc", "UNKNOWN", None, "s3://b/p/abc.txt")


def test_bedrock_kb_client_retries_adaptively_and_needs_an_id(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    r = BedrockKBRetriever(KB, region="us-west-2")
    assert r.client.meta.config.retries["mode"] == "adaptive" and r.client.meta.region_name == "us-west-2"
    assert r.client.meta.service_model.service_name == "bedrock-agent-runtime"
    with pytest.raises(UserError, match="not a knowledge base id"):
        BedrockKBRetriever("my-kb-name", client=r.client)
    with pytest.raises(UserError, match="needs --knowledge-base-id"):
        check_retriever("bedrock-kb", None, None)


def test_bedrock_kb_behind_the_cache_makes_no_repeat_calls(bedrock, tmp_path: Path):
    client, stub = bedrock
    stub.add_response("retrieve", {"retrievalResults": [_kb_result("c9", "EU", 0.9)]}, _kb_request("teen ads", 5))
    cached = CachedRetriever(BedrockKBRetriever(KB, client=client), tmp_path / "kb.sqlite")
    a = cached.search("teen ads", k=5)
    cached.close()
    again = CachedRetriever(BedrockKBRetriever(KB, client=client), tmp_path / "kb.sqlite")  # restarted process
    assert again.search("teen ads", k=5) == a and (again.hits, again.misses) == (1, 0) and a[0].id == "c9"


# ------------------------------------------------------------------------------------ hybrid (opt-in)


@pytest.fixture(scope="module")
def dense_index(index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("wordllama")
    out = tmp_path_factory.mktemp("dense") / "index"
    build_local_index(index_dir / "chunks.jsonl", out, dense=True)
    return out


def test_dense_index_records_its_retrievers_and_bm25_stays_the_default(index_dir: Path, dense_index: Path):
    import json

    import numpy as np

    from sft.core.retrieval import DENSE_MODEL

    meta = json.loads((dense_index / "meta.json").read_text())
    assert meta["retrievers"] == ["bm25", DENSE_MODEL]
    assert json.loads((index_dir / "meta.json").read_text())["retrievers"] == ["bm25"]
    vectors = np.load(dense_index / "dense.npy")
    assert vectors.shape == (meta["chunks"], 256) and vectors.dtype == np.float16
    q = "advertising based on profiling of minors"
    assert LocalRetriever(dense_index).search(q, k=5) == LocalRetriever(index_dir).search(q, k=5)
    assert LocalRetriever(dense_index).mode == "bm25"
    with pytest.raises(UserError, match="no dense vectors"):
        LocalRetriever(index_dir, mode="hybrid")


def test_hybrid_fuses_both_rankings_within_the_jurisdiction_filter(dense_index: Path):
    from sft.core.retrieval import RRF_K

    hybrid, bm25 = LocalRetriever(dense_index, mode="hybrid"), LocalRetriever(dense_index)
    q = "advertising based on profiling of minors"
    hits = hybrid.search(q, k=5, jurisdiction="EU")
    assert hits and {h.jurisdiction for h in hits} == {"EU"}
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] <= 2 / (RRF_K + 1)
    assert "DSA Art. 28(2)" in [h.citation for h in hits]
    # a word BM25 has never seen still gets dense neighbours (BM25 alone returns nothing)
    assert bm25.search("zxqv teenagers", k=3) == [] and len(hybrid.search("zxqv teenagers", k=3)) == 3
    assert hybrid.search(q, jurisdiction="US-TX") == []
    assert hybrid.cache_key != bm25.cache_key  # a cache never serves one mode's answers to the other
