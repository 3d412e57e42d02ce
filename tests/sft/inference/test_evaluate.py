"""geosft eval: all metrics, both baselines, report and confusion PNG on the tiny model."""

from __future__ import annotations

import json

import pytest

from sft.core.contract import Answer, Example, Feature, Label, LawContext, PromptInput, parse_output
from sft.inference.evaluate import compute_metrics, keyword_rule

CTX = LawContext(id="eu_dsa#28", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 28(1)",
                 jurisdiction="EU", snippet="Providers of online platforms accessible to minors shall ...")
ROWS = [
    ("Teen curfew", "Block notifications at night for minors in Florida.", Label.NEEDS, "EU Digital Services Act"),
    ("Age gate", "Age verification for users in Utah before sign-up.", Label.NEEDS, "EU Digital Services Act"),
    ("Dark mode", "A darker colour theme for the whole app at night.", Label.NOT_NEEDED, None),
    ("Bigger font", "Let people increase the font size in the reading view.", Label.NOT_NEEDED, None),
    ("Project X", "Rollout.", Label.NEI, None),
]


def _examples():
    out = []
    for i, (name, desc, label, law) in enumerate(ROWS):
        pi = PromptInput.build(Feature(name=name, description=desc), [CTX])
        ans = Answer(compliance_flag=label, law=law, citation="DSA Art. 28(1)" if law else None, reason="r")
        out.append(Example.build(pi, ans, id=f"ex{i}"))
    return out


def _pred(label, law=None, citation=None, pi=None):
    return parse_output(Answer(compliance_flag=label, law=law, citation=citation).to_json(), pi)


def test_metrics_by_hand():
    golds = [Answer(compliance_flag=g) for g in (Label.NEEDS, Label.NEEDS, Label.NOT_NEEDED, Label.NEI)]
    pi = PromptInput.build(Feature(name="a", description="b"), [CTX])
    preds = [
        _pred(Label.NEEDS, "EU Digital Services Act", "DSA Art. 28(1)", pi),  # right, grounded
        _pred(Label.NOT_NEEDED, "EU Digital Services Act", "Made-up § 1", pi),  # wrong, ungrounded
        _pred(Label.NOT_NEEDED),  # right
        parse_output("not json at all"),  # invalid
    ]
    m = compute_metrics(golds, preds)
    assert m["json_valid_rate"] == 0.75
    assert m["accuracy"] == 0.5
    assert m["confusion"]["Not Enough Information"]["invalid"] == 1
    needs = m["per_class"]["Needs Geo-Compliance"]
    assert (needs["precision"], needs["recall"]) == (1.0, 0.5)
    nn = m["per_class"]["No Geo-Compliance Needed"]
    assert nn["precision"] == 0.5 and nn["recall"] == 1.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0.0) / 3)
    assert m["citation_grounding_rate"] == 0.5
    assert m["law_accuracy"] == 0.25  # gold law is None everywhere; only the null prediction matches
    assert m["abstention_rate"] == 0.0


def test_keyword_rule_baseline():
    def flag(name, desc):
        return keyword_rule(PromptInput.build(Feature(name=name, description=desc), []), "").compliance_flag

    assert flag("Teen curfew", "Block notifications for minors") == Label.NEEDS
    assert flag("Dark mode", "A darker colour theme for the whole app") == Label.NOT_NEEDED
    assert flag("X", "Rollout.") == Label.NEI


def test_eval_writes_all_metrics_baselines_and_png(tiny_model_dir, tmp_path):
    pytest.importorskip("torch")
    from sft.inference.evaluate import EvalConfig, run_eval

    data = tmp_path / "validation.jsonl"
    data.write_text("".join(ex.to_json() + "\n" for ex in _examples()))
    out = tmp_path / "eval"
    result = run_eval(EvalConfig(str(tiny_model_dir), data, out, batch_size=2))
    saved = json.loads((out / "eval.json").read_text())
    assert saved["runs"].keys() == {"model", "majority", "keyword"}
    for run in saved["runs"].values():
        for key in ("json_valid_rate", "accuracy", "macro_f1", "per_class", "confusion", "law_accuracy",
                    "citation_grounding_rate", "abstention_rate"):
            assert key in run
    assert saved["runs"]["model"]["json_valid_rate"] == 1.0  # constrained: valid even from a random model
    assert saved["runs"]["majority"]["accuracy"] == pytest.approx(2 / 5)
    assert saved["runs"]["keyword"]["accuracy"] == 1.0
    assert sum(sum(r.values()) for r in saved["runs"]["model"]["confusion"].values()) == 5
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| keyword |" in report and "| majority |" in report and "confusion.png" in report
    assert result["predictions_per_s"] > 0

    # With the training split given, the majority baseline answers the training prior (NEI here), as a system
    # that has not seen the evaluation labels would.
    train = tmp_path / "train.jsonl"
    train.write_text("".join(ex.to_json() + "\n" for ex in _examples() if ex.answer.compliance_flag == Label.NEI) * 3)
    result = run_eval(EvalConfig(str(tiny_model_dir), data, tmp_path / "eval2", batch_size=2, train=train))
    assert result["majority_label"] == {"label": "Not Enough Information", "from": str(train)}
    assert result["runs"]["majority"]["accuracy"] == pytest.approx(1 / 5)


