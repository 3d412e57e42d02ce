"""Obligation mining: sentences of law text with deontic force about online services, tagged by topic.

An obligation is one sentence of a chunk ("... shall ensure ...", "... is prohibited from ...") that speaks
about an online service (platform, account, minor, data, advertising, ...). Each keeps the chunk's law,
citation and jurisdiction, so every feature generated from it can be grounded in that chunk later.

Rule based on purpose: it is deterministic, explainable in review, and good enough to seed training data.
Its precision matters more than its recall (a wrong obligation yields a wrongly labelled example), so a
sentence needs both a deontic marker and a topic keyword; sentences about no known topic are skipped.

Each law in the registry declares the topics it can ground (``topics:`` in laws.yaml). A sentence whose best
topic is not one of its law's topics is skipped and counted (``stats["topic_not_allowed"]``): keyword hits
alone would otherwise ground, say, an erasure feature in an AI Act risk-management clause. A law without
``topics`` (or one missing from the registry) allows every topic.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from data_prep.topics import TOPICS
from sft.core.contract import LawContext, read_records
from sft.core.files import write_jsonl_atomic

if TYPE_CHECKING:
    from data_prep.registry import Registry

# Deontic markers: obligations ("shall", "must", "is required to"), prohibitions ("may not", "shall not",
# "is prohibited from") and duties to ensure. "may" alone is permission, not an obligation: not matched.
DEONTIC = re.compile(
    r"\b(shall(?:\s+not)?|must(?:\s+not)?|may\s+not|is\s+(?:prohibited|required|obliged|obligated)\s+(?:from|to)"
    r"|are\s+(?:prohibited|required|obliged|obligated)\s+(?:from|to)|has\s+a\s+duty\s+to|shall\s+ensure)\b",
    re.IGNORECASE,
)

_TOPIC_RES = {t: [re.compile(k, re.IGNORECASE) for k in kws] for t, kws in TOPICS.items()}

# A sentence must be about an online service to become a training obligation.
ONLINE = re.compile(
    r"\b(online|platform|social media|service|account|user|provider|interactive computer|website|app"
    r"|application|internet|digital|controller|processor|recipient|deployer)s?\b",
    re.IGNORECASE,
)

# Duties of public bodies (the Commission, a supervisory authority, the Attorney General, ...) are not
# product requirements: a sentence whose subject (the words before the deontic marker) names one is skipped.
AUTHORITY = re.compile(
    r"\b(Commission|Member States?|Board|supervisory authorit|Digital Services Coordinator|AI Office|notified bod"
    r"|competent authorit|market surveillance|department|Attorney General|court|division|Council|Parliament"
    r"|Ombudsman|European Data Protection|Agency|Secretary|NCMEC|National Center)",
    re.IGNORECASE,
)

# Deontic words that state no duty: rules of construction and definitions.
NOT_A_DUTY = re.compile(r"shall not be (?:construed|interpreted|deemed)|shall (?:not )?apply|\bnothing in this|\bmeans\b", re.IGNORECASE)

_SENTENCE_END = re.compile(r"(?<=[.;:])\s+(?=[A-Z(\"“])")
MIN_CHARS, MAX_CHARS = 60, 700


class Obligation(BaseModel):
    """One mined obligation. ``id`` is stable across runs (chunk id + sentence hash)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    chunk_id: str
    law_id: str
    title: str
    citation: str
    jurisdiction: str
    topic: str
    text: str
    # For the generic topic (a duty outside TOPICS): "actor verb object", e.g. "operator shall provide a
    # toll-free telephone number"; feature templates of the generic family are written around it.
    duty: str | None = None


GENERIC = "generic"
_ARTICLES = re.compile(r"^(?:a|an|the|each|every|any|such)\s+", re.I)


def duty_phrase(sentence: str, marker: re.Match[str]) -> str:
    """The duty's actor, verb and object: the words before the deontic marker (last 5, articles dropped),
    the marker, and the following words up to a clause break (at most 14)."""
    actor = " ".join(re.findall(r"[A-Za-z][\w'-]*", sentence[: marker.start()])[-5:])
    actor = _ARTICLES.sub("", actor)
    rest = re.split(r"[,;:.(]|\s(?:that|unless|if|when|where|which|who)\s", sentence[marker.end():], maxsplit=1)[0]
    return " ".join([actor, " ".join(marker.group(0).lower().split()), *rest.split()[:14]]).strip()


