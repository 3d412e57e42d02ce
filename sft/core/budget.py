"""The token budget: make an example fit ``max_length`` without ever truncating its answer.

Used by ``geoprep build`` (so the data on disk already fits) and by ``geosft train`` (so a file built for
another tokenizer or length still trains correctly). Law context items are ordered most relevant first;
the least relevant are dropped first, and the item the answer cites is never dropped (the answer must
stay grounded in its prompt). When only the cited item is left, an over-long feature description is cut at a
sentence boundary (counted). An example that cannot fit is dropped, with the reason, and counted. Inputs in
the original project's text layout ("Feature Name: ... Law Context (structured JSON): [...]") are trimmed
the same way (``sft.core.seed_format``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sft.core.contract import PROMPT_TEMPLATE, Example, PromptInput, render_completion, render_prompt
from sft.core.seed_format import parse_seed_input

FIT, TRIMMED, DROPPED = "fit", "trimmed", "dropped"


@dataclass
class BudgetResult:
    status: str  # fit | trimmed | dropped
    example: Example | None
    prompt_tokens: int
    completion_tokens: int  # including EOS
    context_dropped: int = 0
    reason: str | None = None
    feature_cut: bool = False  # the feature description was cut at a sentence boundary to fit

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def count_tokens(tokenizer: Any, text: str, *, special: bool) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def fit_to_budget(
    example: Example, tokenizer: Any, max_length: int, *, template: str = PROMPT_TEMPLATE
) -> BudgetResult:
    """Return the example as it fits in ``max_length`` tokens (prompt + answer + EOS), or why it cannot."""
    completion_tokens = count_tokens(tokenizer, render_completion(example.output), special=False) + 1
    prompt_tokens = count_tokens(tokenizer, render_prompt(example.instruction, example.input, template), special=True)
    if prompt_tokens + completion_tokens <= max_length:
        return BudgetResult(FIT, example, prompt_tokens, completion_tokens)
    if completion_tokens >= max_length:
        return BudgetResult(DROPPED, None, prompt_tokens, completion_tokens, reason="answer longer than max_length")
    parsed = PromptInput.parse(example.input) or parse_seed_input(example.input)
    if parsed is not None and not parsed.law_context:
        return _cut_feature(example, parsed, tokenizer, max_length, template, completion_tokens, prompt_tokens, 0)
    if parsed is None:
        return BudgetResult(
            DROPPED, None, prompt_tokens, completion_tokens, reason="prompt too long and has no law context to trim"
        )
    cited = example.answer.citation
    context = list(parsed.law_context)
    dropped = 0
    while True:
        # Drop the least relevant item the answer does not cite.
        idx = next((i for i in range(len(context) - 1, -1, -1) if context[i].get("citation") != cited), None)
        if idx is None:
            parsed = parsed.model_copy(update={"law_context": context})
            return _cut_feature(example, parsed, tokenizer, max_length, template, completion_tokens,
                                prompt_tokens, dropped)
        del context[idx]
        dropped += 1
        trimmed_input = parsed.model_copy(update={"law_context": context}).render()
        prompt_tokens = count_tokens(
            tokenizer, render_prompt(example.instruction, trimmed_input, template), special=True
        )
        if prompt_tokens + completion_tokens <= max_length:
            trimmed = example.model_copy(update={"input": trimmed_input})
            return BudgetResult(TRIMMED, trimmed, prompt_tokens, completion_tokens, dropped)


def _cut_feature(
    example: Example, parsed: PromptInput, tokenizer: Any, max_length: int, template: str,
    completion_tokens: int, prompt_tokens: int, dropped: int,
) -> BudgetResult:
    """Keep the longest run of the description's first sentences that fits (binary search: a 40-sentence
    description costs ~6 tokenizer calls, not 40); at least one sentence, else the example is dropped."""
    sentences = re.split(r"(?<=[.!?])\s+", parsed.feature.get("description", "").strip())

    def attempt(k: int) -> tuple[int, str]:
        feature = {**parsed.feature, "description": " ".join(sentences[:k])}
        text = parsed.model_copy(update={"feature": feature}).render()
        return count_tokens(tokenizer, render_prompt(example.instruction, text, template), special=True), text

    lo, hi, best = 1, len(sentences) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        tokens, text = attempt(mid)
        if tokens + completion_tokens <= max_length:
            best, lo = (tokens, text), mid + 1
        else:
            hi = mid - 1
    if best is None:
        return BudgetResult(
            DROPPED, None, prompt_tokens, completion_tokens, dropped,
            reason="does not fit even with only the cited law context and the feature's first sentence",
        )
    trimmed = example.model_copy(update={"input": best[1]})
    return BudgetResult(TRIMMED, trimmed, best[0], completion_tokens, dropped, feature_cut=True)


@dataclass
class BudgetReport:
    """Counts for the run report: how many examples fit, were trimmed or dropped, and why."""

    max_length: int
    counts: Counter[str] = field(default_factory=Counter)
    drop_reasons: Counter[str] = field(default_factory=Counter)
    context_items_dropped: int = 0
    feature_text_cut: int = 0
    longest_kept: int = 0
    kept_tokens: int = 0

    def add(self, result: BudgetResult) -> None:
        self.counts[result.status] += 1
        self.context_items_dropped += result.context_dropped
        self.feature_text_cut += result.feature_cut
        if result.reason:
            self.drop_reasons[result.reason] += 1
        if result.example is not None:
            self.longest_kept = max(self.longest_kept, result.total_tokens)
            self.kept_tokens += result.total_tokens

    @property
    def mean_kept_tokens(self) -> float:
        kept = self.counts[FIT] + self.counts[TRIMMED]
        return self.kept_tokens / kept if kept else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "fit": self.counts[FIT],
            "trimmed": self.counts[TRIMMED],
            "dropped": self.counts[DROPPED],
            "drop_reasons": dict(self.drop_reasons),
            "context_items_dropped": self.context_items_dropped,
            "feature_text_cut": self.feature_text_cut,
            "longest_kept_tokens": self.longest_kept,
            "mean_kept_tokens": round(self.mean_kept_tokens, 1),
        }
