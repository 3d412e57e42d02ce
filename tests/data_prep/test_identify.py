"""geoprep extract on documents as compliance teams collect them, built here as real PDFs with PyMuPDF:
bundled official PDFs re-wrapped the way a legal research database exports them, an unregistered statute,
an opinion, a report and a scanned page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_prep.extract import report_path, run_extract
from data_prep.pdftext import tessdata
from sft.core.chunks import read_chunks
from tests.conftest import CORPUS

PDFS = CORPUS / "pdfs"
COVER = [
    "About LexisNexis | Privacy Policy | Terms & Conditions | Copyright © 2024 LexisNexis",
    "Job Number: 219283746",
    "Document (1)",
    "Client/Matter: -None-",
    "Search Terms: social media minors age verification",
    "Search Type: Natural Language",
    "Narrowed by: Content Type: Statutes and Legislation",
]


def db_export(src: Path, dst: Path, heading: str) -> None:
    """``src`` as a legal database exports it: a cover page of the database's boilerplate naming the
    document, then every page with the database's header and footer added."""
    import pymupdf

    with pymupdf.open(src) as orig, pymupdf.open() as out:
        n = orig.page_count + 1
        for i in range(n):
            rect = orig[max(i - 1, 0)].rect
            page = out.new_page(width=rect.width, height=rect.height)
            if i == 0:
                page.insert_textbox(pymupdf.Rect(50, 60, rect.width - 50, rect.height - 60),
                                    "\n\n".join([*COVER, f"1. {heading}"]), fontsize=10)
            else:
                page.show_pdf_page(page.rect, orig, i - 1)
            page.insert_text((40, 14), heading, fontsize=7)
            page.insert_text((40, rect.height - 14), f"Page {i + 1} of {n}", fontsize=7)
            page.insert_text((300, rect.height - 14), "Copyright © 2024 LexisNexis. All rights reserved.", fontsize=7)
        out.save(dst)


def write_pdf(path: Path, pages: list[list[str]], title: str = "") -> None:
    """A text PDF: one block per paragraph, so PyMuPDF sees paragraphs as a real document's."""
    import pymupdf

    doc = pymupdf.open()
    for paras in pages:
        page = doc.new_page()
        y = 72.0
        for para in paras:
            rect = pymupdf.Rect(72, y, 540, y + 200)
            spare = page.insert_textbox(rect, para, fontsize=10)
            y += 200 - spare + 12
    doc.set_metadata({"title": title})
    doc.save(path)


