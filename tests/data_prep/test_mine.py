"""Obligation mining on real law text: deontic sentences about online services, tagged and cited."""

from __future__ import annotations

from data_prep.mine import classify_topic, mine, mine_chunk
from sft.core.contract import LawContext


def _chunk(text: str) -> LawContext:
    return LawContext(id="x#1", law_id="x", title="X Act", citation="X § 1", jurisdiction="US-UT", snippet=text)


def test_utah_curfew_obligation_is_mined_with_its_citation(corpus_chunks):
    obligations = mine(c for c in corpus_chunks if c.law_id == "us_ut_sb152")
    curfew = [o for o in obligations if "10:30 p.m." in o.text]
    assert curfew, "the Utah 10:30 p.m. curfew duty was not mined"
    ob = curfew[0]
    assert ob.topic == "time_of_day_limits"
    assert ob.citation.startswith("Utah Code § 13-63-105")
    assert ob.jurisdiction == "US-UT" and ob.title.startswith("Utah Social Media Regulation Act")
    chunk = next(c for c in corpus_chunks if c.id == ob.chunk_id)
    assert ob.text[:60] in " ".join(chunk.snippet.split()), "obligation text must come from its chunk"


def test_every_bundled_law_yields_obligations_and_ids_are_stable(corpus_chunks):
    first, second = mine(corpus_chunks), mine(corpus_chunks)
    assert [o.id for o in first] == [o.id for o in second]
    assert len({o.id for o in first}) == len(first)
    assert {c.law_id for c in corpus_chunks} == {o.law_id for o in first}
    csam = [o for o in first if o.law_id == "us_18usc2258a"]
    assert any(o.topic == "csam_reporting" for o in csam)


def test_permissions_definitions_and_construction_rules_are_not_obligations():
    text = (
        "A social media company may offer a teen mode to users who ask for it in the settings. "
        "This chapter shall not be construed to require a social media company to collect more personal data. "
        "The Commission shall publish guidelines on age verification for online platforms used by minors. "
        "“Account holder” means a person who has an account with a social media company and uses the service. "
        "A social media company shall verify the age of every Utah account holder before an account is opened."
    )
    mined = mine_chunk(_chunk(text))
    assert [o.text for o in mined] == [
        "A social media company shall verify the age of every Utah account holder before an account is opened."
    ]
    assert mined[0].topic == "age_assurance"


def test_duties_without_an_online_service_or_topic_are_skipped():
    offline = "The Commission shall publish its annual budget in the Official Journal before the end of March."
    assert mine_chunk(_chunk(offline)) == []
    assert classify_topic("A provider shall report apparent child sexual abuse material to the CyberTipline.") == (
        "csam_reporting"
    )
    assert classify_topic("The controller shall erase personal data without undue delay.") == "data_minimisation"
