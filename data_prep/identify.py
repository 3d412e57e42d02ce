"""What a document is, read from its content: database cover pages stripped, the registry entry found by
content signatures, and for a document no entry holds, its kind, jurisdiction and structure inferred.

* :func:`strip_cover` drops a legal-research database's own boilerplate page ("About ... | Privacy Policy |
  Terms & Conditions | Copyright ...", "Job Number", "Document (1)", search terms) from the front (and
  "End of Document" trailers); the repeated header/footer on every page is removed by ``pdftext``.
* :func:`match_content` finds the registry entry whose ``signatures`` (regexes: bill numbers such as
  "CS/CS/HB 3", "S.B. 152", CELEX/OJ numbers, "Regulation (EU) 2022/2065") all occur in the PDF metadata and
  the first pages; when several entries match, the one whose first signature occurs earliest wins (a
  regulation's own number is in its title, the ones it amends come later).
* :func:`infer_entry` builds a registry entry for an unknown document: ``doc_kind`` (``law`` for statutes,
  regulations, bills, court rules; ``secondary`` for opinions, complaints, reports, articles, books,
  press), jurisdiction (enacting clauses, "Official Journal of the European Union", code citations, court
  captions), and a structure (EU Articles, codified US sections, bill "SECTION n." headers) with a
  confidence per field; with no structure the chunker cuts by heading and paragraph and cites pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.registry import LawEntry, Registry

FIRST_PAGES = 3  # signatures and kind/jurisdiction clues are read from the first pages (after the cover)

# A database cover page has several of these; one alone ("Copyright" on a title page) is not enough.
_COVER_MARKS = [re.compile(p, re.I) for p in (
    r"\bprivacy policy\b", r"\bterms (?:&|and) conditions\b", r"\bcopyright\b", r"\bjob number\b",
    r"\bdocument \(\d+\)", r"\bsearch terms?\b", r"\bsearch type\b", r"\bnarrowed by\b", r"\babout \w+",
    r"\bclient/matter\b", r"\bdelivered by\b", r"\bdate and time\b",
)]
_COVER_NEED = 3
_TRAILER = re.compile(r"^end of document$", re.I)

_STATES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA", "colorado": "CO",
    "connecticut": "CT", "delaware": "DE", "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID",
    "illinois": "IL", "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI", "minnesota": "MN",
    "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY", "north carolina": "NC",
    "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN", "texas": "TX",
    "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA", "west virginia": "WV",
    "wisconsin": "WI", "wyoming": "WY", "district of columbia": "DC",
}
_STATE = "(" + "|".join(sorted((re.escape(s) for s in _STATES), key=len, reverse=True)) + ")"
# Code-citation abbreviations -> state.
_CODE_CITES = {r"\bFla\. ?Stat\.|\bF\.S\.": "FL", r"\bUtah Code\b": "UT", r"\bCal\. [A-Z][a-z]+\.? (?:& [A-Z]"
               r"[a-z]+\.? )?Code\b": "CA", r"\bTex\. [A-Z][a-z]+\.? Code\b": "TX", r"\bN\.Y\. [A-Z]": "NY"}

# (regex, weight): clues that a document is law (enacted text) or secondary (about law).
_LAW_CLUES = [
    (r"\bbe it enacted\b", 4), (r"\bhas adopted this (?:regulation|directive|decision)\b", 4),
    (r"\ban act (?:relating|to amend|to add|to create|concerning)\b", 3), (r"^\s*(?:an|a) (?:act|bill)\b", 2),
    (r"\bthis (?:act|regulation|directive|chapter) (?:shall|may be cited)\b", 2), (r"\bshall take effect\b", 1),
    (r"\bofficial journal of the european union\b", 2), (r"\benrolled\b", 1), (r"\bgeneral session\b", 1),
    (r"\brules? of (?:civil|criminal|appellate) procedure\b", 2),
]
_SECONDARY_CLUES = [
    (r"\bplaintiffs?\b", 2), (r"\bdefendants?\b", 2), (r"\b(?:memorandum )?opinion\b", 1), (r"\bcomplaint\b", 2),
    (r"\bcase no\.|\bcivil action\b|\bdocket\b", 2), (r"\bv\.\s+[A-Z]", 1), (r"\bcourt of appeals\b|\bdistrict court\b", 2),
    (r"\bcongressional research service\b|\bcrs report\b", 4), (r"\bbriefing\b|\bresearch service\b", 3),
    (r"\babstract\b", 2), (r"\bjournal\b|\blaw review\b|\bvol\. \d+", 2), (r"\bisbn\b", 4),
    (r"\bbill analysis\b|\bstaff analysis\b|\banalysis of\b", 4), (r"\bpress release\b", 4),
    (r"\btable of contents\b|\bcontents\b", 1), (r"\bet al\.", 1), (r"\bintroduction\b", 1),
    (r"\battorney general\b", 1),
]

# Candidate structures, tried in order; the first with enough increasing units wins.
# (style, unit_regex, citation suffix, label)
_US_STRUCTURES = [
    ("us", r"^(?:§|Sec\.|Section)\s*(\d+[A-Za-z]?(?:[-.:]\d+[A-Za-z]?)+)\.?\s", "§ {unit}", "codified sections"),
    ("us", r"^(\d+[-.]\d+[-.]?\d*[A-Za-z]?)\.\s+[A-Z]", "§ {unit}", "codified sections"),
    ("us", r"^(?:SECTION|Section|SEC\.|Sec\.)\s+(\d+[A-Za-z]?)\.", "Sec. {unit}", "bill sections"),
]
_EU_ARTICLE = re.compile(r"^Article (\d+)$")


@dataclass
class Profile:
    """What was inferred about an unknown document, each field with a confidence in [0, 1]."""

    title: str
    jurisdiction: str
    doc_kind: str  # law | secondary
    structure: str  # eu articles | codified sections | bill sections | pages
    entry: LawEntry
    confidence: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)


def is_cover(paras: list[str]) -> bool:
    text = " ".join(paras)
    return sum(bool(m.search(text)) for m in _COVER_MARKS) >= _COVER_NEED


def strip_cover(pages: list[tuple[int, list[str]]]) -> tuple[list[tuple[int, list[str]]], int]:
    """Pages without a database cover page at the front and without "End of Document" trailers; the
    number of cover pages removed. Page numbers are kept (citations stay the PDF's own page numbers)."""
    removed = 0
    while len(pages) > 1 and is_cover(pages[0][1]) and removed < 2:
        pages = pages[1:]
        removed += 1
    cleaned = []
    for page, paras in pages:
        if any(_TRAILER.match(p) for p in paras):
            paras = [p for p in paras if not _TRAILER.match(p)]
        cleaned.append((page, paras))
    return cleaned, removed


def head_text(pages: list[tuple[int, list[str]]], meta_title: str = "", n: int = FIRST_PAGES) -> str:
    return "\n".join([meta_title, *(p for _, paras in pages[:n] for p in paras)])


def match_content(registry: Registry, text: str) -> LawEntry | None:
    """The registry entry whose signatures all occur in ``text`` (earliest first signature wins)."""
    best: tuple[int, LawEntry] | None = None
    for entry in registry:
        if not entry.signatures:
            continue
        found = [re.search(sig, text, re.I | re.M) for sig in entry.signatures]
        if all(found) and (best is None or found[0].start() < best[0]):
            best = (found[0].start(), entry)
    return best[1] if best else None


def _score(clues: list[tuple[str, int]], text: str) -> tuple[int, list[str]]:
    """Total weight of the clues found, and the text each matched (the evidence a reviewer reads)."""
    found = [(m.group(0).strip(), w) for p, w in clues if (m := re.search(p, text, re.I | re.M))]
    return sum(w for _, w in found), [f"'{t}'" for t, _ in found]


def infer_kind(text: str, has_structure: bool) -> tuple[str, float, str]:
    """(``law`` | ``secondary``, confidence, evidence)."""
    law, law_hits = _score(_LAW_CLUES, text)
    sec, sec_hits = _score(_SECONDARY_CLUES, text)
    law += 2 if has_structure else 0
    if law == sec == 0:
        return "secondary", 0.3, "no clues (treated as background, never cited as an answer's law)"
    kind = "law" if law > sec else "secondary"
    conf = round(max(law, sec) / (law + sec), 2)
    hits = law_hits if kind == "law" else sec_hits
    return kind, conf, "; ".join(hits[:3]) or "structure"


def infer_jurisdiction(text: str) -> tuple[str, float, str]:
    """(jurisdiction code, confidence, evidence) from enacting clauses, the OJ, code citations, captions."""
    rules = [
        (rf"legislature of the state of {_STATE}", 0.95), (rf"\bstate of {_STATE}\b", 0.8),
        (rf"\bcourt of (?:the state of )?{_STATE}\b", 0.8), (rf"\bdistrict of {_STATE}\b", 0.7),
        (rf"\b{_STATE} (?:legislature|house of representatives|senate|statutes)\b", 0.85),
    ]
    for pattern, conf in rules:
        m = re.search(pattern, text, re.I)
        if m:
            return f"US-{_STATES[m.group(1).lower()]}", conf, m.group(0)
    for pattern, state in _CODE_CITES.items():
        m = re.search(pattern, text)
        if m:
            return f"US-{state}", 0.7, m.group(0)
    eu = re.search(r"official journal of the european union|\b(?:regulation|directive) \((?:eu|ec)\)|"
                   r"european parliament|european commission", text, re.I)
    if eu:
        return "EU", 0.9 if "journal" in eu.group(0).lower() else 0.75, eu.group(0)
    us = re.search(r"\bU\.S\.C\.|\bunited states\b|\bcongress(?:ional)?\b|\bfederal\b", text, re.I)
    if us:
        return "US", 0.6, us.group(0)
    return "UNKNOWN", 0.0, "no jurisdiction clue found"


def _increasing(numbers: list[str]) -> int:
    """How many units follow in increasing order (cross-references that start a line break the order)."""
    def key(n: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", n))
    count, last = 0, ()
    for n in numbers:
        if key(n) > last:
            count, last = count + 1, key(n)
    return count


def infer_structure(paras: list[str]) -> tuple[str, str | None, str | None, float]:
    """(structure, style, unit_regex, confidence) from the paragraphs' own headings."""
    articles = [m.group(1) for p in paras if (m := _EU_ARTICLE.match(p))]
    if _increasing(articles) >= 2:
        return "eu articles", "eu", None, min(1.0, 0.5 + 0.1 * len(articles))
    for _style, regex, _cite, label in _US_STRUCTURES:
        rx = re.compile(regex)
        nums = [m.group(1) for p in paras if (m := rx.match(p))]
        if _increasing(nums) >= 2:
            return label, "us", regex, min(1.0, 0.4 + 0.1 * _increasing(nums))
    return "pages", None, None, 0.5


_BILL = re.compile(r"^\s*([HS])\.? ?B\.? ?(?:No\.? ?)?0*(\d+)\b", re.I | re.M)
_BAD_META = re.compile(r"\.(?:docx?|pdf|rtf|wpd)$|^microsoft word|^publications office$|^untitled", re.I)


_CAPTION = re.compile(r"^(.{3,60}?),?\s+(?:Plaintiffs?|Petitioners?|Appellants?),?\s+v\.\s+(.{3,60}?)"
                      r"(?:,|\s+(?:Defendants?|Respondents?|Appellees?))", re.M)


def infer_title(meta_title: str, paras: list[str], filename: str) -> tuple[str, float, str]:
    meta = " ".join(meta_title.split())
    if meta and not _BAD_META.search(meta) and len(meta) >= 8:
        return meta[:160], 0.8, "PDF metadata"
    caption = _CAPTION.search("\n".join(paras[:15]))
    if caption:  # a court's caption names the case
        return f"{caption.group(1).strip()} v. {caption.group(2).strip()}", 0.6, "case caption"
    for p in paras[:15]:
        if len(p) >= 8 and re.search(r"[A-Za-z]{3}", p) and not re.fullmatch(r"[\d\W]+", p):
            return p[:160].rstrip(" .,;:"), 0.5, "first text line"
    return Path(filename).stem, 0.3, "file name"


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", Path(name).stem.lower()).strip("_")
    return ("doc_" + s)[:60].rstrip("_") or "doc"


def infer_entry(pages: list[tuple[int, list[str]]], filename: str, meta_title: str = "") -> Profile:
    """A registry entry for an unknown document, with what each field was inferred from."""
    paras = [p for _, ps in pages for p in ps]
    head = head_text(pages, meta_title)
    title, t_conf, t_ev = infer_title(meta_title, paras, filename)
    structure, style, unit_regex, s_conf = infer_structure(paras)
    kind, k_conf, k_ev = infer_kind(head, style is not None)
    jurisdiction, j_conf, j_ev = infer_jurisdiction(head)
    bill = _BILL.search("\n".join(paras[:10]))
    if kind == "law" and bill and t_ev != "PDF metadata":  # "H.B. No. 18" names a bill better than its long title
        title, t_conf, t_ev = f"{jurisdiction.removeprefix('US-')} {bill.group(1).upper()}B {bill.group(2)}", 0.7, bill.group(0)
    short = re.sub(r"\s+", " ", title)[:60].rstrip(" ,;:")
    if kind == "secondary" or style is None:
        style, unit_regex, structure, citation = "pages", None, "pages", short + ", p. {unit}"
    elif style == "eu":
        citation = short + " Art. {unit}"
    else:
        citation = short + " " + next(c for _s, r, c, _l in _US_STRUCTURES if r == unit_regex)
    entry = LawEntry(
        law_id=slug(filename), title=title, jurisdiction=jurisdiction, citation=citation, style=style,
        patterns=(Path(filename).name,), unit_regex=unit_regex,
        stop_regex=r"^(?:SECTION|Section|SEC\.|Sec\.)\s+\d+[A-Za-z]?\." if structure == "codified sections" else None,
        doc_kind=kind, found_by="inferred", where=filename,
    )
    return Profile(
        title=title, jurisdiction=jurisdiction, doc_kind=kind, structure=structure, entry=entry,
        confidence={"title": t_conf, "jurisdiction": j_conf, "doc_kind": k_conf, "structure": s_conf},
        evidence={"title": t_ev, "jurisdiction": j_ev, "doc_kind": k_ev, "structure": structure},
    )


def suggest_signatures(head: str, jurisdiction: str) -> list[str]:
    """Content signatures for a draft entry: the document's own bill or regulation number (a bill's with its
    state's name, as "HB 18" alone is a bill in every state), if found."""
    m = re.search(r"\b(?:Regulation|Directive) \((EU|EC)\) (?:No )?(\d{4}/\d+|\d+/\d{4})", head, re.I)
    if m:
        return [re.escape(m.group(0))]
    m = _BILL.search(head) or re.search(r"\b([HS])\.? ?B\.? ?(?:No\.? ?)?0*(\d+)\b", head)
    if not m:
        return []
    state = next((name for name, code in _STATES.items() if f"US-{code}" == jurisdiction), None)
    bill = rf"\b{m.group(1).upper()}\.? ?B\.? ?(?:No\.? ?)?0*{m.group(2)}\b"
    return [bill, rf"\b{state}\b"] if state else [bill]


def draft_yaml(profiles: list[tuple[Profile, str]]) -> str:
    """A registry YAML for ``(profile, head text)`` pairs: loadable as it is with ``--registry``, each
    inferred field followed by a ``# confidence`` comment saying what it was read from."""
    import json

    def q(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar

    out = ["# Draft registry written by `geoprep registry suggest`: review every field (confidence 0-1 from",
           "# what it was read from), then pass this file with --registry.", "laws:"]
    for prof, head in profiles:
        e, c, ev = prof.entry, prof.confidence, prof.evidence
        out += [
            f"  - law_id: {e.law_id}",
            f"    title: {q(e.title)}  # confidence {c['title']:.2f} ({ev['title']})",
            f"    jurisdiction: {e.jurisdiction}  # confidence {c['jurisdiction']:.2f} ('{ev['jurisdiction']}')",
            f"    doc_kind: {e.doc_kind}  # confidence {c['doc_kind']:.2f} ({ev['doc_kind']})",
            f"    style: {e.style}  # confidence {c['structure']:.2f} ({prof.structure})",
            f"    citation: {q(e.citation)}",
            f"    patterns: [{q(e.patterns[0])}]",
        ]
        if e.unit_regex:
            out.append(f"    unit_regex: {q(e.unit_regex)}")
        if e.stop_regex:
            out.append(f"    stop_regex: {q(e.stop_regex)}")
        sigs = suggest_signatures(head, e.jurisdiction)
        if sigs:
            out.append(f"    signatures: [{', '.join(q(s) for s in sigs)}]  # recognises renamed copies by content")
    return "\n".join(out) + "\n"
