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


def test_usable_memory_fp32_embeddings_and_checkpointing_flag():
    """Against what CUDA can allocate (A10G 22.5 GiB, T4 15 GiB); QLoRA embeddings counted in fp32 (peft casts
    them); gradient_checkpointing=false counted as such (25.9 GiB for the 7B at batch 4 x 512: no fit)."""
    arch = load_arch("deepseek-ai/deepseek-llm-7b-base")
    g5, t4 = estimate(arch, "ml.g5.2xlarge"), estimate(arch, "ml.g4dn.xlarge", quantize="4bit")
    assert (g5.usable_gib, t4.usable_gib) == (22.5, 15.0)
    assert t4.weights - weight_bytes(arch, "4bit") == arch.embedding_params * 2  # +1.5 GiB for the 7B
    assert 1.4 * GIB < arch.embedding_params * 2 < 1.6 * GIB
    off = estimate(arch, "ml.g5.2xlarge", checkpointing=False)
    assert abs(off.total / GIB - 25.9) < 0.1 and not off.fits and g5.fits
    # Between nominal and usable: fits on paper, not on the card.
    between = estimate(arch, "ml.g5.2xlarge", batch_size=11)
    assert 22.5 < between.total / GIB < 24 and not between.fits


def test_host_memory_for_the_merge_and_what_to_pick(tiny_model_dir):
    from sft.sagemaker.preflight import check_merge_host, merge_instance

    arch = load_arch("deepseek-ai/deepseek-llm-7b-base")
    assert not estimate(arch, "ml.g4dn.xlarge", quantize="4bit", merge=True).host_fits  # 16 GiB host
    assert estimate(arch, "ml.g4dn.xlarge", quantize="4bit").host_fits  # no merge asked
    assert estimate(arch, "ml.g5.2xlarge", merge=True).host_fits  # 32 GiB
    assert merge_instance(arch, "ml.g4dn.xlarge") == "ml.g4dn.2xlarge"
    assert merge_instance(arch, "ml.g5.xlarge") == "ml.g5.2xlarge"
    with pytest.raises(UserError, match=r"merge: needs ~16\.9 GiB .* ml\.g4dn\.xlarge has 16 GiB: set merge=false "
                                        r".* or train on ml\.g4dn\.2xlarge \(32 GiB\)"):
        check_merge_host(arch, 16, "ml.g4dn.xlarge", "ml.g4dn.xlarge")
    check_merge_host(load_arch(str(tiny_model_dir)), 8, "this host")  # a tiny model merges anywhere


def test_cli_checks_host_memory_and_checkpointing():
    geosft = Path(sys.executable).parent / "geosft"
    run = [str(geosft), "preflight", "--instance", "ml.g4dn.xlarge", "--quantize", "4bit", "--merge"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "merge (host)" in proc.stdout and "ml.g4dn.2xlarge" in proc.stdout
    proc = subprocess.run([str(geosft), "preflight", "--instance", "ml.g5.2xlarge", "--no-gradient-checkpointing"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "checkpointing OFF" in proc.stdout and "gradient_checkpointing=true" in proc.stdout


def test_container_refuses_a_merge_the_host_cannot_hold(tmp_path, tiny_model_dir):
    """Before training starts, not after hours of it."""
    from sft.sagemaker.training_job import check_merge_fits, host_memory_gib
    from sft.training.config import TrainConfig

    seven_b = TrainConfig(model="deepseek-ai/deepseek-llm-7b-base", merge=True)
    with pytest.raises(UserError, match="set merge=false"):
        check_merge_fits(seven_b, 15.6)
    check_merge_fits(seven_b.replace(merge=False), 15.6)
    check_merge_fits(seven_b, 31.0)
    assert host_memory_gib() > 0.5
