"""The one prompt builder: feature + glossary notes + retrieved law -> the exact prompt, under one budget rule.

``geoprep build`` (training data), ``geosft train`` (re-fitting a file to its tokenizer), ``geosft eval``,
``geosft predict`` and ``serve`` all call :func:`law_context` to pick the law a prompt shows and
:func:`fit_prompt_input` to make it fit, so a deployed model sees prompts shaped exactly like its training
prompts: the same retrieval query, the same jurisdiction rule, the same number and length of snippets, and the
same trimming order when a prompt is too long.

The budget rule: the prompt may take ``max_length - answer_reserve(max_reason_tokens)`` tokens. The reserve is
what the longest answer inference allows can take (JSON frame, label, law and citation: 64 tokens; the reason:
``max_reason_tokens``), so training, where the real answer is known, and inference, where it is not, trim the
same prompt to the same length. A training answer longer than the reserve is dropped (and counted).

Trimming order, each step only while the prompt is still too long:

1. law items, least relevant first, down to one (never the item a training answer cites);
2. glossary notes, last first;
3. the feature description, cut at a sentence boundary (at a word when one sentence is left);
4. the law text of the items left, last item first, cut at a word down to ``MIN_SNIPPET_CHARS`` (the citation
   stays: a training answer's cited item keeps its citation with a shorter quote);
5. the last law items (a prompt with no law is reported, never silent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sft.core.context import SEARCH_K, TOP_K, select_context
from sft.core.contract import Feature, LawContext, PromptInput, render_prompt, spec_text
from sft.core.legal_terms import legal_terms
from sft.core.named_law import MAX_NAMED, named_provisions, pin_named

ANSWER_FRAME_TOKENS = 64  # {"compliance_flag": ..., "law": ..., "citation": ..., "reason": "..."} minus the reason
DEFAULT_REASON_TOKENS = 48
MIN_DESCRIPTION_CHARS = 80  # a description is never cut shorter than this (its first sentence, at least)
MIN_SNIPPET_CHARS = 120  # nor a law item's text


def answer_reserve(max_reason_tokens: int = DEFAULT_REASON_TOKENS) -> int:
    """Tokens kept free for the answer (+ EOS) after the prompt."""
    return ANSWER_FRAME_TOKENS + max_reason_tokens


def prompt_budget(max_length: int, max_reason_tokens: int = DEFAULT_REASON_TOKENS) -> int:
    return max_length - answer_reserve(max_reason_tokens)


# ------------------------------------------------------------------------------------- jurisdictions

# How specs name places -> the jurisdiction codes law chunks carry. Word-bounded, case-sensitive for the
# two-letter abbreviations (so "in" or "or" never reads as a state), case-insensitive for names.
_PLACES: list[tuple[str, str, int]] = [
    (r"\b(?:EU|EEA|E\.U\.)\b", "EU", 0),
    (r"\b(?:European Union|European Economic Area|member states?|Europe(?:an)?|Brussels|Schengen)\b", "EU", re.I),
    (r"\b(?:Austria|Belgium|Bulgaria|Croatia|Cyprus|Czechia|Czech Republic|Denmark|Estonia|Finland|France|Germany"
     r"|Greece|Hungary|Ireland|Italy|Latvia|Lithuania|Luxembourg|Malta|Netherlands|Poland|Portugal|Romania"
     r"|Slovakia|Slovenia|Spain|Sweden|DACH|Benelux|Nordics)\b", "EU", 0),
    (r"\b(?:US|U\.S\.|USA)\b", "US", 0),
    (r"\b(?:United States|federal|nationwide|stateside|American)\b", "US", re.I),
    (r"\b(?:California|Californian|Bay Area|Los Angeles|San Francisco)\b", "US-CA", re.I),
    (r"\bCA\b", "US-CA", 0),
    (r"\b(?:Florida|Floridian|Sunshine State|Miami|Tampa|Orlando)\b", "US-FL", re.I),
    (r"\bFL\b", "US-FL", 0),
    (r"\b(?:Utah|Utahn|Salt Lake)\b", "US-UT", re.I),
    (r"\bUT\b", "US-UT", 0),
    (r"\b(?:Texas|Texan)\b", "US-TX", re.I),
    (r"\bTX\b", "US-TX", 0),
    (r"\b(?:New York)\b", "US-NY", re.I),
    (r"\bNY\b", "US-NY", 0),
    # Places no bundled law covers: retrieval falls back to the best hits (nothing applies), and an answer for
    # such a spec cites none of them (citable_items): a UK age-assurance spec is not answered with Florida's law.
    (r"\b(?:UK|U\.K\.)\b", "GB", 0),
    (r"\b(?:United Kingdom|Britain|British|England|Scotland|Wales)\b", "GB", re.I),
    (r"\b(?:Brazil|Brazilian)\b", "BR", re.I),
    (r"\b(?:Canada|Canadian|Quebec|Ontario)\b", "CAN", re.I),
    (r"\b(?:Australia|Australian)\b", "AU", re.I),
    (r"\b(?:India)\b", "IN", re.I),
    (r"\b(?:Japan|Japanese)\b", "JP", re.I),
    (r"\b(?:South Korea|Korea|Korean)\b", "KR", re.I),
    # Other US states: federal law applies there, no bundled state law does (_OTHER_STATES below). Of their postal
    # codes only these are read; ID, IN, OR, ME, OK, AR, CO, MS are everyday capitals too.
    (r"(?<!West )\bVirginia\b", "US-VA", re.I),
    (r"\bVA\b", "US-VA", 0), (r"\bNJ\b", "US-NJ", 0), (r"\bOH\b", "US-OH", 0), (r"\bAZ\b", "US-AZ", 0),
    (r"\bNV\b", "US-NV", 0), (r"\bTN\b", "US-TN", 0),
    # Other countries and regions no bundled law covers; names case-sensitive (a "turkey" sticker is not Turkey).
    (r"\b(?:New Zealand|NZ)\b", "NZ", 0), (r"(?<!New )\b(?:Mexico|Mexican)\b", "MX", 0),
    (r"\b(?:Indonesia|Indonesian)\b", "ID", 0), (r"\b(?:Vietnam|Viet Nam|Vietnamese)\b", "VN", 0),
    (r"\b(?:Turkey|Türkiye|Turkish)\b", "TR", 0), (r"\b(?:Nigeria|Nigerian)\b", "NG", 0),
    (r"\b(?:Egypt|Egyptian)\b", "EG", 0), (r"\b(?:Philippines|Filipino)\b", "PH", 0),
    (r"\b(?:Thailand|Thai)\b", "TH", 0), (r"\b(?:Singapore)\b", "SG", 0), (r"\b(?:South Africa)\b", "ZA", 0),
    (r"\b(?:Argentina|Colombia|Chile|Peru|LATAM|Latin America)\b", "LATAM", 0),
    (r"\b(?:Saudi Arabia|UAE|United Arab Emirates|Israel|MENA|Middle East)\b", "MENA", 0),
    (r"\b(?:Kenya|Ghana|Sub-Saharan Africa)\b", "AFRICA", 0),
    (r"\b(?:Pakistan|Bangladesh|Malaysia|Taiwan|Hong Kong|APAC|Asia-Pacific)\b", "APAC", 0),
]
# Georgia and Washington are not read: a country, a city.
_OTHER_STATES = (
    "Alabama AL|Alaska AK|Arizona AZ|Arkansas AR|Colorado CO|Connecticut CT|Delaware DE|Hawaii HI|Idaho ID|Illinois IL"
    "|Indiana IN|Iowa IA|Kansas KS|Kentucky KY|Louisiana LA|Maine ME|Maryland MD|Massachusetts MA|Michigan MI"
    "|Minnesota MN|Mississippi MS|Missouri MO|Montana MT|Nebraska NE|Nevada NV|New Hampshire NH|New Jersey NJ"
    "|New Mexico NM|North Carolina NC|North Dakota ND|Ohio OH|Oklahoma OK|Oregon OR|Pennsylvania PA|Rhode Island RI"
    "|South Carolina SC|South Dakota SD|Tennessee TN|Vermont VT|West Virginia WV|Wisconsin WI|Wyoming WY")
_PLACES += [(rf"\b{name}\b", f"US-{code}", re.I) for name, code in (e.rsplit(" ", 1) for e in _OTHER_STATES.split("|"))]
_PLACE_RES = [(re.compile(p, flags), code) for p, code, flags in _PLACES]


def mentioned_jurisdictions(text: str) -> list[str]:
    """The jurisdictions a spec names (sorted). A state implies nothing about its country's federal law here:
    the applicability rule (:func:`applies`) lets federal law apply to every state."""
    return sorted({code for rx, code in _PLACE_RES if rx.search(text)})


# Scope words that name no place: a region limit left unnamed ("select regions", "region list TBD", "rolled out
# by region") and a feature for every place ("all regions", "worldwide"). Without them a spec that says where only
# this way read as saying nothing: "Roll out the new filter in select regions" got "ships the same way in every
# market", and "cut retention in all regions ... driven by infra cost" got "says neither where nor why"
# (examples/features.csv F-111, F-113, 2026-12-04).
_AREA = r"(?:regions?|markets?|countries|country|geos?|locales?|territories)"
_UNNAMED_RE = re.compile(
    rf"\b(?:(?:select(?:ed)?|certain|some|specific|a few|a handful of|several|limited|more|additional|new|other"
    rf"|target|pilot|launch|initial|priority|chosen|a subset of) {_AREA}|{_AREA} (?:list|TBD|to be decided)"
    rf"|(?:by|per|region[- ]by[- ]) ?(?:region|market|country)|regional (?:pilot|rollout|launch|test|scope)"
    rf"|region[- ]specific|geo[- ](?:gated|fenced|restricted|targeted)|geofenced?)\b", re.I)
_EVERYWHERE_RE = re.compile(
    rf"\b(?:(?:all|every) {_AREA}|(?:all|every) users|worldwide|world-wide|globally|global (?:launch|rollout"
    rf"|change|policy|default)|everywhere|across (?:the board|all {_AREA}))\b", re.I)
SCOPES = ("places", "unnamed", "everywhere", "none")


def region_scope(text: str) -> str:
    """How a spec scopes itself: "places" (it names one: :func:`mentioned_jurisdictions`), "unnamed" (a region
    limit that names none), "everywhere" (every region, worldwide) or "none" (it does not say)."""
    if mentioned_jurisdictions(text):
        return "places"
    if _UNNAMED_RE.search(text):
        return "unnamed"
    return "everywhere" if _EVERYWHERE_RE.search(text) else "none"


def applies(law_jurisdiction: str, wanted: str) -> bool:
    """A law applies to a place in its own jurisdiction or a sub-jurisdiction: US law in US-UT, not US-FL law in
    US-UT."""
    return wanted == law_jurisdiction or wanted.startswith(law_jurisdiction + "-")


def citable_items(prompt_input: PromptInput) -> list[dict[str, Any]]:
    """The prompt's law items an answer may cite: where the spec names places, only law that applies to one of them
    (or, for a law of a smaller place, lies within one: California law for a "US" feature). A spec naming Texas
    cannot be answered with the EU's DMA because the retriever had nothing closer; with no citable item the
    answer is a flag without a citation (a law outside the corpus). Training answers follow this by construction:
    a positive cites its own law in its own region (a test checks every built example)."""
    feature = prompt_input.feature
    wanted = mentioned_jurisdictions(spec_text(feature))
    if not wanted:
        return list(prompt_input.law_context)
    return [item for item in prompt_input.law_context
            if not item.get("jurisdiction")
            or any(applies(item["jurisdiction"], w) or applies(w, item["jurisdiction"]) for w in wanted)]


# -------------------------------------------------------------------------------------------- context


class Retriever(Protocol):
    def search(self, query: str, k: int = 5, jurisdiction: str | None = None) -> list[LawContext]: ...


def retrieval_query(feature: Feature, glossary_notes: dict[str, str]) -> str:
    """Feature text with internal jargon expanded, so retrieval sees 'age-sensitive...' not 'ASL', and the
    statute words for its product words (:mod:`sft.core.legal_terms`: 'advertisements' for 'ads')."""
    notes = " ".join(f"{k}: {v}" for k, v in glossary_notes.items())
    terms = legal_terms(spec_text(feature))
    return f"{spec_text(feature)} {notes} {terms}".strip()


def law_context(retriever: Retriever | None, feature: Feature, glossary_notes: dict[str, str],
                k: int = TOP_K, search_k: int = SEARCH_K) -> list[LawContext]:
    """The law a prompt shows for ``feature``: training data and every inference path call this.

    When the spec names a law or provision (:mod:`sft.core.named_law`), its items come first. When the spec
    names places, hits of laws that apply there come first (asking the retriever per place when
    none of the best hits applies); with none at all, the best hits stand, so the model sees that the law it is
    given does not cover the place. Then :func:`sft.core.context.select_context`: one law, ``k`` snippets.
    """
    if retriever is None or k == 0:
        return []
    query = retrieval_query(feature, glossary_notes)
    hits = retriever.search(query, k=max(search_k, k))
    named = named_provisions(spec_text(feature))[:MAX_NAMED]
    if named:
        # The named article's chunks join the hits even when the spec's other words rank another law first: a
        # local index lists them (LocalRetriever.named_items); a managed one gets a search led by the mention
        # ("GDPR Art. 35" + the spec), as does a law named without an article.
        exact = getattr(retriever, "named_items", None)
        for n in named:
            found = exact(n) if exact is not None and n.number is not None else None
            hits = [*hits, *(found if found is not None else retriever.search(f"{n.text} {query}",
                                                                              k=max(search_k, k)))]
        hits = pin_named(hits, named)
    places = mentioned_jurisdictions(spec_text(feature))
    if places:
        applicable = [h for h in hits if any(applies(h.jurisdiction, p) for p in places)]
        if not applicable:
            for place in places:
                applicable += [h for h in retriever.search(query, k=max(search_k, k), jurisdiction=place)
                               if applies(h.jurisdiction, place)]
            applicable.sort(key=lambda h: -(h.score or 0.0))
        if applicable:
            hits = applicable
    return select_context(hits, top_k=k)


# --------------------------------------------------------------------------------------------- budget


@dataclass
class Fitted:
    prompt_input: PromptInput
    prompt: str
    tokens: int
    fits: bool
    cut: dict[str, int] = field(default_factory=dict)
    """What was removed: {"law_items": n, "glossary_notes": n, "description_chars": n}."""


def _sentences_cut(text: str, min_chars: int) -> str | None:
    """``text`` without its last sentence (or last word once one sentence is left); None when at the floor."""
    if len(text) <= min_chars:
        return None
    parts = re.split(r"(?<=[.!?;])\s+", text.strip())
    if len(parts) > 1:
        shorter = " ".join(parts[:-1])
        if len(shorter) >= min_chars:
            return shorter
    words = text.split()
    return " ".join(words[:-1]) if len(words) > 1 and len(" ".join(words[:-1])) >= min_chars else None


def fit_prompt_input(prompt_input: PromptInput, instruction: str, tokenizer: Any, budget: int | None, *,
                     keep_citation: str | None = None) -> Fitted:
    """``prompt_input`` trimmed (in the module's order) until the rendered prompt takes <= ``budget`` tokens.

    ``keep_citation``: a training answer's citation; its law item is never removed. ``budget`` None: no limit.
    """
    def render(pi: PromptInput) -> tuple[str, int]:
        text = render_prompt(instruction, pi.render())
        return text, len(tokenizer(text)["input_ids"])

    pi = prompt_input
    prompt, n = render(pi)
    cut = {"law_items": 0, "glossary_notes": 0, "description_chars": 0, "law_text_chars": 0}
    if budget is None or n <= budget:
        return Fitted(pi, prompt, n, True, {})

    def removable(ctx: list[dict[str, Any]], floor: int) -> int | None:
        """The least relevant law item that may go (not the cited one), while more than ``floor`` remain."""
        if len(ctx) <= floor:
            return None
        return next((i for i in range(len(ctx) - 1, -1, -1)
                     if keep_citation is None or ctx[i].get("citation") != keep_citation), None)

    steps = ("law_items_to_one", "glossary_notes", "description", "law_text", "law_items")
    for step in steps:
        while n > budget:
            if step in ("law_items_to_one", "law_items"):
                ctx = list(pi.law_context)
                i = removable(ctx, 1 if step == "law_items_to_one" else 0)
                if i is None:
                    break
                del ctx[i]
                pi = pi.model_copy(update={"law_context": ctx})
                cut["law_items"] += 1
            elif step == "law_text":
                ctx = [dict(c) for c in pi.law_context]
                i = next((j for j in range(len(ctx) - 1, -1, -1)
                          if len(str(ctx[j].get("text", ""))) > MIN_SNIPPET_CHARS + 4), None)
                if i is None:
                    break
                text = str(ctx[i]["text"]).removesuffix(" ...")
                keep = max(MIN_SNIPPET_CHARS, int(len(text) * 0.8))
                shorter = text[:keep].rsplit(" ", 1)[0] + " ..."
                cut["law_text_chars"] += len(ctx[i]["text"]) - len(shorter)
                ctx[i]["text"] = shorter
                pi = pi.model_copy(update={"law_context": ctx})
            elif step == "glossary_notes":
                if not pi.glossary:
                    break
                notes = dict(list(pi.glossary.items())[:-1])
                pi = pi.model_copy(update={"glossary": notes})
                cut["glossary_notes"] += 1
            else:
                desc = pi.feature.get("description", "")
                shorter = _sentences_cut(desc, MIN_DESCRIPTION_CHARS)
                if shorter is None:
                    break
                pi = pi.model_copy(update={"feature": {**pi.feature, "description": shorter}})
                cut["description_chars"] += len(desc) - len(shorter)
            prompt, n = render(pi)
    return Fitted(pi, prompt, n, n <= budget, {k: v for k, v in cut.items() if v})


def build_prompt(feature: Feature, context: Sequence[LawContext], glossary_notes: dict[str, str] | None,
                 instruction: str, tokenizer: Any = None, budget: int | None = None) -> tuple[Fitted, list[LawContext]]:
    """The prompt for a feature at inference, fitted to ``budget``, and the law items it still holds."""
    pi = PromptInput.build(feature, list(context), glossary_notes)
    if tokenizer is None or budget is None:
        return Fitted(pi, render_prompt(instruction, pi.render()), 0, True, {}), list(context)
    fitted = fit_prompt_input(pi, instruction, tokenizer, budget)
    return fitted, kept_items(context, fitted.prompt_input.law_context)


def kept_items(context: Sequence[LawContext], shown: Sequence[dict[str, Any]]) -> list[LawContext]:
    """The items of ``context`` a trimmed prompt still shows. Trimming only deletes items and shortens their
    text, in order, so each shown item is the next one with its law and citation whose text it starts."""
    kept: list[LawContext] = []
    i = 0
    for item in shown:
        text = str(item.get("text", "")).removesuffix(" ...")
        while i < len(context):
            c = context[i]
            i += 1
            if (c.title, c.citation) == (item.get("law"), item.get("citation")) and c.snippet.startswith(text):
                kept.append(c)
                break
    return kept
