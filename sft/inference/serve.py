"""The inference server for SageMaker hosting and Batch Transform (``serve`` in the image).

Contract (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html):

* ``GET /ping``: 200 once the model is loaded (loading runs in the background; 503 until then);
* ``POST /invocations``: ``application/json`` (one feature object, a list, or ``{"instances": [...]}``),
  ``application/jsonlines`` or ``text/csv`` (one feature per line, optional header ``id,name,description``).
  A feature may carry its own ``context`` (a list of LawContext objects from the caller's RAG pipeline) and
  ``glossary`` (term -> definition); without ``context`` the server retrieves it with the retriever packaged
  with the model (``index/`` in the model dir, or Kendra when ``KENDRA_INDEX_ID`` is set);
* the answer uses the request's ``Accept`` type (default: the content type).

Server stack: uvicorn (h11) running a plain ASGI callable. SageMaker BYOC containers classically run
gunicorn (+ nginx) with a WSGI app or uvicorn with an ASGI app; uvicorn wins here because the model is one
serialised resource in one process: gunicorn's process workers would each load the model (N x RAM) and its
gthread workers tie a thread to every stalled client (the probe: 45 slow clients held 45 threads), while an
asyncio server holds a stalled client as a few-KB coroutine. What this module adds on top, every one of which
the standard library's ThreadingHTTPServer lacked (listen backlog 5, no timeouts, HTML errors):

* the body limit counts bytes actually read (a lying, negative or absent Content-Length, or a chunked body,
  cannot push it past ``max_body``); h11 rejects malformed framing, answered here as JSON 400;
* timeouts: ``read_timeout_s`` for a request's headers and for each body read (408), uvicorn's keep-alive
  timeout for idle connections; a listen ``backlog`` of 2048 (uvicorn's default) instead of 5;
* a bounded queue: at most ``max_queue`` requests wait for or use the model; the next gets 503 with
  ``Retry-After`` instead of a reset;
* bounded work: at most ``max_features`` per request (413), and a ``time_budget_s`` (default 50 s, under
  SageMaker's 60 s invocation timeout) checked between model batches, projected from the last batch so a
  request stops *before* it would overrun (503 saying how far it got); work stops when the client leaves.
  Large jobs belong to Batch Transform (one feature per request) or ``geosft predict``;
* JSON ``{"error": "..."}`` for every status and method; stack traces go to the log, never to the client.

Settings come from ``GEOCOMPLY_*`` variables (:data:`SETTINGS_ENV`) and are validated at start.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sft.core.contract import ContractError, Feature, LawContext
from sft.core.errors import UserError, exit_on_user_error
from sft.core.tables import check_unique_ids, csv_records

log = logging.getLogger(__name__)

JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"
_TYPES = {JSON: JSON, "application/jsonl": JSONL, JSONL: JSONL, "application/x-jsonlines": JSONL, CSV: CSV}
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SageMaker real-time payload limit
DRAIN_FACTOR = 4  # an over-limit body up to 4x the limit is read and dropped, so the client sees the 413
HOST_ENV = "GEOCOMPLY_BIND_HOST"
CONTAINER_HOST = "0.0.0.0"  # the image: SageMaker reaches the container from outside it
CLI_HOST = "127.0.0.1"  # geosft serve: this machine only, unless asked
CLOSE = {"Connection": "close"}  # the rest of an unread body must not be read (or parsed as a next request)


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


class ClientGone(Exception):
    """The client closed the connection; the request's remaining work is dropped."""


