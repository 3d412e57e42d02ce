"""The realistic labelled set's gold (``examples/realistic/specs.csv``) and the citation rule that scores it:
shared by ``geosft eval`` (answers) and ``geoprep eval-retrieval`` (retrieved chunks)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.contract import Label
from sft.core.errors import UserError


@dataclass
class GoldSpec:
    feature: Any  # sft.core.contract.Feature
    label: Label
    law_ids: list[str]
    citations: list[str]
    category: str
    accepted: set[str]


def read_gold_specs(path: Path) -> list[GoldSpec]:
    """A labelled spec file (CSV: id, name, description, label, law_id, citation, category): see
    ``examples/realistic/README.md``. A law not in the corpus accepts Needs or NEI, never No."""
    import csv

    from sft.core.contract import Feature, normalize_label

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    out = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "description", "label"} - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{path}:1: missing column(s) {sorted(missing)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            label = normalize_label(row.get("label"), where=f"{where}: field 'label'")
            category = (row.get("category") or "").strip()
            accepted = {label.value} | ({Label.NEI.value} if category == "law_not_in_corpus" else set())
            out.append(GoldSpec(Feature(id=row.get("id") or None, name=row["name"], description=row["description"]),
                                label, [x for x in (row.get("law_id") or "").split("|") if x],
                                [x.strip() for x in (row.get("citation") or "").split("|") if x.strip()],
                                category, accepted))
    if not out:
        raise UserError(f"{path}: no specs")
    return out


def citation_matches(predicted: str | None, gold: Sequence[str]) -> bool:
    """'DSA Art. 28(1)' matches gold 'DSA Art. 28'; 'DSA Art. 280' does not."""
    if not predicted:
        return False
    p = re.sub(r"\s+", " ", predicted).strip()
    return any(p == g or (p.startswith(g) and not p[len(g)].isalnum()) for g in gold)
