"""The label head: its features are the model's own hidden states, it learns a rule a linear model can learn,
it survives a save/load round trip, and decoding takes the flag from it whatever the LM's weights say."""

from __future__ import annotations

import pytest

from sft.core.contract import LABELS, Label
from sft.core.label_head import LabelHead, fit_label_head, layer_for, macro_f1, prompt_features

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The fixture model in eval mode, with its tokenizer."""
    from sft.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    model.eval()
    return model, tok


def forcing_head(model, label: Label) -> LabelHead:
    """A head on layer 1 whose bias alone decides: ``label`` with probability ~1, whatever the features."""
    d = 2 * model.config.hidden_size  # the default pooling: prompt mean and spec mean side by side
    bias = torch.full((3,), -20.0)
    bias[LABELS.index(label)] = 20.0
    return LabelHead(1, torch.zeros(d), torch.ones(d), torch.zeros(3, d), bias)


def test_features_are_the_mean_hidden_state_of_the_chosen_layer(tiny):
    model, tok = tiny
    prompts = ["A feature for minors in Utah.", "Dark mode everywhere, a short one."]
    feats = prompt_features(model, tok, prompts, 1, pooling="prompt")  # below the last layer: hidden_states[1]
    assert feats.shape == (2, model.config.hidden_size)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            hs = model(**tok(p, return_tensors="pt"), output_hidden_states=True).hidden_states
        assert torch.allclose(feats[i], hs[1][0].mean(0), atol=1e-5)
        assert not torch.allclose(feats[i], hs[2][0].mean(0), atol=1e-3)
    # The hook is removed: the model computes its full output again afterwards.
    with torch.no_grad():
        assert model(**tok(prompts[0], return_tensors="pt")).logits.shape[1] > 0
    assert layer_for(model, 0.5) == 1 and layer_for(model, 1.0) == 2 and layer_for(model, 0.01) == 1


def test_spec_pooling_reads_the_spec_apart_from_the_law_text(tiny):
    """The default features: the prompt's mean, then the mean up to the end of the feature spec. The spec half is
    the same whatever law context follows (causal attention; the head decides on the spec's own words), the
    prompt half is not."""
    from sft.core.contract import Feature, LawContext, PromptInput, render_prompt
    from sft.core.label_head import spec_end

    model, tok = tiny
    law = [LawContext(id=f"l{i}", law_id="eu_dsa", title="EU Digital Services Act", citation=f"DSA Art. {i}",
                      jurisdiction="EU", snippet=text, score=1.0)
           for i, text in ((28, "Protection of minors online."), (38, "A feed option not based on profiling."))]
    spec = Feature(name="Teen feed", description='Text quoting "glossary": {x} stays inside the spec.')
    inputs = [PromptInput.build(spec, [item], {"PF": "personalized feed"}) for item in law]
    prompts = [render_prompt("Flag it.", pi.render()) for pi in inputs]
    cut = spec_end(prompts[0])
    assert prompts[0][:cut].rstrip().endswith('stays inside the spec."},') and prompts[0][:cut] == prompts[1][:cut]
    assert spec_end("no json here") == len("no json here")

    feats = prompt_features(model, tok, prompts, 1)
    d = model.config.hidden_size
    assert feats.shape == (2, 2 * d)
    for i, p in enumerate(prompts):
        enc = tok(p, return_tensors="pt", return_offsets_mapping=True)
        n = sum(1 for start, _ in enc.pop("offset_mapping")[0].tolist() if start < cut)
        assert 0 < n < enc["input_ids"].shape[1]
        with torch.no_grad():
            h = model(**enc, output_hidden_states=True).hidden_states[1][0]
        assert torch.allclose(feats[i, :d], h.mean(0), atol=1e-5) and torch.allclose(feats[i, d:], h[:n].mean(0),
                                                                                     atol=1e-5)
    assert torch.allclose(feats[0, d:], feats[1, d:], atol=1e-5) and not torch.allclose(feats[0, :d], feats[1, :d],
                                                                                        atol=1e-4)
    with pytest.raises(ValueError, match="pooling 'max'"):
        prompt_features(model, tok, prompts, 1, pooling="max")


def test_a_head_keeps_its_pooling_and_older_heads_read_the_prompt_mean(tiny, tmp_path):
    """Saved and loaded, a head pools as it was fitted; a head saved before pooling was recorded (no "pooling"
    key) is a prompt-mean head, so a model trained then predicts as it did."""
    import json

    model, tok = tiny
    d = model.config.hidden_size
    spec_head = fit_label_head(1, torch.randn(6, 2 * d), [label.value for label in LABELS] * 2)
    old = fit_label_head(1, torch.randn(6, d), [label.value for label in LABELS] * 2, pooling="prompt")
    spec_head.save(tmp_path / "new")
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "label_head.json").read_text())
    del meta["pooling"]
    (tmp_path / "old" / "label_head.json").write_text(json.dumps(meta))
    prompts = ["A spec for Utah minors.", "Dark mode."]
    for name, head in (("new", spec_head), ("old", old)):
        back = LabelHead.load(tmp_path / name)
        assert back is not None and back.pooling == head.pooling
        assert back.features(model, tok, prompts).shape == (2, head.weight.shape[1])
        assert back.log_probs(back.features(model, tok, prompts)) == head.log_probs(head.features(model, tok, prompts))


def test_fit_learns_a_separable_rule_and_balances_a_skewed_split(tmp_path):
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=gen) * 3

    def sample(counts):
        xs, ys = [], []
        for j, n in enumerate(counts):
            xs.append(centers[j] + torch.randn(n, 8, generator=gen))
            ys += [LABELS[j].value] * n
        return torch.cat(xs), ys

    # 90 % of the training split is one label; the head still finds the other two.
    train_x, train_y = sample((180, 10, 10))
    val_x, val_y = sample((20, 20, 20))
    head = fit_label_head(4, train_x, train_y, val_x, val_y)
    pred = [max(d, key=d.get) for d in head.log_probs(val_x)]
    assert macro_f1([LABELS.index(Label(v)) for v in val_y], [LABELS.index(Label(p)) for p in pred]) > 0.9
    assert head.fitted["train_examples"] == 200 and head.fitted["validation_examples"] == 60
    assert set(head.fitted["l2_tried"]) == {"0.1", "0.01", "0.001"} and head.fitted["validation_macro_f1"] > 0.9
    for d in head.log_probs(val_x[:3]):
        assert abs(sum(pow(2.718281828, v) for v in d.values()) - 1) < 1e-4

    head.save(tmp_path)
    back = LabelHead.load(tmp_path / "merged")  # found from a merged/ dir too
    assert back is not None and back.layer == 4 and back.fitted == head.fitted
    assert back.log_probs(val_x[:5]) == head.log_probs(val_x[:5])
    assert LabelHead.load(tmp_path / "elsewhere" / "deeper") is None


def test_the_validation_split_decides_whether_the_head_reads_the_specs_facts(tiny, tmp_path):
    """When the hidden states carry nothing and the spec's stated reason decides the label, the validation split
    picks the head that reads the facts (sft.core.spec_facts), it is saved and loaded as such and predicts from the
    prompt's words; when the facts add nothing, the head stays on hidden states alone."""
    from sft.core.contract import Feature, PromptInput, render_prompt
    from sft.core.spec_facts import NAMES, facts

    model, tok = tiny
    specs = {LABELS[0].value: ("Curfew for minors in {p}", "Block logins overnight to comply with state law."),
             LABELS[1].value: ("Stickers in {p}", "Launch in {p} first as a market test to measure engagement."),
             LABELS[2].value: ("Filter for {p}", "Roll the filter out in {p}; scope TBD.")}
    places = ["Utah", "Florida", "California", "Texas", "Spain", "Canada"]

    def split(ps):
        prompts, ys = [], []
        for label, (n, d) in specs.items():
            for p in ps:
                pi = PromptInput.build(Feature(name=n.format(p=p), description=d.format(p=p)), [], None)
                prompts.append(render_prompt("Flag it.", pi.render()))
                ys.append(label)
        return prompts, ys

    train_p, train_y = split(places[:4])
    val_p, val_y = split(places[4:])
    noise = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(len(train_p), 6, generator=noise), torch.randn(len(val_p), 6, generator=noise)
    head = fit_label_head(1, train_x, train_y, val_x, val_y, pooling="prompt", train_prompts=train_p,
                          val_prompts=val_p)
    assert head.facts and head.fitted["facts"] and head.fitted["validation_macro_f1"] == 1.0
    assert head.weight.shape[1] == 6 + len(NAMES) and any(k.endswith("+facts") for k in head.fitted["l2_tried"])
    assert facts(val_p[0])[NAMES.index("legal_reason")] == 1.0 and facts(val_p[2])[NAMES.index("business_reason")]
    head.save(tmp_path)
    back = LabelHead.load(tmp_path)
    assert back is not None and back.facts
    # At inference the head computes the facts from the prompts itself (the features below the layer are the tiny
    # model's, of another width: only the facts' columns are checked).
    feats = back.features(model, tok, val_p)
    assert feats.shape == (len(val_p), model.config.hidden_size + len(NAMES))
    assert feats[:, -len(NAMES):].tolist() == [facts(p) for p in val_p]

    # Facts that do not tell the labels apart (every spec says the same) lose to hidden states that do.
    same = [render_prompt("Flag it.", PromptInput.build(Feature(name="X", description="Y."), [], None).render())]
    centers = torch.eye(3, 6) * 4
    sx = torch.cat([centers[i] + torch.randn(8, 6, generator=noise) * 0.1 for i in range(3)])
    sy = [LABELS[i].value for i in range(3) for _ in range(8)]
    plain = fit_label_head(1, sx, sy, sx, sy, pooling="prompt", train_prompts=same * 24, val_prompts=same * 24)
    assert not plain.facts and plain.weight.shape[1] == 6


def test_a_head_saved_for_other_labels_is_refused(tmp_path):
    import json

    head = fit_label_head(1, torch.randn(6, 4), [label.value for label in LABELS] * 2)
    head.save(tmp_path)
    meta = json.loads((tmp_path / "label_head.json").read_text())
    meta["labels"] = ["Yes", "No", "Maybe"]
    (tmp_path / "label_head.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="label_head.json: labels"):
        LabelHead.load(tmp_path)


@pytest.mark.parametrize("forced", list(LABELS))
def test_decoding_takes_the_flag_from_the_head_for_any_weights(tiny, forced):
    """A head whose bias forces one label: every answer carries it, with the head's probabilities as the label
    scores (what calibration tempers), and the rest of the answer is still decoded and valid."""
    from sft.core.contract import Feature, PromptInput, render_prompt
    from sft.inference.decoding import DecodeConfig, decode_constrained, label_scores

    model, tok = tiny
    head = forcing_head(model, forced)
    inputs = [PromptInput.build(Feature(name=n, description="Ship it to teens in Florida."), [], None)
              for n in ("Curfew", "Dark mode")]
    prompts = [render_prompt("Flag it.", pi.render()) for pi in inputs]
    preds = decode_constrained(model, tok, prompts, inputs, DecodeConfig(max_reason_tokens=4), head=head)
    assert [p.answer.compliance_flag for p in preds] == [forced, forced]
    assert all(p.valid and p.label_scores[forced.value] > -1e-6 for p in preds)
    assert [max(s, key=s.get) for s in label_scores(model, tok, prompts, head=head)] == [forced.value] * 2


@pytest.mark.parametrize("forced", [Label.NOT_NEEDED, Label.NEI])
def test_no_and_nei_reasons_say_what_the_spec_gave_for_any_weights(tiny, forced):
    """For any weights: a "No" reason says business reason for a spec limited to a place (named or not), "ships the
    same everywhere" for one in every region or none named; an NEI reason says no reason (a place whose law is
    shown), a place no law shown covers, regions it does not name, every region with no reason, or neither place
    nor reason. The same sentences training data carries (geoprep build writes them alike)."""
    from sft.core import reasons
    from sft.core.contract import Feature, LawContext, PromptInput, render_prompt
    from sft.inference.decoding import DecodeConfig, decode_constrained

    model, tok = tiny
    fl = LawContext(id="fl", law_id="us_fl_hb3", title="Florida HB 3", citation="Fla. Stat. § 501.1736(2)",
                    jurisdiction="US-FL", snippet="Section 501.1736 - Social media use for minors: (2) ...")
    specs = {"Florida": "Launch in Florida first.", "Canada": "Launch in Canada first.",
             "Pilot": "Launch in select markets first.", "Global": "Launch it in all regions.", "Nowhere": "Launch it."}
    inputs = [PromptInput.build(Feature(name=n, description=d), [fl], None) for n, d in specs.items()]
    prompts = [render_prompt("Flag it.", pi.render()) for pi in inputs]
    preds = decode_constrained(model, tok, prompts, inputs, DecodeConfig(max_reason_tokens=6),
                               head=forcing_head(model, forced))
    assert all(p.valid and p.answer.compliance_flag == forced for p in preds)
    got = [p.answer.reason for p in preds]
    if forced == Label.NOT_NEEDED:
        assert got == [reasons.NO_PLACED_REASON] * 3 + [reasons.UNIVERSAL_REASON] * 2
    else:
        assert got == [reasons.NEI_REGION_REASON, reasons.NEI_ELSEWHERE_REASON, reasons.NEI_UNNAMED_REASON,
                       reasons.NEI_EVERYWHERE_REASON, reasons.NEI_BARE_REASON]


def test_a_free_text_prompt_gets_a_generated_grounded_reason(tiny):
    """A seed file's free-text input has no fields for the rule: its reason is generated (and grounded)."""
    from sft.inference.decoding import DecodeConfig, decode_constrained

    model, tok = tiny
    preds = decode_constrained(model, tok, ["Feature: curfew for teens in Utah. Answer:"], [None],
                               DecodeConfig(max_reason_tokens=6), head=forcing_head(model, Label.NOT_NEEDED))
    assert preds[0].valid and preds[0].answer.law is None


def test_a_law_of_another_place_is_never_cited_for_any_weights(tiny):
    """A "Needs" answer for a spec naming Texas, when retrieval only found EU law: no citation, whatever the weights
    prefer (the EU item is not offered); the same spec naming the EU may cite it."""
    from sft.core.contract import Feature, LawContext, PromptInput, render_prompt
    from sft.inference.decoding import DecodeConfig, decode_constrained

    model, tok = tiny
    head = forcing_head(model, Label.NEEDS)
    dma = LawContext(id="eu_dma#art2", law_id="eu_dma", title="EU Digital Markets Act", citation="DMA Art. 2",
                     jurisdiction="EU", snippet="Definitions for gatekeepers.", score=1.0)
    inputs = [PromptInput.build(Feature(name="Age checks", description=f"Verify ages of new accounts in {where}."),
                                [dma]) for where in ("Texas", "TX", "the EU")]
    prompts = [render_prompt("Flag it.", pi.render()) for pi in inputs]
    preds = decode_constrained(model, tok, prompts, inputs, DecodeConfig(max_reason_tokens=4), head=head)
    assert [p.answer.compliance_flag for p in preds] == [Label.NEEDS] * 3
    assert preds[0].answer.law is None and preds[0].answer.citation is None
    assert preds[1].answer.law is None and "Digital Markets" not in preds[1].answer.reason
    assert preds[0].answer.reason == preds[1].answer.reason == (
        "The spec states a legal obligation for the region it targets; the law given does not cover it.")
    assert preds[2].answer.law in (None, "EU Digital Markets Act")


def test_the_answer_cites_what_its_flag_and_its_spec_allow_for_any_weights(tiny):
    """"No" and NEI cite nothing; a "Needs" answer cites one of the prompt's items that apply where the spec ships
    (those of the law it names, when it names one), with the frame reason of that item; it cites nothing only when
    the spec names a law the prompt lacks or no item applies (and then says so)."""
    from sft.core.contract import Feature, LawContext, PromptInput, render_prompt
    from sft.core.reasons import NEEDS_UNCITED, needs_reason
    from sft.inference.decoding import DecodeConfig, decode_constrained

    model, tok = tiny
    fl = LawContext(id="fl", law_id="us_fl_hb3", title="Florida HB 3", citation="Fla. Stat. § 501.1736(2)",
                    jurisdiction="US-FL", snippet="Section 501.1736 - Social media use for minors: (2) shall prohibit")
    dsa = LawContext(id="dsa", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 28(2)",
                     jurisdiction="EU", snippet="Article 28 - Online protection of minors: 2. Providers shall not")
    specs = {
        "placed": "Curfew for teens in Florida.",
        "anywhere": "Default-private accounts for every teen.",
        "named": "No profiling ads to minors, as DSA Art. 28 requires.",
        "absent": "Kids mode voice features need COPPA verifiable parental consent.",
        "elsewhere": "Curfew for teens in Texas.",
    }
    inputs = [PromptInput.build(Feature(name=k, description=v), [fl, dsa], None) for k, v in specs.items()]
    prompts = [render_prompt("Flag it.", pi.render()) for pi in inputs]
    for forced in (Label.NOT_NEEDED, Label.NEI):
        preds = decode_constrained(model, tok, prompts, inputs, DecodeConfig(max_reason_tokens=4),
                                   head=forcing_head(model, forced))
        assert all(p.answer.law is None and p.answer.citation is None for p in preds), forced
    preds = decode_constrained(model, tok, prompts, inputs, DecodeConfig(max_reason_tokens=4),
                               head=forcing_head(model, Label.NEEDS))
    cited = {name: p.answer.citation for name, p in zip(specs, preds, strict=True)}
    assert cited["placed"] == fl.citation and cited["named"] == dsa.citation
    assert cited["anywhere"] in (fl.citation, dsa.citation), "never null while an item applies"
    assert cited["absent"] is None and cited["elsewhere"] is None
    for p in preds:
        item = {fl.citation: fl, dsa.citation: dsa}.get(p.answer.citation)
        expected = (needs_reason(item.title, item.citation, item.snippet, item.jurisdiction) if item
                    else NEEDS_UNCITED)
        assert p.valid and p.answer.reason == expected
    assert preds[0].answer.reason.startswith("The feature implements social media use for minors for users in Florida")