@dataclass
class ServerState:
    model_dir: Path
    max_body: int = field(default=DEFAULT_MAX_BODY, metadata={"help": "Largest request body in bytes."})
    # 32 x ~1.3 s per feature (demo model, CPU, the probe's figure) = ~42 s: inside the time budget.
    max_features: int = field(default=32, metadata={"help": "Most features in one request (413 above)."})
    time_budget_s: float = field(default=50.0, metadata={
        "help": "Seconds a request may take, queueing included (503 when it would overrun); SageMaker gives 60."})
    max_queue: int = field(default=16, metadata={
        "help": "Requests waiting for or using the model; the next gets 503 + Retry-After."})
    read_timeout_s: float = field(default=20.0, metadata={
        "help": "Seconds to wait for a request's headers or for each piece of its body (408 / close)."})
    backlog: int = field(default=2048, metadata={"help": "Listen backlog (connections not yet accepted)."})
    predictor: Any = None
    retriever: Any = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        for name in ("max_body", "max_features", "max_queue", "backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name}={value!r}: expected a whole number >= 1")
        for name in ("time_budget_s", "read_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 3600:
                raise UserError(f"{name}={value!r}: expected seconds > 0 and < 3600")

    @classmethod
    def from_env(cls, model_dir: Path, environ: Mapping[str, str] | None = None) -> ServerState:
        """Settings from ``GEOCOMPLY_*`` variables; a bad value is a one-line UserError naming the variable."""
        environ = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        for name, var in SETTINGS_ENV.items():
            raw = environ.get(var)
            if raw is None:
                continue
            kind = float if name.endswith("_s") else int
            try:
                value = kind(raw.strip())
            except ValueError:
                value = None
            if value is None or (kind is float and value != value):  # NaN
                raise UserError(f"{var}={raw!r}: expected a {'whole number' if kind is int else 'number'}")
            kwargs[name] = value
        try:
            return cls(model_dir=model_dir, **kwargs)
        except UserError as e:
            name = str(e).split("=", 1)[0]
            raise UserError(f"{SETTINGS_ENV[name]}{str(e)[len(name):]}") from None

    def load(self) -> None:
        """Load the model and the packaged retriever (runs in a background thread)."""
        from sft.inference.predict import open_feature_retriever
        from sft.inference.predictor import Predictor

        try:
            kendra, kb = os.environ.get("KENDRA_INDEX_ID"), os.environ.get("KNOWLEDGE_BASE_ID")
            kind = "bedrock-kb" if kb else "kendra" if kendra else "local"
            self.retriever = open_feature_retriever(kind, self.model_dir, None, kendra, kb)
            self.predictor = Predictor.load(self.model_dir)
            self.ready.set()
            log.info("model loaded from %s", self.model_dir)
        except Exception as e:  # reported by /ping and the log; the process keeps answering 503
            self.load_error = str(e)
            log.exception("model load failed")


SETTINGS_ENV = {
    "max_body": "GEOCOMPLY_MAX_BODY_BYTES",
    "max_features": "GEOCOMPLY_MAX_FEATURES",
    "time_budget_s": "GEOCOMPLY_TIME_BUDGET_S",
    "max_queue": "GEOCOMPLY_MAX_QUEUE",
    "read_timeout_s": "GEOCOMPLY_READ_TIMEOUT_S",
    "backlog": "GEOCOMPLY_BACKLOG",
}


def _media(header: str | None) -> str | None:
    return (header or "").split(";")[0].strip().lower() or None


def _law_context(obj: Any, where: str) -> LawContext:
    try:
        return LawContext.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "".join(f".{p}" for p in err["loc"])
        raise BadRequest(f"{where}{loc}': {err['msg']}") from None


def _text(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from a JSON escape
        raise BadRequest(f"{where}: not valid Unicode text (a lone surrogate escape such as \\ud800)") from None
    return value


def _item(obj: Any, where: str) -> tuple[Feature, list[LawContext] | None, dict[str, str] | None]:
    if not isinstance(obj, dict):
        raise BadRequest(f"{where}: expected a JSON object with name and description")
    for key in ("name", "description"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise BadRequest(f"{where}: field '{key}': missing or not a non-empty string")
        _text(obj[key], f"{where}: field '{key}'")
    fid = obj.get("id")
    if fid is not None and not isinstance(fid, str | int):
        raise BadRequest(f"{where}: field 'id': expected a string or a number")
    fid = None if fid is None or fid == "" else _text(str(fid), f"{where}: field 'id'")
    feature = Feature(id=fid, name=obj["name"], description=obj["description"])
    ctx = obj.get("context")
    if ctx is not None and not isinstance(ctx, list):
        raise BadRequest(f"{where}: field 'context': expected a list of law context objects")
    context = None if ctx is None else [_law_context(c, f"{where}: field 'context[{i}]") for i, c in enumerate(ctx)]
    glossary = obj.get("glossary")
    if glossary is not None and not (isinstance(glossary, dict) and all(isinstance(v, str) for v in glossary.values())):
        raise BadRequest(f"{where}: field 'glossary': expected an object of term -> definition")
    for term, note in (glossary or {}).items():
        _text(term + note, f"{where}: field 'glossary'")
    for i, c in enumerate(context or []):
        _text(c.model_dump_json(), f"{where}: field 'context[{i}]'")
    return feature, context, glossary


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"{where}invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise BadRequest(f"{where}invalid JSON: nested too deeply") from None


def _csv_items(text: str) -> list[tuple[str, Any]]:
    try:
        records = list(csv_records(io.StringIO(text, newline=""), "csv"))
    except ContractError as e:
        raise BadRequest(str(e).replace("csv:", "csv line ", 1)) from None
    header = ["id", "name", "description"]
    if records and {"name", "description"} <= {c.strip().lower() for c in records[0][1]}:
        header, records = [c.strip().lower() for c in records[0][1]], records[1:]
    records = [(n, r) for n, r in records if any(cell.strip() for cell in r)]
    out = []
    for i, (line, row) in enumerate(records, start=1):
        if len(row) != len(header):
            raise BadRequest(f"csv row {i} (line {line}): expected {len(header)} columns ({','.join(header)}), "
                             f"got {len(row)}")
        out.append((f"csv row {i}", dict(zip(header, row, strict=True))))
    return out


def parse_body(body: bytes, content_type: str) -> tuple[list[Any], bool]:
    """Request body -> (items, single). ``single``: the request was one JSON object (answer one object)."""
    try:
        text = body.decode("utf-8-sig")  # a BOM (Excel's CSV export) must not become part of the first column
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8 (byte {e.start}: {body[e.start:e.start + 1]!r})") from None
    if content_type == JSON:
        data = _json(text, "")
        if isinstance(data, dict) and "instances" in data:
            data = data["instances"]
        if isinstance(data, dict):
            return [_item(data, "body")], True
        if not isinstance(data, list):
            raise BadRequest("body: expected a feature object or a list of them")
        pairs = [(f"body[{i}]", obj) for i, obj in enumerate(data)]
    elif content_type == JSONL:
        pairs = [(f"line {n}", _json(line, f"line {n}: ")) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip()]
    else:
        pairs = _csv_items(text)
    items = [(where, _item(obj, where)) for where, obj in pairs]
    try:
        items = check_unique_ids(items, lambda it: it[0].id)
    except ContractError as e:
        raise BadRequest(str(e).split(" (ids must", 1)[0] + "; ids must be unique within a request") from None
    return [it for _, it in items], False


def render_body(rows: list[dict[str, Any]], accept: str, single: bool) -> bytes:
    if accept == JSON:
        return json.dumps(rows[0] if single else rows, ensure_ascii=False).encode()
    if accept == JSONL:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in rows:  # every answer column in row order (ids first), without the list-valued audit columns
        writer.writerow(["" if v is None else v for k, v in r.items() if k not in ("context_ids", "model_id")])
    return out.getvalue().encode()


def public_model_id(model_id: str) -> str:
    """The model's name without the server's file-system layout (the probe saw the container's model path in answers)."""
    return Path(model_id).name or model_id


def predict_items(state: ServerState, items: list[Any], *, deadline: float | None = None,
                  gone: threading.Event | None = None) -> list[dict[str, Any]]:
    """Answer rows (``answer_row``, the columns ``geosft predict`` writes, ``flag`` named ``compliance_flag``)
    batch by batch. Between batches: stop if the client left; answer 503 if the next batch, at the pace of the
    last one, would end after ``deadline`` (time.monotonic())."""
    from sft.inference.predict import answer_row, contexts_for

    size = max(1, state.predictor.config.batch_size)
    model_id = public_model_id(state.predictor.model_id)
    rows: list[dict[str, Any]] = []
    pace = 0.0
    for start in range(0, len(items), size):
        if gone is not None and gone.is_set():
            raise ClientGone
        now = time.monotonic()
        if deadline is not None and now + pace > deadline:
            raise BadRequest(
                f"request would exceed its {state.time_budget_s:g} s time budget ({start} of {len(items)} features "
                f"answered); send fewer features per request, or use Batch Transform / geosft predict for large "
                "jobs", HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "5"})
        batch = []
        for feature, context, glossary in items[start : start + size]:
            if context is None:
                context = contexts_for(state.retriever, feature, glossary or {})
            batch.append((feature, context, glossary))
        for (feature, _, _), res in zip(batch, state.predictor.predict(batch), strict=True):
            row = answer_row(feature, res.prediction, res.context, model_id)
            row.pop("name", None)
            row.pop("timestamp", None)
            rows.append({("compliance_flag" if k == "flag" else k): v for k, v in row.items()})
        pace = time.monotonic() - now
    return rows


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class App:
    """The ASGI application: routes, body reading with limits, the bounded queue and the model thread."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.pending = 0  # requests admitted to the model queue (waiting or running)
        # One model thread: the Predictor is serialised by its lock anyway; a single worker keeps the queue
        # order FIFO and leaves the event loop free to answer /ping and 503s while the model works.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            self.executor.shutdown(wait=False, cancel_futures=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers: dict[str, str] = {}
        try:
            status, body, ctype = await self.route(scope, receive)
        except BadRequest as e:
            status, body, ctype, headers = e.status, _error_body(str(e)), JSON, e.headers
        except ClientGone:
            log.info("client left; request dropped")
            return
        except Exception:  # a bug: logged with its traceback, the client gets a plain message
            log.exception("request failed")
            status, body, ctype = HTTPStatus.INTERNAL_SERVER_ERROR, _error_body("internal error; see the server log"), JSON
        raw = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": int(status), "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def route(self, scope: dict, receive: Callable) -> tuple[int, bytes, str]:
        path, method = scope["path"], scope["method"]
        routes = {"/ping": "GET", "/execution-parameters": "GET", "/invocations": "POST"}
        if path not in routes:
            raise BadRequest(f"no such path {path}", HTTPStatus.NOT_FOUND)
        if method != routes[path] and not (method == "HEAD" and routes[path] == "GET"):
            raise BadRequest(f"method {method} not allowed on {path}; use {routes[path]}",
                             HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": routes[path]})
        if path == "/ping":
            if self.state.ready.is_set():
                return HTTPStatus.OK, b'{"status": "ok"}', JSON
            raise BadRequest(self.state.load_error or "model is loading", HTTPStatus.SERVICE_UNAVAILABLE,
                             {"Retry-After": "10"})
        if path == "/execution-parameters":  # Batch Transform asks for its defaults here
            params = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                      "MaxPayloadInMB": max(1, self.state.max_body // (1024 * 1024))}
            return HTTPStatus.OK, json.dumps(params).encode(), JSON
        return await self.invoke(scope, receive)

    async def read_body(self, scope: dict, receive: Callable) -> bytes:
        """The body, counting bytes as they arrive: Content-Length is only a hint (h11 has already refused a
        malformed one). Over the limit: read and drop up to DRAIN_FACTOR x the limit so the client is reading
        when the 413 comes, then stop (uvicorn closes the connection)."""
        limit = self.state.max_body
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        too_big = declared is not None and int(declared) > limit
        chunks, total = [], 0
        more = not too_big or int(declared) <= DRAIN_FACTOR * limit
        while more:
            try:
                msg = await asyncio.wait_for(receive(), self.state.read_timeout_s)
            except TimeoutError:
                raise BadRequest(f"request body not received within {self.state.read_timeout_s:g} s",
                                 HTTPStatus.REQUEST_TIMEOUT, CLOSE) from None
            if msg["type"] == "http.disconnect":
                raise ClientGone
            piece = msg.get("body", b"")
            total += len(piece)
            more = msg.get("more_body", False)
            if total > limit:
                too_big, chunks = True, []
                if total > DRAIN_FACTOR * limit:
                    break
            elif piece:
                chunks.append(piece)
        if too_big:
            size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
            raise BadRequest(f"body of {size} exceeds the {limit}-byte limit",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE, CLOSE)
        return b"".join(chunks)

    async def invoke(self, scope: dict, receive: Callable) -> tuple[int, bytes, str]:
        started = time.monotonic()
        hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ctype = _TYPES.get(_media(hdrs.get("content-type")) or JSON)
        if ctype is None:
            raise BadRequest(f"unsupported Content-Type; use one of {JSON}, {JSONL}, {CSV}",
                             HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        raw_accept = _media(hdrs.get("accept"))
        accept = ctype if raw_accept in (None, "*/*") else _TYPES.get(raw_accept)
        if accept is None:
            raise BadRequest(f"unsupported Accept; use one of {JSON}, {JSONL}, {CSV}", HTTPStatus.NOT_ACCEPTABLE)
        body = await self.read_body(scope, receive)
        if not self.state.ready.is_set():
            raise BadRequest("model is not loaded yet", HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "10"})
        items, single = parse_body(body, ctype)
        if not items:
            raise BadRequest("no features in the request")
        if len(items) > self.state.max_features:
            raise BadRequest(f"{len(items)} features in one request; the limit is {self.state.max_features} "
                             "(split the request, or use Batch Transform / geosft predict for large jobs)",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        if self.pending >= self.state.max_queue:
            raise BadRequest(f"server busy: {self.pending} requests queued for the model; retry shortly",
                             HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "2"})
        gone = threading.Event()

        async def watch() -> None:  # the only message after the body is http.disconnect
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        self.pending += 1
        try:
            deadline = started + self.state.time_budget_s
            rows = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: predict_items(self.state, items, deadline=deadline, gone=gone))
        finally:
            self.pending -= 1
            watcher.cancel()
        return HTTPStatus.OK, render_body(rows, accept, single), accept


def _protocol_class(read_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a header timeout (uvicorn has none: a client that connects and sends half a
    request line would hold its connection for ever) and JSON for the 400 it sends on malformed HTTP."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def _arm_header_timer(self) -> None:
            cycle = self.cycle  # no new request since (same cycle, none running): the client is stalling

            def expire() -> None:
                idle = self.cycle is cycle and (cycle is None or cycle.response_complete)
                if idle and not self.transport.is_closing():
                    self.transport.close()

            self.loop.call_later(read_timeout_s, expire)

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def send_400_response(self, msg: str) -> None:
            import h11

            body = _error_body(f"malformed HTTP request: {msg.rstrip('.')}")
            headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return Protocol


class Server:
    """A bound server: ``serve_forever`` runs uvicorn on the socket (in any thread), ``shutdown`` stops it."""

    def __init__(self, state: ServerState, host: str, port: int) -> None:
        import uvicorn

        self.state = state
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(state.backlog)  # connections queue from now on, before uvicorn's loop runs
        except OSError as e:
            self.socket.close()
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        self.server_address = self.socket.getsockname()
        self.app = App(state)
        config = uvicorn.Config(
            self.app, http=_protocol_class(state.read_timeout_s), lifespan="on", log_config=None,
            access_log=False, backlog=state.backlog, timeout_keep_alive=5, server_header=False,
            timeout_graceful_shutdown=5, h11_max_incomplete_event_size=64 * 1024,
        )
        self.uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        self._stopped.wait(timeout=30)

    def server_close(self) -> None:
        self.socket.close()


def make_server(state: ServerState, host: str = CLI_HOST, port: int = 8080) -> Server:
    return Server(state, host, port)


def serve(model_dir: Path | None = None, host: str | None = None, port: int | None = None) -> None:
    """Start loading the model and serve until interrupted. ``host``: the argument, else $GEOCOMPLY_BIND_HOST,
    else 0.0.0.0 (the container's default; ``geosft serve`` passes its own, 127.0.0.1)."""
    from sft.sagemaker.env import OptMl, bind_port

    model_dir = model_dir or OptMl.from_env().model_dir
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no model directory")
    host = host or os.environ.get(HOST_ENV) or CONTAINER_HOST
    port = bind_port() if port is None else port
    state = ServerState.from_env(model_dir)
    server = make_server(state, host, port)
    threading.Thread(target=state.load, name="model-load", daemon=True).start()
    log.info("serving on %s:%d (model %s)", host, server.server_address[1], model_dir)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main() -> None:
    """Entry point of ``container/serve``: the SageMaker image runs ``serve`` with no arguments."""
    from sft.core.console import setup_logging

    setup_logging()
    with exit_on_user_error("serve"):
        serve()
