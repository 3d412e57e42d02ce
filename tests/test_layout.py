"""The package layout holds: every module imports, and the arrows between rooms run one way.

- ``sft.core`` (the contract and what prep and inference share) imports nothing of ours outside itself;
- ``data_prep`` imports only ``sft.core`` and ``sft.models`` (a tokenizer) from ``sft``;
- inference never reaches into prep.
Imports are read from the source (also the ones inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sft", "data_prep")


def _modules() -> list[str]:
    out = []
    for pkg in PACKAGES:
        out.append(pkg)
        for info in pkgutil.walk_packages([str(REPO / pkg)], prefix=f"{pkg}."):
            out.append(info.name)
    return sorted(out)


def _source(module: str) -> Path:
    path = REPO / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in its source."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # "from sft import models"
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _inside(module: str, *rooms: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in rooms)


# Each rule: (which modules it governs, which of their imports break it).
RULES = {
    "core imports nothing of ours outside the core": (
        lambda m: _inside(m, "sft.core"), lambda i: not _inside(i, "sft.core") and i != "sft"),
    "prep imports only sft.core and sft.models from sft": (
        lambda m: _inside(m, "data_prep"),
        lambda i: _inside(i, "sft") and i != "sft" and not _inside(i, "sft.core", "sft.models")),
    # The main job runs geoprep's pipeline as its first step; no other sft module reaches into prep.
    "sft never reaches into prep (but the main job)": (
        lambda m: _inside(m, "sft") and m != "sft.mainjob", lambda i: _inside(i, "data_prep")),
    # The review app is its own room: it uses the contract and inference's metrics, and only the CLI starts it.
    "review imports only sft.core and sft.inference": (
        lambda m: _inside(m, "sft.review"),
        lambda i: _inside(i, "sft", "data_prep") and i != "sft"
        and not _inside(i, "sft.core", "sft.inference", "sft.review")),
    "only the CLI imports the review app": (
        lambda m: not _inside(m, "sft.review") and m != "sft.cli", lambda i: _inside(i, "sft.review")),
}


def violations(rule: str, imports_of: dict[str, set[str]]) -> dict[str, list[str]]:
    governs, breaks = RULES[rule]
    found = {m: sorted(i for i in imports if breaks(i)) for m, imports in imports_of.items() if governs(m)}
    return {m: v for m, v in found.items() if v}


def test_every_module_imports():
    failures = []
    for name in _modules():
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the point is to list every broken module
            failures.append(f"{name}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_arrows_between_rooms_run_one_way(rule):
    assert violations(rule, {m: _imports(m) for m in _modules()}) == {}


@pytest.mark.parametrize(("module", "imported", "rule"), [
    ("sft.core.retrieval", "data_prep.registry", "core imports nothing of ours outside the core"),
    ("sft.core.budget", "sft.training.data", "core imports nothing of ours outside the core"),
    ("data_prep.build", "sft.inference.predict", "prep imports only sft.core and sft.models from sft"),
    ("sft.inference.predict", "data_prep.context", "sft never reaches into prep (but the main job)"),
    ("sft.review.store", "sft.training.config", "review imports only sft.core and sft.inference"),
    ("sft.inference.serve", "sft.review.app", "only the CLI imports the review app"),
])
def test_a_wrong_arrow_is_caught(module, imported, rule):
    imports = {m: _imports(m) for m in _modules()}
    imports[module] = imports[module] | {imported}
    assert violations(rule, imports) == {module: [imported]}
