"""geosft preflight: the estimate matches a public measurement, and the verdict/advice follow from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sft.core.errors import UserError
from sft.sagemaker.preflight import GIB, estimate, load_arch, weight_bytes


def test_qlora_weights_match_public_measurement():
    # Qwen2.5-7B loaded in nf4 + double quant: 5.44 GB measured (dev.to/sumanpro, cited in the README).
    est = weight_bytes(load_arch("Qwen/Qwen2.5-7B"), "4bit") / 1e9
    assert abs(est - 5.44) / 5.44 < 0.03, est


def test_verdicts_and_knobs(tiny_model_dir):
    arch = load_arch("deepseek-ai/deepseek-llm-7b-base")
    assert 6.5e9 < arch.linear_params + arch.embedding_params < 7.2e9  # it is a 7B model
    assert estimate(arch, "ml.g5.2xlarge").fits
    assert not estimate(arch, "ml.g4dn.xlarge").fits  # 16 GiB T4: bf16 weights alone are ~13 GiB
    assert estimate(arch, "ml.g4dn.xlarge", quantize="4bit").fits
    big = estimate(arch, "ml.g5.2xlarge", batch_size=16, max_length=2048, checkpointing=False)
    assert not big.fits and big.activations > 20 * GIB
    assert estimate(arch, "ml.g5.2xlarge", batch_size=8).logits == 2 * estimate(arch, "ml.g5.2xlarge").logits
    assert load_arch(str(tiny_model_dir)).hidden == 16  # a local directory is read from its config.json
    with pytest.raises(UserError, match="unknown instance"):
        estimate(arch, "ml.g5.huge")


def test_cli_says_what_to_change():
    geosft = Path(sys.executable).parent / "geosft"
    proc = subprocess.run([str(geosft), "preflight", "--instance", "ml.g4dn.xlarge"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "DOES NOT FIT" in proc.stdout and "--quantize 4bit" in proc.stdout
    proc = subprocess.run([str(geosft), "preflight", "--instance", "ml.g4dn.xlarge", "--quantize", "4bit"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "fits" in proc.stdout
