"""geosft predict: audit rows, bad rows skipped, resumable without duplicates, contract prompts."""

from __future__ import annotations

import csv
import json

import pytest

from sft.core.contract import DEFAULT_INSTRUCTION, LABELS, Feature, PromptInput, render_prompt
from sft.inference.predict import COLUMNS, PredictConfig, run_predict

torch = pytest.importorskip("torch")

FEATURES_CSV = """id,name,description
f1,Teen curfew,Block notifications at night for minors in Florida.
f2,Dark mode,A darker colour theme.
f3,,missing a name
f4,Age gate,Age verification for users in Utah before sign-up.
f5,ASL filter,Filter content by ASL for users.
f6,Bigger font,Let people increase the font size.
"""


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    from sft.inference.predictor import Predictor

    return Predictor.load(tiny_model_dir)


class Interrupted(Exception):
    pass


class StopAfter:
    """The real predictor, interrupted (like Ctrl-C) after ``n`` batches."""

    def __init__(self, predictor, n):
        self.inner, self.left, self.model_id = predictor, n, predictor.model_id
        self.prompts = []

    def predict(self, items, **kw):
        if self.left == 0:
            raise Interrupted
        self.left -= 1
        out = self.inner.predict(items, **kw)
        self.prompts += [r.prompt for r in out]
        return out


def test_predict_rows_bad_rows_and_resume(predictor, tiny_model_dir, tmp_path):
    feats = tmp_path / "features.csv"
    feats.write_text(FEATURES_CSV)
    gloss = tmp_path / "glossary.csv"
    gloss.write_text("term,definition\nASL,Age-sensitive logic\n")
    cfg = PredictConfig(str(tiny_model_dir), feats, tmp_path / "out" / "preds.jsonl", glossary=gloss, batch_size=2)

    with pytest.raises(Interrupted):
        run_predict(cfg, StopAfter(predictor, 1))
    first = [json.loads(line) for line in cfg.jsonl_path.read_text().splitlines()]
    assert [r["id"] for r in first] == ["f1", "f2"]
    with cfg.jsonl_path.open("a") as fh:  # a crash mid-write leaves a torn line
        fh.write('{"id": "f4", "na')

    spy = StopAfter(predictor, 99)
    counts = run_predict(cfg, spy)
    assert counts == {"predicted": 3, "skipped": 2, "bad": 1, "no_law_in_prompt": 0}
    rows = [json.loads(line) for line in cfg.jsonl_path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["f1", "f2", "f4", "f5", "f6"]
    for r in rows:
        assert list(r) == COLUMNS
        assert r["flag"] in {label.value for label in LABELS}
        assert r["model_id"] == str(tiny_model_dir) and r["timestamp"]
        assert r["context_ids"] == []  # no index packaged with the tiny model
    # glossary notes reach the prompt, and the prompt is exactly the contract's
    asl = Feature(id="f5", name="ASL filter", description="Filter content by ASL for users.")
    expected = render_prompt(DEFAULT_INSTRUCTION, PromptInput.build(asl, [], {"ASL": "Age-sensitive logic"}).render())
    assert expected in spy.prompts

    with cfg.csv_path.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["id"] for r in table] == ["f1", "f2", "f4", "f5", "f6"] and list(table[0]) == COLUMNS
    assert run_predict(cfg, StopAfter(predictor, 0)) == {"predicted": 0, "skipped": 5, "bad": 1, "no_law_in_prompt": 0}


def test_jsonl_features_and_clear_errors(predictor, tmp_path):
    from sft.core.errors import UserError

    feats = tmp_path / "f.jsonl"
    feats.write_text('{"id": 7, "name": "A", "description": "B"}\nnot json\n{"name": "C", "description": "D"}\n')
    cfg = PredictConfig("unused", feats, tmp_path / "o")
    assert run_predict(cfg, predictor) == {"predicted": 2, "skipped": 0, "bad": 1, "no_law_in_prompt": 0}
    assert [json.loads(x)["id"] for x in cfg.jsonl_path.read_text().splitlines()] == ["7", "line-3"]
    with pytest.raises(UserError, match="no such features file"):
        run_predict(PredictConfig("unused", tmp_path / "none.csv", tmp_path / "o"), predictor)
    with pytest.raises(UserError, match="--retriever"):
        PredictConfig("m", feats, tmp_path / "o", retriever="elastic")


