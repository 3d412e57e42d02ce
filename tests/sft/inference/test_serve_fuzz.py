"""Hostile input and load against the real server on 127.0.0.1 (the probe of issue 16, bounded).

Every case must end in a JSON 4xx/503 or a closed connection within seconds: no 500, no hang. Afterwards the
server still answers /ping and a valid request. Raw sockets send what urllib refuses to (negative
Content-Length, lying lengths, stalls, chunked floods)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("uvicorn")
psutil = pytest.importorskip("psutil")

LIMIT = 1024 * 1024  # body limit of the server under test (room for a CSV field over csv's 128 KiB)
READ_TIMEOUT = 1.0
FEATURE = {"id": "ok1", "name": "Dark mode", "description": "A darker theme for everyone."}


@pytest.fixture(scope="module")
def live(tiny_model_dir):
    from sft.inference.serve import ServerState, make_server

    state = ServerState(model_dir=tiny_model_dir, max_body=LIMIT, max_features=4, max_queue=2,
                        read_timeout_s=READ_TIMEOUT, time_budget_s=30)
    srv = make_server(state, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    state.load()
    assert state.ready.is_set(), state.load_error
    yield srv.server_address[1], state
    srv.shutdown()
    srv.server_close()
    assert not thread.is_alive()


def raw(port: int, data: bytes, *, wait: float = 10.0, half_close: bool = False) -> tuple[int | None, dict, bytes]:
    """Send bytes, read until the server closes; (status or None if it closed without answering, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        try:
            while chunk := s.recv(65536):
                buf += chunk
        except ConnectionResetError:
            pass
    if not buf:
        return None, {}, b""
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def post(port: int, body: bytes | str, ctype: str = "application/json", method: str = "POST",
         path: str = "/invocations", timeout: float = 30) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if isinstance(body, str) else body,
                     headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def assert_json_error(status, headers, body, want: int | tuple, fragment: str = "") -> None:
    want = want if isinstance(want, tuple) else (want,)
    assert status in want, (status, body[:300])
    assert headers.get("content-type") == "application/json"
    error = json.loads(body)["error"]
    assert fragment in error and "Traceback" not in error, error


def assert_healthy(port: int) -> None:
    assert post(port, b"", method="GET", path="/ping")[0] == 200
    status, _, body = post(port, json.dumps(FEATURE))
    assert status == 200 and json.loads(body)["id"] == "ok1"


def test_malformed_http_gets_json_400_and_stalls_are_cut(live):
    port, _ = live
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for request in (
        head + b"Content-Length: -1\r\n\r\n{}",  # the probe's bypass of the body limit
        head + b"Content-Length: abc\r\n\r\n",
        head + b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
        b"HELLO THERE\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000,  # headers past 64 KiB, unfinished
    ):
        t0 = time.monotonic()
        status, headers, body = raw(port, request, half_close=False)
        assert time.monotonic() - t0 < 5
        assert_json_error(status, headers, body, 400, "malformed HTTP request")
    # A short body under its Content-Length, and half a request line: cut after the read timeout, not held.
    t0 = time.monotonic()
    status, headers, body = raw(port, head + b"Content-Length: 1000\r\n\r\n{\"name\"")
    assert_json_error(status, headers, body, 408, "not received")
    assert raw(port, b"POST /invoc")[0] is None
    assert time.monotonic() - t0 < 4 * READ_TIMEOUT + 4
    assert_healthy(port)


def test_body_limit_counts_bytes_read_and_rss_stays_flat(live):
    port, _ = live
    proc = psutil.Process()
    assert_healthy(port)
    rss_before = proc.memory_info().rss
    # 256 MiB chunked with no Content-Length: read only until the limit (plus the drain), then 413 / close.
    piece = b"x" * (1024 * 1024)
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(256):
                s.sendall(chunk)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            reply = s.recv(65536)
        except ConnectionResetError:
            reply = b""
    assert sent < 64 * 1024 * 1024, "the server kept reading past its limit"
    assert not reply or reply.startswith(b"HTTP/1.1 413")
    # A declared over-limit body (a lying client may never send it): refused before reading.
    status, headers, body = raw(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n")
    assert_json_error(status, headers, body, 413, "limit")
    # Over the limit but within the drain: the client gets to read the 413.
    status, headers, body = post(port, b"[" + b" " * (LIMIT + 10) + b"]")
    assert_json_error(status, headers, body, 413, "limit")
    assert proc.memory_info().rss - rss_before < 50 * 1024 * 1024
    assert_healthy(port)


CSV = "text/csv"
CASES = [  # (body, content type, status, fragment of the error)
    (b"\xff\xfe{}", "application/json", 400, "not UTF-8"),
    (b"\x80,a,b\n", CSV, 400, "not UTF-8"),
    ("[" * 100_000, "application/json", 400, "invalid JSON"),
    ('{"name": "\\ud800", "description": "x"}', "application/json", 400, "lone surrogate"),
    ('{"id": "\\udfff", "name": "a", "description": "x"}\n', "application/jsonlines", 400, "field 'id'"),
    ("id,name,description\n1,a," + "d" * (200 * 1024) + "\n", CSV, 400, "character limit"),
    ('id,name,description\n1,a,b\n2,"broken,c\n3,d,e\n4,f,g\n', CSV, 400, "csv line 3: unterminated quote"),
    ('1,a,"ok" trailing\n', CSV, 400, "malformed CSV"),
    ("a,b,c\na,b,c\n", CSV, 400, "already used"),
    (json.dumps([{**FEATURE, "id": "d"}, {**FEATURE, "id": "d", "description": "other"}]), "application/json",
     400, "id 'd': already used at body[0]"),
    (json.dumps([{**FEATURE, "id": f"n{i}"} for i in range(5)]), "application/json", 413, "limit is 4"),
    ("null", "application/json", 400, "expected a feature"),
    ("7", "application/json", 400, "expected a feature"),
    ('{"instances": {"a": 1}}', "application/json", 400, "field 'name'"),
    (json.dumps({**FEATURE, "id": [1]}), "application/json", 400, "field 'id'"),
    (json.dumps({**FEATURE, "glossary": {"a": 1}}), "application/json", 400, "glossary"),
    ("", "application/json", 400, "invalid JSON"),
    ("\n\n", "application/jsonlines", 400, "no features"),
    ("x", "application/xml", 415, "Content-Type"),
]


def test_malformed_bodies_get_json_4xx(live):
    port, _ = live
    for body, ctype, want, fragment in CASES:
        status, headers, text = post(port, body, ctype)
        assert_json_error(status, headers, text, want, fragment)
    for method, path, want in (("PUT", "/invocations", 405), ("DELETE", "/ping", 405), ("GET", "/invocations", 405),
                               ("OPTIONS", "/ping", 405), ("PATCH", "/nope", 404), ("GET", "/../etc/passwd", 404)):
        status, headers, text = post(port, b"", method=method, path=path)
        assert_json_error(status, headers, text, want)
    assert_healthy(port)


def test_csv_bom_cr_only_and_ids_survive(live):
    port, _ = live
    bom = "\ufeffid,name,description\r\nb1,Age gate,Verify age in Utah\r\nb2,Dark mode,Theme\r\n".encode()
    status, _, body = post(port, bom, CSV)
    assert status == 200 and [row.split(",")[0] for row in body.decode().splitlines()] == ["b1", "b2"]
    status, _, body = post(port, "c1,Age gate,Verify age\rc2,Dark mode,Theme\r", CSV)
    assert status == 200 and [row.split(",")[0] for row in body.decode().splitlines()] == ["c1", "c2"]
    status, _, body = post(port, json.dumps(FEATURE))
    row = json.loads(body)
    assert "/" not in row["model_id"]  # the server's file-system layout stays private


def _slow_predictor(state, delay: float, calls: list):
    inner = state.predictor.predict

    def predict(items, **kw):
        calls.append(len(items))
        time.sleep(delay)
        return inner(items, **kw)

    return predict


def test_burst_of_50_is_answered_or_told_503(live):
    port, state = live
    calls: list = []
    state.predictor.predict = _slow_predictor(state, 0.2, calls)
    results: list = [None] * 50

    def client(i: int) -> None:
        try:
            status, headers, _ = post(port, json.dumps({**FEATURE, "id": f"b{i}"}), timeout=60)
            results[i] = (status, headers.get("retry-after"))
        except OSError as e:  # a reset or refused connection: what the stdlib server's backlog of 5 produced
            results[i] = e

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
    finally:
        del state.predictor.predict
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, errors[:3]
    assert {s for s, _ in results} <= {200, 503}
    assert all(ra for s, ra in results if s == 503)  # every 503 says when to come back
    assert sum(s == 200 for s, _ in results) >= 2 and sum(s == 503 for s, _ in results) >= 1
    assert_healthy(port)


def test_time_budget_and_client_leaving_stop_the_work(live):
    port, state = live
    calls: list = []
    state.predictor.predict = _slow_predictor(state, 0.6, calls)
    old_batch, old_budget = state.predictor.config.batch_size, state.time_budget_s
    state.predictor.config.batch_size, state.time_budget_s = 1, 1.5
    four = json.dumps([{**FEATURE, "id": f"t{i}"} for i in range(4)])
    try:
        t0 = time.monotonic()
        status, headers, body = post(port, four)
        elapsed = time.monotonic() - t0
        assert_json_error(status, headers, body, 503, "time budget")
        assert headers.get("retry-after") and elapsed < 1.5 + 0.5  # stopped before it would overrun (+ HTTP slack)
        assert 1 <= len(calls) < 4
        # The client gives up after 0.3 s: the server drops the rest instead of running all four.
        calls.clear()
        state.time_budget_s = 30
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(four), four.encode()))
            time.sleep(0.3)
        time.sleep(2.5)
        assert 1 <= len(calls) < 4
    finally:
        del state.predictor.predict
        state.predictor.config.batch_size, state.time_budget_s = old_batch, old_budget
    assert_healthy(port)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "", "1.5"])
