"""The two console scripts: fast help (no torch import), one-line user errors, byte-identical prompts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sft.core.contract import Answer, Example, Feature, LawContext, PromptInput, read_examples, render_prompt


def script(prog: str) -> str:
    """The console script installed beside this interpreter (the venv need not be activated)."""
    return shutil.which(prog, path=str(Path(sys.executable).parent)) or prog


PROBE = (
    "import sys; sys.argv=[{prog!r}, '--help']\n"
    "from {module} import main\n"
    "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
    "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'fitz', 'pymupdf', 'bm25s', 'boto3', 'sagemaker') if m in sys.modules)\n"
    "print('HEAVY=' + ','.join(heavy), 'CODE=' + str(code))\n"
)


@pytest.mark.parametrize(("prog", "module"), [("geoprep", "data_prep.cli"), ("geosft", "sft.cli")])
def test_help_does_not_import_heavy_packages(prog, module):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(prog=prog, module=module)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and prog in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY= CODE=0"


@pytest.mark.parametrize("prog", ["geoprep", "geosft"])
def test_console_scripts_are_installed(prog):
    proc = subprocess.run([script(prog), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Commands" in proc.stdout


def _example_file(tmp_path):
    ctx = LawContext(
        id="eu_dsa#art28-1", law_id="eu_dsa", title="EU Digital Services Act", citation="DSA Art. 28(1)",
        jurisdiction="EU", snippet="Providers of online platforms accessible to minors shall put in place …",
    )
    feature = Feature(name="Teen-safe PF", description="Default-off PF for EU users under 18 — ASL gated, ünïcode")
    ex = Example.build(
        PromptInput.build(feature, [ctx], {"PF": "Personalized feed"}),
        Answer(compliance_flag="Needs Geo-Compliance", law=ctx.title, citation=ctx.citation, reason="minors"),
    )
    path = tmp_path / "train.jsonl"
    path.write_text(ex.to_json() + "\n", encoding="utf-8")
    return path


def test_geosft_prompt_is_byte_identical_to_contract_rendering(tmp_path):
    path = _example_file(tmp_path)
    ex = next(read_examples(path))
    proc = subprocess.run([script("geosft"), "prompt", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render_prompt(ex.instruction, ex.input).encode("utf-8")


def test_geosft_check_reports_bad_lines_without_traceback(tmp_path):
    path = _example_file(tmp_path)
    with path.open("a") as fh:
        fh.write(json.dumps({"instruction": "i", "input": "x", "output": '{"compliance_flag": "Perhaps"}'}) + "\n")
    proc = subprocess.run([script("geosft"), "check", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{path}:2: field 'output.compliance_flag': unknown label 'Perhaps'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "geosft: error: 1 bad line(s)"
