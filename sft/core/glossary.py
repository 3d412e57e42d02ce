"""Internal terminology (the TechJam table format: ``term,definition``) expanded into prompt notes."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from sft.core.errors import UserError


@dataclass
class Glossary:
    terms: dict[str, str] = field(default_factory=dict)
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Glossary:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such glossary file")
        terms: dict[str, str] = {}
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in reader.fieldnames or []}
            term_col = cols.get("term")
            def_col = cols.get("definition") or cols.get("explanation")
            if term_col is None or def_col is None:
                raise UserError(f"{path}:1: header must have columns 'term' and 'definition', got {reader.fieldnames}")
            for row in reader:
                term, definition = (row.get(term_col) or "").strip(), (row.get(def_col) or "").strip()
                if not term or not definition:
                    raise UserError(f"{path}:{reader.line_num}: row needs both a term and a definition")
                terms[term] = definition
        return cls(terms)

    def notes_for(self, text: str) -> dict[str, str]:
        """Terms used in ``text`` (whole words; all-caps abbreviations match case-sensitively)."""
        if not self.terms:
            return {}
        found: dict[str, str] = {}
        for term, definition in self.terms.items():
            flags = 0 if term.isupper() else re.IGNORECASE
            if re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", text, flags):
                found[term] = definition
        return found
