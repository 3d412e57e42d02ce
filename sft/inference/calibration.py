"""Confidence: the label distribution constrained decoding computes, calibrated, and review routing.

Constrained decoding scores the three label continuations (their log-likelihoods). A softmax over them is the
model's label distribution; a small fine-tuned model is over-confident, so it is tempered by one scalar T fitted
on the validation split (temperature scaling: minimise the negative log-likelihood of the gold labels; it
changes no answer, only how sure it says it is). The chosen label's probability is ``confidence``; an answer
under ``review_threshold`` is routed to review (``needs_review``). The threshold is chosen on validation: the
lowest confidence at which the answers kept reach ``target_accuracy``.

Saved with the model as ``calibration.json``; :class:`sft.inference.predictor.Predictor` applies it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sft.core.contract import Prediction
from sft.core.files import save_figure_atomic, write_json_atomic

FILE = "calibration.json"
DEFAULT_THRESHOLD = 0.5  # without calibration data: below an even chance between the best and the rest
TARGET_ACCURACY = 0.9


@dataclass
class Calibration:
    temperature: float = 1.0
    review_threshold: float = DEFAULT_THRESHOLD
    target_accuracy: float = TARGET_ACCURACY
    fitted_on: str | None = None
    n: int = 0

    @classmethod
    def load(cls, model_dir: str | Path) -> Calibration | None:
        for cand in (Path(model_dir) / FILE, Path(model_dir).parent / FILE):
            if cand.is_file():
                data = json.loads(cand.read_text())
                return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        return None

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / FILE
        write_json_atomic(path, asdict(self))
        return path

    def probs(self, scores: dict[str, float]) -> dict[str, float]:
        return softmax(scores, self.temperature)

    def apply(self, pred: Prediction) -> Prediction:
        """Set ``confidence`` and ``needs_review`` on a prediction (invalid answers always need review)."""
        if not pred.valid or pred.answer is None or not pred.label_scores:
            pred.confidence, pred.needs_review = None, True
            return pred
        pred.confidence = round(self.probs(pred.label_scores)[pred.answer.compliance_flag.value], 4)
        pred.needs_review = pred.confidence < self.review_threshold
        return pred


def softmax(scores: dict[str, float], temperature: float = 1.0) -> dict[str, float]:
    top = max(scores.values())
    exp = {k: math.exp((v - top) / temperature) for k, v in scores.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


def nll(rows: Sequence[dict[str, float]], gold: Sequence[str], temperature: float, smoothing: float = 0.0) -> float:
    """Mean cross-entropy of the tempered distributions against the gold labels, each given ``1 - smoothing``
    and the other labels ``smoothing`` between them."""
    total = 0.0
    for s, g in zip(rows, gold, strict=True):
        p = softmax(s, temperature)
        rest = smoothing / max(1, len(p) - 1)
        total -= sum((1 - smoothing if k == g else rest) * math.log(max(v, 1e-12)) for k, v in p.items())
    return total / len(gold)


def fit_temperature(rows: Sequence[dict[str, float]], gold: Sequence[str]) -> float:
    """The T in [0.05, 50] minimising NLL: a log-spaced grid, then a finer grid around the best (1-D and smooth,
    so this is exact to ~1 %, with no optimiser dependency).

    The gold labels are Platt's smoothed targets (Platt 1999: 1/(n+2) of the mass on the other labels, for n
    examples): with plain NLL a split the model gets all right has its minimum at T -> 0, every answer then
    says confidence 1.0 and review routing has nothing to go on. That happened in the main job on 2026-12-05:
    the 64 validation examples all right, T = 0.04, review threshold 1.00, and the realistic set's 9 errors of
    146 all at "1.0". The smoothing says what n right answers can show: no more than ~(n+1)/(n+2) accuracy."""
    eps = 1 / (len(gold) + 2)
    grid = [0.05 * (1000 ** (i / 120)) for i in range(121)]
    best = min(grid, key=lambda t: nll(rows, gold, t, eps))
    fine = [best * (0.9 + 0.2 * i / 40) for i in range(41)]
    return min(fine, key=lambda t: nll(rows, gold, t, eps))


def choose_threshold(confidences: Sequence[float], correct: Sequence[bool], target: float = TARGET_ACCURACY) -> float:
    """The lowest threshold whose kept answers (confidence >= it) are at least ``target`` accurate; when none
    reaches it, the threshold with the best kept accuracy that still answers at least a fifth of the inputs."""
    pairs = sorted(zip(confidences, correct, strict=True), reverse=True)
    curve, hits = [], 0  # (threshold, accuracy of the answers at or above it, how many)
    for i, (c, ok) in enumerate(pairs, start=1):
        hits += ok
        curve.append((c, hits / i, i))
    reached = [c for c, acc, _ in curve if acc >= target]
    if reached:
        return round(min(reached), 4)
    floor = max(1, len(pairs) // 5)
    return round(max((x for x in curve if x[2] >= floor), key=lambda x: x[1])[0], 4)


def ece(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width bin, weighted by the bin's share."""
    n = len(confidences)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if lo < c <= hi or (b == 0 and c == 0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            conf = sum(confidences[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    return total


def coverage_curve(confidences: Sequence[float], correct: Sequence[bool]) -> list[dict[str, float]]:
    """Accuracy of the answers kept when only the most confident ``coverage`` share is answered."""
    pairs = sorted(zip(confidences, correct, strict=True), reverse=True)
    out = []
    for cov in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        k = max(1, round(cov * len(pairs)))
        out.append({"coverage": cov, "accuracy": sum(ok for _, ok in pairs[:k]) / k, "threshold": pairs[k - 1][0]})
    return out


def reliability_png(confidences: Sequence[float], correct: Sequence[bool], path: Path, title: str,
                    bins: int = 10, review_threshold: float | None = None) -> None:
    """Two panels: reliability (accuracy per confidence bin, the count beside each point) and accuracy versus
    coverage (answer only the most confident share, send the rest to a person), with the review threshold's
    operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys, ns = [], [], []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if lo < c <= hi]
        if idx:
            xs.append(sum(confidences[i] for i in idx) / len(idx))
            ys.append(sum(correct[i] for i in idx) / len(idx))
            ns.append(len(idx))
    fig, (ax, cov_ax) = plt.subplots(1, 2, figsize=(9, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(xs, ys, "o-", label="model")
    for x, y, n in zip(xs, ys, ns, strict=True):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\nECE {ece(confidences, correct, bins):.3f}", fontsize=9)
    ax.legend(fontsize=8)

    curve = coverage_curve(confidences, correct)
    cov_ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], "o-", label="most confident answered")
    cov_ax.axhline(sum(correct) / len(correct), ls="--", color="grey", label="all answered")
    if review_threshold is not None:
        kept = [ok for c, ok in zip(confidences, correct, strict=True) if c >= review_threshold]
        if kept:
            cov_ax.plot([len(kept) / len(correct)], [sum(kept) / len(kept)], "s", color="C3", markersize=8,
                        label=f"review threshold {review_threshold:.2f}")
    cov_ax.set_xlabel("coverage (share answered without review)")
    cov_ax.set_ylabel("accuracy of the answered")
    cov_ax.set_xlim(0, 1.02)
    cov_ax.set_ylim(max(0.0, min(c["accuracy"] for c in curve) - 0.1), 1.01)
    cov_ax.set_title("accuracy versus coverage", fontsize=9)
    cov_ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)


def calibration_report(preds: Sequence[Prediction], gold: Sequence[str], calib: Calibration) -> dict[str, Any]:
    rows = [(p, g) for p, g in zip(preds, gold, strict=True) if p.valid and p.answer and p.label_scores]
    if not rows:
        return {}
    conf = [calib.probs(p.label_scores)[p.answer.compliance_flag.value] for p, _ in rows]
    ok = [p.answer.compliance_flag.value == g for p, g in rows]
    kept = [o for c, o in zip(conf, ok, strict=True) if c >= calib.review_threshold]
    return {
        "temperature": calib.temperature,
        "review_threshold": calib.review_threshold,
        "ece": ece(conf, ok),
        "needs_review_rate": 1 - len(kept) / len(rows),
        "accuracy_not_flagged": sum(kept) / len(kept) if kept else None,
        "accuracy_vs_coverage": coverage_curve(conf, ok),
        "_conf": conf,
        "_ok": ok,
    }


def apply_all(preds: Sequence[Any], calib: Calibration | None) -> None:
    for p in preds:
        (calib or Calibration()).apply(p)
