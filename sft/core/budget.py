"""The token budget: make an example fit ``max_length`` without ever truncating its answer.

Used by ``geoprep build`` (so the data on disk already fits) and by ``geosft train`` (so a file built for
another tokenizer or length still trains correctly). The prompt is trimmed by the one rule inference also
applies (:mod:`sft.core.prompt`): least relevant law items first, never the item the answer cites (the answer
must stay grounded in its prompt). An example that cannot fit is dropped, with the reason, and counted.
Inputs in the original project's text layout ("Feature Name: ... Law Context (structured JSON): [...]") are
trimmed the same way (``sft.core.seed_format``) and written back in that layout.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sft.core.contract import Example, PromptInput, render_completion, render_prompt
from sft.core.prompt import DEFAULT_REASON_TOKENS, answer_reserve, fit_prompt_input
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
    example: Example, tokenizer: Any, max_length: int, *, max_reason_tokens: int = DEFAULT_REASON_TOKENS
) -> BudgetResult:
    """Return the example as it fits in ``max_length`` tokens, or why it cannot.

    The prompt gets ``max_length - answer_reserve(max_reason_tokens)`` tokens and is trimmed by
    :func:`sft.core.prompt.fit_prompt_input`, the rule inference applies to the same prompt; the answer (+ EOS)
    must fit the reserve and is never cut.
    """
    completion_tokens = count_tokens(tokenizer, render_completion(example.output), special=False) + 1
    prompt_tokens = count_tokens(tokenizer, render_prompt(example.instruction, example.input), special=True)
    reserve = answer_reserve(max_reason_tokens)
    budget = max_length - reserve
    if completion_tokens > reserve or budget <= 0:
        return BudgetResult(DROPPED, None, prompt_tokens, completion_tokens,
                            reason=f"answer longer than the {reserve}-token answer reserve")
    if prompt_tokens <= budget:
        return BudgetResult(FIT, example, prompt_tokens, completion_tokens)
    parsed = PromptInput.parse(example.input) or parse_seed_input(example.input)
    if parsed is None or not parsed.law_context:
        return BudgetResult(
            DROPPED, None, prompt_tokens, completion_tokens, reason="prompt too long and has no law context to trim"
        )
    fitted = fit_prompt_input(parsed, example.instruction, tokenizer, budget, keep_citation=example.answer.citation)
    dropped = fitted.cut.get("law_items", 0)
    if not fitted.fits:
        return BudgetResult(DROPPED, None, fitted.tokens, completion_tokens, dropped,
                            reason="does not fit even with only the cited law context")
    trimmed = example.model_copy(update={"input": fitted.prompt_input.render()})
    return BudgetResult(TRIMMED, trimmed, fitted.tokens, completion_tokens, dropped,
                        feature_cut=bool(fitted.cut.get("description_chars")))


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
