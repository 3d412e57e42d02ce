"""Each law grounds only the topics it declares in the registry: no feature is cited to an unrelated law."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data_prep.features import TEMPLATES, read_features
from data_prep.mine import mine
from data_prep.registry import load_registry
from data_prep.topics import TOPICS
from sft.core.contract import Label, LawContext, read_examples
from sft.core.errors import UserError

ERASURE = "The controller shall erase the personal data of a user of the service without undue delay on request."


def _chunk(law_id: str, text: str = ERASURE) -> LawContext:
    return LawContext(id=f"{law_id}#1", law_id=law_id, title="Some Act", citation="Art. 1", jurisdiction="EU",
                      snippet=text)


def test_every_bundled_law_declares_known_topics_that_have_feature_templates():
    registry = load_registry()
    for entry in registry:
        assert entry.topics, f"{entry.law_id} declares no topics"
        assert set(entry.topics) <= set(TOPICS) <= set(TEMPLATES)
    assert "data_minimisation" not in registry["eu_ai_act"].topics
    assert "data_minimisation" in registry["eu_gdpr"].topics


def test_a_topic_the_law_does_not_declare_is_skipped_and_counted():
    stats: Counter = Counter()
    assert mine([_chunk("eu_ai_act")], stats=stats) == []
    assert stats["topic_not_allowed"] == 1 and stats["topic_not_allowed:eu_ai_act"] == 1
    # The same duty in the GDPR, or in a law the registry does not know, is mined.
    assert [o.topic for o in mine([_chunk("eu_gdpr")])] == ["data_minimisation"]
    assert [o.topic for o in mine([_chunk("xx_unknown")])] == ["data_minimisation"]


def test_user_entry_without_topics_allows_all_and_bad_topics_are_named(tmp_path):
    user = tmp_path / "laws.yaml"
    user.write_text("laws:\n  - {law_id: eu_ai_act, title: AI Act, jurisdiction: EU, citation: 'AI Act Art. {unit}'}\n")
    assert [o.topic for o in mine([_chunk("eu_ai_act")], load_registry(user))] == ["data_minimisation"]
    user.write_text("laws:\n  - {law_id: x_act, title: X, jurisdiction: EU, citation: 'X {unit}', topics: [erasure]}\n")
    with pytest.raises(UserError, match=r"laws\[0\].*\['erasure'\].*data_minimisation"):
        load_registry(user)


def test_enumerated_duties_keep_their_lead_in_and_land_in_their_own_law(corpus_chunks):
    obligations = mine(c for c in corpus_chunks if c.law_id in ("eu_dma", "eu_ai_act"))
    by_citation = {(o.citation, o.topic) for o in obligations}
    # "The gatekeeper shall not do any of the following: ... (b) combine personal data ..."
    assert ("DMA Art. 5(2)", "gatekeeper_data_combination") in by_citation
    assert ("DMA Art. 6(3)", "gatekeeper_choice") in by_citation
    assert ("AI Act Art. 50(1)", "ai_transparency") in by_citation
    assert all(o.topic in load_registry()[o.law_id].topics for o in obligations)


def test_every_positive_example_cites_a_law_that_allows_its_topic(corpus_run):
    out, _ = corpus_run
    registry = load_registry()
    law_topics = {e.title: set(e.topics) for e in registry}
    topic_of = {(s.feature.name, s.feature.description): s.topic for s in read_features(out / "features.jsonl")
                if s.kind == "positive"}
    checked = 0
    for split in ("train", "validation"):
        for e in list(read_examples(out / f"{split}.jsonl")):
            if e.answer.compliance_flag != Label.NEEDS or e.answer.law is None:  # uncited: nothing to check
                continue
            feature = json.loads(e.input)["feature"]
            topic = topic_of.get((feature["name"], feature["description"]))
            if topic is None:
                continue
            checked += 1
            assert topic in law_topics[e.answer.law], f"{feature['name']!r} ({topic}) cited to {e.answer.citation}"
            if topic == "data_minimisation" or "erasure" in feature["name"].lower():
                assert not e.answer.citation.startswith("AI Act"), feature["name"]
    assert checked >= 50
