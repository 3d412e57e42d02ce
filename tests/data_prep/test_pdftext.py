"""Line joining in PDF paragraphs (data_prep.pdftext): what a law's text looks like after a line break."""

from __future__ import annotations

from pathlib import Path

import pymupdf

from data_prep.pdftext import read_pdf


def test_words_broken_at_a_line_end_are_joined_the_way_the_law_spells_them(tmp_path: Path):
    doc = pymupdf.open()
    page = doc.new_page()
    # Each "\n" is a line break inside one paragraph, as in a printed bill.
    page.insert_textbox(pymupdf.Rect(72, 72, 500, 300), "The operator of an addictive internet-\nbased service shall, "
                        "for two-\nor three-wheel vehicles, keep the estab-\nlishment's records. The establishment is "
                        "audited.", fontsize=11)
    pdf = tmp_path / "bill.pdf"
    doc.save(pdf)
    [(page_no, [text])] = read_pdf(str(pdf)).pages
    assert page_no == 1
    # a real compound keeps its hyphen and loses the break's space; a syllable break the document spells whole
    # elsewhere ("establishment") is re-joined; a suspended hyphen ("two- or three-wheel") keeps its space
    assert text == ("The operator of an addictive internet-based service shall, for two- or three-wheel vehicles, "
                    "keep the establishment's records. The establishment is audited.")
