"""Law a spec names itself ("DPIA under GDPR Art. 35", "per 2258A(h)", "to comply with SB 976"), and which
retrieved law items it points at.

Why (#13, 2026-12-04): a spec that names its article was answered from whatever BM25 ranked first for its
other words: "privacy legal requires a full DPIA under GDPR Art. 35 ..." got the DMA's Annex as its one law, so
the answer could not cite the article the spec names. In the training data it was worse: of the generated
specs that name their law, 34 of 786 training examples got another law's context and were taught "Not Enough
Information" (``uncovered``) for a spec that says which law applies. :func:`sft.core.prompt.law_context` (the
one context rule of training and inference) therefore puts the items a spec names first.

Only structure is read, no list of laws: a law's name is what :data:`sft.core.lawnames.LAW_MENTION` finds
(acronyms, bill numbers, "... Act/Code/Regulation" names, U.S.C. cites); an article or section is a pinpoint
("Art. 35", "Article 26(1)", "§ 27002(b)") or a bare section number that cannot be anything else ("2258A(h)",
"13-63-105", "501.1736", "27002(b)"). An article is paired with the law name nearest to it; a section number
that distinctive needs none. A retrieved item is matched on its own title and citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from sft.core.contract import LawContext
from sft.core.lawnames import LAW_MENTION

MAX_NAMED = 3  # at most this many extra searches a spec (Kendra and Bedrock bill per query)

_ARTICLE = re.compile(r"\b(?:Art(?:icle)?s?\.?)\s*(\d{1,3})\b((?:\s?\(\w{1,4}\))*)", re.I)
_SECTION = re.compile(r"(?:§+|\bSections?\b|\bSec\.)\s*(\d(?:[\w.\-]*\w)?)((?:\(\w{1,4}\))*)(?![\w\-])", re.I)
# Bare section numbers no date, count or version looks like: 2258A, 13-63-105, 501.1736, 27002(b).
_BARE = re.compile(r"(?<![\w.\-§])(\d{3,5}[A-Z]|\d{1,3}-\d{1,3}-\d{1,4}|\d{3}\.\d{3,5}|\d{4,5}(?=\(\w{1,3}\)))"
                   r"((?:\(\w{1,4}\))*)(?![\w\-])")
_PINPOINT_START = re.compile(r"^(?:Art|Sec|§)", re.I)
_CITATION = re.compile(r"^(?P<law>.*?)\s*(?:Art(?:icle)?\.?|§+|Section)\s*(?P<num>\d[\w.\-]*?)(?P<sub>(?:\(\w{1,4}\))*)"
                       r"$")
_PARENS = re.compile(r"\s*\([^()]*\)")


@dataclass(frozen=True)
class Named:
    """One law or provision a spec names: ``law`` as written (None for a bare section number), ``number`` the
    article or section ("35", "2258A"; None for the law alone), ``sub`` its subdivision as written ("(h)")."""

    law: str | None
    number: str | None
    sub: str
    text: str  # the mention as the spec wrote it: the extra search's lead words


def _distinctive(number: str) -> bool:
    """A section number no other law's section shares in practice: a letter, hyphen or dot in it, or 4+ digits."""
    return bool(re.search(r"[A-Za-z.\-]", number)) or len(number) >= 4


def _norm(text: str) -> str:
    return re.sub(r"[\s\u00a0]+", " ", text).strip().lower()


def named_provisions(text: str) -> list[Named]:
    """The provisions ``text`` names, then the laws it names without an article; each in order of appearance,
    without repeats."""
    laws = [(m.start(), m.group(0).strip()) for m in LAW_MENTION.finditer(text)
            if not _PINPOINT_START.match(m.group(0).strip())]
    found: list[tuple[int, Named]] = []
    used_laws: set[int] = set()

    def nearest_law(pos: int) -> str | None:
        if not laws:
            return None
        i = min(range(len(laws)), key=lambda j: abs(laws[j][0] - pos))
        used_laws.add(i)
        return laws[i][1]

    spans: list[tuple[int, int]] = []
    for m in _ARTICLE.finditer(text):
        law = nearest_law(m.start())
        if law is not None:  # "Art. 9" alone could be any law's
            found.append((m.start(), Named(law, m.group(1), m.group(2).replace(" ", ""), f"{law} {m.group(0)}")))
        spans.append(m.span())
    for rx in (_SECTION, _BARE):
        for m in rx.finditer(text):
            if any(a <= m.start() < b for a, b in spans):
                continue
            spans.append(m.span())
            number = m.group(1)
            law = None if _distinctive(number) else nearest_law(m.start())
            found.append((m.start(), Named(law, number, m.group(2), m.group(0))))
    for i, (pos, law) in enumerate(laws):
        if i not in used_laws:
            found.append((pos, Named(law, None, "", law)))
    out: list[Named] = []  # provisions first (they pin an article), then laws named alone; each in text order
    for _, named in sorted(found, key=lambda t: (t[1].number is None, t[0])):
        if named not in out:
            out.append(named)
    return out


@lru_cache(maxsize=8192)
def _law_keys(title: str, citation: str) -> tuple[str, ...]:
    """How a spec may name a law: its citation's law part ("GDPR", "18 U.S.C."), its title, the title without a
    leading place word or parentheses ("Digital Services Act"), and what the title's parentheses hold ("SB 152",
    "Protecting Our Kids ... Act")."""
    keys = [title]
    m = _CITATION.match(citation.strip())
    if m and m.group("law"):
        keys.append(m.group("law"))
    bare = _PARENS.sub("", title).strip()
    keys += [bare, bare.split(" ", 1)[-1]]
    keys += re.findall(r"\(([^()]*)\)", title)
    keys += re.findall(r"\b(?:SB|HB|AB)\s?\d+\b", title)
    return tuple(k for k in {_norm(k) for k in keys} if len(k) >= 2)


def _contains(haystack: str, needle: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])", haystack) is not None


def match_level(named: Named, item: LawContext) -> int:
    """How closely ``item`` is what ``named`` names: 3 its exact subdivision, 2 its article or section, 1 its
    law (a spec naming a law with no article), 0 not it."""
    return citation_level(named, item.title, item.citation)


def citation_level(named: Named, title: str, citation: str) -> int:
    """:func:`match_level` of a law item given by its title and citation (a prompt's law item)."""
    level = 1
    if named.number is not None:
        num, sub = _parse_citation(citation)
        if num != named.number.lower():
            return 0
        level = 3 if named.sub and sub.startswith(named.sub.lower()) else 2
    if named.law is not None:
        mention = _norm(named.law)
        if not any(_contains(mention, k) or _contains(k, mention) for k in _law_keys(title, citation)):
            return 0
    return level


@lru_cache(maxsize=8192)
def _parse_citation(citation: str) -> tuple[str | None, str]:
    """(article or section number, subdivision), lower-cased: "GDPR Art. 35(1)" -> ("35", "(1)")."""
    m = _CITATION.match(citation.strip())
    return (m.group("num").lower(), m.group("sub").lower()) if m else (None, "")


def pin_named(hits: Sequence[LawContext], named: Sequence[Named]) -> list[LawContext]:
    """``hits`` (deduplicated by id) with the items ``named`` points at first, closest match first; the order
    is otherwise kept."""
    seen: set[str] = set()
    unique = [h for h in hits if not (h.id in seen or seen.add(h.id))]
    if not named:
        return unique
    level = {h.id: max(match_level(n, h) for n in named) for h in unique}
    return sorted(unique, key=lambda h: -level[h.id])  # stable: equal levels keep the retriever's order