def test_predict_retrieves_context_from_a_local_index(predictor, tmp_path):
    from sft.core.chunks import write_chunks
    from sft.core.contract import LawContext
    from sft.core.retrieval import build_local_index

    chunks = [
        LawContext(id="us_ut_sb152#1", law_id="us_ut_sb152", title="Utah SB 152", citation="Utah Code § 13-63-102",
                   jurisdiction="US-UT", snippet="A social media company shall verify the age of a Utah account holder."),
        LawContext(id="eu_gdpr#8", law_id="eu_gdpr", title="GDPR", citation="GDPR Art. 8(1)", jurisdiction="EU",
                   snippet="Processing of the personal data of a child below 16 requires parental consent."),
    ]
    write_chunks(tmp_path / "chunks.jsonl", chunks)
    build_local_index(tmp_path / "chunks.jsonl", tmp_path / "index")
    feats = tmp_path / "f.jsonl"
    feats.write_text('{"id": "u1", "name": "Age check", "description": "Verify the age of Utah account holders."}\n')
    cfg = PredictConfig("unused", feats, tmp_path / "o", index_dir=tmp_path / "index", k=1)
    run_predict(cfg, predictor)
    row = json.loads(cfg.jsonl_path.read_text())
    assert row["context_ids"] == ["us_ut_sb152#1"]
    assert row["citation"] in (None, "Utah Code § 13-63-102")


def test_a_prompt_whose_law_the_budget_cut_says_so(predictor, tmp_path):
    """Predict never silently sends a prompt without the law it retrieved: the row records the cut, the run counts it."""
    import dataclasses

    from sft.core.chunks import write_chunks
    from sft.core.contract import LawContext
    from sft.core.prompt import answer_reserve
    from sft.core.retrieval import build_local_index

    write_chunks(tmp_path / "chunks.jsonl", [LawContext(
        id="us_ut_sb152#1", law_id="us_ut_sb152", title="Utah SB 152", citation="Utah Code § 13-63-102",
        jurisdiction="US-UT", snippet="A social media company shall verify the age of a Utah account holder. " * 8)])
    build_local_index(tmp_path / "chunks.jsonl", tmp_path / "index")
    feats = tmp_path / "f.jsonl"
    feats.write_text('{"id": "u1", "name": "Age check", "description": "Verify the age of Utah account holders."}\n')
    tight = dataclasses.replace(predictor, max_length=answer_reserve() + 120)  # room for the feature, not the law
    cfg = PredictConfig("unused", feats, tmp_path / "o", index_dir=tmp_path / "index", k=1)
    assert run_predict(cfg, tight)["no_law_in_prompt"] == 1
    row = json.loads(cfg.jsonl_path.read_text())
    assert row["context_ids"] == [] and row["prompt_cut"]["law_items"] == 1 and row["citation"] is None


def test_duplicate_ids_and_stray_quotes_are_not_skipped_silently(predictor, tmp_path):
    from sft.core.contract import ContractError

    feats = tmp_path / "dups.csv"
    feats.write_text("id,name,description\nd1,Teen curfew,Night mode\nd2,Dark mode,Theme\nd1,Age gate,Other text\n")
    cfg = PredictConfig("unused", feats, tmp_path / "out")
    with pytest.raises(ContractError, match=r"id 'd1': already used"):
        run_predict(cfg, predictor)
    assert not cfg.jsonl_path.exists()
    cfg = PredictConfig("unused", feats, tmp_path / "out", on_duplicate="last")
    run_predict(cfg, predictor)
    rows = [json.loads(x) for x in cfg.jsonl_path.read_text().splitlines()]
    assert [(r["id"], r["name"]) for r in rows] == [("d2", "Dark mode"), ("d1", "Age gate")]
    quote = tmp_path / "quote.csv"
    quote.write_text('id,name,description\nq1,a,b\nq2,"c,d\nq3,e,f\n')
    with pytest.raises(ContractError, match=r"quote\.csv:3: unterminated quote"):
        run_predict(PredictConfig("unused", quote, tmp_path / "q"), predictor)


def test_predict_with_a_bedrock_knowledge_base(predictor, tmp_path, monkeypatch):
    """--retriever bedrock-kb: each feature's law context comes from Retrieve (a Stubber'd bedrock-agent-runtime
    client, requests validated against the service model); without --knowledge-base-id, one clear error."""
    from sft.core.errors import UserError
    from tests.conftest import kb_result, stub_bedrock_retrieve

    _, stub, queries = stub_bedrock_retrieve(monkeypatch, lambda params: [kb_result(
        "us_ca_sb976#27001", "us_ca_sb976", "Cal. Health & Saf. Code § 27001", "US-CA",
        "A provider shall not use an addictive feed for a minor without parental consent.")])
    feats = tmp_path / "f.csv"
    feats.write_text("id,name,description\nf1,Teen feed,Chronological feed for minors in California.\n")
    with pytest.raises(UserError, match="needs --knowledge-base-id"):
        run_predict(PredictConfig("unused", feats, tmp_path / "o", retriever="bedrock-kb"), predictor)
    with stub:
        cfg = PredictConfig("unused", feats, tmp_path / "o", retriever="bedrock-kb", knowledge_base_id="KB12345678")
        assert run_predict(cfg, predictor)["predicted"] == 1
    row = json.loads(cfg.jsonl_path.read_text().splitlines()[0])
    assert row["context_ids"] == ["us_ca_sb976#27001"] and queries
    assert "Teen feed" in queries[0]["retrievalQuery"]["text"]
