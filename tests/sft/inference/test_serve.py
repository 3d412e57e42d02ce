"""The SageMaker inference server, for real on 127.0.0.1: ping, json/jsonlines/csv, 4xx, concurrency."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sft.core.contract import DEFAULT_INSTRUCTION, LABELS, Feature, LawContext, PromptInput, render_prompt

torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[3]
LABEL_VALUES = {label.value for label in LABELS}

CHUNKS = [
    LawContext(id="us_fl_hb3#1", law_id="us_fl_hb3", title="Florida HB 3", citation="Fla. Stat. § 501.1736(2)",
               jurisdiction="US-FL", snippet="A social media platform shall prohibit a minor younger than 14 "
               "from entering into a contract to become an account holder."),
    LawContext(id="eu_dsa#28", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 28(1)",
               jurisdiction="EU", snippet="Providers of online platforms accessible to minors shall put in "
               "place appropriate and proportionate measures to ensure privacy and safety of minors."),
    LawContext(id="us_ut_sb152#1", law_id="us_ut_sb152", title="Utah SB 152", citation="Utah Code § 13-63-102",
               jurisdiction="US-UT", snippet="A social media company shall verify the age of a Utah account holder."),
]
OWN_CTX = {"id": "own#1", "law_id": "own", "title": "Own Law", "citation": "Own § 1", "jurisdiction": "EU",
           "snippet": "Platforms shall not profile minors for advertising."}


@pytest.fixture(scope="module")
def opt_ml(tiny_model_dir, tmp_path_factory):
    """/opt/ml with an adapter model (what training writes) and a packaged local retrieval index."""
    from peft import LoraConfig, get_peft_model

    from sft.core.chunks import write_chunks
    from sft.core.retrieval import build_local_index
    from sft.models import load_model_and_tokenizer

    root = tmp_path_factory.mktemp("opt_ml")
    model_dir = root / "model"
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(
        model_dir)
    tok.save_pretrained(model_dir)
    write_chunks(root / "chunks.jsonl", CHUNKS)
    build_local_index(root / "chunks.jsonl", model_dir / "index")
    return root


@pytest.fixture(scope="module")
def server(opt_ml):
    from sft.inference.serve import ServerState, make_server

    state = ServerState(model_dir=opt_ml / "model", max_body=4096)
    srv = make_server(state, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    state.load()
    assert state.ready.is_set(), state.load_error
    yield f"http://127.0.0.1:{srv.server_address[1]}", state
    srv.shutdown()
    srv.server_close()


def call(url, path, body=None, ctype="application/json", accept=None, method=None):
    headers = {"Content-Type": ctype} if body is not None else {}
    if accept:
        headers["Accept"] = accept
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def _check_row(row):
    assert row["compliance_flag"] in LABEL_VALUES
    assert set(row) >= {"id", "compliance_flag", "law", "citation", "reason", "context_ids", "model_id"}


def test_ping_and_json(server):
    url, _ = server
    assert call(url, "/ping")[0] == 200
    status, _, body = call(url, "/execution-parameters")  # Batch Transform's defaults from the container
    assert status == 200 and json.loads(body)["BatchStrategy"] == "MULTI_RECORD"
    feature = {"id": "f1", "name": "Teen curfew", "description": "Block sign-up of minors under 14 in Florida."}
    status, ctype, body = call(url, "/invocations", json.dumps(feature))
    assert (status, ctype) == (200, "application/json")
    row = json.loads(body)
    _check_row(row)
    assert row["id"] == "f1"
    assert row["context_ids"] and set(row["context_ids"]) <= {c.id for c in CHUNKS}  # retrieved from index/
    if row["citation"] is not None:
        assert row["citation"] in {c.citation for c in CHUNKS}

    own = [{**feature, "id": "f2", "context": [OWN_CTX]}, {**feature, "id": "f3", "context": []}]
    status, _, body = call(url, "/invocations", json.dumps(own))
    rows = json.loads(body)
    assert status == 200 and [r["context_ids"] for r in rows] == [["own#1"], []]
    assert rows[0]["citation"] in (None, "Own § 1") and rows[1]["citation"] is None


def test_jsonlines_and_csv(server):
    url, _ = server
    lines = "\n".join(json.dumps({"id": f"j{i}", "name": "Dark mode", "description": f"Theme {i}"}) for i in range(3))
    status, ctype, body = call(url, "/invocations", lines + "\n", "application/jsonlines")
    assert (status, ctype) == (200, "application/jsonlines")
    rows = [json.loads(x) for x in body.splitlines()]
    assert [r["id"] for r in rows] == ["j0", "j1", "j2"]
    for r in rows:
        _check_row(r)

    batch = 'c1,Age gate,"Verify age of Utah users, then sign up"\nc2,Dark mode,A darker theme\n'
    status, ctype, body = call(url, "/invocations", batch, "text/csv")
    assert (status, ctype) == (200, "text/csv")
    out = list(csv.reader(io.StringIO(body)))
    assert [r[0] for r in out] == ["c1", "c2"] and all(r[1] in LABEL_VALUES for r in out)

    with_header = "id,name,description\nh1,Dark mode,A darker theme\n"
    status, ctype, body = call(url, "/invocations", with_header, "text/csv", accept="application/json")
    assert (status, ctype) == (200, "application/json") and json.loads(body)[0]["id"] == "h1"


def test_bad_requests_are_4xx_and_server_keeps_serving(server):
    url, _ = server
    cases = [
        (call(url, "/invocations", "{not json"), 400, "invalid JSON"),
        (call(url, "/invocations", json.dumps({"name": "x"})), 400, "description"),
        (call(url, "/invocations", json.dumps([{"name": "x", "description": "y", "context": [{"id": 1}]}])),
         400, "context"),
        (call(url, "/invocations", "a,b\n", "text/csv"), 400, "csv row 1"),
        (call(url, "/invocations", "x", "application/xml"), 415, "Content-Type"),
        (call(url, "/invocations", json.dumps({"name": "a", "description": "b"}), accept="image/png"), 406, "Accept"),
        (call(url, "/invocations", json.dumps({"name": "a", "description": "b" * 5000})), 413, "limit"),
        (call(url, "/invocations", b"\xff\xfe", "application/json"), 400, "UTF-8"),
        (call(url, "/nope"), 404, "no such path"),
    ]
    for (status, ctype, body), want_status, fragment in cases:
        assert status == want_status, body
        assert ctype == "application/json"
        error = json.loads(body)["error"]
        assert fragment in error and "Traceback" not in error
    assert call(url, "/ping")[0] == 200
    assert call(url, "/invocations", json.dumps({"name": "a", "description": "b"}))[0] == 200


def test_concurrent_requests_match_sequential_answers(server):
    url, _ = server
    bodies = [json.dumps({"id": f"p{i}", "name": f"Feature {i}", "description": f"Does thing {i} for teens",
                          "context": [OWN_CTX]}) for i in range(6)]
    sequential = [call(url, "/invocations", b)[2] for b in bodies]
    results = [None] * len(bodies)

    def worker(i):
        results[i] = call(url, "/invocations", bodies[i])[2]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == sequential


def test_server_prompt_is_the_contract_prompt(server):
    url, state = server
    seen = []
    inner = state.predictor.predict_prompts

    def spy(prompts, inputs, **kw):
        seen.extend(prompts)
        return inner(prompts, inputs, **kw)

    state.predictor.predict_prompts = spy
    try:
        feature = {"name": "Teen curfew", "description": "Night mode", "glossary": {"NR": "not recommended"},
                   "context": [OWN_CTX]}
        assert call(url, "/invocations", json.dumps(feature))[0] == 200
    finally:
        del state.predictor.predict_prompts
    pi = PromptInput.build(Feature(name="Teen curfew", description="Night mode"), [LawContext(**OWN_CTX)],
                           {"NR": "not recommended"})
    assert seen == [render_prompt(DEFAULT_INSTRUCTION, pi.render())]


def test_ping_is_503_until_the_model_is_loaded(opt_ml):
    from sft.inference.serve import ServerState, make_server

    srv = make_server(ServerState(model_dir=opt_ml / "model"), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert call(url, "/ping")[0] == 503
        assert call(url, "/invocations", json.dumps({"name": "a", "description": "b"}))[0] == 503
    finally:
        srv.shutdown()
        srv.server_close()


def test_container_serve_entrypoint(opt_ml):
    """`serve` as SageMaker runs it: /opt/ml/model from the root override, port from SAGEMAKER_BIND_TO_PORT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GEOCOMPLY_OPT_ML": str(opt_ml), "SAGEMAKER_BIND_TO_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, str(REPO / "container" / "serve")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        status = None
        while time.time() < deadline and status != 200:
            try:
                status = call(url, "/ping")[0]
            except (urllib.error.URLError, ConnectionError):
                status = None
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode()[-2000:])
            time.sleep(0.5)
        assert status == 200
        status, _, body = call(url, "/invocations", '{"name": "a", "description": "b"}\n', "application/jsonlines")
        assert status == 200 and json.loads(body.splitlines()[0])["compliance_flag"] in LABEL_VALUES
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _invoke_teen_feature(opt_ml) -> tuple[int, str]:
    """Load the endpoint (its retriever chosen from the environment) and send one EU minors feature."""
    from sft.inference.serve import ServerState, make_server

    state = ServerState(model_dir=opt_ml / "model", max_body=4096)
    srv = make_server(state, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        state.load()
        assert state.ready.is_set(), state.load_error
        feature = {"id": "k1", "name": "Teen safety defaults", "description": "Private accounts by default for "
                   "minors in the EU."}
        status, _, body = call(f"http://127.0.0.1:{srv.server_address[1]}", "/invocations", json.dumps(feature))
    finally:
        srv.shutdown()
        srv.server_close()
    return status, body


def test_endpoint_with_kendra_index_retrieves_from_kendra(opt_ml, monkeypatch):
    """KENDRA_INDEX_ID on the endpoint: law context comes from Kendra's Retrieve API (a real boto3 client under
    botocore's Stubber, every request validated against the Kendra service model), not from the packaged index."""
    import boto3
    from botocore.stub import Stubber


    monkeypatch.setenv("KENDRA_INDEX_ID", "b1c2d3e4-0000-4000-8000-000000000001")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    client = boto3.client("kendra", region_name="us-west-2")
    make_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda name, *a, **kw: client if name == "kendra" else make_client(name, *a, **kw))
    stub, queries = Stubber(client), []
    kendra_chunk = LawContext(id="kendra#dsa-28", law_id="eu_dsa", title="EU Digital Services Act",
                              citation="DSA Art. 28(1)", jurisdiction="EU",
                              snippet="Providers of online platforms accessible to minors shall ensure a high level "
                                      "of privacy, safety and security of minors.")

    def answer(params, **_):
        queries.append(params)
        item = {"Id": kendra_chunk.id, "DocumentId": "s3://laws/eu_dsa.pdf", "DocumentTitle": kendra_chunk.title,
                "Content": kendra_chunk.snippet, "ScoreAttributes": {"ScoreConfidence": "HIGH"},
                "DocumentAttributes": [{"Key": k, "Value": {"StringValue": v}} for k, v in (
                    ("jurisdiction", "EU"), ("citation", kendra_chunk.citation), ("law_id", kendra_chunk.law_id))]}
        stub.add_response("retrieve", {"QueryId": f"q{len(queries)}", "ResultItems": [item]}, dict(params))

    client.meta.events.register("provide-client-params.kendra.Retrieve", answer)
    with stub:
        status, body = _invoke_teen_feature(opt_ml)
    assert status == 200, body
    row = json.loads(body)
    assert row["context_ids"] == [kendra_chunk.id]  # not the packaged index's chunks
    assert row["citation"] in (None, kendra_chunk.citation)
    assert queries and all(q["IndexId"] == "b1c2d3e4-0000-4000-8000-000000000001" for q in queries)
    assert "Teen safety defaults" in queries[0]["QueryText"]  # the feature is the query


def test_endpoint_with_knowledge_base_retrieves_from_bedrock(opt_ml, monkeypatch):
    """KNOWLEDGE_BASE_ID on the endpoint: law context comes from Bedrock Knowledge Bases' Retrieve (a real
    boto3 bedrock-agent-runtime client under botocore's Stubber, requests validated against its service model)."""
    from tests.conftest import kb_result, stub_bedrock_retrieve

    monkeypatch.setenv("KNOWLEDGE_BASE_ID", "KB12345678")
    monkeypatch.delenv("KENDRA_INDEX_ID", raising=False)
    _, stub, queries = stub_bedrock_retrieve(monkeypatch, lambda params: [kb_result(
        "eu_dsa#art28-1", "eu_dsa", "DSA Art. 28(1)", "EU", "Providers of online platforms accessible to minors "
        "shall ensure a high level of privacy, safety and security of minors.")])
    with stub:
        status, body = _invoke_teen_feature(opt_ml)
    assert status == 200, body
    assert json.loads(body)["context_ids"] == ["eu_dsa#art28-1"]  # not the packaged index's chunks
    assert queries and all(q["knowledgeBaseId"] == "KB12345678" for q in queries)
    assert "Teen safety defaults" in queries[0]["retrievalQuery"]["text"]
