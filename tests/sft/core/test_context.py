"""One rule shapes law context for training prompts and for inference prompts (no train/serve skew)."""

from __future__ import annotations

from sft.core.context import SNIPPET_CHARS, TOP_K, select_context
from sft.core.contract import Feature, LawContext
from sft.inference.predict import contexts_for


def _hit(law: str, i: int, words: int = 80) -> LawContext:
    return LawContext(id=f"{law}#{i}", law_id=law, title=law.upper(), citation=f"{law} § {i}", jurisdiction="EU",
                      snippet=" ".join(["obligation"] * words), score=10.0 - i)


class _Retriever:
    def __init__(self, hits):
        self.hits, self.asked = hits, []

    def search(self, query, k=5, jurisdiction=None):
        self.asked.append(k)
        return self.hits[:k]


HITS = [_hit("gdpr", 0), _hit("dsa", 1), _hit("gdpr", 2), _hit("gdpr", 3), _hit("gdpr", 4), _hit("gdpr", 5)]


def test_one_law_top_k_cut_snippets():
    ctx = select_context(HITS)
    assert [c.id for c in ctx] == ["gdpr#0", "gdpr#2", "gdpr#3"][:TOP_K]
    assert all(len(c.snippet) <= SNIPPET_CHARS + 4 and c.snippet.endswith(" ...") for c in ctx)
    assert select_context([]) == []


def test_inference_context_is_shaped_like_training_context():
    retriever = _Retriever(HITS)
    ctx = contexts_for(retriever, Feature(name="Erasure", description="Delete EU users' data"), {})
    assert ctx == select_context(HITS)
    assert retriever.asked[0] >= TOP_K
