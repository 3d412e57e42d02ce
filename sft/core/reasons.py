"""An answer's reason: one rule, from the answer's own fields and what its spec says, for training and inference.

Why a rule and not generated text (#13, measured on the demo model): written token by token after the main
job's steps, a "Needs" reason came out garbled ("implements legal obligation DSA Art. 16(2) (EU Digital Services
Act) and EU Digital Services Act (DSA Art. 16(2))", "a security measure for users in the region where the feature
applies, which states its legal relevance"), and a "No"/NEI reason chosen by likelihood among the training
sentences was the most frequent one whatever the spec said ("ships the same way in every market" for a market
test in Canada; "a place none of the law context covers" for a Florida spec shown Florida law). The decision is
the model's (the flag from the label head, the law item from the LM); the reason says what that decision rests
on, and is always true of the prompt:

- "Needs", cited: what the cited provision is about (the heading its text starts with, in the prompt, or without
  one its operative words quoted), where it applies, and the law and citation (:func:`needs_reason`);
- "Needs", uncited: the spec states a legal driver the prompt's law does not cover (:data:`NEEDS_UNCITED`);
- "No": a business/product reason for the scope when the spec limits it to a place (named or not), else "ships
  the same way everywhere";
- NEI: no place and no reason; a place where none of the prompt's law applies; a place with no reason; regions
  it does not name; every region, with no reason (:func:`sft.core.prompt.region_scope` tells these apart).

``geoprep build`` writes every training answer's reason with :func:`answer_reason` too, so the LM is trained on
exactly the text inference gives.
"""

from __future__ import annotations

import re
from typing import Any

from sft.core.contract import Label, PromptInput, spec_text
from sft.core.lawnames import LAW_MENTION
from sft.core.prompt import citable_items, region_scope

# Jurisdiction code -> how a reason names the place.
REGION_NAMES = {
    "EU": "the EU", "US": "the US", "US-CA": "California", "US-FL": "Florida", "US-UT": "Utah",
    "US-TX": "Texas", "US-NY": "New York", "UK": "the UK",
    # places no bundled law covers (sft.core.prompt's codes)
    "GB": "the UK", "BR": "Brazil", "CAN": "Canada", "JP": "Japan", "IN": "India", "AU": "Australia", "KR": "South Korea",
}
_HEADING = re.compile(r"^(?:Article|Section|Art\.|§|Annex\s+[IVXLC]+\b)\s*[\w.\-]*\s+-\s+(.+?)(?:\s+--\s+.*)?:\s")
_SUBHEADING = re.compile(r"^[^:]*:\s+\(\w{1,4}\)\s+([A-Z][^.—:]{2,60})\.—")  # U.S.C.: "(h) Preservation.—"
# A provision without a heading (California's code sections, the DMA's Annex) is named by its operative words,
# quoted: the section label, paragraph numbers and an "Except as provided in ..." opening go first.
_LEAD = re.compile(r"^(?:(?:Section|Sec\.|§)\s*[\w.\-]+:\s*|Annex\b[^:]{0,60}:\s*)?(?:\(\w{1,4}\)\s*|\d{1,2}\.\s+)*"
                   r"(?:Except as (?:otherwise )?provided [^,]{0,80},\s*)?")
_DEFINITION = re.compile(r"^[“\"‘'](.{2,60}?)[”\"’']\s+means\b")
_CLAUSE_END = r"(?=\s+(?:if|unless|except|when)\b|[;:]|\.\s|\.$|$)"
_UNLAWFUL = re.compile(r"\bunlawful for (?P<who>[^,]+?)(?P<gap>,.*?,)?\s+to (?P<act>.+?)" + _CLAUSE_END)
_MODAL = re.compile(r"^(?P<subj>(?:(?!\.\s).)+?)\s+(?P<modal>shall not|shall|must not|must|may not)\s+(?P<act>.+?)"
                    + _CLAUSE_END)

# A "Needs" answer without a citation (its legal driver is one the prompt's law does not cover: a law outside the
# corpus, or a retrieval miss).
NEEDS_UNCITED = "The spec states a legal obligation for the region it targets; the law given does not cover it."
NO_PLACED_REASON = "The spec gives a business or product reason for its regional scope; no legal obligation drives it."
UNIVERSAL_REASON = "The feature ships the same way in every market and states no legal driver; no geo-specific logic."
NEI_REGION_REASON = ("The spec limits the feature to a region without saying why, so its legal relevance cannot be "
                     "judged.")
NEI_BARE_REASON = "The spec says neither where nor why the feature applies, so whether a law drives it cannot be judged."
NEI_UNNAMED_REASON = ("The spec limits the feature to regions it does not name and says not why, so whether a law "
                      "drives it cannot be judged.")
NEI_EVERYWHERE_REASON = ("The spec ships the feature in every region without saying why, so whether a legal "
                         "obligation drives it cannot be judged.")
