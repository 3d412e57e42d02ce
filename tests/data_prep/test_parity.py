"""Inference sees what training saw: a validation prompt rebuilt through predict's path holds the same law."""

from __future__ import annotations

import csv

from sft.core.contract import Feature, PromptInput, read_examples
from sft.core.glossary import Glossary
from sft.core.prompt import law_context
from sft.core.retrieval import open_retriever
from tests.conftest import CORPUS


def test_every_validation_prompt_is_rebuilt_with_the_same_law_through_the_predict_path(corpus_run):
    out, _ = corpus_run
    retriever = open_retriever("local", index_dir=out / "index")
    glossary = Glossary.load(CORPUS / "glossary" / "terminology.csv")
    examples = list(read_examples(out / "validation.jsonl"))
    assert len(examples) > 20
    for ex in examples:
        pi = PromptInput.parse(ex.input)
        feature = Feature(name=pi.feature["name"], description=pi.feature["description"])
        notes = glossary.notes_for(f"{feature.name} {feature.description}")
        assert notes == pi.glossary, ex.id
        rebuilt = law_context(retriever, feature, notes)
        # No token budget in this build: the items are the same, in the same order.
        assert [c.prompt_view() for c in rebuilt] == pi.law_context, ex.id


def test_the_realistic_set_is_not_built_from_the_generator(corpus_run):
    """No hand-written spec is a near-duplicate of a generated one (word 3-gram Jaccard < 0.5)."""
    from data_prep.features import read_features

    def shingles(text: str) -> set[str]:
        w = text.lower().split()
        return {" ".join(w[i : i + 3]) for i in range(max(1, len(w) - 2))}

    out, _ = corpus_run
    generated = [shingles(f"{s.feature.name} {s.feature.description}") for s in read_features(out / "features.jsonl")]
    path = CORPUS.parent / "realistic" / "specs.csv"
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 120
    worst = 0.0
    for row in rows:
        sh = shingles(f"{row['name']} {row['description']}")
        worst = max(worst, max(len(sh & g) / len(sh | g) for g in generated))
    assert worst < 0.5, worst
