"""The input layout of the original SageMaker fine-tuning project, read as a structured prompt input.

Its ``input`` is free text::

    Feature Name: Teen curfew
    Feature Description: Disable push notifications ...
    Source: PRD-1423
    Law Context (structured JSON): [{"law": "...", "citation": "...", "text": "..."}, ...]

:func:`parse_seed_input` turns it into a :class:`SeedInput` - a :class:`~sft.core.contract.PromptInput` whose
``law_context`` is the embedded list, so the token budget trims its items (least relevant last in the list,
or lowest ``score``/``relevance`` when the items carry one) instead of dropping the whole example. A
trimmed input is rendered back in the same layout, so one file never mixes two prompt formats.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sft.core.contract import PromptInput

_LABELS = {"Feature Name": "name", "Feature Description": "description", "Source": "source"}
_CONTEXT = "Law Context (structured JSON):"
_FIELD = re.compile(r"^(Feature Name|Feature Description|Source):[ \t]*", re.M)
_SCORE_KEYS = ("score", "relevance", "relevance_score")


class SeedInput(PromptInput):
    """A seed-layout input; ``render()`` writes the seed layout back (with the context as it now is)."""

    prefix: str = ""  # text before "Feature Name:" (kept verbatim)

    def render(self) -> str:
        lines = [self.prefix] if self.prefix else []
        for label, key in _LABELS.items():
            if key in self.feature:
                lines.append(f"{label}: {self.feature[key]}")
        lines.append(f"{_CONTEXT} {json.dumps(self.law_context, ensure_ascii=False)}")
        return "\n".join(lines)


def is_seed_input(text: str) -> bool:
    return isinstance(text, str) and "Feature Name:" in text and _CONTEXT in text


def parse_seed_input(text: str) -> SeedInput | None:
    """The structured form of a seed-layout input, or None when ``text`` is not in that layout or its
    embedded context is not a JSON list of objects."""
    if not is_seed_input(text):
        return None
    head, _, tail = text.partition(_CONTEXT)
    try:
        context, _end = json.JSONDecoder().raw_decode(tail.lstrip())
    except json.JSONDecodeError:
        return None
    if not isinstance(context, list) or not all(isinstance(c, dict) for c in context):
        return None
    matches = list(_FIELD.finditer(head))
    if not matches:
        return None
    feature: dict[str, str] = {}
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        value = head[m.end(): nxt.start() if nxt else len(head)]
        feature[_LABELS[m.group(1)]] = " ".join(value.split())
    feature.setdefault("name", "")
    feature.setdefault("description", "")
    return SeedInput(feature=feature, law_context=_by_relevance(context), prefix=head[: matches[0].start()].strip())


def _by_relevance(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most relevant first: by a score the items carry, else in the order given (retrieval order)."""
    key = next((k for k in _SCORE_KEYS if all(isinstance(c.get(k), int | float) for c in items)), None)
    return sorted(items, key=lambda c: -c[key]) if key and items else list(items)