NEI_ELSEWHERE_REASON = ("The spec limits the feature to a place none of the law context covers and says not why, so "
                        "whether a law drives it cannot be judged.")


def region_name(jurisdiction: str) -> str:
    return REGION_NAMES.get(jurisdiction, jurisdiction)


def _words(text: str, n: int) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def _head(noun_phrase: str) -> str:
    """A subject's head words: "the operator of an addictive internet-based service" -> "the operator …"; after
    an opening clause ("In promulgating the regulations ..., the Attorney General"), the subject proper."""
    noun_phrase = noun_phrase.rsplit(", ", 1)[-1]
    head = re.split(r",|\s(?:of|for|as|in|that|which|who|collected|described)\s", noun_phrase, maxsplit=1)[0]
    return _words(head, 4) + (" …" if head != noun_phrase and len(head.split()) <= 4 else "")


def operative_quote(text: str, words: int = 7) -> str:
    """A provision without a heading, named by its own words: "the definition of “Minor”", or the rule its first
    operative clause states, quoted and shortened with "…" ("the rule “unlawful for the operator … to send
    notifications to a user”"). Every quoted word is the provision's, in its order, so the reason says nothing the
    law item in the prompt does not; short, because a training answer must fit the budget's answer reserve."""
    body = _LEAD.sub("", re.sub(r"\s*(?:\.\.\.|…)$", "", text.strip()), count=1)  # a trimmed item ends "..."
    if m := _DEFINITION.match(body):
        return f"the definition of “{m.group(1)}”"
    if m := _UNLAWFUL.search(body):
        quote = f"unlawful for {_head(m['who'])}{' …' if m['gap'] else ''} to {_words(m['act'], words)}"
    elif m := _MODAL.match(body):
        quote = f"{_head(m['subj'])} {m['modal']} {_words(m['act'], words)}"
    else:
        quote = _words(body, words)  # no operative clause found: its opening words
    # A law the provision cross-refers to ("as described in Section 27001") is not the answer's citation: the
    # quote stops before it, so a reason never names law beyond its own (sft.inference.grounding).
    if mention := LAW_MENTION.search(quote):
        quote = quote[: mention.start()].rstrip(" ,;(") + " …"
    quote = re.sub(r"(?:\s*…)+", " …", quote)
    return f"the rule “{quote[:1].lower() + quote[1:]}”" if quote.strip(" …") else "a legal requirement"


def provision_topic(text: str) -> str:
    """What a provision is about, from the (sub)heading its text starts with: "Article 28 - Online protection of
    minors: ..." -> "online protection of minors", "Section 2258A - ...: (h) Preservation.— ..." -> "preservation";
    without one (California's code sections), its operative words quoted (:func:`operative_quote`)."""
    m = _SUBHEADING.match(text) or _HEADING.match(text)
    return m.group(1).strip().rstrip(".").lower() if m else operative_quote(text)


def needs_reason(law: str, citation: str, text: str, jurisdiction: str) -> str:
    """The reason of a cited "Needs" answer: the provision's topic (from ``text``, its law item's text), where it
    applies (``jurisdiction``), and the law and citation the answer gives."""
    # A citation that starts with the law's name ("18 U.S.C. § 2258A(h)") names it once: said twice, 2258A's
    # training answers ran 115-117 tokens and the budget dropped 28 of them (the 112-token answer reserve).
    where = f"The feature implements {provision_topic(text)} for users in {region_name(jurisdiction)}, which"
    short = short_title(law)
    if short and citation.startswith(short):
        return f"{where} {citation} requires."
    return f"{where} {short} requires in {citation}."


def short_title(law: str) -> str:
    """A law's title without its trailing parenthetical, for a reason (the answer's law field has the full title):
    "California SB 976 (Protecting Our Kids from Social Media Addiction Act)" -> "California SB 976"."""
    return re.sub(r"\s*\([^()]*\)$", "", law).strip() or law


def answer_reason(flag: Label, prompt_input: PromptInput, law: str | None = None,
                  citation: str | None = None) -> str:
    """The reason of an answer with ``flag`` (and, for "Needs", ``law``/``citation``) to ``prompt_input``."""
    scope = region_scope(spec_text(prompt_input.feature))
    if flag == Label.NEEDS:
        if citation is None:
            return NEEDS_UNCITED
        item: dict[str, Any] = next((c for c in prompt_input.law_context
                                     if c.get("law") == law and c.get("citation") == citation), {})
        return needs_reason(law or "", citation, str(item.get("text", "")), str(item.get("jurisdiction", "")))
    if flag == Label.NOT_NEEDED:
        return NO_PLACED_REASON if scope in ("places", "unnamed") else UNIVERSAL_REASON
    if scope == "places":
        return NEI_REGION_REASON if citable_items(prompt_input) else NEI_ELSEWHERE_REASON
    return {"unnamed": NEI_UNNAMED_REASON, "everywhere": NEI_EVERYWHERE_REASON}.get(scope, NEI_BARE_REASON)
