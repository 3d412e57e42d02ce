from __future__ import annotations

import pytest

from sft.core.errors import UserError
from sft.core.glossary import Glossary
from tests.conftest import CORPUS


def test_bundled_techjam_glossary_expands_jargon():
    g = Glossary.load(CORPUS / "glossary" / "terminology.csv")
    assert len(g.terms) == 20
    notes = g.notes_for("Roll out PF with ASL in ShadowMode; log via EchoTrace. No NRs here, NR-free.")
    assert notes == {
        "PF": "Personalized feed",
        "ASL": "Age-sensitive logic",
        "ShadowMode": "Deploy feature in non-user-impact way to collect analytics only",
        "EchoTrace": "Log tracing mode to verify compliance routing",
    }
    # all-caps abbreviations match case-sensitively: "pf" in prose is not the term
    assert g.notes_for("a pdf of the spec") == {}


def test_bad_glossary_rows_name_file_and_line(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("term,definition\nPF,Personalized feed\nASL,\n")
    with pytest.raises(UserError, match=r"g\.csv:3: row needs both"):
        Glossary.load(path)
    path.write_text("name,meaning\nPF,x\n")
    with pytest.raises(UserError, match=r"g\.csv:1: header must have"):
        Glossary.load(path)
