"""The inference server for SageMaker hosting and Batch Transform (``serve`` in the image).

Contract (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html):

* ``GET /ping``: 200 once the model is loaded (loading runs in the background; 503 until then);
* ``POST /invocations``: ``application/json`` (one feature object, a list, or ``{"instances": [...]}``),
  ``application/jsonlines`` or ``text/csv`` (one feature per line, optional header ``id,name,description``).
  A feature may carry its own ``context`` (a list of LawContext objects from the caller's RAG pipeline) and
  ``glossary`` (term -> definition); without ``context`` the server retrieves it with the retriever packaged
  with the model (``index/`` in the model dir, or Kendra when ``KENDRA_INDEX_ID`` is set);
* the answer uses the request's ``Accept`` type (default: the content type).

The standard library's ThreadingHTTPServer is enough here: SageMaker sends one request per instance at a time
in most set-ups, the model is the bottleneck and is serialised by the Predictor's lock, and there is no new
framework to audit in the image. Errors are JSON ``{"error": "..."}`` with a 4xx status for bad input;
stack traces go to the log, never to the client.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sft.core.contract import Feature, LawContext
from sft.core.errors import UserError, exit_on_user_error

log = logging.getLogger(__name__)

JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"
_TYPES = {JSON: JSON, "application/jsonl": JSONL, JSONL: JSONL, "application/x-jsonlines": JSONL, CSV: CSV}
DEFAULT_MAX_BODY = 6 * 1024 * 1024  # SageMaker real-time payload limit; it also bounds the features per request


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServerState:
    model_dir: Path
    max_body: int = DEFAULT_MAX_BODY
    predictor: Any = None
    retriever: Any = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

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


def _media(header: str | None) -> str | None:
    return (header or "").split(";")[0].strip().lower() or None


def _law_context(obj: Any, where: str) -> LawContext:
    try:
        return LawContext.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "".join(f".{p}" for p in err["loc"])
        raise BadRequest(f"{where}{loc}': {err['msg']}") from None


def _item(obj: Any, where: str) -> tuple[Feature, list[LawContext] | None, dict[str, str] | None]:
    if not isinstance(obj, dict):
        raise BadRequest(f"{where}: expected a JSON object with name and description")
    for key in ("name", "description"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise BadRequest(f"{where}: field '{key}': missing or not a non-empty string")
    fid = obj.get("id")
    feature = Feature(id=None if fid is None else str(fid), name=obj["name"], description=obj["description"])
    ctx = obj.get("context")
    if ctx is not None and not isinstance(ctx, list):
        raise BadRequest(f"{where}: field 'context': expected a list of law context objects")
    context = None if ctx is None else [_law_context(c, f"{where}: field 'context[{i}]") for i, c in enumerate(ctx)]
    glossary = obj.get("glossary")
    if glossary is not None and not (isinstance(glossary, dict) and all(isinstance(v, str) for v in glossary.values())):
        raise BadRequest(f"{where}: field 'glossary': expected an object of term -> definition")
    return feature, context, glossary


def parse_body(body: bytes, content_type: str) -> tuple[list[Any], bool]:
    """Request body -> (items, single). ``single``: the request was one JSON object (answer one object)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    if content_type == JSON:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BadRequest(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        if isinstance(data, dict) and "instances" in data:
            data = data["instances"]
        if isinstance(data, dict):
            return [_item(data, "body")], True
        if not isinstance(data, list):
            raise BadRequest("body: expected a feature object or a list of them")
        return [_item(obj, f"body[{i}]") for i, obj in enumerate(data)], False
    if content_type == JSONL:
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(_item(json.loads(line), f"line {n}"))
                except json.JSONDecodeError as e:
                    raise BadRequest(f"line {n}: invalid JSON: {e.msg}") from None
        return items, False
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    header = ["id", "name", "description"]
    if rows and {"name", "description"} <= {c.strip().lower() for c in rows[0]}:
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    items = []
    for n, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise BadRequest(f"csv row {n}: expected {len(header)} columns ({','.join(header)}), got {len(row)}")
        items.append(_item(dict(zip(header, row, strict=True)), f"csv row {n}"))
    return items, False


def render_body(rows: list[dict[str, Any]], accept: str, single: bool) -> bytes:
    if accept == JSON:
        return json.dumps(rows[0] if single else rows, ensure_ascii=False).encode()
    if accept == JSONL:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in rows:
        writer.writerow([r["id"] or "", r["compliance_flag"], r["law"] or "", r["citation"] or "", r["reason"]])
    return out.getvalue().encode()


def predict_items(state: ServerState, items: list[Any]) -> list[dict[str, Any]]:
    from sft.inference.predict import contexts_for

    batch = []
    for feature, context, glossary in items:
        if context is None:
            context = contexts_for(state.retriever, feature, glossary or {})
        batch.append((feature, context, glossary))
    rows = []
    for (feature, _, _), res in zip(batch, state.predictor.predict(batch), strict=True):
        a, context = res.prediction.answer, res.context
        rows.append({
            "id": feature.id, "compliance_flag": a.compliance_flag.value, "law": a.law, "citation": a.citation,
            "reason": a.reason, "context_ids": [c.id for c in context], "model_id": state.predictor.model_id,
        })
    return rows


class Handler(BaseHTTPRequestHandler):
    server_version = "geocomply"
    state: ServerState  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = JSON) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, json.dumps({"error": message}).encode())

    def do_GET(self) -> None:
        if self.path == "/ping":
            if self.state.ready.is_set():
                self._send(HTTPStatus.OK, b'{"status": "ok"}')
            else:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, self.state.load_error or "model is loading")
        elif self.path == "/execution-parameters":  # Batch Transform asks for its defaults here
            params = {"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                      "MaxPayloadInMB": max(1, self.state.max_body // (1024 * 1024))}
            self._send(HTTPStatus.OK, json.dumps(params).encode())
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}")

    def do_POST(self) -> None:
        if self.path != "/invocations":
            self._error(HTTPStatus.NOT_FOUND, f"no such path {self.path}")
            return
        try:
            status, body, accept = self._invoke()
            self._send(status, body, accept)
        except BadRequest as e:
            self._error(e.status, str(e))
        except Exception:  # a bug: logged with its traceback, the client gets a plain message
            log.exception("invocation failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest("Content-Length required", HTTPStatus.LENGTH_REQUIRED) from None
        if length > self.state.max_body:
            self.close_connection = True  # the unread body must not be parsed as a next request
            if length <= 4 * self.state.max_body:  # drain it so the client can read the 413, not a reset
                left = length
                while left > 0 and (chunk := self.rfile.read(min(65536, left))):
                    left -= len(chunk)
            raise BadRequest(f"body of {length} bytes exceeds the {self.state.max_body}-byte limit",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self.rfile.read(length)

    def _invoke(self) -> tuple[int, bytes, str]:
        ctype = _TYPES.get(_media(self.headers.get("Content-Type")) or JSON)
        if ctype is None:
            raise BadRequest(f"unsupported Content-Type; use one of {JSON}, {JSONL}, {CSV}",
                             HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        raw_accept = _media(self.headers.get("Accept"))
        accept = ctype if raw_accept in (None, "*/*") else _TYPES.get(raw_accept)
        if accept is None:
            raise BadRequest(f"unsupported Accept; use one of {JSON}, {JSONL}, {CSV}", HTTPStatus.NOT_ACCEPTABLE)
        body = self._read_body()
        if not self.state.ready.is_set():
            raise BadRequest("model is not loaded yet", HTTPStatus.SERVICE_UNAVAILABLE)
        items, single = parse_body(body, ctype)
        if not items:
            raise BadRequest("no features in the request")
        rows = predict_items(self.state, items)
        return HTTPStatus.OK, render_body(rows, accept, single), accept


def make_server(state: ServerState, host: str = "0.0.0.0", port: int = 8080) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(model_dir: Path | None = None, host: str = "0.0.0.0", port: int | None = None) -> None:
    """Start loading the model and serve until interrupted."""
    from sft.sagemaker.env import OptMl, bind_port

    model_dir = model_dir or OptMl.from_env().model_dir
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no model directory")
    port = port or bind_port()
    max_body = int(os.environ.get("GEOCOMPLY_MAX_BODY_BYTES", DEFAULT_MAX_BODY))
    state = ServerState(model_dir=model_dir, max_body=max_body)
    server = make_server(state, host, port)
    threading.Thread(target=state.load, name="model-load", daemon=True).start()
    log.info("serving on %s:%d (model %s)", host, server.server_address[1], model_dir)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    """Entry point of ``container/serve``: the SageMaker image runs ``serve`` with no arguments."""
    from sft.core.console import setup_logging

    setup_logging()
    with exit_on_user_error("serve"):
        serve()
