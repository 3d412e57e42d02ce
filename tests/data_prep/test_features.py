"""Feature generation from mined obligations, negatives, and import of the user's own features."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.features import AMBIGUOUS, BUSINESS, POSITIVE, generate, import_features, select_obligations
from data_prep.mine import mine
from sft.core.contract import ContractError, Label
from sft.core.glossary import Glossary
from sft.core.prompt import mentioned_jurisdictions
from tests.conftest import CORPUS, EXAMPLES


@pytest.fixture(scope="module")
def obligations(corpus_chunks):
    return mine(corpus_chunks)


def test_positive_features_are_product_specs_for_the_obligation(obligations):
    specs = generate(obligations, seed=0)
    by_id = {o.id: o for o in obligations}
    glossary = Glossary.load(CORPUS / "glossary" / "terminology.csv")
    positives = [s for s in specs if s.kind == POSITIVE]
    assert positives
    for s in positives:
        ob = by_id[s.obligation_id]
        assert s.group == ob.id and s.feature.label == Label.NEEDS and s.feature.law == ob.title
        assert s.jurisdiction == ob.jurisdiction
    utah = [s for s in positives if s.jurisdiction == "US-UT"]
    # Named in any of the ways specs name it ("Utah", "UT", "the state of Utah"), so the place is read back.
    assert utah and all("US-UT" in mentioned_jurisdictions(s.feature.name + " " + s.feature.description) for s in utah)
    # Written with the team's jargon: most specs use glossary terms the prompt will explain.
    with_terms = [s for s in positives if glossary.notes_for(f"{s.feature.name} {s.feature.description}")]
    assert len(with_terms) / len(positives) > 0.8


def test_generation_is_deterministic_for_a_seed(obligations):
    a = [s.model_dump() for s in generate(obligations, seed=1)]
    assert a == [s.model_dump() for s in generate(obligations, seed=1)]
    assert a != [s.model_dump() for s in generate(obligations, seed=2)]


def test_per_law_cap_keeps_every_law_and_topic_spread(obligations):
    chosen = select_obligations(obligations, per_law=5)
    laws = {o.law_id for o in obligations}
    assert {o.law_id for o in chosen} == laws
    assert all(sum(o.law_id == law for o in chosen) <= 5 for law in laws)
    dsa = [o for o in chosen if o.law_id == "eu_dsa"]
    assert len({o.topic for o in dsa}) == 5, "round-robin over topics"


def test_negatives_cover_business_geofencing_and_ambiguous_specs(obligations):
    specs = generate(obligations, seed=0)
    business = [s for s in specs if s.kind == BUSINESS]
    ambiguous = [s for s in specs if s.kind == AMBIGUOUS]
    assert business and all(s.feature.label == Label.NOT_NEEDED for s in business)
    assert ambiguous and all(s.feature.label == Label.NEI for s in ambiguous)
    assert any("A/B test" in s.feature.description or "capacity" in s.feature.description for s in business)
    assert len({s.feature.id for s in specs}) == len(specs)


def test_import_bundled_csv_and_techjam_columns(tmp_path: Path):
    specs = import_features(EXAMPLES / "features.csv")
    assert specs and specs[0].feature.id == "F-101" and "Utah" in specs[0].feature.name
    techjam = tmp_path / "techjam.csv"
    techjam.write_text("feature_name,feature_description,label\nPF teen mode,PF off for EU minors,Needs Geo-Compliance\n")
    (spec,) = import_features(techjam)
    assert spec.feature.name == "PF teen mode" and spec.feature.label == Label.NEEDS
    assert spec.feature.id == import_features(techjam)[0].feature.id  # content-hashed, stable


def test_bad_import_rows_are_reported_with_file_and_line(tmp_path: Path):
    bad = tmp_path / "mine.jsonl"
    bad.write_text(
        '{"name": "ok", "description": "fine"}\n'
        '{"name": "no description"}\n'
        '{"name": "x", "description": "y", "label": "maybe"}\n'
        "not json\n"
    )
    with pytest.raises(ContractError, match=r"mine\.jsonl:2: field 'description'"):
        import_features(bad)
    errors: list[str] = []
    specs = import_features(bad, on_error=lambda e: errors.append(str(e)))
    assert [s.feature.name for s in specs] == ["ok"]
    assert errors[0].startswith(f"{bad}:2: field 'description'")
    assert errors[1].startswith(f"{bad}:3: field 'label'") and "maybe" in errors[1]
    assert errors[2].startswith(f"{bad}:4: invalid JSON")
    csv_bad = tmp_path / "mine.csv"
    csv_bad.write_text("name,description\nok,fine\n,missing name\n")
    with pytest.raises(ContractError, match=r"mine\.csv:3: field 'name'"):
        import_features(csv_bad)


def test_the_label_follows_the_stated_reason_not_the_vocabulary(obligations):
    """Each obligation's action is written with a legal driver (Needs), a business reason (No), no reason in the
    law's own place (Needs: the law's mechanism where it governs clearly implies it), no reason where the law does
    not reach or no place at all (NEI), and shipped everywhere (No): same words, different labels."""
    from data_prep.features import (
        BARE_TWIN,
        BUSINESS_TWIN,
        ELSEWHERE_TWIN,
        NO_REASON_TWIN,
        UNIVERSAL_TWIN,
        reason_variants,
    )
    from sft.core.prompt import applies

    obs = {ob.id: ob for ob in obligations[:60]}
    specs = [s for ob in obs.values() for s in reason_variants(ob, seed=0)]
    by_kind = {k: [s for s in specs if s.kind == k] for k in (POSITIVE, BUSINESS_TWIN, NO_REASON_TWIN,
                                                              ELSEWHERE_TWIN, UNIVERSAL_TWIN, BARE_TWIN)}
    assert all(by_kind.values()), {k: len(v) for k, v in by_kind.items()}
    want = {POSITIVE: Label.NEEDS, BUSINESS_TWIN: Label.NOT_NEEDED, NO_REASON_TWIN: Label.NEEDS,
            ELSEWHERE_TWIN: Label.NEI, UNIVERSAL_TWIN: Label.NOT_NEEDED, BARE_TWIN: Label.NEI}
    for kind, items in by_kind.items():
        assert all(s.feature.label == want[kind] for s in items)
    for s in by_kind[BARE_TWIN] + by_kind[UNIVERSAL_TWIN]:
        assert mentioned_jurisdictions(f"{s.feature.name} {s.feature.description}") == [], s.feature
    # The no-reason Needs twin names the law's own place; the elsewhere twin only places the law does not reach,
    # as the prompt builder reads them (a Texas twin of a federal US duty would be Needs, so there is none).
    for s in by_kind[NO_REASON_TWIN]:
        places = mentioned_jurisdictions(f"{s.feature.name} {s.feature.description}")
        assert places and all(applies(obs[s.obligation_id].jurisdiction, p) for p in places), s.feature
    for s in by_kind[ELSEWHERE_TWIN]:
        places = mentioned_jurisdictions(f"{s.feature.name} {s.feature.description}")
        law_place = obs[s.obligation_id].jurisdiction
        assert places and not any(applies(law_place, p) or applies(p, law_place) for p in places), s.feature
    # The twins share the positive's action: same obligation, same group (never split apart).
    groups = {s.group for s in by_kind[BUSINESS_TWIN]}
    assert groups <= {s.group for s in by_kind[POSITIVE]}


def test_stray_quote_stops_the_import_naming_its_line(tmp_path: Path):
    """The probe: one unclosed quote on line 3 of a 1,000-row CSV became "1 features imported", 998 rows lost."""
    from data_prep.commands import import_command

    rows = [f"F-{i},Feature {i},Description {i}" for i in range(1000)]
    rows[1] = 'F-1,Feature 1,"Description 1 with an unclosed quote'
    path = tmp_path / "mine.csv"
    path.write_text("id,name,description\n" + "\n".join(rows) + "\n")
    out = tmp_path / "features.jsonl"
    out.write_text("kept\n")
    for skip_bad in (False, True):  # --skip-bad cannot skip it: there is no telling where the next row begins
        with pytest.raises(ContractError, match=r"mine\.csv:3: unterminated quote: a quoted field opens on line 3"):
            import_command(path, out, False, skip_bad)
    assert out.read_text() == "kept\n"  # nothing written
    rows[1] = 'F-1,Feature 1,"Description 1, quoted properly"'
    path.write_text("\ufeffid,name,description\r\n" + "\r\n".join(rows) + "\r\n")  # BOM + CRLF
    specs = import_features(path)
    assert len(specs) == 1000 and specs[0].feature.id == "F-0" and specs[1].feature.description.endswith("properly")


def test_duplicate_ids_are_an_error_unless_told(tmp_path: Path):
    path = tmp_path / "mine.csv"
    path.write_text("id,name,description\nA,one,first text\nB,two,text\nA,three,other text\n")
    with pytest.raises(ContractError, match=r"mine\.csv:4: id 'A': already used at .*mine\.csv:2"):
        import_features(path)
    dropped: list[str] = []
    first = import_features(path, on_duplicate="first", on_drop=dropped.append)
    assert [s.feature.name for s in first] == ["one", "two"] and "mine.csv:4" in dropped[0]
    last = import_features(path, on_duplicate="last")
    assert [s.feature.name for s in last] == ["two", "three"]
    same = tmp_path / "same.jsonl"  # no ids: identical rows hash to one id, reported the same way
    same.write_text('{"name": "x", "description": "y"}\n{"name": "x", "description": "y"}\n')
    with pytest.raises(ContractError, match=r"same\.jsonl:2: id 'imp-[0-9a-f]+': already used at .*same\.jsonl:1"):
        import_features(same)


def test_every_positive_states_a_legal_driver_worded_many_ways(obligations):
    """The labelling rule is "legal obligation -> Needs, region without a reason -> NEI", so a positive must say
    why: a positive without a driver reads exactly like its no-reason twin with the opposite label. And the
    drivers are many wordings, not a handful of sentences a small model can memorise."""
    import re

    from data_prep.teacher import LEGAL_WORDS
    from sft.core.lawnames import LAW_MENTION

    specs = generate(obligations, seed=0)
    positives = [s for s in specs if s.kind == POSITIVE]
    for s in positives:
        text = f"{s.feature.name} {s.feature.description}"
        assert LEGAL_WORDS.search(text) or LAW_MENTION.search(text), s.feature
    # The no-reason twins state none (the same action, geofenced, no why).
    from data_prep.features import NO_REASON_TWIN

    for s in (s for s in specs if s.kind == NO_REASON_TWIN):
        assert not LEGAL_WORDS.search(s.feature.description.split(".")[0]) or "legal deadline" in s.feature.description
    drivers = {re.sub(r"\b(the EU|EU|Utah|UT|Florida|FL|California|CA|the US)\b", "X", sent)
               for s in positives for sent in re.split(r"(?<=\.) ", s.feature.description)
               if LEGAL_WORDS.search(sent) or LAW_MENTION.search(sent)}
    assert len(drivers) > 100, len(drivers)