STATUTE = [
    [
        "H.B. No. 18",
        "AN ACT relating to the protection of minors from harmful content on digital services.",
        "BE IT ENACTED BY THE LEGISLATURE OF THE STATE OF TEXAS:",
        "SECTION 1. Subtitle A, Title 11, Business & Commerce Code, is amended by adding Chapter 509 to read "
        "as follows:",
        "Sec. 509.001. DEFINITIONS. In this chapter, \"digital service provider\" means a person who owns or "
        "operates a website or application that allows users to socially interact with other users.",
        "Sec. 509.051. REGISTRATION OF AGE. A digital service provider may not enter into an agreement with a "
        "person to create an account without registering the age of the person.",
    ],
    [
        "Sec. 509.052. DUTIES OF PROVIDER. (a) A digital service provider shall limit the collection of the "
        "known minor's personal identifying information to information reasonably necessary to provide the "
        "digital service.",
        "(b) A digital service provider shall not allow the known minor to make purchases or engage in other "
        "financial transactions through the digital service.",
        "Sec. 509.053. CONTACT. A digital service provider shall provide a toll-free telephone number and an "
        "electronic mail address for inquiries from users.",
        "SECTION 2. This Act takes effect September 1, 2024.",
    ],
]
OPINION = [
    [
        "IN THE UNITED STATES DISTRICT COURT FOR THE DISTRICT OF UTAH",
        "NETCHOICE, LLC, Plaintiff, v. SEAN D. REYES, in his official capacity as Attorney General of Utah, "
        "Defendant.",
        "Case No. 2:23-cv-00911",
        "MEMORANDUM DECISION AND ORDER GRANTING PRELIMINARY INJUNCTION",
        "Background",
        "Plaintiff challenges the Utah Minor Protection in Social Media Act, which requires social media "
        "companies to verify the age of every account holder.",
    ],
    [
        "Analysis",
        "The Court finds that Plaintiff is likely to succeed on its claim that the age assurance requirement "
        "burdens the speech of adults and minors alike.",
    ],
]
REPORT = [
    [
        "Congressional Research Service",
        "Social Media and Minors: Federal Legislation in the 118th Congress",
        "Summary",
        "Members of Congress have introduced bills that would require platforms to verify users' ages, "
        "limit data collection from minors and restrict targeted advertising.",
    ],
    [
        "Introduction",
        "This report describes the bills and the constitutional questions they raise under the First Amendment.",
    ],
]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("collected")
    db_export(PDFS / "UT_2023_SB0152_enrolled.pdf", d / "SOCIAL MEDIA REGULATION AMENDMENTS, 2023 Ut. SB 152.PDF",
              "SOCIAL MEDIA REGULATION AMENDMENTS, 2023 Ut. SB 152")
    db_export(PDFS / "FL_2024_HB3_hb0003-04-er.pdf", d / "2024 Bill Text FL H.B. 3.PDF", "2024 Bill Text FL H.B. 3")
    db_export(PDFS / "CELEX_32022R1925_EN_TXT.pdf", d / "Digital Markets Act - EUR-Lex.PDF",
              "Regulation (EU) 2022/1925 of the European Parliament and of the Council")
    write_pdf(d / "tx_hb18_enrolled.pdf", STATUTE)
    write_pdf(d / "netchoice v reyes order.pdf", OPINION)
    write_pdf(d / "crs social media minors.pdf", REPORT, title="Social Media and Minors (CRS)")
    out = tmp_path_factory.mktemp("out") / "chunks.jsonl"
    report = run_extract(d, out, workers=1, progress=False, ocr="never")
    by_file = {f["file"]: f for f in json.loads(report_path(out).read_text())["files"]}
    return d, out, by_file, list(read_chunks(out)), report


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("official")
    for name in ("UT_2023_SB0152_enrolled.pdf", "FL_2024_HB3_hb0003-04-er.pdf", "CELEX_32022R1925_EN_TXT.pdf"):
        shutil.copy(PDFS / name, d)
    out = d / "chunks.jsonl"
    run_extract(d, out, workers=1, progress=False, ocr="never")
    return {c.id: c for c in read_chunks(out)}


@pytest.mark.parametrize("name,law_id", [
    ("SOCIAL MEDIA REGULATION AMENDMENTS, 2023 Ut. SB 152.PDF", "us_ut_sb152"),
    ("2024 Bill Text FL H.B. 3.PDF", "us_fl_hb3"),
    ("Digital Markets Act - EUR-Lex.PDF", "eu_dma"),
])
def test_database_exports_are_matched_by_content_and_chunk_like_the_official_pdf(collected, official, name, law_id):
    _, _, by_file, chunks, _ = collected
    f = by_file[name]
    assert (f["status"], f["law_id"], f["found_by"], f["doc_kind"]) == ("ok", law_id, "content", "law")
    assert any("cover page removed" in n for n in f["notes"])
    mine = {c.id: c for c in chunks if c.law_id == law_id}
    theirs = {i: c for i, c in official.items() if c.law_id == law_id}
    # the same provisions with the same citations; pages shift by the cover page
    assert set(mine) == set(theirs)
    for cid, c in mine.items():
        assert c.citation == theirs[cid].citation and c.snippet == theirs[cid].snippet, cid
        assert c.page == theirs[cid].page + 1 and c.found_by == "content"
    text = " ".join(c.snippet for c in mine.values())
    for boilerplate in ("LexisNexis", "Privacy Policy", "Job Number", "Search Terms", "Document (1)", "Page 3 of"):
        assert boilerplate not in text


