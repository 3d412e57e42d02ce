from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.registry import load_registry
from sft.core.errors import UserError
from tests.conftest import CORPUS


def test_bundled_registry_covers_every_bundled_law_file():
    reg = load_registry()
    files = sorted((CORPUS / "pdfs").glob("*.pdf")) + sorted((CORPUS / "laws").glob("*.txt"))
    matched = {f.name: reg.match(f) for f in files}
    assert all(matched.values()), [n for n, e in matched.items() if e is None]
    ids = {e.law_id for e in matched.values()}
    assert ids == {"eu_dsa", "eu_gdpr", "eu_dma", "eu_ai_act", "us_fl_hb3", "us_ut_sb152", "us_ut_hb311",
                   "us_ca_sb976", "us_18usc2258a"}
    assert reg["eu_dsa"].title == "EU Digital Services Act"
    assert {e.jurisdiction for e in reg} == {"EU", "US", "US-CA", "US-FL", "US-UT"}


def test_user_registry_adds_and_overrides(tmp_path: Path):
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "laws:\n"
        "  - {law_id: uk_osa, title: UK Online Safety Act, jurisdiction: UK, citation: 'OSA s. {unit}',"
        " style: us, unit_regex: '^(\\d+) ', patterns: ['*online_safety*']}\n"
        "  - {law_id: eu_dsa, title: DSA (mine), jurisdiction: EU, citation: 'DSA Art. {unit}',"
        " patterns: ['my_dsa*']}\n"
    )
    reg = load_registry(extra)
    assert reg.match("UK_online_safety_2023.pdf").law_id == "uk_osa"
    assert reg["eu_dsa"].title == "DSA (mine)"
    assert reg.match("my_dsa.txt").law_id == "eu_dsa"


@pytest.mark.parametrize(
    "body, message",
    [
        ("laws:\n  - {law_id: x, title: X, jurisdiction: EU}\n", "missing keys"),
        ("laws:\n  - {law_id: x, title: X, jurisdiction: EU, citation: 'X {unit}', colour: red}\n", "unknown keys"),
        ("laws:\n  - {law_id: x, title: X, jurisdiction: EU, citation: 'X'}\n", "must contain {unit}"),
        ("laws:\n  - {law_id: x, title: X, jurisdiction: US, citation: 'X {unit}', style: us}\n", "unit_regex"),
        ("laws:\n  - {law_id: x, title: X, jurisdiction: US, citation: 'X {unit}', style: us, unit_regex: '('}\n",
         "not a valid regular expression"),
        ("laws: [\n", "invalid YAML"),
    ],
)
def test_bad_registry_entries_name_the_file_and_entry(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(UserError, match=message) as e:
        load_registry(path)
    assert "bad.yaml" in str(e.value)
