"""Grounded reasons: a reason may name only law its prompt holds.

A small model's free text invents statutes ("California Social Media Monitor Act (SB 111)"): for a compliance
tool that is worse than no reason. Decoding therefore passes every generated reason through
:func:`ground_reason`: a sentence that names an act, bill, code, article or section that is neither the answer's
law and citation nor in the prompt's law context is removed, and a reason left empty is replaced by a frame
built only from the answer's own fields. This holds for any weights. ``geosft eval`` counts what it would have
removed from raw text with the same detector (:func:`absent_law_mentions`), as "reasons naming an absent law".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sft.core.contract import Answer, Label, PromptInput
from sft.core.lawnames import LAW_MENTION, LAW_NOUN
from sft.core.reasons import NEEDS_UNCITED


def _norm(text: str) -> str:
    return re.sub(r"[\s\u00a0]+", " ", text).strip().lower()


def allowed_names(prompt_input: PromptInput | None, answer: Answer | None) -> list[str]:
    """The law titles and citations a reason may name: the prompt's law context and the answer's own."""
    names = []
    if prompt_input is not None:
        names += prompt_input.context_laws() + prompt_input.context_citations()
    if answer is not None:
        names += [x for x in (answer.law, answer.citation) if x]
    return [_norm(n) for n in names if n]


def absent_law_mentions(reason: str, allowed: Iterable[str]) -> list[str]:
    """Law names in ``reason`` that none of ``allowed`` contains (case and spacing ignored)."""
    allowed = list(allowed)
    out = []
    for m in LAW_MENTION.finditer(reason):
        # A citation ending its sentence ("... requires in DSA Art. 38.") carries the full stop: not a new name.
        mention = _norm(m.group(0)).rstrip(".,;:")
        if not any(mention in a for a in allowed):
            out.append(m.group(0).strip())
    return out


def frame_reason(answer: Answer) -> str:
    """A reason built only from the answer's own fields (used when nothing grounded is left)."""
    if answer.compliance_flag == Label.NEEDS:
        if answer.law and answer.citation:
            return f"The feature's stated scope falls under {answer.law}, {answer.citation}."
        return NEEDS_UNCITED
    if answer.compliance_flag == Label.NOT_NEEDED:
        return "The spec gives a business reason for its regional scope, or none; no legal obligation applies."
    return "The spec does not say why the feature is limited to its region, so its legal relevance cannot be judged."


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
def _names_law(sentence: str) -> bool:
    return bool(LAW_MENTION.search(sentence) or LAW_NOUN.search(sentence))


def ground_reason(reason: str, answer: Answer, prompt_input: PromptInput | None) -> str:
    """``reason`` without the sentences that name absent law; the frame when none is left.

    A "No Geo-Compliance Needed" answer cites no law, so its reason names none either: a sentence of it that names
    a law (even one in the context: "... which the EU AI Act requires") contradicts the flag and goes too. A
    "Needs" answer without a citation (its law is outside the corpus, or none of the prompt's law applies where
    the spec ships) has nothing to ground a reason on: it gets the frame, which says so."""
    if answer.compliance_flag == Label.NEEDS and not answer.citation:
        return frame_reason(answer)
    allowed = allowed_names(prompt_input, answer)
    no_law = answer.compliance_flag == Label.NOT_NEEDED
    kept = [s for s in _SENTENCE.split(reason.strip())
            if s and not absent_law_mentions(s, allowed) and not (no_law and _names_law(s))]
    text = " ".join(kept).strip()
    return text if len(text) >= 12 else frame_reason(answer)
