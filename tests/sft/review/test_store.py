"""The review store and the app's HTTP surface, against a real database and a real server on 127.0.0.1:
import is all-or-nothing, the queue order, append-only decisions that survive concurrent reviewers,
auth and CSRF on every write, the admin command, export that geoprep and geosft accept."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from typer.testing import CliRunner

from sft.review import store
from sft.review.db import Event, Item, open_db
from tests.conftest import EXAMPLES


def _count(db, model) -> int:
    with db() as s:
        return len(list(s.scalars(select(model))))


def test_import_queue_order_and_missing_issue13_keys(db_url, predictions, law_chunks):
    db = open_db(db_url)
    res = store.import_predictions(db, predictions, "alice", features=EXAMPLES / "features.csv", chunks=law_chunks)
    assert (res.added, res.skipped, res.chunks) == (4, 0, 30)
    with db() as s:
        order = [(it.feature_id, it.needs_review, it.confidence) for it, _ in store.queue(s)]
    # needs_review first (F-103 has no key: needs review, unknown confidence first), then least confident.
    assert order == [("F-103", True, None), ("F-102", True, 0.40), ("F-104", True, 0.55), ("F-101", False, 0.91)]
    again = store.import_predictions(db, predictions, "alice")
    assert (again.added, again.skipped) == (0, 4)
    db.kw["bind"].dispose()


def test_predict_csv_and_endpoint_json_lines_import_too(db_url, predictions, tmp_path):
    """predictions.csv (geosft predict's own CSV writer) and the endpoint's rows (compliance_flag, no name:
    the name and description come from the features file)."""
    from sft.inference.predict import write_csv

    db = open_db(db_url)
    # Today's predict rows (before issue 13 adds confidence / needs_review to its CSV columns).
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in json.loads(x).items() if k not in ("confidence",
                     "needs_review")}) + "\n" for x in predictions.read_text().splitlines()))
    csv_path = tmp_path / "predictions.csv"
    write_csv(plain, csv_path)
    assert store.import_predictions(db, csv_path, "alice").added == 4
    endpoint = tmp_path / "endpoint.jsonl"
    endpoint.write_text(json.dumps({"id": "F-105", "compliance_flag": "No Geo-Compliance Needed", "law": None,
                                    "citation": None, "reason": "r", "context_ids": [], "model_id": "ep"}) + "\n")
    assert store.import_predictions(db, endpoint, "alice", features=EXAMPLES / "features.csv").added == 1
    with db() as s:
        items = {it.feature_id: it for it, _ in store.queue(s)}
    assert items["F-103"].context_ids == json.loads(predictions.read_text().splitlines()[2])["context_ids"]
    assert all(it.confidence is None and it.needs_review for it in items.values())
    assert items["F-105"].flag == "No Geo-Compliance Needed"
    assert items["F-105"].name == "Notice-and-action form for illegal content in the EU"
    assert items["F-105"].description.startswith("Add an in-app form")
    db.kw["bind"].dispose()


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": "X", "name": "n", "flag": "maybe"}', "field 'flag': unknown label 'maybe'"),
    ('{"id": "X", "name": "n", "flag": "yes", "confidence": 1.5}', "field 'confidence': 1.5 is outside 0..1"),
    ('{"id": "X", "flag": "yes"}', "field 'name': missing (the endpoint's rows have none"),
    ('{"id": "X", "name": "n", "compliance_flag": "perhaps"}', "field 'compliance_flag': unknown label"),
    ('{"id": "X", "name": "n", "context_ids": "a;b", "needs_review": "perhaps"}', "field 'needs_review'"),
    ("not json", "invalid JSON"),
])
def test_a_bad_row_names_file_line_field_and_imports_nothing(db_url, predictions, line, message):
    db = open_db(db_url)
    lines = predictions.read_text().splitlines()
    bad = predictions.with_name("bad.jsonl")
    bad.write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    with pytest.raises(store.ContractError, match=re.escape(f"{bad}:3: ") + ".*" + re.escape(message)):
        store.import_predictions(db, bad, "alice")
    assert _count(db, Item) == 0
    db.kw["bind"].dispose()


def test_concurrent_decisions_on_one_item_are_all_kept_in_order(db_url, predictions):
    db = open_db(db_url)
    store.import_predictions(db, predictions, "alice")
    with db() as s:
        item_id = s.scalars(select(Item.id).where(Item.feature_id == "F-102")).one()
    n = 12
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            store.decide(db, item_id, f"rev{i}", flag="Needs Geo-Compliance", law="Florida HB 3",
                         citation=f"cite {i}", reason="r", seen_seq=0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with db() as s:
        events = store.history(s, item_id)
    assert [e.seq for e in events] == list(range(1, n + 1))
    assert sorted(e.reviewer for e in events) == sorted(f"rev{i}" for i in range(n))
    # Each event's "before" is exactly the previous event's "after": nothing overwritten, nothing skipped.
    assert events[0].before["flag"] == "No Geo-Compliance Needed"
    for prev, cur in zip(events, events[1:], strict=False):
        assert cur.before == prev.after
    db.kw["bind"].dispose()


def test_the_database_refuses_to_rewrite_an_event(db_url, predictions):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    db = open_db(db_url)
    store.import_predictions(db, predictions, "alice")
    with db() as s:
        item_id = store.queue(s)[0][0].id
    store.decide(db, item_id, "alice", flag="yes", law=None, citation=None, reason="r")
    for sql in ("UPDATE events SET reviewer = 'mallory'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), db() as s, s.begin():
            s.execute(text(sql))
    with db() as s:
        assert [e.reviewer for e in store.history(s, item_id)] == ["alice"]
    db.kw["bind"].dispose()


def test_export_is_accepted_by_geoprep_import_and_geosft_check(db_url, predictions, law_chunks, tmp_path):
    from data_prep.cli import app as geoprep
    from sft.cli import app as geosft

    db = open_db(db_url)
    store.import_predictions(db, predictions, "alice", features=EXAMPLES / "features.csv", chunks=law_chunks)
    with db() as s:
        ids = {it.feature_id: it.id for it, _ in store.queue(s)}
    store.decide(db, ids["F-101"], "alice", flag="Needs Geo-Compliance", law="Florida HB 3 (Online Protections "
                 "for Minors)", citation="Fla. Stat. § 501.1736(1)", reason="model reason for F-101.")
    store.decide(db, ids["F-102"], "alice", flag="Needs Geo-Compliance", law="EU DSA", citation=None,
                 reason="Minor-protection default in the EU.", note="PF default-off is a DSA Art. 28 measure")
    out = tmp_path / "export"
    runner = CliRunner()
    res = runner.invoke(geosft, ["review", "export", "--db", db_url, "--out", str(out)])
    assert res.exit_code == 0, res.output
    train, feats = out / "reviewed_train.jsonl", out / "reviewed_features.jsonl"
    check = runner.invoke(geosft, ["check", str(train)])
    assert check.exit_code == 0, check.output
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    assert [json.loads(r["output"])["compliance_flag"] for r in rows] == ["Needs Geo-Compliance"] * 2
    # The training line carries the law context the model saw, from the imported chunks.
    assert "Fla. Stat. § 501.1736(1)" in rows[-1]["input"] or "Fla. Stat." in rows[0]["input"]
    imported = runner.invoke(geoprep, ["import", str(feats), "--out", str(tmp_path / "features.jsonl")])
    assert imported.exit_code == 0, imported.output
    specs = [json.loads(x) for x in (tmp_path / "features.jsonl").read_text().splitlines()]
    assert {s["feature"]["id"]: s["feature"]["label"] for s in specs} == {
        "F-101": "Needs Geo-Compliance", "F-102": "Needs Geo-Compliance"}
    db.kw["bind"].dispose()


def test_add_user_command_hashes_the_password(db_url):
    from sft.cli import app as geosft

    res = CliRunner().invoke(geosft, ["review", "add-user", "carol", "--db", db_url, "--password-stdin"],
                             input="carol-secret-pw\n")
    assert res.exit_code == 0, res.output
    db = open_db(db_url)
    assert store.check_password(db, "carol", "carol-secret-pw")
    assert not store.check_password(db, "carol", "wrong-password")
    from sft.review.db import User

    with db() as s:
        assert "carol-secret-pw" not in s.scalars(select(User.password_hash)).one()
    short = CliRunner().invoke(geosft, ["review", "add-user", "dan", "--db", db_url, "--password-stdin"],
                               input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in str(short.exception)
    db.kw["bind"].dispose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_no_write_without_a_signed_in_reviewer_and_a_csrf_token(live_app, predictions):
    anon = requests.Session()
    page = anon.get(live_app.url + "/")
    assert page.url.endswith("/login?next=/")  # the queue needs a reviewer
    files = {"predictions": ("predictions.jsonl", predictions.read_bytes())}
    # Signed out, even with the session's CSRF token: 401, nothing imported.
    r = anon.post(live_app.url + "/import", data={"csrf": _csrf(page.text)}, files=files)
    assert r.status_code == 401
    # Signed in, but no CSRF token (a cross-site form): 400, nothing imported.
    alice = requests.Session()
    login = alice.get(live_app.url + "/login")
    r = alice.post(live_app.url + "/login", data={"csrf": _csrf(login.text), "name": "alice",
                                                  "password": "alice-password"})
    assert "signed in as" in r.text
    r = alice.post(live_app.url + "/import", files=files)
    assert r.status_code == 400 and "CSRF" in r.text
    r = alice.post(live_app.url + "/import", data={"csrf": "forged"}, files=files)
    assert r.status_code == 400
    assert _count(live_app.db, Item) == 0
    wrong = requests.Session()
    login = wrong.get(live_app.url + "/login")
    r = wrong.post(live_app.url + "/login", data={"csrf": _csrf(login.text), "name": "alice", "password": "nope"})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    # With both: imported.
    r = alice.post(live_app.url + "/import", data={"csrf": _csrf(alice.get(live_app.url + "/").text)}, files=files)
    assert "Imported 4 item(s)" in r.text
    assert _count(live_app.db, Event) == 0


def test_trusted_proxy_header_names_the_reviewer(db_url, predictions):
    from sft.review.app import ReviewConfig, create_app, make_server

    db = open_db(db_url)
    store.import_predictions(db, predictions, "cli")
    server = make_server(create_app(ReviewConfig(db_url, trust_header="X-Forwarded-User"), db), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        s = requests.Session()
        s.headers["X-Forwarded-User"] = "proxy-user"
        page = s.get(url + "/")
        assert "proxy-user" in page.text
        with db() as ses:
            item_id = store.queue(ses)[0][0].id
        r = s.post(f"{url}/items/{item_id}/decide", data={"csrf": _csrf(page.text), "action": "correct",
                                                          "flag": "Not Enough Information", "seen_seq": "0"})
        assert r.status_code == 200
        with db() as ses:
            assert [(e.reviewer, e.action) for e in store.history(ses, item_id)] == [("proxy-user", "correct")]
        assert requests.get(url + "/", allow_redirects=False).status_code == 302  # no header: sign in
    finally:
        server.shutdown()
        t.join(10)
        db.kw["bind"].dispose()


def test_open_db_on_a_dead_server_is_one_line(tmp_path: Path):
    with pytest.raises(store.UserError, match="cannot open the review database"):
        open_db("postgresql://nobody@127.0.0.1:1/none")