def test_eval_cli_on_an_adapter_dir(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    import subprocess
    import sys

    from peft import LoraConfig, get_peft_model

    from sft.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(
        tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(ex.to_json() + "\n" for ex in _examples()[:3]))
    code = "from sft.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "eval", "--model", str(tmp_path / "adapter"), "--data", str(data),
         "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "macro-F1" in proc.stdout
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["n"] == 3
    bad = subprocess.run([sys.executable, "-c", code, "eval", "--model", str(tmp_path / "adapter"), "--data",
                          str(tmp_path / "nope.jsonl")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "nope.jsonl: no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_a_labelled_spec_file_is_scored_through_the_predict_path(tiny_model_dir, tmp_path):
    """geosft eval on a realistic-set CSV: retrieval at eval time, the one prompt builder, calibration figures,
    law accuracy on positives, reasons naming absent law, a law outside the corpus accepting NEI."""
    import csv

    from sft.core.chunks import write_chunks
    from sft.core.contract import LawContext
    from sft.core.retrieval import build_local_index
    from sft.inference.evaluate import EvalConfig, citation_matches, run_eval

    write_chunks(tmp_path / "chunks.jsonl", [
        LawContext(id="us_ut_sb152#s13-63-105-1", law_id="us_ut_sb152", title="Utah SB 152",
                   citation="Utah Code § 13-63-105(1)", jurisdiction="US-UT",
                   snippet="A social media company shall prohibit a Utah minor account holder from access between "
                           "10:30 p.m. and 6:30 a.m."),
        LawContext(id="eu_dsa#art28-2", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 28(2)",
                   jurisdiction="EU", snippet="Providers shall not present advertisements based on profiling to minors."),
    ])
    build_local_index(tmp_path / "chunks.jsonl", tmp_path / "index")
    specs = tmp_path / "specs.csv"
    with specs.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "description", "label", "law_id", "citation", "category", "note"])
        w.writerow(["R-1", "Teen curfew (UT)", "Lock Utah minors out overnight per state law.", "Needs Geo-Compliance",
                    "us_ut_sb152", "Utah Code § 13-63-105", "implicit_law", ""])
        w.writerow(["R-2", "No profiling ads for EU teens", "DSA requirement.", "Needs Geo-Compliance", "eu_dsa",
                    "DSA Art. 28", "explicit_law", ""])
        w.writerow(["R-3", "Dark mode", "A darker theme for everyone.", "No Geo-Compliance Needed", "", "",
                    "universal", ""])
        w.writerow(["R-4", "Texas SCOPE Act age gate", "Required by Texas HB 18.", "Needs Geo-Compliance", "", "",
                    "law_not_in_corpus", ""])
    result = run_eval(EvalConfig(str(tiny_model_dir), specs, tmp_path / "eval", index_dir=tmp_path / "index",
                                 batch_size=2))
    m = result["runs"]["model"]
    assert result["n"] == 4 and m["json_valid_rate"] == 1.0
    assert m["reasons_naming_absent_law"] == 0
    assert m["law_accuracy_on_positives"] is not None and "calibration" in m
    assert (tmp_path / "eval" / "reliability.png").is_file() and (tmp_path / "eval" / "report.md").is_file()
    # Accuracy versus coverage, in the report as a table: answering every spec is the run's accuracy.
    report = (tmp_path / "eval" / "report.md").read_text()
    curve = m["calibration"]["accuracy_vs_coverage"]
    assert [c["coverage"] for c in curve][-1] == 1.0 and curve[-1]["accuracy"] == m["accuracy"]
    assert "| coverage | accuracy | confidence at least |" in report
    assert f"| 100% | {m['accuracy']:.3f} |" in report
    rows = {r["id"]: r for r in result["predictions"]}
    assert rows["R-1"]["context_ids"] == ["us_ut_sb152#s13-63-105-1"]  # retrieved at eval time, Utah's law
    if rows["R-4"]["predicted"] == "Not Enough Information":  # accepted for a law outside the corpus
        assert m["confusion"]["Not Enough Information"]["Not Enough Information"] >= 1
    assert citation_matches("DSA Art. 28(2)", ["DSA Art. 28"]) and not citation_matches("DSA Art. 280", ["DSA Art. 28"])
    # Law accuracy per spec: a positive with a bundled law must name it, every other spec none. The baselines
    # never name a law: right on only (it read 100 % when the gold's missing law titles were compared).
    assert {name: run["law_accuracy"] for name, run in result["runs"].items() if name != "model"} == {
        "majority": 0.5, "keyword": 0.5}
    expect = [(r["law_id"] in r["gold_law"].split("|")) if r["gold_law"] else r["law_id"] is None
              for r in result["predictions"]]
    assert m["law_accuracy"] == sum(expect) / 4
