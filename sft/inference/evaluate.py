"""``geosft eval``: score a model on a validation file, next to two baselines, and write a report.

Metrics per run (model, majority class, keyword rules): JSON-valid rate, label accuracy, macro-F1, per-class
precision/recall/F1, confusion matrix, law accuracy, citation grounding rate and abstention (NEI) rate.
Outputs: ``eval.json`` (everything, machine-readable), ``report.md`` (tables) and ``confusion.png``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.contract import (
    LABELS,
    Answer,
    Example,
    Label,
    Prediction,
    PromptInput,
    parse_output,
    read_examples,
    spec_text,
)
from sft.core.errors import UserError
from sft.core.files import save_figure_atomic, write_json_atomic, write_text_atomic
from sft.core.gold import GoldSpec, citation_matches, read_gold_specs  # noqa: F401  (re-exported)
from sft.core.prompt import DEFAULT_REASON_TOKENS

log = logging.getLogger(__name__)

INVALID = "invalid"

# Signals of geo-specific obligations in a feature text; the classic hand-written first pass.
_GEO_WORDS = re.compile(
    r"\b(minors?|teens?|teenagers?|child(ren)?|kids?|under[- ]?1[3-8]|age[- ](verification|gate|check|assurance)|"
    r"parental|curfew|jurisdiction|region|geo|country|state|eu|gdpr|dsa|coppa|ccpa|utah|florida|california|"
    r"law|legal|regulat\w*|compliance|consent)\b",
    re.IGNORECASE,
)


@dataclass
class EvalConfig:
    model: str
    data: Path
    out_dir: Path
    constrained: bool = True
    """Constrained decoding (always valid); off to measure how often the model is valid on its own."""
    batch_size: int = 8
    limit: int | None = None
    """Evaluate only the first N examples."""
    max_reason_tokens: int = DEFAULT_REASON_TOKENS
    train: Path | None = None
    """Training JSONL: the majority baseline answers its most common label (default: the evaluated file's own
    most common label, which a real system could not know: a stricter baseline)."""

    glossary: Path | None = None
    """Glossary CSV for a labelled spec file (its notes go into the prompt, as with predict)."""
    index_dir: Path | None = None
    """Retrieval index for a labelled spec file (default: the model dir's index/)."""
    retriever: str = "local"
    """Retriever for a labelled spec file: 'local', 'kendra' or 'bedrock-kb' (as with predict)."""
    kendra_index_id: str | None = None
    knowledge_base_id: str | None = None
    calibrate: bool = False
    """Fit the confidence temperature and review threshold on this file and save them with the model."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError("--batch-size must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise UserError("--limit must be >= 1")


def keyword_rule(prompt_input: PromptInput | None, raw_input: str) -> Answer:
    """Baseline: geo/age/law words -> Needs; a very short description -> NEI; else Not needed."""
    if prompt_input is not None:
        text = spec_text(prompt_input.feature)
    else:
        text = raw_input
    if _GEO_WORDS.search(text):
        return Answer(compliance_flag=Label.NEEDS, reason="keyword rule: geo/age/law terms in the feature")
    if len(text.split()) < 6:
        return Answer(compliance_flag=Label.NEI, reason="keyword rule: description too short")
    return Answer(compliance_flag=Label.NOT_NEEDED, reason="keyword rule: no geo/age/law terms")


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn}


def compute_metrics(golds: Sequence[Answer], preds: Sequence[Prediction]) -> dict[str, Any]:
    """All metrics for one run. An invalid prediction counts as wrong (its own confusion column)."""
    n = len(golds)
    if n == 0:
        raise UserError("no examples to evaluate")
    names = [label.value for label in LABELS]
    predicted = [p.answer.compliance_flag.value if p.valid and p.answer else INVALID for p in preds]
    gold = [g.compliance_flag.value for g in golds]
    matrix = {g: dict.fromkeys([*names, INVALID], 0) for g in names}
    for g, p in zip(gold, predicted, strict=True):
        matrix[g][p] += 1
    per_class = {}
    for name in names:
        tp = matrix[name][name]
        fp = sum(matrix[g][name] for g in names if g != name)
        fn = sum(v for k, v in matrix[name].items() if k != name)
        per_class[name] = _prf(tp, fp, fn)
    present = [c for c in names if per_class[c]["support"] > 0 or any(p == c for p in predicted)]
    valid = [p for p in preds if p.valid and p.answer]
    cited = [p for p in valid if p.answer and p.answer.citation]
    law_ok = sum(
        1 for g, p in zip(golds, preds, strict=True) if p.valid and p.answer and (p.answer.law or None) == g.law
    )
    return {
        "n": n,
        "json_valid_rate": len(valid) / n,
        "accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True)) / n,
        "macro_f1": sum(per_class[c]["f1"] for c in present) / len(present),
        "per_class": per_class,
        "confusion": matrix,
        "law_accuracy": law_ok / n,
        "citation_grounding_rate": (sum(1 for p in cited if p.grounded) / len(cited)) if cited else None,
        "citations": len(cited),
        "abstention_rate": sum(p == Label.NEI.value for p in predicted) / n,
    }


def majority_label(examples: Iterable[Example]) -> Label:
    return Counter(ex.answer.compliance_flag for ex in examples).most_common(1)[0][0]


def baseline_predictions(examples: Sequence[Example], inputs: Sequence[PromptInput | None],
                         majority: Label) -> dict[str, list[Prediction]]:
    runs: dict[str, list[Prediction]] = {"majority": [], "keyword": []}
    for ex, pi in zip(examples, inputs, strict=True):
        runs["majority"].append(parse_output(Answer(compliance_flag=majority).to_json(), pi))
        runs["keyword"].append(parse_output(keyword_rule(pi, ex.input).to_json(), pi))
    return runs


def plot_confusion(matrix: dict[str, dict[str, int]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(matrix)
    cols = list(next(iter(matrix.values())))
    data = [[matrix[r][c] for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(len(cols)), [c.replace(" ", "\n", 1) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    top = max(max(r) for r in data) or 1
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    save_figure_atomic(fig, path, dpi=120)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def flag_summary(predictor: Any, preds: Sequence[Prediction], accepted: Sequence[set[str]],
                 labels: Sequence[str]) -> dict[str, Any]:
    """What decided the flag: the label head (with how it was fitted and what the LM's own flag step scores on the
    same prompts, so the head's gain is measured in every eval) or the LM's label likelihoods.
    ``accepted[i]``: labels counted right for example i (a spec file's law outside the corpus: Needs or NEI)."""
    head = predictor.label_head
    if head is None:
        return {"source": "lm"}
    out: dict[str, Any] = {"source": "label_head", "layer": head.layer,
                           **{k: head.fitted.get(k) for k in ("train_examples", "validation_macro_f1", "l2")}}
    lm = [max(p.lm_label_scores, key=p.lm_label_scores.__getitem__) if p.lm_label_scores else None for p in preds]
    if lm and all(lm):
        golds = [Answer(compliance_flag=f if f in ok else g) for f, ok, g in zip(lm, accepted, labels, strict=True)]
        m = compute_metrics(golds, [Prediction(valid=True, answer=Answer(compliance_flag=f)) for f in lm])
        out["lm_flag_step"] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    return out


def flag_line(flag: dict[str, Any] | None) -> list[str]:
    if not flag:
        return []
    if flag["source"] == "lm":
        return ["", "Flag: the LM's label likelihoods (no label head saved with this model)."]
    lm = flag.get("lm_flag_step")
    return ["", f"Flag: the label head on layer {flag['layer']} (fitted on {flag.get('train_examples')} examples, "
                f"validation macro-F1 {_fmt(flag.get('validation_macro_f1'))})"
                + (f"; the LM's own flag step on the same prompts: macro-F1 {_fmt(lm['macro_f1'])}, accuracy "
                   f"{_fmt(lm['accuracy'])}." if lm else ".")]


def render_report(result: dict[str, Any]) -> str:
    runs = result["runs"]
    keys = ["json_valid_rate", "accuracy", "macro_f1", "law_accuracy", "citation_grounding_rate", "abstention_rate"]
    lines = [
        f"# Evaluation: {result['model']}",
        "",
        f"Data: `{result['data']}` ({result['n']} examples); decoding: "
        f"{'constrained' if result['constrained'] else 'unconstrained'}; "
        f"{result['predictions_per_s']:.2f} predictions/s.",
        *flag_line(result.get("flag")),
        "",
        "| run | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(_fmt(m[k]) for k in keys) + " |" for name, m in runs.items()]
    lines += ["", "## Per class (model)", "", "| label | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for label, m in runs["model"]["per_class"].items():
        lines.append(f"| {label} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | {m['support']} |")
    lines += ["", "## Confusion matrix (model; rows gold, columns predicted)", "", "![confusion](confusion.png)", ""]
    cols = list(next(iter(runs["model"]["confusion"].values())))
    lines += ["| gold \\ pred | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {g} | " + " | ".join(str(row[c]) for c in cols) + " |" for g, row in runs["model"]["confusion"].items()]
    return "\n".join(lines) + "\n"


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.model`` on ``cfg.data``; write eval.json, report.md, confusion.png; return the result.

    A ``.csv`` is a labelled spec file, scored through the predict path (:func:`run_eval_specs`)."""
    if cfg.data.suffix.lower() == ".csv":
        return run_eval_specs(cfg)
    import time

    from tqdm import tqdm

    from sft.core.contract import render_prompt
    from sft.inference.decoding import DecodeConfig
    from sft.inference.predictor import Predictor

    examples = list(read_examples(cfg.data))[: cfg.limit]
    if not examples:
        raise UserError(f"{cfg.data}: no examples")
    inputs = [PromptInput.parse(ex.input) for ex in examples]
    prompts = [render_prompt(ex.instruction, ex.input) for ex in examples]
    predictor = Predictor.load(cfg.model, DecodeConfig(cfg.max_reason_tokens, cfg.batch_size))
    preds: list[Prediction] = []
    start = time.perf_counter()
    with tqdm(total=len(examples), desc="eval", unit="ex") as bar:
        for i in range(0, len(examples), cfg.batch_size):
            batch = slice(i, i + cfg.batch_size)
            preds += predictor.predict_prompts(prompts[batch], inputs[batch], constrained=cfg.constrained)
            bar.update(len(prompts[batch]))
    elapsed = time.perf_counter() - start
    golds = [ex.answer for ex in examples]
    runs = {"model": compute_metrics(golds, preds)}
    majority = majority_label(read_examples(cfg.train) if cfg.train else examples)
    baselines = baseline_predictions(examples, inputs, majority)
    runs.update({name: compute_metrics(golds, p) for name, p in baselines.items()})
    result = {
        "model": cfg.model,
        "data": str(cfg.data),
        "n": len(examples),
        "constrained": cfg.constrained,
        "majority_label": {"label": majority.value, "from": str(cfg.train or cfg.data)},
        "predictions_per_s": len(examples) / elapsed if elapsed > 0 else 0.0,
        "flag": flag_summary(predictor, preds, [set() for _ in examples],
                             [ex.answer.compliance_flag.value for ex in examples]),
        "runs": runs,
        "predictions": [
            {"id": ex.id, "gold": ex.answer.compliance_flag.value, "valid": p.valid, "raw": p.raw, "error": p.error}
            for ex, p in zip(examples, preds, strict=True)
        ],
    }
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.calibrate:
        result["calibration"] = calibrate(cfg, result, preds)
    write_json_atomic(cfg.out_dir / "eval.json", result)
    write_text_atomic(cfg.out_dir / "report.md", render_report(result))
    plot_confusion(runs["model"]["confusion"], cfg.out_dir / "confusion.png", f"{Path(cfg.model).name}: confusion")
    return result


# ------------------------------------------------------------------------- labelled specs (realistic set)


def _law_named(pred: Prediction, context: Sequence[Any]) -> str | None:
    """The law id an answer names: its cited item's, else the prompt item with its law title; "?" for a title
    the prompt does not hold; None when it names no law."""
    a = pred.answer if pred.valid else None
    if a is None or not (a.law or a.citation):
        return None
    by_citation = {c.citation: c.law_id for c in context}
    by_title = {c.title: c.law_id for c in context}
    return by_citation.get(a.citation or "") or by_title.get(a.law or "") or "?"


def run_eval_specs(cfg: EvalConfig) -> dict[str, Any]:
    """Score ``cfg.model`` on a labelled spec file through the path ``geosft predict`` runs: glossary notes,
    retrieval at eval time, the one prompt builder and budget, constrained decoding, calibration."""
    import time

    from tqdm import tqdm

    from sft.core.glossary import Glossary
    from sft.inference.calibration import calibration_report, reliability_png
    from sft.inference.decoding import DecodeConfig
    from sft.inference.grounding import absent_law_mentions, allowed_names
    from sft.inference.predict import contexts_for, open_feature_retriever
    from sft.inference.predictor import Predictor

    specs = read_gold_specs(cfg.data)[: cfg.limit]
    predictor = Predictor.load(cfg.model, DecodeConfig(cfg.max_reason_tokens, cfg.batch_size))
    glossary = Glossary.load(cfg.glossary) if cfg.glossary else Glossary()
    model_dir = cfg.model if Path(cfg.model).is_dir() else None
    retriever = open_feature_retriever(cfg.retriever, model_dir, cfg.index_dir, cfg.kendra_index_id,
                                       cfg.knowledge_base_id)
    items = []
    for s in specs:
        notes = glossary.notes_for(spec_text(s.feature))
        items.append((s.feature, contexts_for(retriever, s.feature, notes), notes))
    results = []
    start = time.perf_counter()
    with tqdm(total=len(items), desc="eval (specs)", unit="spec") as bar:
        for i in range(0, len(items), cfg.batch_size):
            results += predictor.predict(items[i : i + cfg.batch_size])
            bar.update(len(items[i : i + cfg.batch_size]))
    elapsed = time.perf_counter() - start
    preds = [r.prediction for r in results]
    # Gold for the label metrics: the spec's label, or the prediction itself where the set accepts it.
    golds = [Answer(compliance_flag=p.answer.compliance_flag if p.valid and p.answer
                    and p.answer.compliance_flag.value in s.accepted else s.label) for s, p in zip(specs, preds, strict=True)]
    runs = {"model": compute_metrics(golds, preds)}
    inputs = [PromptInput.build(s.feature, r.context, notes) for s, r, (_, _, notes) in zip(specs, results, items,
                                                                                               strict=True)]
    majority = majority_label(read_examples(cfg.train)) if cfg.train else Counter(s.label for s in specs).most_common(1)[0][0]
    base = baseline_predictions([Example(instruction="", input=pi.render() if pi else "", output=Answer(
        compliance_flag=s.label).to_json()) for s, pi in zip(specs, inputs, strict=True)], inputs, majority)
    runs.update({name: compute_metrics(golds, p) for name, p in base.items()})
    # Law on positives whose law is bundled: the law of the cited item (law ids from the prompt's context).
    law_ok, cite_ok, with_law, absent, rows = 0, 0, 0, 0, []
    for s, r in zip(specs, results, strict=True):
        a = r.prediction.answer
        by_citation = {c.citation: c.law_id for c in r.context}
        law_id = by_citation.get(a.citation) if a and a.citation else None
        if s.label == Label.NEEDS and s.law_ids:
            with_law += 1
            law_ok += law_id in s.law_ids
            cite_ok += citation_matches(a.citation if a else None, s.citations)
        named = absent_law_mentions(a.reason, allowed_names(PromptInput.build(s.feature, r.context), a)) if a else []
        absent += bool(named)
        rows.append({"id": s.feature.id, "category": s.category, "gold": s.label.value,
                     "predicted": a.compliance_flag.value if a else None, "law_id": law_id,
                     "gold_law": "|".join(s.law_ids), "citation": a.citation if a else None,
                     "gold_citation": "|".join(s.citations), "confidence": r.prediction.confidence,
                     "context_ids": [c.id for c in r.context], "prompt_cut": r.cut, "reason": a.reason if a else None,
                     "absent_law_named": named})
    # compute_metrics' law accuracy compares law titles with the gold answer's, and a spec file's gold carries
    # law ids, not titles: every answer that named no law counted as right (the baselines read 100 %). Here, per
    # spec: a positive whose law is bundled must name that law, every other spec must name none.
    base_runs = {"model": preds, **base}
    for name, run_preds in base_runs.items():
        ok = [_law_named(p, r.context) in s.law_ids if s.label == Label.NEEDS and s.law_ids
              else _law_named(p, r.context) is None for s, p, r in zip(specs, run_preds, results, strict=True)]
        runs[name]["law_accuracy"] = sum(ok) / len(ok)
    m = runs["model"]
    m["law_accuracy_on_positives"] = law_ok / with_law if with_law else None
    m["citation_accuracy_on_positives"] = cite_ok / with_law if with_law else None
    m["reasons_naming_absent_law"] = absent
    m["no_law_in_prompt"] = sum(1 for r in results if not r.context)
    m["not_needed_recall"] = m["per_class"][Label.NOT_NEEDED.value]["recall"]
    by_cat: dict[str, list[bool]] = {}
    for s, g, p in zip(specs, golds, preds, strict=True):
        by_cat.setdefault(s.category or "-", []).append(bool(p.answer) and p.answer.compliance_flag == g.compliance_flag)
    m["accuracy_by_category"] = {k: sum(v) / len(v) for k, v in sorted(by_cat.items())}
    calib = calibration_report(preds, [g.compliance_flag.value for g in golds], predictor.calibration)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if calib:
        reliability_png(calib.pop("_conf"), calib.pop("_ok"), cfg.out_dir / "reliability.png",
                        f"{Path(cfg.data).name}: reliability", review_threshold=calib["review_threshold"])
        m["calibration"] = calib
    result = {"model": cfg.model, "data": str(cfg.data), "n": len(specs), "constrained": True,
              "kind": "labelled specs through the predict path",
              "majority_label": {"label": majority.value, "from": str(cfg.train or cfg.data)},
              "predictions_per_s": len(specs) / elapsed if elapsed > 0 else 0.0,
              "flag": flag_summary(predictor, preds, [s.accepted for s in specs], [s.label.value for s in specs]),
              "runs": runs, "predictions": rows}
    write_json_atomic(cfg.out_dir / "eval.json", result)
    extra = ["", "## Realistic-set figures (model)", "",
             f"- law accuracy on positives with a bundled law: {_fmt(m['law_accuracy_on_positives'])}",
             f"- citation accuracy on those: {_fmt(m['citation_accuracy_on_positives'])}",
             f"- 'No Geo-Compliance Needed' recall: {_fmt(m['not_needed_recall'])}",
             f"- reasons naming an absent law: {absent}", f"- prompts with no law: {m['no_law_in_prompt']}",
             "- accuracy by category: " + ", ".join(f"{k} {v:.2f}" for k, v in m["accuracy_by_category"].items())]
    if calib:
        extra += [f"- calibration: T={calib['temperature']:.2f}, ECE {calib['ece']:.3f}, review threshold "
                  f"{calib['review_threshold']:.2f} ({calib['needs_review_rate']:.0%} routed to review; accuracy of "
                  f"the rest {_fmt(calib['accuracy_not_flagged'])})", "", "![reliability](reliability.png)", "",
                  "Accuracy versus coverage (only the most confident share answered; the rest to review):", "",
                  "| coverage | accuracy | confidence at least |", "|---|---|---|",
                  *(f"| {c['coverage']:.0%} | {c['accuracy']:.3f} | {c['threshold']:.3f} |"
                    for c in calib["accuracy_vs_coverage"])]
    write_text_atomic(cfg.out_dir / "report.md", render_report(result) + "\n".join(extra) + "\n")
    plot_confusion(m["confusion"], cfg.out_dir / "confusion.png", f"{Path(cfg.model).name}: confusion (specs)")
    return result


def calibrate(cfg: EvalConfig, result: dict[str, Any], preds: Sequence[Prediction]) -> dict[str, Any]:
    """Fit the temperature and review threshold on this (validation) run and save them with the model."""
    from sft.inference.calibration import Calibration, choose_threshold, fit_temperature

    rows = [(p.label_scores, g) for p, g in zip(preds, [x["gold"] for x in result["predictions"]], strict=True)
            if p.label_scores]
    if len(rows) < 10:
        log.warning("calibration skipped: it needs at least 10 scored examples, got %d (defaults stay)", len(rows))
        return {}
    temp = fit_temperature([r[0] for r in rows], [r[1] for r in rows])
    calib = Calibration(temperature=round(temp, 4), fitted_on=str(cfg.data), n=len(rows))
    conf = [calib.probs(s)[max(s, key=s.get)] for s, _ in rows]
    ok = [max(s, key=s.get) == g for s, g in rows]
    calib.review_threshold = choose_threshold(conf, ok, calib.target_accuracy)
    model_dir = Path(cfg.model) if Path(cfg.model).is_dir() else cfg.out_dir
    path = calib.save(model_dir)
    log.info("calibration: T=%.2f, review threshold %.2f (fitted on %d examples) -> %s", calib.temperature,
             calib.review_threshold, len(rows), path)
    return {"temperature": calib.temperature, "review_threshold": calib.review_threshold, "file": str(path)}
