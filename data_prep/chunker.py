"""Paragraph stream of one law -> article/section-sized :class:`LawContext` chunks with pinpoint citations.

Two styles, chosen by the registry entry:

* ``eu``: ``Article N`` headings (numbers must increase, which rejects cross-references that happen to
  start a line), the article title on the next line, numbered paragraphs ``1.``, ``2.`` ... and
  ``ANNEX I`` ... ; the preamble (recitals) and the signature/footnotes after ``Done at`` are skipped.
* ``us``: a codified section starts at ``unit_regex`` (e.g. ``501.1736``), ends at the next one or at
  ``stop_regex`` (the bill's own "Section 2." headers, editorial notes); top-level subsections ``(1)``/
  ``(a)`` split it, following the sequence so nested ``(a)`` under ``(1)`` does not split.

Long paragraphs are cut at sentence ends into parts (``#art28-1~2``) so a chunk stays well inside a
512-token prompt; the citation stays the paragraph's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from data_prep.registry import LawEntry
from sft.core.contract import LawContext

MAX_CHARS = 1500  # ~350 tokens: leaves room for the feature, glossary and other chunks in 512
_EU_ARTICLE = re.compile(r"^Article (\d+[a-z]?)$")
_EU_ANNEX = re.compile(r"^ANNEX(?: ([IVXLC]+))?$")  # the DMA has one, unnumbered "ANNEX"
_EU_STOP = re.compile(r"^(?:Done at |This Regulation shall be binding in its entirety)")
_EU_PARA = re.compile(r"^(\d+)\.\s*(.*)$")
_SUB = re.compile(r"^\(([0-9]+|[a-z])\)\s*(.*)$")


@dataclass
class _Unit:
    kind: str  # "art" | "annex" | "s"
    number: str
    page: int | None
    heading: str = ""
    paras: list[tuple[str | None, list[tuple[int | None, str]]]] = field(default_factory=list)

    def add(self, label: str | None, page: int | None, text: str) -> None:
        """A line starts a numbered paragraph (``label``) or continues the current one."""
        if label is not None or not self.paras:
            self.paras.append((label, [(page, text)]))
        else:
            self.paras[-1][1].append((page, text))


def _num_key(number: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", number))


def _roman(s: str) -> int:
    vals = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = 0
    for a, b in zip(s, s[1:] + " ", strict=True):
        total += -vals[a] if vals.get(b, 0) > vals[a] else vals[a]
    return total


def _next_sub(current: str | None) -> str | None:
    if current is None:
        return None
    return str(int(current) + 1) if current.isdigit() else chr(ord(current) + 1)


def _units_eu(stream: Iterable[tuple[int | None, str]]) -> Iterator[_Unit]:
    unit: _Unit | None = None
    last_article = 0
    last_annex = 0
    for page, text in stream:
        m = _EU_ARTICLE.match(text)
        if m and _num_key(m.group(1))[0] == last_article + 1 and last_annex == 0:
            if unit:
                yield unit
            last_article += 1
            unit = _Unit("art", m.group(1), page)
            continue
        m = _EU_ANNEX.match(text)
        if m and last_article and _roman(m.group(1) or "I") == last_annex + 1:
            if unit:
                yield unit
            last_annex += 1
            unit = _Unit("annex", m.group(1) or "", page)
            continue
        if unit is None:
            continue
        if _EU_STOP.match(text) and unit.kind == "art":
            yield unit
            unit = None
            continue
        if not unit.heading and not unit.paras and not _EU_PARA.match(text) and len(text) < 200:
            unit.heading = text
            continue
        m = _EU_PARA.match(text) if unit.kind == "art" else None
        expected = str(len([p for p in unit.paras if p[0]]) + 1)
        starts = m and m.group(1) == expected and (unit.paras or expected == "1")
        unit.add(m.group(1) if starts else None, page, text)
    if unit:
        yield unit


def _units_us(stream: Iterable[tuple[int | None, str]], entry: LawEntry) -> Iterator[_Unit]:
    start = re.compile(entry.unit_regex or "")
    stop = re.compile(entry.stop_regex) if entry.stop_regex else None
    unit: _Unit | None = None
    current: str | None = None
    for page, text in stream:
        m = start.match(text)
        if m:
            if unit:
                yield unit
            unit = _Unit("s", m.group(1), page)
            current = None
            rest = text[m.end():].strip(" .-—")
            # "27002. (a) (1) Except ..." : the heading line can carry the first subsection.
            head, sub = re.match(r"^(.*?)(\((?:1|a)\).*)?$", rest).groups()
            head = head.strip()
            if _is_title(head):
                unit.heading = head
            elif head:  # "27005. An operator ... shall ...": no title, the line is law text
                unit.paras.append((None, [(page, head)]))
            if not sub:
                continue
            text = sub
        if unit is None:
            continue
        if stop and stop.match(text):
            yield unit
            unit = None
            continue
        s = _SUB.match(text)
        if s and (s.group(1) == _next_sub(current) or (current is None and s.group(1) in ("1", "a"))):
            current = s.group(1)
            unit.add(current, page, text)
        else:
            unit.add(None, page, text)
    if unit:
        yield unit


def _is_title(text: str) -> bool:
    """'Definitions.' or 'Social media use for minors.—' is a section title; a sentence is not."""
    return 0 < len(text) <= 150 and not text.endswith(":") and not re.search(r"\b(shall|means|may)\b", text)


def _split_long(texts: list[tuple[int | None, str]], limit: int = MAX_CHARS) -> list[tuple[int | None, str]]:
    """Cut a paragraph into parts of at most ``limit`` characters at sentence ends; each part keeps the
    page its first sentence is on."""
    pieces: list[tuple[int | None, str]] = []
    for page, text in texts:
        for s in re.split(r"(?<=[.;:])\s+(?=[A-Z(—‘'\"])", text):
            while len(s) > limit:  # one enormous sentence (definition lists): cut at a space
                cut = s.rfind(" ", 0, limit)
                cut = cut if cut > limit // 2 else limit
                pieces.append((page, s[:cut]))
                s = s[cut:].strip()
            if s.strip():
                pieces.append((page, s))
    parts: list[tuple[int | None, str]] = []
    for page, s in pieces:
        if parts and len(parts[-1][1]) + 1 + len(s) <= limit:
            parts[-1] = (parts[-1][0], f"{parts[-1][1]} {s}")
        else:
            parts.append((page, s))
    return [(page, re.sub(r"\s+", " ", text).strip()) for page, text in parts]


_HEADING = re.compile(r"^(?:[IVXLC]+\.|[A-Z]\.|\d+(?:\.\d+)*\.?)?\s*[A-Z][^.;:!?]{2,100}$")


def _units_pages(stream: Iterable[tuple[int | None, str]]) -> Iterator[_Unit]:
    """No structure: one unit per page; a heading-like line (short, capitalised, no sentence end) starts a
    new paragraph group so a chunk does not run across headings."""
    unit: _Unit | None = None
    for page, text in stream:
        if unit is None or page != unit.page:
            if unit:
                yield unit
            unit = _Unit("p", str(page or 1), page)
        if _HEADING.match(text) and len(text) < 100:
            unit.paras.append((text, [(page, text)]))
        else:
            unit.add(None, page, text)
    if unit:
        yield unit


def chunk_law(
    stream: Iterable[tuple[int | None, str]], entry: LawEntry, source: str | None = None
) -> list[LawContext]:
    """Turn ``(page, paragraph)`` pairs of one law into chunks (ids unique within the law)."""
    if entry.style == "pages":
        return _chunk_pages(_units_pages(stream), entry, source)
    units = _units_eu(stream) if entry.style == "eu" else _units_us(stream, entry)
    chunks: list[LawContext] = []
    seen: set[str] = set()
    for unit in units:
        unit_cite = entry.citation.format(unit=unit.number)
        if unit.kind == "annex":
            prefix = re.sub(r"\s*(?:Art\.|Article|§)\s*$", "", entry.citation.split("{unit}")[0])
            unit_cite = f"{prefix} Annex {unit.number}".strip()
        label = {"art": "Article", "annex": "Annex", "s": "Section"}[unit.kind]
        heading = f"{label} {unit.number}".strip() + (f" - {unit.heading}" if unit.heading else "")
        paras = unit.paras
        if len(paras) > 1 and paras[0][0] is None and sum(len(t) for _, t in paras[0][1]) < 200:
            # a short lead-in ("As used in this chapter:") belongs with the first numbered paragraph
            paras = [(paras[1][0], paras[0][1] + paras[1][1]), *paras[2:]]
        for para, texts in paras:
            citation = unit_cite + (f"({para})" if para and unit.kind != "annex" else "")
            base = f"{entry.law_id}#{unit.kind}{unit.number}" + (f"-{para}" if para else "")
            parts = _split_long(texts)
            for i, (page, part) in enumerate(parts, start=1):
                cid = base if len(parts) == 1 else f"{base}~{i}"
                while cid in seen:  # a restarted numbering inside one unit: keep ids unique
                    cid += "+"
                seen.add(cid)
                chunks.append(
                    LawContext(
                        id=cid,
                        law_id=entry.law_id,
                        title=entry.title,
                        citation=citation,
                        article=(unit.number or None) if unit.kind != "s" else None,
                        section=unit.number if unit.kind == "s" else None,
                        jurisdiction=entry.jurisdiction,
                        date=entry.date,
                        uri=entry.uri,
                        page=page,
                        source=source,
                        snippet=f"{heading}: {part}",
                        doc_kind=entry.doc_kind,
                        found_by=entry.found_by,
                    )
                )
    return chunks


def _chunk_pages(units: Iterable[_Unit], entry: LawEntry, source: str | None) -> list[LawContext]:
    """Page-cited chunks: paragraphs of one page packed up to MAX_CHARS, a heading starting a new chunk."""
    chunks: list[LawContext] = []
    for unit in units:
        texts: list[tuple[int | None, str]] = []
        groups: list[list[tuple[int | None, str]]] = []
        for label, paras in unit.paras:
            if label is not None and texts:  # a heading closes the chunk before it
                groups.append(texts)
                texts = []
            texts.extend(paras)
        if texts:
            groups.append(texts)
        n = 0
        for group in groups:
            for page, part in _split_long([(unit.page, " ".join(t for _, t in group))]):
                n += 1
                chunks.append(LawContext(
                    id=f"{entry.law_id}#p{unit.number}-{n}", law_id=entry.law_id, title=entry.title,
                    citation=entry.citation.format(unit=unit.number), jurisdiction=entry.jurisdiction,
                    date=entry.date, uri=entry.uri, page=page, source=source, snippet=part,
                    doc_kind=entry.doc_kind, found_by=entry.found_by,
                ))
    return chunks
