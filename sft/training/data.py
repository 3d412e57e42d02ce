"""Training data: contract JSONL -> prompt/completion pairs that fit the token budget.

The prompt is rendered by the shared contract (``render_prompt``) and the completion is the canonical answer
JSON; TRL appends the tokenizer's EOS to the completion and, because the dataset is in prompt-completion
format, masks every prompt token out of the loss (``completion_only_loss``). The budget (``sft.core.budget``)
makes every example fit ``max_length`` without touching the answer: law context is trimmed, and what cannot
fit is dropped and counted. The counts go to ``budget.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.budget import BudgetReport, fit_to_budget
from sft.core.contract import Example, read_examples, render_completion, render_prompt
from sft.core.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class PreparedSplit:
    name: str
    rows: list[dict[str, str]]  # {"prompt", "completion"}
    examples: list[Example]  # the (possibly trimmed) examples behind the rows
    report: BudgetReport


def to_row(example: Example) -> dict[str, str]:
    return {
        "prompt": render_prompt(example.instruction, example.input),
        "completion": render_completion(example.output),
    }


def prepare_split(name: str, path: str | Path, tokenizer: Any, max_length: int) -> PreparedSplit:
    """Read, validate and budget one split. Bad lines are errors (file:line, field); nothing is guessed."""
    report = BudgetReport(max_length=max_length)
    rows, kept = [], []
    for example in read_examples(path):
        result = fit_to_budget(example, tokenizer, max_length)
        report.add(result)
        if result.example is not None:
            kept.append(result.example)
            rows.append(to_row(result.example))
    if not rows and name == "train":
        total = sum(report.counts.values())
        raise UserError(
            f"{path}: no usable training examples ({total} read, all dropped by the {max_length}-token budget)"
            if total
            else f"{path}: no examples"
        )
    counts = report.as_dict()
    log.info(
        "%s: %d examples fit, %d trimmed (%d law-context items removed), %d dropped %s",
        name, counts["fit"], counts["trimmed"], counts["context_items_dropped"], counts["dropped"],
        counts["drop_reasons"] or "",
    )
    return PreparedSplit(name, rows, kept, report)


def _indices_by_label(split: PreparedSplit) -> dict[str, list[int]]:
    """Each label's example positions in ``split``, in order."""
    from collections import defaultdict

    by_label: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(split.examples):
        by_label[example.answer.compliance_flag.value].append(i)
    return by_label


def balance_labels(split: PreparedSplit, seed: int) -> PreparedSplit:
    """Oversample: every label as many times as the most common one (whole copies first, then a seeded sample).

    A small model trained on a skewed split learns to answer the majority label; balancing the label prior is
    the cheapest fix. Validation is never balanced: its metrics must describe the real distribution.
    """
    import random

    by_label = _indices_by_label(split)
    target = max(len(v) for v in by_label.values())
    rng = random.Random(seed)
    order: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        order += idx * (target // len(idx)) + rng.sample(idx, target % len(idx))
    rng.shuffle(order)
    log.info("%s: labels balanced to %d examples each (%s before)", split.name, target,
             ", ".join(f"{k} {len(v)}" for k, v in sorted(by_label.items())))
    return PreparedSplit(split.name, [split.rows[i] for i in order], [split.examples[i] for i in order], split.report)


def label_sample(split: PreparedSplit, n: int, seed: int) -> PreparedSplit:
    """``n`` of the split's examples (all when ``n`` is 0 or covers it), each label's share kept (largest
    remainders), chosen by ``seed`` and in the split's order, so the same config always scores the same rows.

    For the loss the Trainer computes at each evaluation (and picks the best checkpoint by): on 2 CPU cores the
    demo's 216 validation prompts take ~125 s per evaluation, 48 take ~28 s; the loss only has to rank a run's
    few checkpoints, and the full split is still scored end to end by ``geosft eval``.
    """
    import random

    if not n or n >= len(split.rows):
        return split
    by_label = _indices_by_label(split)
    exact = {label: n * len(idx) / len(split.rows) for label, idx in by_label.items()}
    take = {label: int(q) for label, q in exact.items()}
    for label in sorted(exact, key=lambda k: (take[k] - exact[k], k))[: n - sum(take.values())]:
        take[label] += 1
    rng = random.Random(seed)
    keep = sorted(i for label, idx in sorted(by_label.items()) for i in rng.sample(idx, take[label]))
    return PreparedSplit(split.name, [split.rows[i] for i in keep], [split.examples[i] for i in keep], split.report)


def to_dataset(split: PreparedSplit) -> Any:
    from datasets import Dataset

    return Dataset.from_list(split.rows)
