"""The law registry: which file holds which law, its jurisdiction, and how its provisions are cited.

The bundled registry (``data_prep/data/laws.yaml``) covers the sample corpus; users add their own laws with
``--registry my_laws.yaml`` (same keys). An entry whose ``law_id`` already exists replaces the bundled one,
so a user can also fix a bundled entry without editing the package.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.topics import TOPICS
from sft.core.errors import UserError

BUNDLED = Path(__file__).with_name("data") / "laws.yaml"
STYLES = ("eu", "us", "pages")  # pages: no structure, chunks by heading/paragraph cite "p. {unit}"
DOC_KINDS = ("law", "secondary")  # secondary: background only, never cited as an answer's law


@dataclass(frozen=True)
class LawEntry:
    law_id: str
    title: str
    jurisdiction: str
    citation: str  # template with {unit}; the paragraph "(1)" is appended by the chunker
    style: str = "eu"
    patterns: tuple[str, ...] = ()
    date: str | None = None
    uri: str | None = None
    unit_regex: str | None = None  # us style: a line that starts a codified section, group 1 = number
    stop_regex: str | None = None  # a line that ends the current unit (bill section headers, notes)
    # Topics (data_prep.topics.TOPICS) this law can ground; None = every topic (a user entry without the key).
    topics: tuple[str, ...] | None = None
    # Regexes that all occur in the PDF metadata / first pages of this law (bill numbers, CELEX, OJ numbers):
    # a file whose name matches no pattern is recognised by its content.
    signatures: tuple[str, ...] = ()
    doc_kind: str = "law"
    found_by: str = "registry"  # registry (file name) | content (signatures) | inferred (no entry)
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.where or self.law_id
        if not re.fullmatch(r"[a-z0-9_]+", self.law_id or ""):
            raise UserError(f"{where}: law_id {self.law_id!r} must be lower-case letters, digits and _")
        if self.style not in STYLES:
            raise UserError(f"{where}: style {self.style!r} must be one of {', '.join(STYLES)}")
        if "{unit}" not in self.citation:
            raise UserError(f"{where}: citation {self.citation!r} must contain {{unit}}")
        if self.doc_kind not in DOC_KINDS:
            raise UserError(f"{where}: doc_kind {self.doc_kind!r} must be one of {', '.join(DOC_KINDS)}")
        if self.style == "us" and not self.unit_regex:
            raise UserError(f"{where}: style 'us' needs unit_regex (the line that starts a section)")
        if self.topics is not None:
            unknown = sorted(set(self.topics) - set(TOPICS))
            if unknown or not self.topics:
                raise UserError(f"{where}: topics {unknown or '[]'} unknown or empty; known: {', '.join(TOPICS)}")
        regexes = {"unit_regex": self.unit_regex, "stop_regex": self.stop_regex,
                   **{f"signatures[{i}]": s for i, s in enumerate(self.signatures)}}
        for key, value in regexes.items():
            if value:
                try:
                    re.compile(value)
                except re.error as e:
                    raise UserError(f"{where}: {key} is not a valid regular expression: {e}") from None

    def matches(self, filename: str) -> bool:
        name = filename.lower()
        return any(fnmatch.fnmatch(name, p.lower()) for p in self.patterns)


class Registry:
    def __init__(self, entries: list[LawEntry]):
        self.entries = {e.law_id: e for e in entries}

    def __getitem__(self, law_id: str) -> LawEntry:
        return self.entries[law_id]

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def jurisdictions(self) -> list[str]:
        """Every jurisdiction a law here belongs to (what a Kendra filter ORs for a prefix such as 'US')."""
        return sorted({e.jurisdiction.upper() for e in self.entries.values()})

    def match(self, path: str | Path) -> LawEntry | None:
        """The law a file holds, by file name (user entries win over bundled ones)."""
        name = Path(path).name
        for entry in reversed(list(self.entries.values())):
            if entry.matches(name):
                return entry
        return None


_FIELDS = {"law_id", "title", "jurisdiction", "citation", "style", "patterns", "date", "uri", "unit_regex",
           "stop_regex", "topics", "signatures", "doc_kind"}


def _entries_from_file(path: Path) -> list[LawEntry]:
    import yaml

    if not path.is_file():
        raise UserError(f"{path}: no such registry file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML: {e}") from None
    laws = data.get("laws") if isinstance(data, dict) else data
    if not isinstance(laws, list):
        raise UserError(f"{path}: expected a list of laws under the key 'laws'")
    out = []
    for i, raw in enumerate(laws):
        where = f"{path}: laws[{i}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping")
        unknown = set(raw) - _FIELDS
        if unknown:
            raise UserError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_FIELDS)}")
        missing = {"law_id", "title", "jurisdiction", "citation"} - set(raw)
        if missing:
            raise UserError(f"{where}: missing keys {sorted(missing)}")
        values: dict[str, Any] = {k: (str(v) if k not in ("patterns",) and v is not None else v)
                                  for k, v in raw.items()}
        values["patterns"] = tuple(str(p) for p in raw.get("patterns") or ())
        values["signatures"] = tuple(str(p) for p in raw.get("signatures") or ())
        if raw.get("topics") is not None:
            if not isinstance(raw["topics"], list):
                raise UserError(f"{where}: topics must be a list of topic names")
            values["topics"] = tuple(str(t) for t in raw["topics"])
        out.append(LawEntry(**values, where=f"{where} ({raw['law_id']})"))
    return out


def load_registry(extra: Path | None = None) -> Registry:
    """The bundled registry, merged with the user's ``extra`` file (whose entries win)."""
    entries = _entries_from_file(BUNDLED)
    if extra is not None:
        entries += _entries_from_file(Path(extra))
    return Registry(entries)


REGISTER_HINT = (
    "add an entry with law_id, title, jurisdiction, citation and a 'patterns' glob matching this file name "
    "(or 'signatures' found in its first pages) to a YAML file and pass it with --registry "
    "(see data_prep/data/laws.yaml; `geoprep registry suggest DIR` drafts one)"
)
