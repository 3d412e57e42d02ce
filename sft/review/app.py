"""The review web app: server-rendered Flask pages over :mod:`sft.review.store`.

Access: reviewers sign in with an account an admin made (``geosft review add-user``; scrypt hashes), or,
behind a reverse proxy that authenticates them, the proxy's header names the reviewer
(``--trust-header X-Forwarded-User``; only safe when nothing but the proxy can reach the app). Every POST
needs a signed-in reviewer and the session's CSRF token. Uploads are size-limited (413 with a clear page)
and validated whole before anything is written.
"""

from __future__ import annotations

import hmac
import secrets
import tempfile
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import secure_filename

from sft.core.contract import LABELS, ContractError
from sft.core.errors import UserError
from sft.review import store
from sft.review.db import Item, Setting, open_db

DEFAULT_MAX_UPLOAD_MB = 20  # a predictions file is ~400 bytes a row: 20 MB is ~50k features


@dataclass
class ReviewConfig:
    db_url: str
    trust_header: str | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    secure_cookies: bool = False  # set behind HTTPS


def _secret_key(db: sessionmaker) -> str:
    """The session-signing key, made once per database so every app process of a team shares it."""
    with db() as s, s.begin():
        row = s.get(Setting, "secret_key")
        if row is None:
            row = Setting(key="secret_key", value=secrets.token_hex(32))
            s.add(row)
        return row.value


