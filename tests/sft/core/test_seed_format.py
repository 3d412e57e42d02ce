"""The original project's input layout ("Feature Name: ... Law Context (structured JSON): [...]"): parsed
into a structured input so the token budget trims its context instead of dropping the example; checked
through ``geosft check --tokenizer`` and training's data preparation on a generated long-context file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sft.core.budget import DROPPED, TRIMMED, fit_to_budget
from sft.core.contract import PromptInput, parse_example
from sft.core.seed_format import parse_seed_input
from sft.sample_data import write_seed_layout

SEED_INPUT = (
    "Feature Name: Teen curfew\n"
    "Feature Description: Disable push notifications between 22:00 and 06:00\n  for users under 18 in Utah.\n"
    "Source: PRD-1423\n"
    'Law Context (structured JSON): [{"law": "Utah SB 152", "citation": "Utah Code § 13-63-105", "score": 0.2, '
    '"text": "curfew"}, {"law": "Florida HB 3", "citation": "Fla. Stat. § 501.1736(2)", "score": 0.9, '
    '"text": "accounts"}]'
)
MAX_LENGTH = 1024  # the tiny test tokenizer is near byte-level: the generated prompts are 860-4,400 tokens


def test_seed_layout_is_parsed_into_feature_and_ranked_context():
    parsed = parse_seed_input(SEED_INPUT)
    assert parsed.feature == {"name": "Teen curfew", "source": "PRD-1423",
                              "description": "Disable push notifications between 22:00 and 06:00 for users under 18 in Utah."}
    assert [c["citation"] for c in parsed.law_context] == ["Fla. Stat. § 501.1736(2)", "Utah Code § 13-63-105"]
    again = parse_seed_input(parsed.render())  # a trimmed input is written back in the same layout
    assert again.render().startswith("Feature Name: Teen curfew\n") and again.law_context == parsed.law_context
    assert PromptInput.parse(SEED_INPUT) is None  # what made the budget drop these before
    assert parse_seed_input("Feature Name: x\nLaw Context (structured JSON): not json") is None
    assert parse_seed_input('{"feature": {"name": "x"}}') is None


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seed_layout(tmp_path_factory.mktemp("seed") / "seed.jsonl", 200, seed=1)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from sft import models

    return models.load_tokenizer(models.resolve(str(tiny_model_dir)))


def test_long_embedded_context_is_trimmed_not_dropped(seed_file, tokenizer):
    examples = [parse_example(json.loads(line), f"seed.jsonl:{i}")
                for i, line in enumerate(seed_file.read_text().splitlines(), 1)]
    results = [fit_to_budget(ex, tokenizer, MAX_LENGTH) for ex in examples]
    statuses = [r.status for r in results]
    assert statuses.count(TRIMMED) >= 150  # the file is long: without the parser these were all dropped
    assert statuses.count(DROPPED) <= 0.05 * len(examples)
    assert sum(r.feature_cut for r in results) >= 5  # the 30-sentence descriptions, cut at a sentence
    for ex, r in zip(examples, results, strict=True):
        if r.status != TRIMMED:
            continue
        parsed = parse_seed_input(r.example.input)
        assert parsed is not None and r.total_tokens <= MAX_LENGTH
        if ex.answer.citation:  # the cited item is never trimmed away
            assert ex.answer.citation in parsed.context_citations()
        if r.feature_cut:
            assert parsed.feature["description"].endswith(".")
            assert parsed.feature["description"] in parse_seed_input(ex.input).feature["description"]


def test_geosft_check_reports_the_budget_before_training(seed_file, tiny_model_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "sft.cli", "check", str(seed_file), "--tokenizer", str(tiny_model_dir),
         "--max-length", str(MAX_LENGTH)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "budget" in ln)
    fit, trimmed, dropped = (int(line.split(w)[0].split()[-1]) for w in (" fit", " trimmed", " dropped"))
    assert fit + trimmed + dropped == 200 and trimmed >= 150 and dropped <= 10
    assert "feature texts cut at a sentence" in line


def test_training_data_preparation_keeps_the_seed_layout_examples(seed_file, tokenizer):
    from sft.training.data import prepare_split

    split = prepare_split("train", seed_file, tokenizer, MAX_LENGTH)
    b = split.report.as_dict()
    assert b["dropped"] <= 10 and len(split.rows) == b["fit"] + b["trimmed"] >= 190
    assert all(row["prompt"].count("Feature Name:") == 1 for row in split.rows)
