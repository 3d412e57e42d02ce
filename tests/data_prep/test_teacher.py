"""Teacher-written feature specs: recipes, answer validation, Bedrock Converse (botocore Stubber at the wire), an
OpenAI-compatible endpoint (a real HTTP server on 127.0.0.1), the answer cache, resume, and the API key's secrecy."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from data_prep import teacher
from data_prep.cli import app
from data_prep.features import (
    BUSINESS_TWIN,
    ELSEWHERE_TWIN,
    NO_REASON_TWIN,
    POSITIVE,
    REGION_VARIANTS,
    UNIVERSAL_TWIN,
    read_features,
)
from data_prep.mine import Obligation, write_obligations
from data_prep.teacher import (
    Backoff,
    BedrockGenerator,
    InvalidAnswer,
    OpenAIGenerator,
    TeacherError,
    parse_answer,
    recipes,
    write_with_teacher,
)
from sft.core.contract import Label
from sft.core.prompt import applies
from tests.conftest import REPO

KEY = "sk-test-7f3a9c1e5b2d4f60"
OBLIGATIONS = [
    Obligation(id="ut-1", chunk_id="c-ut", law_id="us_ut", title="Utah Social Media Regulation Act (SB 152)",
               citation="Utah Code § 13-63-105", jurisdiction="US-UT", topic="time_of_day_limits",
               text="A social media company shall prohibit a Utah minor account holder from having access to the "
                    "account between 10:30 p.m. and 6:30 a.m."),
    Obligation(id="eu-1", chunk_id="c-eu", law_id="eu_dsa", title="EU Digital Services Act",
               citation="Art. 38", jurisdiction="EU", topic="recommender_transparency",
               text="Providers of very large online platforms shall provide at least one option for each of their "
                    "recommender systems which is not based on profiling."),
]
LABELS = {POSITIVE: Label.NEEDS, BUSINESS_TWIN: Label.NOT_NEEDED, NO_REASON_TWIN: Label.NEEDS,
          ELSEWHERE_TWIN: Label.NEI, UNIVERSAL_TWIN: Label.NOT_NEEDED}


def good_answer(user: str, **extra: str) -> str:
    """What an obedient teacher writes for the recipe in ``user`` (the first user message of a request)."""
    where = re.search(r"Where: (.+?) \(use exactly", user).group(1)
    reason = re.search(r"Reason: (.+)", user).group(1)
    if "naming it exactly so" in reason:
        law = re.search(r"because of (.+?), naming it", reason).group(1)
        why = f"Required to comply with {law}."
    elif "legal requirement" in reason:
        why = f"Legal says this is mandatory for {where}."
    elif "give NO reason" in reason:
        why = "Geo-gate via GH."
    elif "business reason" in reason:
        why = "Market test first; the growth team has capacity there this quarter."
    else:
        why = "Same behaviour for every user as a product improvement."
    scope = f"for users in {where}" if "ships the same way" not in reason else "for all users in every market"
    return json.dumps({"name": f"Overnight lockout {scope}"[:120],
                       "description": f"Lock teen accounts overnight {scope}. {why} Owner: T&S eng.", **extra})


def _ok_sleep() -> tuple[list[float], Backoff]:
    slept: list[float] = []
    return slept, Backoff(attempts=3, base=0.01, sleep=slept.append)


# ----------------------------------------------------------------------------------------------- recipes


def test_recipes_are_seeded_and_carry_the_label_and_law():
    rs = recipes(OBLIGATIONS, seed=3, per_obligation=2)
    assert rs == recipes(OBLIGATIONS, seed=3, per_obligation=2)
    assert [r.id for r in rs] != [r.id for r in recipes(OBLIGATIONS, seed=3, per_obligation=1)]
    # per obligation: 2 x (legal, business, no reason: in the law's place, then elsewhere) + universal
    assert len({r.id for r in rs}) == len(rs) == 14
    for r in rs:
        assert r.label == LABELS[r.kind]
        assert (r.law is not None) == (r.kind in (POSITIVE, NO_REASON_TWIN))
        assert r.jargon == () or 3 <= len(r.jargon) <= 5
        if r.kind != POSITIVE:  # a jargon term defined in legal words would smuggle a legal driver in
            assert not {"CDS", "Redline", "LCP", "Glow"} & set(r.jargon)
    ut = [r for r in rs if r.obligation_id == "ut-1"]
    assert {r.reason for r in ut if r.kind == POSITIVE} == {"legal_explicit", "legal_implicit"}
    assert next(r for r in ut if r.kind == UNIVERSAL_TWIN).jurisdiction is None
    assert all(r.where in REGION_VARIANTS["US-UT"] for r in ut if r.kind not in (UNIVERSAL_TWIN, ELSEWHERE_TWIN))
    # The elsewhere twin (NEI) ships where the law neither reaches nor lies: never Utah, never the US as a whole.
    away = next(r for r in ut if r.kind == ELSEWHERE_TWIN)
    assert not applies("US-UT", away.jurisdiction) and not applies(away.jurisdiction, "US-UT")
    assert away.where in teacher.prompt(away) and "give NO reason" in teacher.prompt(away)
    explicit = next(r for r in rs if r.reason == "legal_explicit")
    assert explicit.law_name in teacher.prompt(explicit) and "Style:" in teacher.prompt(explicit)
    business = next(r for r in rs if r.reason == "business")
    assert "Do NOT mention any law" in teacher.prompt(business)


def _recipe(reason: str):
    return next(r for r in recipes(OBLIGATIONS, seed=0, per_obligation=2) if r.reason == reason)


@pytest.mark.parametrize("reason,text,problem", [
    ("business", "not json", "not a JSON object"),
    ("business", '{"name": "x", "description": }', "not valid JSON"),
    ("business", '["a list"]', "not a JSON object"),
    ("business", '{"name": "", "description": "Stories layout test for everyone."}', "field 'name'"),
    ("business", '{"name": "' + "n" * 121 + '", "description": "Stories layout test for everyone."}',
     "121 characters"),
    ("business", '{"name": "Short", "description": "Too short."}', "field 'description'"),
    ("business", '{"name": "Teen lockout in {where}", "description": "Overnight lockout in {where} under the GDPR."}',
     "must not mention a law"),
    ("business", '{"name": "Teen lockout in {where}", "description": "Overnight lockout in {where}; legal asked."}',
     "legal driver"),
    ("none", '{"name": "Teen lockout in {where}", "description": "Overnight lockout in {where} because of churn."}',
     "no reason"),
    ("none", '{"name": "Teen lockout", "description": "Overnight lockout for teens, everywhere we operate."}',
     "name the region"),
    ("legal_implicit", '{"name": "Teen lockout in {where}", "description": "Required by SB 152 in {where}."}',
     "must not name a law"),
    ("legal_implicit", '{"name": "Teen lockout in {where}", "description": "Overnight lockout for teens in {where}."}',
     "legal requirement"),
    ("legal_explicit", '{"name": "Teen lockout in {where}", "description": "Legal says it is mandatory in {where}."}',
     "must name the law"),
])
def test_answers_that_break_the_recipe_are_rejected_with_the_reason(reason, text, problem):
    r = _recipe(reason)
    with pytest.raises(InvalidAnswer, match=re.escape(problem)):
        parse_answer(text.replace("{where}", r.where), r)


def test_a_fenced_answer_following_the_recipe_is_accepted():
    for reason in ("legal_explicit", "legal_implicit", "business", "none", "elsewhere", "universal"):
        r = _recipe(reason)
        name, desc = parse_answer("```json\n" + good_answer(teacher.prompt(r)) + "\n```", r)
        assert name.startswith("Overnight lockout") and "Owner" in desc


# --------------------------------------------------------------------------------------- Bedrock (Stubber)


def _converse_request(model: str, user_turns: list[tuple[str, str]]) -> dict:
    return {"modelId": model, "system": [{"text": teacher.SYSTEM}],
            "messages": [{"role": role, "content": [{"text": t}]} for role, t in user_turns],
            "inferenceConfig": {"maxTokens": 700, "temperature": 0.8}}


def _converse_response(text: str) -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 200, "outputTokens": 60, "totalTokens": 260}, "metrics": {"latencyMs": 900}}


def test_bedrock_converse_valid_retry_and_throttling(tmp_path: Path):
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret")
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    slept, backoff = _ok_sleep()
    gen = BedrockGenerator(model, client=client, backoff=backoff)
    business, explicit = _recipe("business"), _recipe("legal_explicit")
    u1, u2 = teacher.prompt(business), teacher.prompt(explicit)
    bad = json.dumps({"name": f"Lockout in {business.where}",
                      "description": f"Overnight lockout in {business.where}, required by regulators there."})
    with Stubber(client) as stub:
        # Recipe 1: an answer naming a legal driver, sent back with the error, then a valid one.
        stub.add_response("converse", _converse_response(bad), _converse_request(model, [("user", u1)]))
        stub.add_response("converse", _converse_response(good_answer(u1)), None)
        # Recipe 2: throttled once, then valid.
        stub.add_client_error("converse", service_error_code="ThrottlingException",
                              service_message="Too many requests", http_status_code=429,
                              expected_params=_converse_request(model, [("user", u2)]))
        stub.add_response("converse", _converse_response(good_answer(u2)), _converse_request(model, [("user", u2)]))
        run = write_with_teacher([business, explicit], gen, tmp_path / "cache.sqlite", progress=False)
        stub.assert_no_pending_responses()
    assert run.stats["written"] == 2 and run.stats["calls"] == 3 and run.stats["retried"] == 1
    assert len(slept) == 1  # one backoff wait for the throttle
    spec_b, spec_e = run.specs
    assert spec_b.feature.label == Label.NOT_NEEDED and spec_b.kind == BUSINESS_TWIN and spec_b.feature.law is None
    assert spec_e.feature.label == Label.NEEDS and spec_e.feature.law == explicit.law
    assert explicit.law_name in spec_e.feature.description


def test_bedrock_retry_sends_the_rejected_answer_and_the_error_back(tmp_path: Path):
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret")
    model = "amazon.nova-lite-v1:0"
    r = _recipe("none")
    u = teacher.prompt(r)
    bad = json.dumps({"name": f"Lockout in {r.where}", "description": f"Overnight lockout in {r.where} as a pilot."})
    error = "the spec must give no reason for its regional scope, but says 'pilot'"
    retry = _converse_request(model, [("user", u), ("assistant", bad), (
        "user", f"That answer was rejected: {error}. Write the spec again following every instruction. "
                'Answer with ONE JSON object: {"name": "...", "description": "..."}')])
    with Stubber(client) as stub:
        stub.add_response("converse", _converse_response(bad), _converse_request(model, [("user", u)]))
        stub.add_response("converse", _converse_response(bad), retry)
        stub.add_response("converse", _converse_response(bad), None)
        run = write_with_teacher([r], BedrockGenerator(model, client=client), tmp_path / "c.sqlite", progress=False)
        stub.assert_no_pending_responses()
    # Three tries, all invalid: skipped and counted, never relabelled or written.
    assert run.specs == [] and run.stats["rejected"] == 1 and run.stats["calls"] == 3


def test_bedrock_access_denied_stops_with_one_line_and_nothing_cached(tmp_path: Path):
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret")
    with Stubber(client) as stub:
        stub.add_client_error("converse", service_error_code="AccessDeniedException",
                              service_message="You don't have access to the model with the specified model ID.")
        with pytest.raises(TeacherError, match="bedrock m1: AccessDeniedException: You don't have access"):
            write_with_teacher([_recipe("none")], BedrockGenerator("m1", client=client), tmp_path / "c.sqlite",
                               progress=False)
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT COUNT(*) FROM answers").fetchone() == (0,)


# ------------------------------------------------------------------------ OpenAI-compatible (real HTTP server)


class Teacher:
    """A real HTTP server on 127.0.0.1 speaking the chat-completions API. ``script`` holds what the next requests
    get (popped in order); after that every request gets a valid answer for its recipe."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                           "body": body})
                    action = outer.script.pop(0) if outer.script else "good"
                user = body["messages"][1]["content"]
                if action == "500":
                    # A badly behaved server that echoes the request's credentials into its error page.
                    return self._send(500, f"upstream error for {self.headers.get('Authorization')}")
                if action == "401":
                    return self._send(401, json.dumps({"error": {"message": "invalid api key"}}))
                if action == "400-format" and "response_format" in body:
                    return self._send(400, json.dumps({"error": {"message": "response_format is not supported"}}))
                content = {"notjson": "Sure! Here is a spec for the overnight lockout.",
                           "labelled": good_answer(user, label="Needs Geo-Compliance", law="GDPR")}.get(
                    action, good_answer(user))
                self._send(200, json.dumps({"id": "c1", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}))

            def _send(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Teacher]:
    t = Teacher()
    yield t
    t.server.shutdown()
    t.server.server_close()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GEO_TEACHER_KEY", KEY)
    return "GEO_TEACHER_KEY"