def create_app(cfg: ReviewConfig, db: sessionmaker | None = None) -> Flask:
    db = db or open_db(cfg.db_url)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(db),
        MAX_CONTENT_LENGTH=int(cfg.max_upload_mb * 1024 * 1024),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.secure_cookies,
    )
    app.extensions["review_db"] = db

    def reviewer() -> str | None:
        if cfg.trust_header:
            name = (request.headers.get(cfg.trust_header) or "").strip()
            if name:
                return name[:64]
        return session.get("user")

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    app.jinja_env.globals.update(csrf_token=csrf_token, labels=[x.value for x in LABELS])

    @app.before_request
    def _auth_and_csrf() -> Any:
        g.user = reviewer()
        if request.method == "POST":
            sent = request.form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                return render_template("error.html", message="The form's CSRF token is missing or stale: "
                                       "reload the page and try again. Nothing was changed."), 400
        return None

    def login_required(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if g.user is None:
                if request.method == "POST":
                    abort(401)
                return redirect(url_for("login", next=request.path))
            return view(*args, **kwargs)

        return wrapped

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_e: Exception) -> tuple[str, int]:
        return render_template("error.html", message=f"Upload too large: the limit is {cfg.max_upload_mb:g} MB "
                               "(geosft review --max-upload-mb). Nothing was imported."), 413

    @app.errorhandler(401)
    def _unauthorised(_e: Exception) -> tuple[str, int]:
        return render_template("error.html", message="Sign in first: no change without a signed-in reviewer."), 401

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            name = request.form.get("name", "")
            if store.check_password(db, name, request.form.get("password", "")):
                session.clear()
                session["user"] = name.strip()
                nxt = request.args.get("next") or ""
                return redirect(nxt if nxt.startswith("/") and not nxt.startswith("//") else url_for("index"))
            error = "Wrong user name or password."
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    @login_required
    def index() -> str:
        show_all = request.args.get("all") == "1"
        with db() as s:
            rows = store.queue(s, include_decided=show_all)
            stats = store.agreement(s)
            pending = sum(1 for _ in store.queue(s))
            total = s.query(Item).count()
        return render_template("queue.html", rows=rows, stats=stats, pending=pending, total=total,
                               show_all=show_all)

    @app.get("/items/<int:item_id>")
    @login_required
    def item(item_id: int) -> str:
        with db() as s:
            it = s.get(Item, item_id)
            if it is None:
                abort(404)
            events = store.history(s, item_id)
            ctx = store.contexts(s, list(it.context_ids))
        current = events[-1].after if events else it.model_answer()
        return render_template("item.html", item=it, events=events, ctx=ctx, current=current,
                               seen_seq=events[-1].seq if events else 0)

    @app.post("/items/<int:item_id>/decide")
    @login_required
    def decide(item_id: int) -> Any:
        f = request.form
        with db() as s:
            it = s.get(Item, item_id)
            if it is None:
                abort(404)
            model = it.model_answer()
        if f.get("action") == "confirm":
            if model["flag"] is None:
                flash("The model gave no valid answer to confirm: choose a label and save a correction.", "error")
                return redirect(url_for("item", item_id=item_id))
            values = {k: model[k] for k in ("flag", "law", "citation", "reason")}
        else:
            values = {k: f.get(k) for k in ("flag", "law", "citation", "reason")}
        try:
            ev, raced = store.decide(db, item_id, g.user, **values, note=f.get("note"),
                                     seen_seq=int(f.get("seen_seq") or 0))
        except (UserError, ContractError, ValueError) as e:
            flash(f"Not recorded: {e}", "error")
            return redirect(url_for("item", item_id=item_id))
        flash(f"Recorded: {ev.action} of '{it.name}' by {g.user}.", "ok")
        if raced is not None:
            flash(f"{raced.reviewer} decided this item while you had it open; both decisions are in its "
                  "history.", "warn")
        with db() as s:
            nxt = store.queue(s)
        return redirect(url_for("item", item_id=nxt[0][0].id) if nxt else url_for("index"))

    @app.post("/import")
    @login_required
    def import_() -> Any:
        pred = request.files.get("predictions")
        if pred is None or not pred.filename:
            flash("Not imported: choose a predictions file (.jsonl or .csv from geosft predict).", "error")
            return redirect(url_for("index"))
        with tempfile.TemporaryDirectory(prefix="geocomply-review-") as tmp:
            paths: dict[str, Path] = {}
            for key in ("predictions", "features", "chunks"):
                up = request.files.get(key)
                if up is not None and up.filename:
                    # Saved under the uploaded name, so errors read "predictions.jsonl:3: field ...".
                    p = Path(tmp) / key / (secure_filename(up.filename) or f"{key}.jsonl")
                    p.parent.mkdir()
                    up.save(p)
                    paths[key] = p
            try:
                res = store.import_predictions(db, paths["predictions"], g.user, features=paths.get("features"),
                                               chunks=paths.get("chunks"), filename=pred.filename)
            except (UserError, ContractError) as e:
                msg = str(e)
                for p in paths.values():
                    msg = msg.replace(str(p.parent) + "/", "")
                flash(f"Not imported (nothing was changed): {msg}", "error")
                return redirect(url_for("index"))
        flash(f"Imported {res.added} item(s) from {pred.filename}; {res.skipped} already there; "
              f"{res.chunks} law chunk(s).", "ok")
        return redirect(url_for("index"))

    def _download(text: str, name: str) -> Response:
        return Response(text, mimetype="application/jsonl",
                        headers={"Content-Disposition": f"attachment; filename={name}"})

    @app.get("/export/<kind>.jsonl")
    @login_required
    def export(kind: str) -> Response:
        with db() as s:
            exp = store.build_export(s)
        if kind == "features":
            return _download(store.features_jsonl(exp), "reviewed_features.jsonl")
        if kind == "train":
            return _download(store.train_jsonl(exp), "reviewed_train.jsonl")
        abort(404)

    @app.get("/agreement.json")
    @login_required
    def agreement_json() -> Any:
        with db() as s:
            return store.agreement(s) or {"n": 0}

    return app


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8765):
    """A threaded WSGI server (werkzeug): one thread per request, enough for a team of reviewers."""
    from werkzeug.serving import make_server as _make

    return _make(host, port, app, threaded=True)


def users_exist(db: sessionmaker) -> bool:
    from sft.review.db import User

    with db() as s:
        return s.scalars(select(User.id).limit(1)).first() is not None
