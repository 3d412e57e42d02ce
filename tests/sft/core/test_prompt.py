"""The one prompt builder's budget rule and jurisdiction rule."""

from __future__ import annotations

import pytest

from sft.core.budget import fit_to_budget
from sft.core.contract import DEFAULT_INSTRUCTION, Answer, Example, Feature, LawContext, PromptInput
from sft.core.prompt import (
    answer_reserve,
    build_prompt,
    fit_prompt_input,
    law_context,
    mentioned_jurisdictions,
    region_scope,
)


def _ctx(i: int, jur: str = "EU", law: str = "law") -> LawContext:
    return LawContext(id=f"{law}#{i}", law_id=law, title=f"{law} Act", citation=f"{law} § {i}", jurisdiction=jur,
                      snippet=" ".join(f"duty{i} words" for _ in range(30)), score=10.0 - i)


FEATURE = Feature(name="Teen curfew in Utah",
                  description="Block logins for minors overnight. GH routes by region. EchoTrace logs every block. "
                              "Parents can lift it in Jellybean. Rollout in two phases with ShadowMode first.")
NOTES = {"GH": "Geo-handler; routes features by user region", "EchoTrace": "Log tracing mode for audits"}


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_places_are_read_from_the_spec():
    assert mentioned_jurisdictions("Teen curfew for UT accounts and Salt Lake users") == ["US-UT"]
    assert mentioned_jurisdictions("EEA rollout; also Germany") == ["EU"]
    assert mentioned_jurisdictions("log in or sign up; it is on") == []  # 'in', 'or', 'it' are not states
    assert mentioned_jurisdictions("Florida and federal reporting") == ["US", "US-FL"]
    assert mentioned_jurisdictions("UK and Brazil first, then Canada") == ["BR", "CAN", "GB"]
    # Other states and countries are read too, so no bundled law of another place is cited for them; everyday
    # words and capitals that look like places are not.
    assert mentioned_jurisdictions("Manual review for Virginia parent links") == ["US-VA"]
    assert mentioned_jurisdictions("West Virginia and Ohio only") == ["US-OH", "US-WV"]
    assert mentioned_jurisdictions("New Mexico, not Mexico") == ["MX", "US-NM"]
    assert mentioned_jurisdictions("18+ ID check for the Creator Fund, NZ first") == ["NZ"]
    assert mentioned_jurisdictions("turkey stickers; chile recipes; china plates; OR, ME, OK, ID") == []
    assert mentioned_jurisdictions("Live Shopping off in Indonesia, then APAC") == ["APAC", "ID"]


def test_a_spec_that_scopes_itself_without_naming_a_place_is_read_as_such():
    """The reasons rule tells "select regions, list TBD" (a limit naming no place) from "all regions" (every place)
    and from a spec that does not say; a named place wins over both."""
    assert region_scope("Roll out the filter in select regions. Region list still TBD.") == "unnamed"
    assert region_scope("Ship dark mode for all users, rolled out by region for cache warm-up.") == "unnamed"
    assert region_scope("Cut log retention to 90 days in all regions; driven by infra cost.") == "everywhere"
    assert region_scope("Holiday stickers available worldwide.") == "everywhere"
    assert region_scope("Holiday stickers worldwide; APAC first because of time zones.") == "places"
    assert region_scope("Add a status badge when content crosses regions.") == "none"
    assert region_scope("New onboarding carousel with three cards.") == "none"


def test_only_law_of_the_places_a_spec_names_is_citable():
    from sft.core.prompt import citable_items

    items = [_ctx(1, "EU", "dsa"), _ctx(2, "US", "usc"), _ctx(3, "US-CA", "ca"), _ctx(4, "US-FL", "fl")]

    def citable(name, description=""):
        pi = PromptInput.build(Feature(name=name, description=description), items)
        return [c["law"] for c in citable_items(pi)]

    assert citable("Age gate in Texas") == ["usc Act"]  # federal law applies in every state; no other place's
    assert citable("Quiet hours", "For CA minors.") == ["usc Act", "ca Act"]
    assert citable("Teen defaults for US users") == ["usc Act", "ca Act", "fl Act"]  # state law within a named country
    assert citable("Notice form for the EEA") == ["dsa Act"]
    assert citable("Dark mode") == ["dsa Act", "usc Act", "ca Act", "fl Act"]  # no place named: all of them
    assert citable("Launch in Brazil") == []  # a place no bundled law covers: no citation
    assert citable("UK age assurance", "Ofcom codes; also for EU users") == ["dsa Act"]
    assert citable("Tipping in Canada, not Quebec") == []
    assert citable("Parent links in Virginia") == ["usc Act"]  # federal law, not California's or Florida's
    assert citable("18+ ID check", "New Zealand first") == []


