"""geoprep extract on real bundled PDFs/texts plus deliberately broken PDFs made here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from data_prep.extract import report_path, run_extract
from sft.core.chunks import read_chunks, write_chunks
from sft.core.contract import ContractError
from tests.conftest import CORPUS

PDFS = CORPUS / "pdfs"
LAWS = CORPUS / "laws"

TEST_REGISTRY = """
laws:
  - law_id: test_law
    title: Test Law
    jurisdiction: US-TX
    citation: "Test Code § {unit}"
    style: us
    unit_regex: '^(100\\.\\d+)\\s'
    patterns: ["broken_*"]
"""


def _broken_pdfs(d: Path) -> dict[str, str]:
    """name -> expected cause fragment."""
    import pymupdf

    real = (PDFS / "FL_2024_HB3_hb0003-04-er.pdf").read_bytes()
    (d / "broken_truncated.pdf").write_bytes(real[:2000])
    (d / "broken_empty.pdf").write_bytes(b"")
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "100.1 Secret. (1) hidden text")
    doc.save(d / "broken_encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    img = pymupdf.open()
    page = img.new_page()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.clear_with(200)
    page.insert_image(pymupdf.Rect(72, 72, 300, 300), pixmap=pix)
    img.save(d / "broken_scan.pdf")
    return {
        "broken_truncated.pdf": "corrupt",
        "broken_empty.pdf": "empty file",
        "broken_encrypted.pdf": "encrypted",
        "broken_scan.pdf": "no text layer",
    }


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("in")
    for name in ("FL_2024_HB3_hb0003-04-er.pdf", "UT_2023_SB0152_enrolled.pdf", "CA_SB976_2024_leginfo_print.pdf"):
        shutil.copy(PDFS / name, d / name)
    for name in ("us_18usc2258a.txt", "us_ut_hb311_2023.txt", "us_ca_sb976_2024.txt"):
        shutil.copy(LAWS / name, d / name)
    (d / "meeting_notes.txt").write_text("not a law\n")
    broken = _broken_pdfs(d)
    reg = tmp_path_factory.mktemp("reg") / "my_laws.yaml"
    reg.write_text(TEST_REGISTRY)
    out = tmp_path_factory.mktemp("out") / "chunks.jsonl"
    report = run_extract(d, out, registry_file=reg, workers=2, progress=False)
    return d, reg, out, report, broken


def test_broken_and_unknown_files_are_reported_with_cause_and_run_completes(corpus_run):
    _, _, out, report, broken = corpus_run
    on_disk = json.loads(report_path(out).read_text())
    by_file = {f["file"]: f for f in on_disk["files"]}
    for name, cause in broken.items():
        assert by_file[name]["status"] == "skipped", name
        assert cause in by_file[name]["cause"], (name, by_file[name]["cause"])
    assert by_file["meeting_notes.txt"]["status"] == "skipped"
    assert "--registry" in by_file["meeting_notes.txt"]["cause"]
    # the good files still went through
    assert {"us_fl_hb3", "us_ut_sb152", "us_ca_sb976", "us_18usc2258a", "us_ut_hb311"} <= set(
        on_disk["chunks_per_law"]
    )
    # CA comes as a PDF and a text: the PDF wins (page numbers), the text is reported as a duplicate
    assert by_file["us_ca_sb976_2024.txt"]["status"] == "duplicate"


def test_chunks_have_pinpoint_citations_pages_and_no_page_furniture(corpus_run):
    _, _, out, _, _ = corpus_run
    chunks = {c.id: c for c in read_chunks(out)}
    assert len(chunks) == sum(1 for line in out.read_text().splitlines() if line.strip())  # ids unique
    fl = chunks["us_fl_hb3#s501.1736-2"]
    assert fl.citation == "Fla. Stat. § 501.1736(2)" and fl.jurisdiction == "US-FL" and fl.page == 5
    assert "Page 3 of 20" not in fl.snippet and "CODING" not in fl.snippet and "hb0003" not in fl.snippet
    assert "minor" in fl.snippet
    ut = chunks["us_ut_sb152#s13-63-102-1"]
    assert ut.citation == "Utah Code § 13-63-102(1)" and ut.page == 9
    assert "Enrolled Copy" not in ut.snippet
    ca = chunks["us_ca_sb976#s27002-a"]
    assert ca.citation == "Cal. Health & Saf. Code § 27002(a)" and ca.page == 3
    assert "12 a.m. and 6 a.m." in ca.snippet and "leginfo" not in ca.snippet
    # "internet-" ends a line in the PDF: the compound is joined without a space (it was "internet- based")
    assert "addictive internet-based service or application, between" in ca.snippet
    usc = [c for c in chunks.values() if c.law_id == "us_18usc2258a"]
    assert {c.citation for c in usc} == {f"18 U.S.C. § 2258A({x})" for x in "abcdefgh"}
    assert all(c.page is None for c in usc)  # plain text has no pages
    assert "Editorial Notes" not in " ".join(c.snippet for c in chunks.values())
    hb311 = [c for c in chunks.values() if c.law_id == "us_ut_hb311"]
    assert {c.section for c in hb311} >= {"13-63-101", "13-63-201", "13-63-301"}
    # line numbers of the bill margins never leak into the text
    assert not any(w.isdigit() and 100 < int(w) < 500 for w in fl.snippet.split())
    # chunks fit a 512-token prompt with room to spare
    assert max(len(c.snippet) for c in chunks.values()) < 2000


def test_dsa_pdf_articles_paragraphs_pages_and_no_running_headers(tmp_path: Path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(PDFS / "CELEX_32022R2065_EN_TXT.pdf", d)
    out = tmp_path / "dsa.jsonl"
    run_extract(d, out, progress=False)
    chunks = {c.id: c for c in read_chunks(out)}
    art28 = chunks["eu_dsa#art28-1"]
    assert art28.citation == "DSA Art. 28(1)" and art28.page == 60 and art28.title == "EU Digital Services Act"
    assert art28.snippet.startswith("Article 28 - Online protection of minors: 1. Providers of online platforms")
    articles = {c.article for c in chunks.values()}
    assert articles == {str(n) for n in range(1, 94)}
    text = " ".join(c.snippet for c in chunks.values())
    assert "Official Journal of the European Union 27.10.2022" not in text  # the running header
    assert "L 277/" not in text
    # compounds broken at a line end are whole again: "user-" / "friendly" is "user-friendly", not "user- friendly"
    assert "easy to access, user-friendly and" in chunks["eu_dsa#art20-3"].snippet
    assert not re.findall(r"\b[a-z]+- (?!(?:or|and|nor|to)\b)[a-z]+", text)
    assert "OJ L 119, 4.5.2016" not in text  # page-foot footnotes dropped


def test_rerun_resumes_from_cache_without_duplicates(corpus_run, tmp_path: Path):
    d, reg, out, first, _ = corpus_run
    out2 = tmp_path / "chunks.jsonl"
    shutil.copytree(out.with_name(out.name + ".parts"), out2.with_name(out2.name + ".parts"))
    # "interrupted": one file's part is missing, so only that file is extracted again
    parts = sorted(out2.with_name(out2.name + ".parts").glob("*us_fl_hb3.jsonl"))
    parts[0].unlink()
    again = run_extract(d, out2, registry_file=reg, progress=False)
    status = {f.file: f.status for f in again.files}
    assert status["FL_2024_HB3_hb0003-04-er.pdf"] == "ok"
    assert status["UT_2023_SB0152_enrolled.pdf"] == "cached"
    assert out2.read_text() == out.read_text()
    assert again.chunks_per_law == first.chunks_per_law


def test_changed_registry_entry_is_not_served_from_cache(corpus_run, tmp_path: Path):
    d, _, out, _, _ = corpus_run
    out2 = tmp_path / "chunks.jsonl"
    shutil.copytree(out.with_name(out.name + ".parts"), out2.with_name(out2.name + ".parts"))
    reg = tmp_path / "renamed.yaml"
    reg.write_text(TEST_REGISTRY + """  - law_id: us_18usc2258a
    title: Child exploitation reporting
    jurisdiction: US
    citation: "18 USC {unit}"
    style: us
    unit_regex: '^18 U\\.S\\. Code § (2258A)\\b'
    patterns: ["*2258a*"]
