"""geoprep build on the real corpus: grounded citations, NEI share, one law per example, grouped split, QC."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from data_prep.build import (
    BuildConfig,
    Candidate,
    build,
    citation_valid,
    dedupe,
    report_table,
)
from data_prep.features import IMPORTED, FeatureSpec, read_features
from data_prep.mine import read_obligations
from sft.core.chunks import read_chunks
from sft.core.contract import Answer, Example, Feature, Label, PromptInput, parse_output, read_examples
from sft.core.errors import UserError
from sft.core.reasons import (
    NEEDS_UNCITED,
    NEI_REGION_REASON,
    NEI_UNNAMED_REASON,
    NO_PLACED_REASON,
    UNIVERSAL_REASON,
    provision_topic,
    short_title,
)
from sft.core.retrieval import LocalRetriever


def _examples(out: Path) -> dict[str, list[Example]]:
    return {s: list(read_examples(out / f"{s}.jsonl")) for s in ("train", "validation")}


def test_examples_for_every_law_with_nei_share_and_grounded_citations(corpus_run):
    out, _ = corpus_run
    splits = _examples(out)
    everything = splits["train"] + splits["validation"]
    laws = {c.title for c in read_chunks(out / "chunks.jsonl")}
    needs = [e for e in everything if e.answer.compliance_flag == Label.NEEDS]
    assert {e.answer.law for e in needs} - {None} == laws, "every bundled law has positive examples"
    # A legal driver whose retrieved law does not cover it is still Needs, cited to nothing, with the one reason.
    uncited = [e for e in needs if e.answer.citation is None]
    assert uncited and all(e.answer.law is None and e.answer.reason == NEEDS_UNCITED for e in uncited)
    assert len(uncited) < len(needs) / 3
    assert 200 <= len(everything) <= 1000
    for xs in (everything, splits["train"]):
        share = sum(e.answer.compliance_flag == Label.NEI for e in xs) / len(xs)
        assert 0.15 <= share <= 0.35, share
    assert any(e.answer.compliance_flag == Label.NOT_NEEDED for e in everything)
    for e in everything:
        pred = parse_output(e.output, PromptInput.parse(e.input))
        if e.answer.citation is not None:
            assert pred.grounded is True, e.id
        if e.answer.compliance_flag != Label.NEEDS:
            assert e.answer.citation is None
    report = json.loads((out / "qc_report.json").read_text())
    assert "citation not in law context" not in report["dropped"]
    assert report["counts"]["total"]["examples"] == len(everything)


def test_one_law_per_example_and_jurisdiction_rule(corpus_run):
    out, _ = corpus_run
    for e in sum(_examples(out).values(), []):
        ctx = PromptInput.parse(e.input).law_context
        assert 1 <= len(ctx) <= 3
        assert len({c["law"] for c in ctx}) == 1, e.id
        if e.answer.compliance_flag == Label.NEEDS and "Utah" in e.input.split('"law_context"')[0]:
            assert {c["jurisdiction"] for c in ctx} <= {"US-UT", "US"}


def test_split_is_grouped_by_source_obligation_and_ids_are_unique(corpus_run):
    out, _ = corpus_run
    splits = _examples(out)
    train_groups = {e.group for e in splits["train"]}
    val_groups = {e.group for e in splits["validation"]}
    assert val_groups and not (train_groups & val_groups)
    ids = [e.id for e in splits["train"] + splits["validation"]]
    assert len(ids) == len(set(ids))
    # The uncovered-NEI twin of a positive shares its feature text and group, so it shares the split.
    texts = Counter(json.loads(e.input)["feature"]["name"] + e.group for e in splits["train"] + splits["validation"])
    assert any(n > 1 for n in texts.values())


def test_qc_report_table_lists_labels_laws_drops_and_context_stats(corpus_run):
    out, result = corpus_run
    table = (out / "qc_report.md").read_text()
    assert table == report_table(result.report)
    for needle in ("Not Enough Information", "Utah Social Media Regulation Act (SB 152)", "US-CA",
                   "near-duplicate", "items_per_example", "NEI share"):
        assert needle in table


@pytest.fixture(scope="module")
def small_inputs(corpus_run):
    out, _ = corpus_run
    specs = [s for s in read_features(out / "features.jsonl")
             if s.jurisdiction in ("US-UT", "US-CA") or s.kind != "positive"][:120]
    return specs, read_obligations(out / "obligations.jsonl"), list(read_chunks(out / "chunks.jsonl")), \
        LocalRetriever(out / "index")


def test_token_budget_fits_every_example_and_keeps_the_cited_context(small_inputs, tiny_model_dir):
    from transformers import AutoTokenizer

    from sft.core.contract import render_completion, render_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    specs, obs, chunks, retriever = small_inputs
    result = build(specs, obs, chunks, retriever, BuildConfig(max_length=384), tokenizer=tok)
    budget = result.report["budget"]
    assert budget["max_length"] == 384 and budget["trimmed"] > 0
    for e in result.train + result.validation:
        n = len(tok(render_prompt(e.instruction, e.input))["input_ids"])
        n += len(tok(render_completion(e.output), add_special_tokens=False)["input_ids"]) + 1
        assert n <= 384
        assert citation_valid(e) is None
    with pytest.raises(UserError, match="tokenizer"):
        build(specs, obs, chunks, retriever, BuildConfig(max_length=384))


def test_nei_share_is_configurable_and_build_is_deterministic(small_inputs):
    specs, obs, chunks, retriever = small_inputs
    cfg = BuildConfig(nei_share=0.25, nei_min=0.2, nei_max=0.3)
    a = build(specs, obs, chunks, retriever, cfg)
    b = build(specs, obs, chunks, retriever, cfg)
    assert [e.to_json() for e in a.train] == [e.to_json() for e in b.train]
    assert 0.2 <= a.report["counts"]["total"]["nei_share"] <= 0.3
    with pytest.raises(UserError, match="nei_min"):
        BuildConfig(nei_share=0.5, nei_max=0.35)


def test_imported_law_outside_the_context_is_uncited_needs_and_unlabelled_goes_to_review(small_inputs):
    """A 'Needs' row whose law is not what inference retrieves (here: a law outside the corpus) is taught as the
    generated data's rule says: Needs Geo-Compliance citing nothing, never another law; an unlabelled row is
    kept for review, enriched with its retrieved context."""
    specs, obs, chunks, retriever = small_inputs
    alien = FeatureSpec(feature=Feature(id="imp-1", name="Loot box odds in Belgium", description="Show odds.",
                                        label=Label.NEEDS, law="Belgian Gaming Act"), kind=IMPORTED, group="imp-1")
    unlabelled = FeatureSpec(feature=Feature(id="imp-2", name="PF for EU", description="PF tweak"),
                             kind=IMPORTED, group="imp-2")
    result = build(specs[:10] + [alien, unlabelled], obs, chunks, retriever, BuildConfig())
    dropped = result.report["dropped"]
    assert dropped["imported 'Needs' whose law is not in the retrieved context: trained without a citation"] == 1
    assert dropped["imported feature has no label (see to_label.jsonl)"] == 1
    (ex,) = [e for e in result.train + result.validation if "Belgium" in e.input]
    assert ex.answer.compliance_flag == Label.NEEDS and ex.answer.law is None and ex.answer.citation is None
    assert ex.answer.reason == NEEDS_UNCITED
    (row,) = result.to_label
    assert row["id"] == "imp-2" and PromptInput.parse(row["input"]).law_context, "enriched for review"


def test_imported_rows_cite_the_provision_the_user_gave(small_inputs, tmp_path):
    """A labelled spec file in the realistic set's columns (law_id, citation): the example cites the retrieved
    provision matching the given citation (not merely its law's best hit); a citation that is not retrieved falls
    back to the law's best hit and is counted; a No row's reason names no law."""
    from data_prep.features import import_features
    from sft.core.prompt import law_context

    specs, obs, chunks, retriever = small_inputs
    text = "Teen accounts in the EU get no ads based on profiling for users we know are minors."
    feature = Feature(name="Teen ad profiling off", description=text)
    context = law_context(retriever, feature, {}, k=BuildConfig().top_k, search_k=BuildConfig().search_k)
    assert len({c.citation for c in context}) == 2 and len({c.law_id for c in context}) == 1
    law_id, second = context[0].law_id, context[1].citation  # not the best hit
    path = tmp_path / "labelled.csv"
    path.write_text("id,name,description,label,law_id,citation,category\n"
                    f'H-1,{feature.name},"{text}",Needs Geo-Compliance,{law_id},{second},explicit_law\n'
                    f'H-2,{feature.name} (v2),"{text}",Needs Geo-Compliance,{law_id},Art. 999,explicit_law\n'
                    'H-3,Dark mode,"Dark mode for everyone.",No Geo-Compliance Needed,,,universal\n'
                    'H-4,Tipping in Canada,"Canada first as a market test.",No Geo-Compliance Needed,,,business\n'
                    'H-5,Filter pilot,"Select regions, list TBD.",Not Enough Information,,,unexplained\n'
                    'H-6,Spain stickers,"Sticker pack for users in Spain.",Not Enough Information,,,unexplained\n')
    imported = import_features(path)
    assert imported[0].feature.law == law_id and imported[0].citations == [second]
    result = build(specs[:10] + imported, obs, chunks, retriever, BuildConfig())
    examples = {PromptInput.parse(e.input).feature["name"]: e for e in result.train + result.validation}
    assert examples[feature.name].answer.citation == second
    assert examples[f"{feature.name} (v2)"].answer.citation == context[0].citation
    assert result.report["dropped"]["imported 'Needs' whose cited provision is not retrieved: its law's best hit cited"] == 1
    no = examples["Dark mode"].answer
    assert no.compliance_flag == Label.NOT_NEEDED and no.law is None and "Act" not in no.reason
    # One reason frame for every "Needs" answer (the generated data's): what the cited provision is about, where,
    # which law and citation; "No" and NEI reasons follow whether the spec names a place, as the generated ones do.
    cited = next(c for c in context if c.citation == second)
    assert examples[feature.name].answer.reason == (
        f"The feature implements {provision_topic(cited.snippet)} for users in the EU, which {short_title(cited.title)} requires in "
        f"{second}.")
    assert provision_topic(cited.snippet) in cited.snippet.lower()
    assert (no.reason, examples["Tipping in Canada"].answer.reason) == (UNIVERSAL_REASON, NO_PLACED_REASON)
    assert examples["Filter pilot"].answer.reason == NEI_UNNAMED_REASON
    assert examples["Spain stickers"].answer.reason == NEI_REGION_REASON


def test_citation_validation_and_near_duplicates():
    ctx = [{"id": "a", "law": "X Act", "citation": "X § 1", "jurisdiction": "US", "text": "..."}]
    prompt = PromptInput(feature={"name": "f", "description": "d"}, law_context=ctx)
    ok = Example.build(prompt, Answer(compliance_flag=Label.NEEDS, law="X Act", citation="X § 1", reason="r"))
    wrong = Example.build(prompt, Answer(compliance_flag=Label.NEEDS, law="X Act", citation="X § 2", reason="r"))
    bare = Example.build(prompt, Answer(compliance_flag=Label.NEEDS, reason="r"))
    assert citation_valid(ok) is None
    assert citation_valid(wrong) == "citation not in law context"
    assert citation_valid(bare) == "answer needs a citation but has none"
    uncited = Example.build(prompt, Answer(compliance_flag=Label.NEEDS, reason=NEEDS_UNCITED))
    assert citation_valid(uncited) is None, "a legal driver the context does not cover: Needs, no citation"

    def cand(i: int, name: str) -> Candidate:
        spec = FeatureSpec(feature=Feature(id=str(i), name=name, description="Use ASL and GH to block minors at night"),
                           kind="positive", group=str(i))
        return Candidate(spec, ok.model_copy(update={"id": str(i)}), [], "positive")

    drops: Counter = Counter()
    kept = dedupe([cand(1, "Curfew for Utah minors"), cand(2, "Curfew for Utah minors!"),
                   cand(3, "Parent dashboard with account controls")], 0.9, drops)
    assert [c.example.id for c in kept] == ["1", "3"] and drops["near-duplicate"] == 1


def test_qc_report_gives_the_retrievers_hit_at_k_as_eval_retrieval_measures_it(small_inputs, corpus_run):
    from data_prep.evalretrieval import Query, score

    specs, obs, chunks, retriever = small_inputs
    from sft.core.context import TOP_K

    assert build(specs, obs, chunks, retriever, BuildConfig()).report["retrieval"]["k"] == TOP_K  # the prompt's k
    result = build(specs, obs, chunks, retriever, BuildConfig(top_k=3))  # eval-retrieval reports Hit@1/3/10
    r = result.report["retrieval"]
    source = {o.id: o.chunk_id for o in obs}
    # Hit@k is over the specs a law drives: stated drivers and the law's own mechanism in its place (no reason).
    positives = [s for s in specs if s.kind in ("positive", "no_reason_twin") and s.obligation_id in source]
    assert (r["retriever"], r["k"], r["positives"]) == ("local", 3, len(positives)) and positives
    queries = [Query(s.feature, lambda c, g=source[s.obligation_id]: c.id == g) for s in positives]
    assert r["hit_at_k"] == round(score(retriever, "local", "generated", queries, None).hit_at_3, 4)
    assert f"Retrieval (local): Hit@3 {r['hit_at_k']:.3f}" in report_table(result.report)


def test_class_balance_drops_generated_examples_before_the_users_own(small_inputs):
    """Down-sampling to the NEI share cuts generated examples first: a user's labelled specs are the scarcer,
    closer-to-real data."""
    import random

    specs, obs, chunks, retriever = small_inputs
    words = "feed search shop live comments gifts stickers filters captions playlists drafts badges".split()
    own = []
    for i in range(10):
        rng = random.Random(i)
        text = " ".join(rng.choice(words) for _ in range(12))
        own.append(FeatureSpec(feature=Feature(id=f"own-{i}", name=f"Own {i}", description=f"Everyone gets {text}.",
                                               label=Label.NOT_NEEDED), kind=IMPORTED, group=f"own-{i}"))
    cfg = BuildConfig(nei_share=0.3, nei_min=0.28, nei_max=0.32)
    result = build(specs + own, obs, chunks, retriever, cfg)
    assert result.report["dropped"]["class balance (majority down-sampled)"] > 0
    kept = [e for e in result.train + result.validation if '"name": "Own ' in e.input]
    nn = [e for e in result.train + result.validation if e.answer.compliance_flag == Label.NOT_NEEDED]
    assert len(nn) > len(kept) and len(kept) == 10, result.report["dropped"]
