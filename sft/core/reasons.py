"""Reasons for "No" and "Not Enough Information" answers: chosen among the training data's own, not written.

A "No" or NEI answer's reason in training data is one of a few sentences ("The geofence exists for a business
experiment, ...", "The spec limits the feature to a region without saying why, ..."); a small model writing it
token by token after the main job's steps splices two of them into one that contradicts its own flag (the
demo model, 2026-12-03: "No" with "The feature ships the same way in every market, so its legal relevance
cannot be judged"). So training saves those sentences per label (``reasons.json``: the ones seen at least
``MIN_COUNT`` times that name no law), and constrained decoding scores each of its flag's sentences as the
continuation of the answer and keeps the likeliest (mean log-probability per token, so a long sentence is not
penalised for its length). The reason is still the model's choice, read from the prompt; it is always a whole
sentence training taught for that label. A "Needs" reason names its law and citation and stays generated
(grounded by :mod:`sft.inference.grounding`). A label with no saved sentence is generated as before.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from sft.core.contract import Answer, Label
from sft.core.files import write_json_atomic
from sft.core.lawnames import LAW_MENTION

FILE = "reasons.json"
MIN_COUNT = 3
CHOSEN_LABELS = (Label.NOT_NEEDED, Label.NEI)


def collect(answers: Iterable[Answer], min_count: int = MIN_COUNT) -> dict[str, list[str]]:
    """Per "No"/NEI label, the reasons given at least ``min_count`` times that name no law, most frequent first.
    (A reason naming a law, "The law context given (EU Digital Markets Act) does not cover ...", is specific to
    its prompt: it stays generated, and grounded.)"""
    counts: dict[str, Counter[str]] = {label.value: Counter() for label in CHOSEN_LABELS}
    for a in answers:
        if a.compliance_flag in CHOSEN_LABELS and a.reason and not LAW_MENTION.search(a.reason):
            counts[a.compliance_flag.value][a.reason.strip()] += 1
    return {label: [r for r, n in c.most_common() if n >= min_count] for label, c in counts.items()}


def save(model_dir: str | Path, bank: dict[str, list[str]]) -> Path:
    path = Path(model_dir) / FILE
    write_json_atomic(path, bank)
    return path


def load(model_dir: str | Path) -> dict[str, list[str]] | None:
    """The bank saved in ``model_dir`` (or its parent: a ``merged/`` dir), or None."""
    for d in (Path(model_dir), Path(model_dir).parent):
        if (d / FILE).is_file():
            data = json.loads((d / FILE).read_text())
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise ValueError(f"{d / FILE}: expected {{label: [reasons]}}")
            known = {label.value for label in CHOSEN_LABELS}
            return {k: [str(r) for r in v] for k, v in data.items() if k in known}
    return None