""")
    again = run_extract(d, out2, registry_file=reg, progress=False)
    status = {f.file: f.status for f in again.files}
    assert status["us_18usc2258a.txt"] == "ok" and status["UT_2023_SB0152_enrolled.pdf"] == "cached"
    usc = [c for c in read_chunks(out2) if c.law_id == "us_18usc2258a"]
    assert usc and all(c.citation.startswith("18 USC 2258A") and c.title.startswith("Child") for c in usc)


def test_read_chunks_names_file_and_line(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    good = next(read_chunks(_one_chunk_file(tmp_path)))
    write_chunks(path, [good])
    with path.open("a") as fh:
        fh.write(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ContractError, match=r"c\.jsonl:2: field 'law_id'"):
        list(read_chunks(path))


def _one_chunk_file(tmp_path: Path) -> Path:
    out = tmp_path / "one.jsonl"
    d = tmp_path / "one"
    d.mkdir()
    shutil.copy(LAWS / "us_18usc2258a.txt", d)
    run_extract(d, out, progress=False)
    return out


def test_nothing_extracted_is_an_error_not_an_empty_file(tmp_path: Path):
    from sft.core.errors import UserError

    d = tmp_path / "in"
    d.mkdir()
    (d / "meeting_notes.txt").write_text("not a law\n")
    out = tmp_path / "chunks.jsonl"
    with pytest.raises(UserError, match=r"no law text extracted: 1 file\(s\), none usable \(first: meeting_notes"):
        run_extract(d, out, workers=1, progress=False)
    assert not out.exists()


def test_killed_extract_leaves_no_worker_behind(tmp_path: Path):
    """SIGKILL of the parent (no cleanup runs): its pool workers get SIGTERM from the kernel and go."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    d = tmp_path / "in"
    shutil.copytree(PDFS, d)
    code = ("import sys; from pathlib import Path; from data_prep.extract import run_extract; "
            "run_extract(Path(sys.argv[1]), Path(sys.argv[2]), workers=2, progress=False)")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code, str(d), str(tmp_path / "chunks.jsonl")],
                            env={**os.environ, "PYTHONPATH": str(repo)})
    parent = psutil.Process(proc.pid)
    workers: list = []
    deadline = time.time() + 60
    while len(workers) < 2 and proc.poll() is None and time.time() < deadline:
        workers = [c for c in parent.children() if c.cmdline() and "multiprocessing" in " ".join(c.cmdline())] \
            or parent.children()
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("extraction finished before its workers could be seen")
    time.sleep(0.5)  # let the workers run their initializer
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"{len(alive)} worker(s) outlived their killed parent"
