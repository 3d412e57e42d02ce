"""The review queue in a real browser: headless Chromium (Debian's, installed by .ci/run) driven by
Playwright, against the app on a real HTTP server and a real database (SQLite; PostgreSQL when a server
answers, always in CI)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sft.review import store
from sft.review.db import Event, Item
from tests.conftest import EXAMPLES, REPO
from tests.sft.review.conftest import IN_CI

CHROMIUM = os.environ.get("GEOCOMPLY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = os.environ.get("GEOCOMPLY_REVIEW_SCREENSHOT")  # set to write docs/review-queue.png


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"CI: no Chromium at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("no Chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    pw = sync_api.sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield b
    b.close()
    pw.stop()


def _sign_in(browser, url: str, name: str):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(url + "/")
    assert "/login" in page.url
    page.fill("#name", name)
    page.fill("#password", f"{name}-password")
    page.click("button[type=submit]")
    assert page.text_content("#who") == name
    return page


def _import(page, predictions: Path, chunks: Path | None = None, features: Path | None = None) -> None:
    page.set_input_files("#predictions", str(predictions))
    if features:
        page.set_input_files("#features", str(features))
    if chunks:
        page.set_input_files("#chunks", str(chunks))
    page.click("#import-form button[type=submit]")


def _flashes(page) -> str:
    return " | ".join(page.locator(".flash").all_text_contents())


def test_sign_in_import_review_three_export(browser, live_app, predictions, law_chunks, tmp_path):
    from data_prep.cli import app as geoprep
    from sft.cli import app as geosft

    page = _sign_in(browser, live_app.url, "alice")
    _import(page, predictions, chunks=law_chunks, features=EXAMPLES / "features.csv")
    assert "Imported 4 item(s)" in _flashes(page)
    names = page.locator("#queue tr[data-href] td:nth-child(2) .muted").all_text_contents()
    assert names == ["F-103", "F-102", "F-104", "F-101"]  # needs_review, then least confident

    # 1. Keyboard: Enter opens the top item (F-103); its law snippets and citations are there; 'c' confirms.
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "F-103" in page.text_content("#feature-name")
    assert page.locator("#snippets .law").count() == 3
    assert "Fla. Stat. § 501.1736" in page.text_content("#snippets")
    with page.expect_navigation():
        page.keyboard.press("c")
    assert "Recorded: confirm" in _flashes(page)
    # 2. The next item (F-102) opens by itself: '1' picks "Needs Geo-Compliance", fields, Ctrl+Enter saves.
    assert "F-102" in page.text_content("#feature-name")
    page.keyboard.press("1")
    page.fill("#law", "EU Digital Services Act")
    page.fill("#citation", "DSA Art. 28(1)")
    page.fill("#reason", "Default-off profiling for EU minors is a DSA Art. 28 protection measure.")
    page.fill("#note", "model missed the minor-protection purpose")
    with page.expect_navigation():
        page.press("#note", "Control+Enter")
    assert "Recorded: correct" in _flashes(page)
    # 3. F-104 by mouse: a different label.
    assert "F-104" in page.text_content("#feature-name")
    page.select_option("#flag", "Needs Geo-Compliance")
    page.fill("#law", "Federal law 18 U.S.C. 2258A")
    page.fill("#citation", "18 U.S.C. § 2258A(a)")
    page.click("#save")
    assert "Recorded: correct" in _flashes(page)

    # History on the item; live agreement on the queue: 1 of 3 agreed.
    with live_app.db() as s:
        f102 = s.scalars(select(Item.id).where(Item.feature_id == "F-102")).one()
    page.goto(f"{live_app.url}/items/{f102}")
    hist = page.text_content("#history")
    assert "alice" in hist and "correct" in hist and "model missed the minor-protection purpose" in hist
    page.goto(live_app.url + "/")
    assert "accuracy 33.3 %" in page.text_content("#agreement") and "over 3 reviewed" in page.text_content(
        "#agreement")
    if SCREENSHOT:  # docs/review-queue.png: the queue with every item, decisions and the live agreement
        page.goto(live_app.url + "/?all=1")
        page.screenshot(path=SCREENSHOT, full_page=True)

    # Export through the browser; geosft check and geoprep import accept the files.
    with page.expect_download() as dl:
        page.click("#export-train")
    train = tmp_path / "reviewed_train.jsonl"
    dl.value.save_as(train)
    with page.expect_download() as dl:
        page.click("#export-features")
    feats = tmp_path / "reviewed_features.jsonl"
    dl.value.save_as(feats)
    runner = CliRunner()
    check = runner.invoke(geosft, ["check", str(train)])
    assert check.exit_code == 0, check.output
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    assert len(rows) == 3
    answers = {r["id"]: json.loads(r["output"]) for r in rows}
    assert answers["review:F-102"]["citation"] == "DSA Art. 28(1)"
    assert answers["review:F-103"]["compliance_flag"] == "Needs Geo-Compliance"
    imported = runner.invoke(geoprep, ["import", str(feats), "--out", str(tmp_path / "features.jsonl")])
    assert imported.exit_code == 0, imported.output
    page.context.close()


def test_two_reviewers_at_once_lose_no_decision(browser, live_app, predictions):
    store.import_predictions(live_app.db, predictions, "cli")
    with live_app.db() as s:
        ids = [it.id for it, _ in store.queue(s)]
    alice = _sign_in(browser, live_app.url, "alice")
    bob = _sign_in(browser, live_app.url, "bob")
    for item_id in ids[:3]:  # both open the same item, then both submit at the same moment
        alice.goto(f"{live_app.url}/items/{item_id}")
        bob.goto(f"{live_app.url}/items/{item_id}")
        alice.fill("#confirm-note", f"alice on {item_id}")
        bob.select_option("#flag", "Not Enough Information")
        bob.fill("#note", f"bob on {item_id}")
        with alice.expect_navigation(), bob.expect_navigation():
            alice.click("#confirm", no_wait_after=True)
            bob.click("#save", no_wait_after=True)
        # Whoever came second is told, on the page the decision led to.
        assert "while you had it open" in _flashes(alice) + _flashes(bob)
    with live_app.db() as s:
        events = list(s.scalars(select(Event).order_by(Event.item_id, Event.seq)))
    assert len(events) == 6
    for item_id in ids[:3]:
        evs = [e for e in events if e.item_id == item_id]
        assert [e.seq for e in evs] == [1, 2]
        assert sorted(e.note for e in evs) == [f"alice on {item_id}", f"bob on {item_id}"]
        assert evs[1].before == evs[0].after  # the second saw the first, nothing overwritten
    alice.goto(f"{live_app.url}/items/{ids[0]}")
    assert alice.locator("#history tr").count() == 3  # header + both decisions
    alice.context.close()
    bob.context.close()


def test_a_bad_upload_shows_a_clear_error_and_changes_nothing(browser, live_app, predictions, tmp_path):
    page = _sign_in(browser, live_app.url, "alice")
    _import(page, predictions)
    assert "Imported 4 item(s)" in _flashes(page)
    before = page.inner_html("#queue")

    bad = tmp_path / "team_predictions.jsonl"
    lines = predictions.read_text().splitlines()
    extra = json.loads(lines[0]) | {"id": "F-999", "flag": "Probably fine"}
    bad.write_text("\n".join([json.dumps(json.loads(lines[0]) | {"id": "F-998"}), json.dumps(extra)]) + "\n")
    _import(page, bad)
    msg = _flashes(page)
    assert "Not imported (nothing was changed): team_predictions.jsonl:2: field 'flag': unknown label " \
           "'Probably fine'" in msg, msg
    assert str(tmp_path) not in msg  # no server paths in the message
    assert page.inner_html("#queue") == before

    huge = tmp_path / "huge.jsonl"
    huge.write_bytes(b"x" * (1024 * 1024 + 10))  # over the 1 MB limit of the live_app fixture
    _import(page, huge)
    assert "Upload too large: the limit is 1 MB" in page.text_content("[role=alert]")

    wrong = tmp_path / "predictions.txt"
    wrong.write_text("hello\n")
    page.goto(live_app.url + "/")
    _import(page, wrong)
    assert "unsupported predictions file type '.txt'" in _flashes(page)

    with live_app.db() as s:
        assert len(list(s.scalars(select(Item)))) == 4
    page.goto(live_app.url + "/")
    assert page.inner_html("#queue") == before
    page.context.close()


def test_screenshot_of_the_queue_is_in_docs():
    assert (REPO / "docs" / "review-queue.png").stat().st_size > 10_000
