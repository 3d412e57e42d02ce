"""Review-app fixtures: a real database (SQLite file; PostgreSQL when a server answers), real law chunks
from ``geoprep extract``, prediction rows written by geosft predict's own row builder, and the app on a
real threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CORPUS, EXAMPLES

IN_CI = os.environ.get("CI", "").lower() in ("1", "true")  # as tests/test_image.py
# .ci/run starts Debian's PostgreSQL and exports this; locally point it at any server you run.
PG_ENV = "GEOCOMPLY_TEST_PG_URL"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str | None:
    """A PostgreSQL server that answers, or None. In CI a missing server fails instead of skipping."""
    pytest.importorskip("psycopg")
    import psycopg

    url = os.environ.get(PG_ENV) or PG_DEFAULT
    try:
        psycopg.connect(url, connect_timeout=3, autocommit=True).close()
    except psycopg.OperationalError as e:
        if IN_CI:
            pytest.fail(f"CI: PostgreSQL at {url} does not answer ({e}); .ci/run should have started it")
        return None
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty review database per test: a SQLite file, or a new PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.sqlite'}"
        return
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(f"no PostgreSQL server answers (set {PG_ENV}); CI runs these")
    import psycopg

    name = f"review_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def law_chunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real chunks: `geoprep extract` over the Florida HB 3 text in examples/corpus/laws."""
    from typer.testing import CliRunner

    from data_prep.cli import app as geoprep

    tmp = tmp_path_factory.mktemp("laws")
    (tmp / "in").mkdir()
    (tmp / "in" / "us_fl_hb3_2024.txt").write_bytes((CORPUS / "laws" / "us_fl_hb3_2024.txt").read_bytes())
    res = CliRunner().invoke(geoprep, ["extract", str(tmp / "in"), "--out", str(tmp / "chunks.jsonl"),
                                       "--workers", "1"])
    assert res.exit_code == 0, res.output
    return tmp / "chunks.jsonl"


# (feature id, model flag, law, citation index into the chunks or None, confidence, needs_review)
# F-103 has no confidence / needs_review keys at all: predictions written before issue 13.
PREDICTED = [
    ("F-101", "Needs Geo-Compliance", "Florida HB 3 (Online Protections for Minors)", 0, 0.91, False),
    ("F-102", "No Geo-Compliance Needed", None, None, 0.40, True),
    ("F-103", "Needs Geo-Compliance", "Florida HB 3 (Online Protections for Minors)", 3, None, None),
    ("F-104", "Not Enough Information", None, None, 0.55, True),
]


@pytest.fixture()
def predictions(tmp_path: Path, law_chunks: Path) -> Path:
    """predictions.jsonl as geosft predict writes it (its own answer_row), plus issue 13's optional keys."""
    from sft.core.chunks import read_chunks
    from sft.core.contract import Answer, Prediction
    from sft.inference.predict import answer_row, read_features

    chunks = list(read_chunks(law_chunks))
    features = {f.id: f for f in read_features(EXAMPLES / "features.csv", on_error=lambda e: None)}
    out = tmp_path / "predictions.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for fid, flag, law, cite, conf, needs in PREDICTED:
            ctx = chunks[:3] if cite is None else [chunks[cite], chunks[cite + 1], chunks[cite + 2]]
            answer = Answer(compliance_flag=flag, law=law, citation=None if cite is None else chunks[cite].citation,
                            reason=f"model reason for {fid}.")
            row = answer_row(features[fid], Prediction(valid=True, answer=answer), ctx, "tiny-llama@test")
            if conf is not None:
                row["confidence"] = conf
            if needs is not None:
                row["needs_review"] = needs
            fh.write(json.dumps(row) + "\n")
    return out


class LiveApp:
    def __init__(self, url: str, db) -> None:
        self.url, self.db = url, db


@pytest.fixture()
def live_app(db_url: str) -> Iterator[LiveApp]:
    """The review app on a real threaded HTTP server on 127.0.0.1 (1 MB upload limit), reviewers alice and bob."""
    from sft.review.app import ReviewConfig, create_app, make_server
    from sft.review.db import open_db
    from sft.review.store import add_user

    db = open_db(db_url)
    add_user(db, "alice", "alice-password")
    add_user(db, "bob", "bob-password")
    server = make_server(create_app(ReviewConfig(db_url, max_upload_mb=1), db), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", db)
    finally:
        server.shutdown()
        thread.join(10)
        db.kw["bind"].dispose()
