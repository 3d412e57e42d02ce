from __future__ import annotations

import pytest

from sft.core.budget import DROPPED, FIT, TRIMMED, BudgetReport, count_tokens, fit_to_budget
from sft.core.contract import Answer, Example, Feature, LawContext, PromptInput, render_completion

pytest.importorskip("transformers")


def _ctx(i: int, words: int = 60) -> LawContext:
    return LawContext(
        id=f"law#{i}", law_id="law", title="Some Law", citation=f"Law § {i}", jurisdiction="EU",
        snippet=" ".join(f"obligation{i} text" for _ in range(words)),
    )


def _example(cited: int, n: int = 4) -> Example:
    pi = PromptInput.build(Feature(name="Teen curfew", description="Block PF at night"), [_ctx(i) for i in range(n)])
    ans = Answer(compliance_flag="Needs Geo-Compliance", law="Some Law", citation=f"Law § {cited}", reason="r" * 40)
    return Example.build(pi, ans)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_fits_untouched(tok):
    ex = _example(0)
    res = fit_to_budget(ex, tok, 100_000)
    assert res.status == FIT and res.example is ex


def test_overlong_example_keeps_full_answer_and_cited_context(tok):
    ex = _example(cited=3)  # the least relevant item is the cited one: it must survive
    full = fit_to_budget(ex, tok, 100_000).total_tokens
    res = fit_to_budget(ex, tok, full - 50)
    assert res.status == TRIMMED and res.context_dropped >= 1
    assert res.total_tokens <= full - 50
    assert res.example.output == ex.output  # the answer is never truncated
    kept = PromptInput.parse(res.example.input).context_citations()
    assert "Law § 3" in kept and len(kept) == 4 - res.context_dropped
    assert res.completion_tokens == count_tokens(tok, render_completion(ex.output), special=False) + 1


def test_unfittable_example_is_dropped_with_reason(tok):
    ex = _example(cited=0)
    report = BudgetReport(max_length=40)
    res = fit_to_budget(ex, tok, 40)
    report.add(res)
    assert res.status == DROPPED and res.example is None
    assert report.as_dict()["dropped"] == 1 and report.as_dict()["drop_reasons"]