def test_bad_settings_are_one_line_errors(tmp_path, value):
    from sft.core.errors import UserError
    from sft.inference.serve import ServerState

    with pytest.raises(UserError, match=r"^GEOCOMPLY_MAX_BODY_BYTES=.*expected a whole number") as e:
        ServerState.from_env(tmp_path, {"GEOCOMPLY_MAX_BODY_BYTES": value})
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="GEOCOMPLY_TIME_BUDGET_S='nan'"):
        ServerState.from_env(tmp_path, {"GEOCOMPLY_TIME_BUDGET_S": "nan"})
    assert ServerState.from_env(tmp_path, {"GEOCOMPLY_MAX_FEATURES": " 8 "}).max_features == 8


def test_bind_address_defaults(monkeypatch, tmp_path):
    """geosft serve binds this machine only unless asked; the container (no argument) keeps 0.0.0.0."""
    from typer.testing import CliRunner

    import sft.inference.serve as serve_mod
    from sft.cli import app

    seen = []
    monkeypatch.setattr(serve_mod, "serve", lambda model_dir, host, port: seen.append(host))
    assert CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(app, ["serve", "--model-dir", str(tmp_path), "--host", "0.0.0.0"]).exit_code == 0
    assert seen == ["127.0.0.1", "0.0.0.0"]

    made = []
    monkeypatch.undo()
    monkeypatch.setattr(serve_mod, "make_server", lambda state, host, port: made.append(host) or _Stop())
    monkeypatch.delenv(serve_mod.HOST_ENV, raising=False)
    serve_mod.serve(tmp_path, None, 0)
    monkeypatch.setenv(serve_mod.HOST_ENV, "127.0.0.1")
    serve_mod.serve(tmp_path, None, 0)
    assert made == ["0.0.0.0", "127.0.0.1"]


class _Stop:
    server_address = ("", 0)

    def serve_forever(self):
        pass

    def server_close(self):
        pass