def split_sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text).strip()
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def classify_topic(sentence: str) -> str | None:
    """The topic with the most keyword hits (ties: the earlier, more specific topic), or None."""
    best, best_hits = None, 0
    for topic, patterns in _TOPIC_RES.items():
        hits = sum(1 for p in patterns if p.search(sentence))
        if hits > best_hits:
            best, best_hits = topic, hits
    return best


def _candidates(snippet: str) -> Iterable[str]:
    """Sentences, with a list's lead-in ("X shall not do any of the following:") prefixed to each of its
    items ("(b) combine personal data ..."), so an enumerated duty keeps its deontic marker and subject."""
    lead = None
    for sentence in split_sentences(snippet):
        if lead and sentence.startswith("(") and not DEONTIC.search(sentence):
            yield f"{lead} {sentence}"
            continue
        lead = sentence if sentence.endswith(":") and DEONTIC.search(sentence) else None
        yield sentence


def mine_chunk(chunk: LawContext, allowed: frozenset[str] | None = None,
               stats: Counter | None = None) -> list[Obligation]:
    """Obligations in ``chunk`` whose topic is in ``allowed`` (None: any topic); skips are counted in
    ``stats``."""
    found: list[Obligation] = []
    for sentence in _candidates(chunk.snippet):
        if not (MIN_CHARS <= len(sentence) <= MAX_CHARS):
            continue
        marker = DEONTIC.search(sentence)
        if not marker or not ONLINE.search(sentence) or NOT_A_DUTY.search(sentence):
            continue
        if AUTHORITY.search(sentence[: marker.start()]):
            continue
        topic = classify_topic(sentence)
        duty = None
        if topic is None:
            # A law that declares no topics (a user's or an inferred one) keeps its other duties too: under the
            # generic topic, with the duty's actor/verb/object for the feature templates.
            if allowed is not None:
                continue
            topic, duty = GENERIC, duty_phrase(sentence, marker)
        if allowed is not None and topic not in allowed:
            if stats is not None:
                stats["topic_not_allowed"] += 1
                stats[f"topic_not_allowed:{chunk.law_id}"] += 1
            continue
        digest = hashlib.sha1(sentence.encode("utf-8")).hexdigest()[:8]
        found.append(
            Obligation(
                id=f"{chunk.id}~{digest}", chunk_id=chunk.id, law_id=chunk.law_id, title=chunk.title,
                citation=chunk.citation, jurisdiction=chunk.jurisdiction, topic=topic, text=sentence, duty=duty,
            )
        )
    return found


def mine(chunks: Iterable[LawContext], registry: Registry | None = None,
         stats: Counter | None = None, cite_secondary: bool = False) -> list[Obligation]:
    """All obligations in ``chunks``, without duplicates (same id), in chunk order.

    Secondary sources (opinions, reports, articles: ``doc_kind == "secondary"``) stay retrievable as
    background but ground no obligation, so no answer cites them as its law, unless ``cite_secondary``.

    Topics are limited to those each law declares in ``registry`` (default: the bundled one); pass a
    ``Counter`` as ``stats`` to get the number of sentences skipped for a topic their law does not allow.
    """
    from data_prep.registry import load_registry

    registry = registry if registry is not None else load_registry()
    seen: set[str] = set()
    out: list[Obligation] = []
    for chunk in chunks:
        if chunk.doc_kind == "secondary" and not cite_secondary:
            if stats is not None:
                stats["secondary_chunks"] += 1
            continue
        entry = registry.entries.get(chunk.law_id)
        allowed = frozenset(entry.topics) if entry is not None and entry.topics is not None else None
        for ob in mine_chunk(chunk, allowed, stats):
            if ob.id not in seen:
                seen.add(ob.id)
                out.append(ob)
    return out


def write_obligations(path: str | Path, obligations: Iterable[Obligation]) -> int:
    return write_jsonl_atomic(path, (o.model_dump_json() for o in obligations))


def read_obligations(path: str | Path) -> list[Obligation]:
    return list(read_records(path, Obligation))


def summary(obligations: Iterable[Obligation], stats: Counter | None = None) -> dict[str, dict[str, int]]:
    """Obligations by law and topic, plus (given ``mine``'s ``stats``) sentences skipped by law because
    their topic is not one the law declares."""
    obs = list(obligations)
    prefix = "topic_not_allowed:"
    skipped = {k.removeprefix(prefix): v for k, v in (stats or Counter()).most_common() if k.startswith(prefix)}
    return {
        "by_law": dict(Counter(o.law_id for o in obs).most_common()),
        "by_topic": dict(Counter(o.topic for o in obs).most_common()),
        "skipped_topic_not_allowed": skipped,
    }