def test_unregistered_statute_is_chunked_with_section_citations_and_its_jurisdiction(collected):
    _, _, by_file, chunks, _ = collected
    f = by_file["tx_hb18_enrolled.pdf"]
    assert (f["status"], f["found_by"], f["doc_kind"], f["jurisdiction"]) == ("ok", "inferred", "law", "US-TX")
    tx = {c.citation: c for c in chunks if c.law_id == f["law_id"]}
    assert {c.section for c in tx.values()} == {"509.001", "509.051", "509.052", "509.053"}
    duty = next(c for cite, c in tx.items() if cite.endswith("§ 509.052(b)"))
    assert "shall not allow the known minor to make purchases" in duty.snippet and duty.page == 2
    assert all(c.jurisdiction == "US-TX" and c.doc_kind == "law" and c.found_by == "inferred" for c in tx.values())
    assert "takes effect" not in " ".join(c.snippet for c in tx.values())  # SECTION 2. ends the codified text
    assert duty.title == "TX HB 18" and duty.citation == "TX HB 18 § 509.052(b)"


@pytest.mark.parametrize("name,jurisdiction", [
    ("netchoice v reyes order.pdf", "US-UT"),
    ("crs social media minors.pdf", "US"),
])
def test_opinions_and_reports_become_secondary_chunks_cited_by_page(collected, name, jurisdiction):
    _, _, by_file, chunks, _ = collected
    f = by_file[name]
    assert (f["status"], f["doc_kind"], f["jurisdiction"]) == ("ok", "secondary", jurisdiction)
    mine = [c for c in chunks if c.law_id == f["law_id"]]
    assert {c.page for c in mine} == {1, 2}
    assert all(c.citation.endswith(f", p. {c.page}") and c.doc_kind == "secondary" for c in mine)
    title = "Social Media and Minors (CRS)" if name.startswith("crs") else "NETCHOICE, LLC v. SEAN D. REYES"
    assert mine[0].title == title  # the PDF metadata's title; the case caption


def test_secondary_sources_are_never_mined_as_an_answers_law(collected):
    from data_prep.mine import mine

    _, _, by_file, chunks, _ = collected
    secondary = [c for c in chunks if c.doc_kind == "secondary"]
    assert secondary and not mine(secondary)
    laws = {o.law_id for o in mine(chunks)}
    assert not laws & {c.law_id for c in secondary}


def _scan_pdf(path: Path) -> None:
    """Page 1 a statute page with text; page 2 the next page as a scanned image (no text layer)."""
    import pymupdf

    write_pdf(path.with_suffix(".src.pdf"), STATUTE)
    with pymupdf.open(path.with_suffix(".src.pdf")) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=0, to_page=0)
        pix = src[1].get_pixmap(dpi=200)
        page = out.new_page(width=src[1].rect.width, height=src[1].rect.height)
        page.insert_image(page.rect, pixmap=pix)
        out.save(path)
    path.with_suffix(".src.pdf").unlink()


def _extract_scan(tmp_path: Path, ocr: str) -> dict:
    """Extract the half-scanned statute with ``ocr``; its report row."""
    d = tmp_path / "in"
    d.mkdir()
    _scan_pdf(d / "tx_hb18_scan.pdf")
    run_extract(d, tmp_path / "c.jsonl", workers=1, progress=False, ocr=ocr)
    return json.loads(report_path(tmp_path / "c.jsonl").read_text())["files"][0]


def test_image_only_page_is_named_without_ocr(tmp_path: Path):
    f = _extract_scan(tmp_path, "never")
    assert f["status"] == "ok" and any("image-only pages not OCR'd" in n and n.endswith(": 2") for n in f["notes"])


@pytest.mark.skipif(tessdata() is None, reason="Tesseract not installed (CI installs tesseract-ocr)")
def test_image_only_page_is_ocrd_when_tesseract_is_installed(tmp_path: Path):
    f = _extract_scan(tmp_path, "auto")
    assert f["status"] == "ok" and "OCR'd pages: 2" in f["notes"]
    chunks = [c for c in read_chunks(tmp_path / "c.jsonl") if c.page == 2]
    assert any("known minor to make purchases" in c.snippet for c in chunks)