def _openai(server: Teacher, api_key_env: str | None = None, model: str = "qwen2.5-7b-instruct") -> OpenAIGenerator:
    return OpenAIGenerator(model, server.url, api_key_env=api_key_env, backoff=_ok_sleep()[1])


def test_openai_request_body_auth_header_and_500_then_success(server: Teacher, api_key: str, tmp_path: Path):
    server.script = ["500"]
    r = _recipe("legal_implicit")
    run = write_with_teacher([r], _openai(server, api_key), tmp_path / "c.sqlite", progress=False)
    assert run.stats["written"] == 1 and len(server.requests) == 2  # the 500 was retried
    req = server.requests[1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "qwen2.5-7b-instruct" and body["response_format"] == {"type": "json_object"}
    assert body["max_tokens"] == 700 and body["temperature"] == 0.8
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == teacher.SYSTEM and body["messages"][1]["content"] == teacher.prompt(r)
    assert run.specs[0].feature.label == Label.NEEDS and run.specs[0].feature.law == r.law


def test_openai_non_json_answer_is_sent_back_then_the_valid_one_kept(server: Teacher, tmp_path: Path):
    server.script = ["notjson"]
    r = _recipe("business")
    run = write_with_teacher([r], _openai(server), tmp_path / "c.sqlite", progress=False)
    assert run.stats["written"] == 1 and run.stats["retried"] == 1
    assert server.requests[0]["auth"] is None  # no --api-key-env: no header
    retry = server.requests[1]["body"]["messages"]
    assert retry[2] == {"role": "assistant", "content": "Sure! Here is a spec for the overnight lockout."}
    assert retry[3]["role"] == "user" and "rejected: the answer is not a JSON object" in retry[3]["content"]


def test_openai_server_without_json_mode_is_asked_without_it(server: Teacher, tmp_path: Path):
    server.script = ["400-format"]
    run = write_with_teacher([_recipe("none")], _openai(server), tmp_path / "c.sqlite", progress=False)
    assert run.stats["written"] == 1
    assert "response_format" in server.requests[0]["body"] and "response_format" not in server.requests[1]["body"]


def test_labels_come_from_the_recipe_whatever_the_teacher_says(server: Teacher, tmp_path: Path):
    rs = recipes(OBLIGATIONS, seed=0)
    server.script = ["labelled"] * len(rs)  # every answer claims {"label": "Needs Geo-Compliance", "law": "GDPR"}
    run = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    assert len(run.specs) == len(rs)
    for recipe, spec in zip(rs, run.specs, strict=True):
        assert spec.feature.label == recipe.label == LABELS[spec.kind] and spec.kind == recipe.kind
        assert spec.feature.law == recipe.law and spec.group == spec.obligation_id == recipe.obligation_id
        assert spec.jurisdiction == recipe.jurisdiction
    assert {s.feature.label for s in run.specs} == {Label.NEEDS, Label.NOT_NEEDED, Label.NEI}


def test_cache_second_run_makes_no_requests_and_a_new_model_asks_again(server: Teacher, tmp_path: Path):
    rs = recipes(OBLIGATIONS, seed=0)
    first = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    n = len(server.requests)
    assert n == len(rs)
    second = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    assert len(server.requests) == n and second.stats["cached"] == len(rs) and second.stats["calls"] == 0
    assert second.specs == first.specs
    write_with_teacher(rs[:2], _openai(server, model="llama3.1:8b"), tmp_path / "c.sqlite", progress=False)
    assert len(server.requests) == n + 2


def test_interrupted_run_resumes_without_repeating_calls(server: Teacher, tmp_path: Path):
    rs = recipes(OBLIGATIONS, seed=0)
    server.script = ["good"] * 5 + ["401"]
    with pytest.raises(TeacherError, match=r"HTTP 401: .*invalid api key"):
        write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    assert len(server.requests) == 6
    run = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    assert run.stats["cached"] == 5 and run.stats["calls"] == len(rs) - 5 and len(run.specs) == len(rs)
    asked_twice = [q["body"]["messages"][1]["content"] for q in server.requests]
    assert len(asked_twice) - len(set(asked_twice)) == 1  # only the recipe the 401 cut off is asked again


def test_max_calls_caps_a_run_and_the_next_run_continues(server: Teacher, tmp_path: Path):
    rs = recipes(OBLIGATIONS, seed=0)
    run = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", max_calls=4, progress=False)
    assert len(server.requests) == 4 and len(run.specs) == 4 and run.stats["left"] == len(rs) - 4
    assert not run.complete and "re-run to continue" in teacher.summary(run)
    run = write_with_teacher(rs, _openai(server), tmp_path / "c.sqlite", progress=False)
    assert run.complete and len(run.specs) == len(rs) and len(server.requests) == len(rs)


# --------------------------------------------------------------------------------------------- CLI + secrecy


def test_cli_writes_specs_and_the_key_never_reaches_files_or_logs(server: Teacher, api_key: str, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch):
    # setup_logging(force=True) would take pytest's capture handler off the root logger: keep the test's handlers.
    monkeypatch.setattr("data_prep.commands.setup_logging", lambda: None)
    obligations, out = tmp_path / "obligations.jsonl", tmp_path / "out" / "features.jsonl"
    write_obligations(obligations, OBLIGATIONS)
    server.script = ["500"]  # its error body echoes the Authorization header: it is logged redacted
    caplog.set_level(logging.DEBUG)
    args = ["features", str(obligations), "--out", str(out), "--generator", "openai", "--base-url", server.url,
            "--teacher-model", "qwen2.5-7b-instruct", "--api-key-env", api_key]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    specs = read_features(out)
    assert len(specs) == 14 and all(s.feature.id.startswith("teacher-") for s in specs)
    assert "14 feature specs" in result.output and "teacher: 14 specs (0 from cache)" in result.output
    assert "Bearer ***" in caplog.text  # the echoed header was logged, redacted
    for blob in (out.read_text(), (out.parent / "teacher_cache.sqlite").read_bytes().decode("latin-1"),
                 caplog.text, result.output, json.dumps(server.requests[0]["body"])):
        assert KEY not in blob
    assert all(q["auth"] == f"Bearer {KEY}" for q in server.requests)


@pytest.mark.parametrize("extra,message", [
    (["--generator", "openai", "--teacher-model", "m"], "--generator openai needs --base-url"),
    (["--generator", "bedrock"], "--generator bedrock needs --teacher-model"),
    (["--generator", "gpt"], "--generator must be one of templates, bedrock, openai"),
    (["--teacher-model", "m", "--max-calls", "3"], "--teacher-model, --max-calls: only used with --generator"),
    (["--generator", "openai", "--teacher-model", "m", "--base-url", "http://127.0.0.1:9",
      "--api-key-env", "GEO_TEACHER_UNSET_KEY"], "--api-key-env GEO_TEACHER_UNSET_KEY: environment variable is not set"),
])
def test_cli_teacher_option_errors_are_one_line(tmp_path: Path, extra: list[str], message: str):
    obligations = tmp_path / "obligations.jsonl"
    write_obligations(obligations, OBLIGATIONS)
    env = {k: v for k, v in os.environ.items() if k != "GEO_TEACHER_UNSET_KEY"}
    result = subprocess.run([sys.executable, "-m", "data_prep.cli", "features", str(obligations), "--out",
                             str(tmp_path / "f.jsonl"), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.startswith(f"geoprep: error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f.jsonl").exists()


def test_pipeline_with_a_teacher_builds_from_its_specs_and_resumes(server: Teacher, tmp_path: Path):
    from data_prep.pipeline import PipelineConfig, run_pipeline
    from sft.core.contract import read_examples
    from sft.core.errors import UserError
    from tests.data_prep.conftest import law_subset

    corpus, out = law_subset(tmp_path, "us_ut_sb152_2023.txt"), tmp_path / "data"
    cfg = PipelineConfig(input_dir=corpus, out_dir=out, per_law=3, generator="openai", teacher_model="m",
                         base_url=server.url, max_calls=5)
    with pytest.raises(UserError, match="recipes not reached .*re-run to continue"):
        run_pipeline(cfg, progress=False)
    assert len(read_features(out / "features.partial.jsonl")) == 5 and not (out / "train.jsonl").exists()

    cfg.max_calls = None
    result, ran = run_pipeline(cfg, progress=False)
    assert ran["features"] and ran["build"] and result is not None
    specs = read_features(out / "features.jsonl")
    assert len(specs) == 21 and len(server.requests) == 21  # 3 obligations x 7 recipes, the first 5 from cache
    assert all(s.feature.id.startswith("teacher-") for s in specs)
    report = json.loads((out / "qc_report.json").read_text())
    assert {POSITIVE, BUSINESS_TWIN, NO_REASON_TWIN, ELSEWHERE_TWIN, UNIVERSAL_TWIN} <= set(
        report["candidates_by_kind"])
    examples = [e for s in ("train", "validation") for e in read_examples(out / f"{s}.jsonl")]
    assert {e.answer.compliance_flag for e in examples} == {Label.NEEDS, Label.NOT_NEEDED, Label.NEI}

    _, ran = run_pipeline(cfg, progress=False)
    assert not any(ran.values()) and len(server.requests) == 21
