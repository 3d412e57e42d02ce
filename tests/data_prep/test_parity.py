"""Inference sees what training saw: a validation prompt rebuilt through predict's path holds the same law."""

from __future__ import annotations

import csv
import re

from sft.core.contract import Feature, PromptInput, read_examples
from sft.core.glossary import Glossary
from sft.core.prompt import law_context
from sft.core.retrieval import open_retriever
from tests.conftest import CORPUS


def shingles(text: str) -> set[str]:
    """Word 3-grams: the near-duplicate measure between spec sets."""
    w = text.lower().split()
    return {" ".join(w[i : i + 3]) for i in range(max(1, len(w) - 2))}


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


def test_every_training_citation_is_one_the_decoder_may_choose(corpus_run):
    """Decoding offers only law that applies where the spec says it ships (sft.core.prompt.citable_items): no
    built answer may cite anything else, or inference could never say what training taught."""
    from sft.core.prompt import citable_items

    out, _ = corpus_run
    cited = 0
    for split in ("train.jsonl", "validation.jsonl"):
        for ex in read_examples(out / split):
            if ex.answer.citation:
                cited += 1
                options = [(c.get("law"), c.get("citation")) for c in citable_items(PromptInput.parse(ex.input))]
                assert (ex.answer.law, ex.answer.citation) in options, ex.id
    assert cited > 100


def test_the_realistic_set_is_not_built_from_the_generator(corpus_run):
    """No hand-written spec is a near-duplicate of a generated one (word 3-gram Jaccard < 0.5)."""
    from data_prep.features import read_features

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


def test_handwritten_training_specs_cite_real_provisions_and_stay_away_from_the_realistic_set(corpus_run):
    """The hand-written training rows (examples/handwritten) are training data: every citation is a provision
    geoprep cuts from the bundled laws, and no realistic spec (the yardstick) is near any of them."""
    from sft.core.chunks import read_chunks
    from sft.core.gold import citation_matches

    out, _ = corpus_run
    by_law: dict[str, list[str]] = {}
    for c in read_chunks(out / "chunks.jsonl"):
        by_law.setdefault(c.law_id, []).append(c.citation)
    with (CORPUS.parent / "handwritten" / "train_specs.csv").open(encoding="utf-8") as fh:
        train = list(csv.DictReader(fh))
    assert len(train) >= 250
    for row in train:
        if row["label"] == "Needs Geo-Compliance" and row["law_id"] in by_law:
            assert any(citation_matches(c, [row["citation"]]) for c in by_law[row["law_id"]]), row["id"]
        elif row["label"] == "Needs Geo-Compliance":
            assert row["category"] == "law_not_in_corpus" and not row["citation"], row["id"]
    with (CORPUS.parent / "realistic" / "specs.csv").open(encoding="utf-8") as fh:
        realistic = list(csv.DictReader(fh))
    def title_words(name: str) -> set[str]:
        return set(re.findall(r"[a-z0-9]+", name.lower())) - {"the", "for", "in", "a", "of", "to", "and", "on", "eu", "us"}

    train_sh = [shingles(f"{r['name']} {r['description']}") for r in train]
    train_titles = [title_words(r["name"]) for r in train]
    worst = worst_title = 0.0
    for row in realistic:
        sh, title = shingles(f"{row['name']} {row['description']}"), title_words(row["name"])
        worst = max(worst, max(len(sh & t) / len(sh | t) for t in train_sh))
        worst_title = max(worst_title, max(len(title & t) / len(title | t) for t in train_titles if title | t))
    assert worst < 0.1, worst  # no shared text
    assert worst_title < 0.4, worst_title  # and no same feature under another description ("Diwali sticker pack")