def test_registry_suggest_drafts_entries_that_extract_then_uses(collected, tmp_path: Path):
    import subprocess
    import sys

    import yaml

    from data_prep.registry import load_registry

    d, _, by_file, chunks, _ = collected
    draft = tmp_path / "draft.yaml"
    proc = subprocess.run([sys.executable, "-m", "data_prep.cli", "registry", "suggest", str(d), "--out", str(draft),
                           "--ocr", "never"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 draft entries" in proc.stdout and "3 documents already in the registry" in proc.stdout
    text = draft.read_text()
    assert text.count("# confidence") == 12  # title, jurisdiction, kind, style for each of the 3 documents
    laws = {e["patterns"][0]: e for e in yaml.safe_load(text)["laws"]}
    tx = laws["tx_hb18_enrolled.pdf"]
    assert (tx["jurisdiction"], tx["doc_kind"], tx["style"]) == ("US-TX", "law", "us") and tx["unit_regex"]
    assert laws["netchoice v reyes order.pdf"]["doc_kind"] == "secondary"
    load_registry(draft)  # loads as it is

    # passed back (here with a reviewed title), the documents are matched by the registry
    tx_entry = next(e for e in yaml.safe_load(text)["laws"] if e["law_id"] == tx["law_id"])
    tx_entry["title"], tx_entry["citation"] = "Texas HB 18 (SCOPE Act)", "Tex. Bus. & Com. Code § {unit}"
    reviewed = tmp_path / "reviewed.yaml"
    reviewed.write_text(yaml.safe_dump({"laws": [tx_entry]}))
    assert tx_entry["signatures"][0].endswith("18\\b") and "texas" in tx_entry["signatures"][1]
    reviewed.write_text(yaml.safe_dump({"laws": [tx_entry]}))
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(d / "tx_hb18_enrolled.pdf", mine)
    shutil.copy(d / "tx_hb18_enrolled.pdf", mine / "SCOPE Act 2023 Tex. HB 18.PDF")  # renamed: found by content
    out = tmp_path / "c.jsonl"
    report = run_extract(mine, out, registry_file=reviewed, workers=1, progress=False, ocr="never")
    found = {f.file: f for f in report.files}
    assert found["tx_hb18_enrolled.pdf"].found_by == "registry"
    assert found["SCOPE Act 2023 Tex. HB 18.PDF"].found_by == "content"
    assert sorted(f.status for f in report.files) == ["duplicate", "ok"]  # one law, extracted once
    got = {c.citation: c for c in read_chunks(out)}
    assert "Tex. Bus. & Com. Code § 509.052(b)" in got
    assert all(c.title == "Texas HB 18 (SCOPE Act)" for c in got.values())


def test_a_new_law_contributes_training_data_beyond_the_known_topics(collected):
    from data_prep.features import generate, region_name
    from data_prep.mine import GENERIC, mine

    _, _, by_file, chunks, _ = collected
    tx_law = by_file["tx_hb18_enrolled.pdf"]["law_id"]
    obligations = [o for o in mine(chunks) if o.law_id == tx_law]
    generic = [o for o in obligations if o.topic == GENERIC]
    assert {o.topic for o in obligations} >= {GENERIC, "age_assurance"}
    assert [o.duty for o in generic] == ["digital service provider shall provide a toll-free telephone number "
                                         "and an electronic mail address for inquiries from users"]
    specs = [s for s in generate(obligations, per_law=None) if s.obligation_id == generic[0].id]
    plain = [s for s in specs if s.feature.id.startswith("f")]  # the per-obligation positives
    assert len(plain) == 2 and all(s.feature.label.value == "Needs Geo-Compliance" for s in plain)
    for spec in plain:
        assert region_name("US-TX") in spec.feature.description
    assert all("toll-free telephone number" in s.feature.description for s in specs)  # twins too
    # a bundled law keeps to the topics it declares: the same duty there is not mined
    bundled = generic[0].model_dump()
    chunk = next(c for c in chunks if c.id == bundled["chunk_id"]).model_copy(update={"law_id": "us_fl_hb3"})
    assert mine([chunk]) == []