class _Index:
    def __init__(self, hits):
        self.hits, self.calls = hits, []

    def search(self, query, k=5, jurisdiction=None):
        self.calls.append(jurisdiction)
        return [h for h in self.hits if jurisdiction is None or h.jurisdiction.startswith(jurisdiction)][:k]


def test_law_for_the_named_place_comes_first_and_foreign_law_stands_when_none_applies():
    ca, ut = _ctx(1, "US-CA", "ca"), _ctx(2, "US-UT", "ut")
    assert [c.id for c in law_context(_Index([ca, ut]), FEATURE, {})] == ["ut#2"]
    # Nothing for Utah at all: the best hits stand (the model sees law that does not cover the place).
    assert [c.id for c in law_context(_Index([ca]), FEATURE, {})] == ["ca#1"]


def test_trimming_order_law_items_then_notes_then_description_then_last_law(tok):
    ctx = [_ctx(i) for i in range(3)]
    pi = PromptInput.build(FEATURE, ctx, NOTES)
    full = fit_prompt_input(pi, DEFAULT_INSTRUCTION, tok, None)
    one_law = fit_prompt_input(pi, DEFAULT_INSTRUCTION, tok, full.tokens - 1)
    assert one_law.fits and one_law.cut == {"law_items": 1} and one_law.prompt_input.glossary == NOTES
    n1 = fit_prompt_input(PromptInput.build(FEATURE, ctx[:1], NOTES), DEFAULT_INSTRUCTION, tok, None).tokens
    tighter = fit_prompt_input(pi, DEFAULT_INSTRUCTION, tok, n1 - 1)
    assert tighter.cut["law_items"] == 2 and tighter.cut["glossary_notes"] >= 1
    assert len(tighter.prompt_input.law_context) == 1  # the last law item goes only after notes and description
    bare = fit_prompt_input(pi, DEFAULT_INSTRUCTION, tok, 60)
    assert not bare.fits and bare.prompt_input.law_context == [] and bare.cut["description_chars"] > 0


def test_training_and_inference_trim_the_same_prompt_the_same_way(tok):
    """A non-positive example (nothing cited to protect) fitted by training and by inference is the same prompt."""
    ctx = [_ctx(i) for i in range(3)]
    pi = PromptInput.build(FEATURE, ctx, NOTES)
    ex = Example.build(pi, Answer(compliance_flag="Not Enough Information", reason="No reason is given."))
    max_length = fit_prompt_input(pi, DEFAULT_INSTRUCTION, tok, None).tokens + answer_reserve() - 40
    train = fit_to_budget(ex, tok, max_length)
    fitted, kept = build_prompt(FEATURE, ctx, NOTES, DEFAULT_INSTRUCTION, tok, max_length - answer_reserve())
    assert train.example.input == fitted.prompt_input.render()
    assert [c.prompt_view() for c in kept] == PromptInput.parse(train.example.input).law_context


def test_kept_items_follow_trimming_without_chunk_ids_in_the_prompt():
    """The prompt shows no chunk ids; the items a trimmed prompt holds are still found exactly, even when two
    chunks share a law and citation and the kept one's text was shortened."""
    from sft.core.prompt import kept_items

    a = LawContext(id="x#1~1", law_id="x", title="X Act", citation="X § 1", jurisdiction="EU", snippet="alpha " * 40)
    b = a.model_copy(update={"id": "x#1~2", "snippet": "beta " * 40})
    c = _ctx(2)
    shown = [b.prompt_view(), {**c.prompt_view(), "text": c.snippet[:130] + " ..."}]
    assert "id" not in shown[0]
    assert [k.id for k in kept_items([a, b, c], shown)] == ["x#1~2", c.id]
    assert kept_items([a, b], []) == []
