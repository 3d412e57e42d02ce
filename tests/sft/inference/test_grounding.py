"""Reasons name only law their prompt holds, for any weights; confidence is calibrated and routes review."""

from __future__ import annotations

import pytest

from sft.core.contract import Answer, Feature, LawContext, PromptInput
from sft.inference.calibration import Calibration, choose_threshold, ece, fit_temperature
from sft.inference.grounding import absent_law_mentions, allowed_names, ground_reason

CTX = [LawContext(id="ut#1", law_id="us_ut_sb152", title="Utah Social Media Regulation Act (SB 152)",
                  citation="Utah Code § 13-63-105(1)", jurisdiction="US-UT", snippet="curfew 10:30 p.m. to 6:30 a.m.")]
PI = PromptInput.build(Feature(name="Teen curfew", description="Lock Utah minors out overnight."), CTX)
ANSWER = Answer(compliance_flag="Needs Geo-Compliance", law=CTX[0].title, citation=CTX[0].citation)


@pytest.mark.parametrize("invented", [
    "Required by the Utah Social Media Regulation Act (SB 141).",
    "The California Social Media Monitor Act (SB 111) requires it.",
    "Per COPPA and Article 8 this is needed.",
])
def test_a_sentence_naming_absent_law_is_removed(invented):
    allowed = allowed_names(PI, ANSWER)
    assert absent_law_mentions(invented, allowed)
    kept = "The curfew is a legal duty in Utah under Utah Code § 13-63-105(1)."
    grounded = ground_reason(f"{kept} {invented}", ANSWER, PI)
    assert grounded == kept and not absent_law_mentions(grounded, allowed)
    assert ground_reason(invented, ANSWER, PI).startswith("The feature's stated scope falls under Utah Social Media")


def test_a_reason_ending_on_its_own_citation_is_kept():
    """The full stop after "DSA Art. 38." is not part of a new law name (it once sent grounded reasons to the frame,
    and then counted the frame itself as naming an absent law)."""
    ctx = [LawContext(id="dsa#38", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 38",
                      jurisdiction="EU", snippet="at least one option for each recommender system")]
    pi = PromptInput.build(Feature(name="Following feed", description="A non-profiled feed for EU users."), ctx)
    answer = Answer(compliance_flag="Needs Geo-Compliance", law=ctx[0].title, citation=ctx[0].citation)
    reason = "The feature implements recommender choice for users in the EU, which EU Digital Services Act requires in DSA Art. 38."
    assert ground_reason(reason, answer, pi) == reason
    assert not absent_law_mentions("The feature's stated scope falls under EU Digital Services Act, DSA Art. 38.",
                                   allowed_names(pi, answer))


def test_a_no_answer_names_no_law_even_one_in_its_context():
    """Seen in predictions.csv: a "No" for an A/B test in Brazil reasoned "... which EU Artificial Intelligence Act
    requires in AI-A-A (Artificial Intelligence-A)." The law was in the prompt; naming it contradicts the flag."""
    no = Answer(compliance_flag="No Geo-Compliance Needed")
    invented = ("The geofence feature implements AI-A-A (Artificial Intelligence-A) Act, which Utah Social Media "
                "Regulation Act (SB 152) requires in AI-A-A (Artificial Intelligence-A).")
    assert ground_reason(invented, no, PI).startswith("The spec gives a business reason")
    business = "The geofence exists for a market test, not because a law requires region-specific behaviour."
    assert ground_reason(business, no, PI) == business


def test_decoding_never_returns_a_reason_naming_absent_law(tiny_model_dir, monkeypatch):
    """Whatever the model writes (here: a random tiny model, then one forced to invent a statute)."""
    from sft.core.contract import DEFAULT_INSTRUCTION, render_prompt
    from sft.inference import decoding
    from sft.inference.predictor import Predictor

    predictor = Predictor.load(str(tiny_model_dir))
    prompt = render_prompt(DEFAULT_INSTRUCTION, PI.render())
    real = decoding.generate
    for forced in (None, 'Required by the TerraCorp Online Safety Act (HB 999) and GDPR Art. 8."'):
        if forced:
            monkeypatch.setattr(decoding, "generate", lambda *a, text=forced, **k: [text] * len(a[2]))
        else:
            monkeypatch.setattr(decoding, "generate", real)
        # A structured prompt's reason is the rule's (sft.core.reasons); a free-text one (None: a seed file's) is
        # generated, so the forced invention reaches grounding there.
        for pi in (PI, None):
            pred = predictor.predict_prompts([prompt], [pi])[0]
            allowed = allowed_names(pi, pred.answer)
            assert pred.valid and not absent_law_mentions(pred.answer.reason, allowed)
            assert "TerraCorp" not in pred.answer.reason
            assert pred.label_scores and 0 < pred.confidence <= 1 and isinstance(pred.needs_review, bool)


def test_temperature_scaling_recovers_an_overconfident_model():
    import random

    rng = random.Random(0)
    rows, gold = [], []
    for _ in range(400):  # true accuracy 70 %, but the scores claim ~99 %
        right = rng.random() < 0.7
        label = "a" if right else "b"
        rows.append({"a": 5.0, "b": 0.0, "c": -1.0})
        gold.append(label)
    t = fit_temperature(rows, gold)
    calib = Calibration(temperature=t)
    assert calib.probs(rows[0])["a"] == pytest.approx(0.7, abs=0.05)
    conf = [Calibration().probs(r)["a"] for r in rows]
    ok = [g == "a" for g in gold]
    assert ece(conf, ok) > 0.2 and ece([calib.probs(r)["a"] for r in rows], ok) < 0.05


def test_a_split_the_model_gets_all_right_does_not_make_every_answer_certain():
    """Plain NLL on an all-correct split sends T to its floor and every confidence to 1.0 (the main job,
    2026-12-05: T 0.04, review threshold 1.00). Platt's smoothed targets keep the confidence what 64 right answers
    can show, so a less sure answer still ranks below a sure one and can be routed to review."""
    import random

    rng = random.Random(1)
    rows = [{"a": rng.uniform(1.0, 6.0), "b": 0.0, "c": -1.0} for _ in range(64)]
    gold = ["a"] * 64
    calib = Calibration(temperature=fit_temperature(rows, gold))
    conf = sorted(calib.probs(r)["a"] for r in rows)
    assert calib.temperature > 0.3
    assert 0.9 < sum(conf) / len(conf) < 0.999 and conf[0] < conf[-1] - 0.05
    assert choose_threshold(conf, [True] * 64) == round(conf[0], 4) < 0.99


def test_review_threshold_keeps_answers_at_the_target_accuracy():
    conf = [0.95, 0.9, 0.85, 0.8, 0.6, 0.55, 0.5, 0.45]
    ok = [True, True, True, True, False, True, False, False]
    assert choose_threshold(conf, ok, target=0.9) == 0.8
    assert choose_threshold(conf, ok, target=0.99) == 0.8  # 100 % is reached down to 0.8


def test_calibration_is_saved_with_the_model_and_applied(tmp_path):
    from sft.core.contract import parse_output

    Calibration(temperature=2.0, review_threshold=0.6).save(tmp_path)
    calib = Calibration.load(tmp_path)
    pred = parse_output(ANSWER.to_json(), PI)
    pred.label_scores = {"Needs Geo-Compliance": -1.0, "No Geo-Compliance Needed": -1.5, "Not Enough Information": -3}
    calib.apply(pred)
    assert 0.4 < pred.confidence < 0.6 and pred.needs_review is True
