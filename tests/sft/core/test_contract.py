from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft.core.contract import (
    LABELS,
    Answer,
    ContractError,
    Example,
    Feature,
    Label,
    LawContext,
    PromptInput,
    normalize_label,
    parse_output,
    read_examples,
    render_prompt,
)

VARIANTS = {
    "Needs Geo-Compliance": Label.NEEDS,
    "needs geo-compliance": Label.NEEDS,
    "  NEEDS GEO COMPLIANCE ": Label.NEEDS,
    "Needs_Geo_Compliance": Label.NEEDS,
    "yes": Label.NEEDS,
    "Yes": Label.NEEDS,
    "TRUE": Label.NEEDS,
    True: Label.NEEDS,
    "No Geo-Compliance Needed": Label.NOT_NEEDED,
    "No Geo-Compliance Required": Label.NOT_NEEDED,
    "No Geo-Compliance Impact": Label.NOT_NEEDED,
    "no geo-compliance required.": Label.NOT_NEEDED,
    "no": Label.NOT_NEEDED,
    "False": Label.NOT_NEEDED,
    False: Label.NOT_NEEDED,
    "Not Enough Information": Label.NEI,
    "not enough information": Label.NEI,
    "Needs Human Review": Label.NEI,
    "needs human review": Label.NEI,
}


@pytest.mark.parametrize(("raw", "expected"), list(VARIANTS.items()))
def test_label_variants_normalize(raw, expected):
    assert normalize_label(raw) is expected


@pytest.mark.parametrize("raw", ["Maybe", "", "Needs Geo", 3, None])
def test_unknown_label_is_rejected_with_location(raw):
    with pytest.raises(ContractError) as err:
        normalize_label(raw, where="data/train.jsonl:7")
    assert str(err.value).startswith("data/train.jsonl:7: unknown label")
    assert repr(raw) in str(err.value)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_seed_shaped_file_without_citation(tmp_path):
    seed = [
        {
            "instruction": "Classify the feature.",
            "input": "Feature: Curfew login blocker\nDescription: blocks minors in Utah at night",
            "output": json.dumps(
                {"compliance_flag": "Needs Geo-Compliance", "law": "Utah Social Media Regulation Act", "reason": "x"}
            ),
        },
        {
            "instruction": "Classify the feature.",
            "input": "Feature: Dark mode",
            "output": json.dumps({"compliance_flag": "No Geo-Compliance Required", "law": "", "reason": "y"}),
        },
        {
            "instruction": "Classify the feature.",
            "input": "Feature: Mystery",
            "output": json.dumps({"compliance_flag": "Needs Human Review", "law": None, "reason": "z"}),
        },
    ]
    path = _write(tmp_path, [json.dumps(x) for x in seed] + [""])
    examples = list(read_examples(path))
    assert [e.answer.compliance_flag for e in examples] == [Label.NEEDS, Label.NOT_NEEDED, Label.NEI]
    assert examples[0].answer.citation is None
    assert examples[0].answer.law == "Utah Social Media Regulation Act"
    assert examples[1].answer.law is None  # "" means no law
    # The stored output is canonical: labels rewritten, key order fixed.
    assert json.loads(examples[1].output)["compliance_flag"] == "No Geo-Compliance Needed"
    assert list(json.loads(examples[0].output)) == ["compliance_flag", "law", "citation", "reason"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"instruction": "i", "input": "x"}', "field 'output': missing"),
        ('{"instruction": "i", "input": "x", "output": "not json"}', "field 'output': not a JSON object"),
        ('{"instruction": "i", "input": "x", "output": "{\\"law\\": null}"}', "output.compliance_flag': missing"),
        (
            '{"instruction": "i", "input": "x", "output": "{\\"compliance_flag\\": \\"Maybe\\"}"}',
            "field 'output.compliance_flag': unknown label 'Maybe'",
        ),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    good = json.dumps({"instruction": "i", "input": "x", "output": '{"compliance_flag": "yes", "reason": "r"}'})
    path = _write(tmp_path, [good, line])
    with pytest.raises(ContractError) as err:
        list(read_examples(path))
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_on_error_skips_bad_lines_and_keeps_good_ones(tmp_path):
    good = json.dumps({"instruction": "i", "input": "x", "output": '{"compliance_flag": "no", "reason": "r"}'})
    path = _write(tmp_path, [good, "{oops", good])
    errors: list[ContractError] = []
    assert len(list(read_examples(path, on_error=errors.append))) == 2
    assert len(errors) == 1 and str(errors[0]).startswith(f"{path}:2:")


def _context() -> LawContext:
    return LawContext(
        id="us_ca_sb976#27002-a",
        law_id="us_ca_sb976",
        title="California SB 976",
        citation="Cal. Health & Saf. Code § 27002(a)",
        section="27002",
        jurisdiction="US-CA",
        date="2024-09-20",
        uri="https://leginfo.legislature.ca.gov/",
        page=3,
        source="CA_SB976_2024_leginfo_print.pdf",
        snippet="it shall be unlawful for the operator ... between the hours of 12 a.m. and 6 a.m.",
        score=12.5,
    )


def test_prompt_input_roundtrips_and_renders_template():
    feature = Feature(name="Night-time notification pause", description="Mute PF pushes for CA minors 0-6am")
    pi = PromptInput.build(feature, [_context()], {"PF": "Personalized feed"})
    assert PromptInput.parse(pi.render()) == pi
    prompt = render_prompt("Decide.", pi.render())
    assert prompt == f"### Instruction:\nDecide.\n\n{pi.render()}\n\n### Response:\n"
    assert PromptInput.parse("Feature: free text") is None


def test_example_build_and_answer_json_order():
    ans = Answer(compliance_flag="Needs Geo-Compliance", law="California SB 976", citation=_context().citation, reason="r")
    ex = Example.build(PromptInput.build(Feature(name="n", description="d"), [_context()]), ans, group="g1")
    assert ex.answer == ans
    assert json.loads(ex.to_json())["group"] == "g1"


def test_parse_output_valid_and_grounded():
    pi = PromptInput.build(Feature(name="n", description="d"), [_context()])
    text = 'Sure! {"compliance_flag": "Needs Geo-Compliance", "law": "California SB 976", "citation": "Cal. Health & Saf. Code § 27002(a)", "reason": "curfew {x}"} trailing'
    pred = parse_output(text, pi)
    assert pred.valid and pred.answer.compliance_flag is Label.NEEDS
    assert pred.answer.reason == "curfew {x}"
    assert pred.grounded is True
    ungrounded = parse_output('{"compliance_flag": "yes", "citation": "GDPR Art. 8", "reason": ""}', pi)
    assert ungrounded.valid and ungrounded.grounded is False


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("No Geo-Compliance Needed", "no JSON object"),
        ('{"compliance_flag": "Needs Geo-Compliance", "reason": "unterminated}', "no JSON object"),
        ('{"law": "GDPR"}', "missing field 'compliance_flag'"),
        ('{"compliance_flag": "Probably"}', "unknown label"),
        ("{'compliance_flag': 'yes'}", "invalid JSON"),
    ],
)
def test_parse_output_invalid_never_guesses(text, error):
    pred = parse_output(text)
    assert not pred.valid and pred.answer is None
    assert error in pred.error


def test_labels_are_exactly_three():
    assert [x.value for x in LABELS] == ["Needs Geo-Compliance", "No Geo-Compliance Needed", "Not Enough Information"]
