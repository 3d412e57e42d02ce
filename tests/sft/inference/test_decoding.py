"""Constrained decoding: every answer is contract-valid JSON with a canonical label, even from a random model."""

from __future__ import annotations

import json

import pytest

from sft.core.contract import DEFAULT_INSTRUCTION, LABELS, Feature, LawContext, PromptInput, render_prompt

torch = pytest.importorskip("torch")

CTX = [
    LawContext(id="us_fl_hb3#1", law_id="us_fl_hb3", title="Florida HB 3", citation="Fla. Stat. § 501.1736(2)",
               jurisdiction="US-FL", snippet="A social media platform shall prohibit a minor younger than 14"),
    LawContext(id="eu_dsa#28", law_id="eu_dsa", title='EU "Digital Services" Act', citation="DSA Art. 28(1)",
               jurisdiction="EU", snippet="Providers of online platforms accessible to minors shall ..."),
]
FEATURES = [
    Feature(name="Curfew mode", description="Disable notifications at night for teens in Florida."),
    Feature(name="Dark mode", description="A darker colour theme."),
    Feature(name="X", description="Y " * 40),
]


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    from sft.inference.predictor import Predictor

    return Predictor.load(tiny_model_dir)


def _items():
    return [(f, CTX if i % 2 == 0 else [], None) for i, f in enumerate(FEATURES)]


def test_constrained_answers_are_always_valid_and_grounded(predictor):
    results = predictor.predict(_items())
    for (feature, ctx, _), (pred, prompt, used, _cut) in zip(_items(), results, strict=True):
        assert pred.valid, pred.error
        data = json.loads(pred.raw)  # the raw text itself is one JSON object in canonical field order
        assert list(data) == ["compliance_flag", "law", "citation", "reason"]
        assert data["compliance_flag"] in {label.value for label in LABELS}
        pairs = {(c.title, c.citation) for c in ctx}
        assert (data["law"], data["citation"]) in pairs | {(None, None)}
        if data["citation"] is not None:
            assert pred.grounded is True
        assert prompt == render_prompt(DEFAULT_INSTRUCTION, PromptInput.build(feature, ctx).render())
        assert used == ctx  # no trained budget recorded: the whole context is kept


def test_batching_does_not_change_answers(predictor):
    together = [r.prediction.raw for r in predictor.predict(_items())]
    alone = [predictor.predict([item])[0][0].raw for item in _items()]
    assert together == alone


def test_unconstrained_random_model_is_invalid_where_constrained_is_not(predictor):
    free = [r.prediction for r in predictor.predict(_items(), constrained=False)]
    assert not all(p.valid for p in free)  # an untrained model does not produce the schema by itself
    assert all(p.error for p in free if not p.valid)


def test_reason_text_is_unescaped_and_cut_at_the_closing_quote():
    from sft.inference.decoding import _close_quote, _unescape

    text = 'Minors \\"under 16\\" need consent." , "x'
    cut = _close_quote(text)
    assert _unescape(text[:cut]) == 'Minors "under 16" need consent.'
    assert _close_quote("no quote \\") == -1
    assert _unescape("broken \\u12") == "broken u12"


def test_prefix_cache_scores_equal_full_sequence_scores(predictor):
    """Scoring candidates against a shared, left-padded prompt cache gives the plain forward's log-likelihoods."""
    from sft.inference.decoding import _prefill, score_from_prefix

    model, tok = predictor.model, predictor.tokenizer
    prefixes = [tok("short prompt")["input_ids"], tok("a much longer prompt " * 6)["input_ids"]]
    conts = [tok(" Needs Geo-Compliance")["input_ids"], tok(" Not Enough Information")["input_ids"]]
    rows, seqs = [0, 0, 1, 1], [conts[0], conts[1], conts[0], conts[1]]
    got = score_from_prefix(model, _prefill(model, prefixes, tok.pad_token_id), rows, seqs, [1, 1, 1, 1], 3)
    for r, cont, score in zip(rows, seqs, got, strict=True):
        ids = torch.tensor([prefixes[r] + cont])
        logprobs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
        start = len(prefixes[r])
        want = sum(float(logprobs[start + j - 1, cont[j]]) for j in range(1, len(cont)))
        assert score == pytest.approx(want, abs=1e-4)


def test_prompt_is_trimmed_to_the_trained_token_budget(predictor):
    """With the trained max_length known, the least relevant (last) context items are dropped to fit."""
    import dataclasses

    feature = FEATURES[0]
    full = predictor.fit_prompt(feature, CTX, None)
    n_full = len(predictor.tokenizer(full[1])["input_ids"])
    room = predictor.config.max_reason_tokens + 64
    budgeted = dataclasses.replace(predictor, max_length=n_full + room - 1)  # one token short
    result = budgeted.predict([(feature, CTX, None)])[0]
    assert result.context == CTX[:1]
    assert result.prompt == render_prompt(DEFAULT_INSTRUCTION, PromptInput.build(feature, CTX[:1]).render())
    assert result.prediction.answer.citation in (None, CTX[0].citation)
    assert dataclasses.replace(predictor, max_length=n_full + room).fit_prompt(feature, CTX, None)[2] == CTX


def test_segment_tokens_concatenate_to_the_training_tokenization(predictor):
    """Scored/generated segments, joined, are the tokens of the training target (no boundary artefacts)."""
    from sft.core.contract import Answer
    from sft.inference.decoding import FLAG_PREFIX, LAW_PREFIX, REASON_PREFIX, _encode, _law_text

    tok = predictor.tokenizer
    for law, citation in [("Florida HB 3", "Fla. Stat. § 501.1736(2)"), (None, None)]:
        answer = Answer(compliance_flag=LABELS[0], law=law, citation=citation, reason="Minors are protected.")
        parts = [FLAG_PREFIX, LABELS[0].value + LAW_PREFIX, _law_text(law, citation) + REASON_PREFIX,
                 'Minors are protected."}']
        assert "".join(parts) == answer.to_json()
        assert sum((_encode(tok, p) for p in parts), []) == _encode(tok, answer.to_json())
