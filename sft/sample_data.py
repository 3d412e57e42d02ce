"""Synthetic contract examples of varied length, for the training tests and the throughput benchmark.

Deterministic for a seed; every label occurs; law context sizes vary like retrieved context does (1-4 items
of 10-120 words), so padding to a fixed length wastes what it wastes on real data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from sft.core.contract import LABELS, Answer, Example, Feature, Label, LawContext, PromptInput

FEATURES = [
    ("Teen curfew", "Disable push notifications between 22:00 and 06:00 for users under 18 in Florida."),
    ("Ad targeting switch", "Stop personalised ads for minors across the EU."),
    ("Dark mode", "A darker colour theme for the video player."),
    ("Age gate", "Ask new users in Utah for a verified age before account creation."),
    ("Creator payouts", "Weekly payouts for creators, worldwide."),
]


def make_examples(n: int, *, seed: int = 0, min_words: int = 10, max_words: int = 120) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, desc = FEATURES[i % len(FEATURES)]
        ctx = [
            LawContext(
                id=f"law{j}#{i}", law_id=f"law{j}", title=f"Law {j}", citation=f"Law {j} § {i % 7}",
                jurisdiction=rng.choice(["EU", "US-FL", "US-UT", "US-CA"]),
                snippet=" ".join(rng.choice(["minor", "platform", "shall", "notify", "account", "data", "user"])
                                 for _ in range(rng.randint(min_words, max_words))),
            )
            for j in range(rng.randint(1, 4))
        ]
        label = LABELS[i % len(LABELS)]
        cited = ctx[0] if label == Label.NEEDS else None
        answer = Answer(
            compliance_flag=label,
            law=cited.title if cited else None,
            citation=cited.citation if cited else None,
            reason=f"{name} {'is' if cited else 'is not'} tied to a regional obligation.",
        )
        out.append(Example.build(PromptInput.build(Feature(name=name, description=desc), ctx), answer, id=f"ex{i}"))
    return out


def write_examples(path: str | Path, n: int, *, seed: int = 0, **kw: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(ex.to_json() + "\n" for ex in make_examples(n, seed=seed, **kw)))
    return path


SEED_INSTRUCTION = ("Analyze the feature and determine whether it needs geo-specific compliance logic. Answer with "
                    "JSON: compliance_flag, law, citation, reason.")
_LAW_WORDS = ("the provider of an online platform shall ensure that a minor account holder is not shown "
              "advertising based on profiling and shall verify the age of each user before an account is "
              "created and shall obtain the consent of a parent or guardian for a user under sixteen").split()


def make_seed_layout(
    n: int, *, seed: int = 0, items: tuple[int, int] = (3, 9), words: tuple[int, int] = (40, 140),
    long_feature_every: int = 25,
) -> list[dict[str, str]]:
    """Lines in the original SageMaker project's layout: ``input`` is "Feature Name: ... Feature
    Description: ... Source: ... Law Context (structured JSON): [...]" with long embedded context (3-9 items
    of 40-140 words), the cited item anywhere in the list; every ``long_feature_every``-th feature has a
    30-sentence description (what a pasted PRD looks like)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, desc = FEATURES[i % len(FEATURES)]
        if long_feature_every and i % long_feature_every == long_feature_every - 1:
            desc = " ".join(f"Requirement {k}: {desc}" for k in range(30))
        context = [
            {"law": f"Law {j}", "citation": f"Law {j} § {i % 7}.{j}", "jurisdiction": rng.choice(["EU", "US-FL", "US-UT"]),
             "text": " ".join(rng.choice(_LAW_WORDS) for _ in range(rng.randint(*words)))}
            for j in range(rng.randint(*items))
        ]
        label = LABELS[i % len(LABELS)]
        cited = rng.choice(context) if label == Label.NEEDS else None
        answer = Answer(compliance_flag=label, law=cited["law"] if cited else None,
                        citation=cited["citation"] if cited else None,
                        reason=f"{name} {'is' if cited else 'is not'} tied to a regional obligation.")
        text = (f"Feature Name: {name}\nFeature Description: {desc}\nSource: PRD-{1000 + i}\n"
                f"Law Context (structured JSON): {json.dumps(context)}")
        rows.append({"instruction": SEED_INSTRUCTION, "input": text, "output": answer.to_json()})
    return rows


def write_seed_layout(path: str | Path, n: int, *, seed: int = 0, **kw: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in make_seed_layout(n, seed=seed, **kw)))
    return path
