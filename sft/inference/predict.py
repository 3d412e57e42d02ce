"""``geosft predict``: flag a file of features, with an audit trail.

For each feature: expand internal terms with the glossary, retrieve law context and build the prompt exactly as
training data was built (:mod:`sft.core.prompt`), predict with constrained decoding and append one row to
``OUT.jsonl``. The JSONL is the source of truth and is appended batch by batch, so an interrupted run resumes
where it stopped (ids already written are skipped, a torn last line is repaired); ``OUT.csv`` is rewritten
atomically from it at the end of every run.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sft.core.context import TOP_K
from sft.core.contract import ContractError, Feature, LawContext, iter_jsonl, spec_text
from sft.core.errors import UserError
from sft.core.files import atomic_open, read_jsonl_ids
from sft.core.prompt import law_context
from sft.core.tables import check_unique_ids, csv_dicts, open_text

log = logging.getLogger(__name__)

COLUMNS = ["id", "name", "flag", "law", "citation", "reason", "confidence", "needs_review", "context_ids",
           "prompt_cut", "model_id", "timestamp"]


@dataclass
class PredictConfig:
    model: str
    features: Path
    out: Path
    """Output prefix: writes OUT.jsonl and OUT.csv (a .jsonl/.csv suffix is dropped)."""
    retriever: str = "local"
    """'local' (the index in the model dir's index/, or --index-dir), 'kendra' (--kendra-index-id) or
    'bedrock-kb' (--knowledge-base-id)."""
    index_dir: Path | None = None
    kendra_index_id: str | None = None
    glossary: Path | None = None
    k: int = TOP_K
    """Law context items per feature (the same rule and default as the training data: one law, top k)."""
    batch_size: int = 8
    on_duplicate: str = "error"
    """A later row reusing an id: 'error' (default), or keep the 'first' / 'last' and report the other."""
    knowledge_base_id: str | None = None

    def __post_init__(self) -> None:
        from sft.core.retrieval import RETRIEVERS

        if self.retriever not in RETRIEVERS:
            raise UserError(f"--retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}")
        if self.k < 0 or self.batch_size < 1:
            raise UserError("--k must be >= 0 and --batch-size >= 1")
        if self.out.suffix in (".jsonl", ".csv"):
            self.out = self.out.with_suffix("")

    @property
    def jsonl_path(self) -> Path:
        return self.out.with_name(self.out.name + ".jsonl")

    @property
    def csv_path(self) -> Path:
        return self.out.with_name(self.out.name + ".csv")


def _feature(obj: Any, where: str, default_id: str) -> Feature:
    if not isinstance(obj, dict):
        raise ContractError(f"{where}: expected an object with id, name, description")
    for key in ("name", "description"):
        if not str(obj.get(key) or "").strip():
            raise ContractError(f"{where}: field '{key}': missing or empty")
    try:
        feature = Feature.model_validate({**obj, "id": str(obj.get("id") or default_id)})
    except (ValidationError, ContractError) as e:
        msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
        raise ContractError(f"{where}: {msg}") from None
    return feature


def read_features(path: Path, on_error: Callable[[ContractError], None]) -> Iterator[Feature]:
    """Features from CSV (header with name, description, optional id) or JSONL. Bad rows go to on_error."""
    if not path.is_file():
        raise UserError(f"{path}: no such features file")
    if path.suffix.lower() == ".csv":
        with open_text(path) as fh:
            header, rows = csv_dicts(fh, str(path))  # strict: a stray quote is an error naming its line
            cols = {c.strip().lower(): c for c in header}
            if "name" not in cols or "description" not in cols:
                raise UserError(f"{path}:1: header needs columns 'name' and 'description', got {header}")
            for line, row in rows:
                where = f"{path}:{line}"
                obj = {k: row.get(v) for k, v in cols.items()}
                try:
                    yield _feature(obj, where, default_id=f"row-{line}")
                except ContractError as e:
                    on_error(e)
    else:
        for where, obj in iter_jsonl(path, on_error):
            try:
                yield _feature(obj, where, default_id=f"line-{where.rsplit(':', 1)[1]}")
            except ContractError as e:
                on_error(e)


def open_feature_retriever(kind: str, model_dir: str | Path | None, index_dir: Path | None,
                           kendra_index_id: str | None, knowledge_base_id: str | None = None) -> Any | None:
    """The retriever packaged with the model (``index/``), an explicit index, Kendra or a Bedrock knowledge
    base; None if none."""
    if kind == "local":
        index = index_dir or (Path(model_dir) / "index" if model_dir else None)
        if index is None or not Path(index).is_dir():
            if index_dir is not None:
                raise UserError(f"{index_dir}: no such index directory")
            return None
        from sft.core.retrieval import open_retriever

        return open_retriever("local", index_dir=index)
    from sft.core.retrieval import check_retriever, open_retriever

    check_retriever(kind, kendra_index_id, knowledge_base_id)
    return open_retriever(kind, kendra_index_id=kendra_index_id, knowledge_base_id=knowledge_base_id)


def contexts_for(
    retriever: Any | None, feature: Feature, notes: dict[str, str], k: int = TOP_K
) -> list[LawContext]:
    """Retrieve and shape law context exactly as ``geoprep build`` does for training prompts."""
    return law_context(retriever, feature, notes, k)


def answer_row(feature: Feature, pred: Any, context: Sequence[LawContext], model_id: str,
               cut: dict[str, int] | None = None) -> dict[str, Any]:
    """One output row (predict's JSONL/CSV and the endpoint's answer). ``cut``: what the token budget removed from
    the prompt (law items, glossary notes, description characters), so a trimmed prompt is never silent."""
    answer = pred.answer
    return {
        "id": feature.id,
        "name": feature.name,
        "flag": answer.compliance_flag.value if answer else None,
        "law": answer.law if answer else None,
        "citation": answer.citation if answer else None,
        "reason": answer.reason if answer else pred.error,
        "confidence": pred.confidence,
        "needs_review": pred.needs_review,
        "context_ids": [c.id for c in context],
        "prompt_cut": dict(cut or {}),
        "model_id": model_id,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_csv(jsonl_path: Path, csv_path: Path) -> int:
    n = 0
    with atomic_open(csv_path) as fh:  # Linux: no newline translation, rows keep csv's \r\n
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        if jsonl_path.exists():
            for line in jsonl_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    writer.writerow({**row, "context_ids": ";".join(row.get("context_ids") or []),
                                     "prompt_cut": ";".join(f"{k}={v}" for k, v in (row.get("prompt_cut") or {}).items())})
                    n += 1
    return n


def run_predict(cfg: PredictConfig, predictor: Any | None = None) -> dict[str, int]:
    """Predict every feature not yet in the output; returns counts (done, skipped, bad)."""
    from tqdm import tqdm

    from sft.core.glossary import Glossary
    from sft.inference.predictor import Predictor

    glossary = Glossary.load(cfg.glossary) if cfg.glossary else Glossary()
    errors: list[ContractError] = []
    done_ids = read_jsonl_ids(cfg.jsonl_path)
    # Duplicates inside the input follow --on-duplicate; ids already in the output are a resume, not duplicates.
    unique = check_unique_ids(((f"{cfg.features}: row {i}", f) for i, f in enumerate(
        read_features(cfg.features, errors.append), start=1)), lambda f: f.id, cfg.on_duplicate, log.warning)
    features = [f for _, f in unique if f.id not in done_ids]
    for e in errors:
        log.warning("skipped bad row: %s", e)
    if done_ids:
        log.info("resuming: %d feature(s) already in %s", len(done_ids), cfg.jsonl_path)
    no_law = 0
    if features:
        predictor = predictor or Predictor.load(cfg.model)
        model_dir = cfg.model if Path(cfg.model).is_dir() else None
        retriever = open_feature_retriever(cfg.retriever, model_dir, cfg.index_dir, cfg.kendra_index_id,
                                           cfg.knowledge_base_id)
        cfg.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        with cfg.jsonl_path.open("a", encoding="utf-8") as out, tqdm(total=len(features), desc="predict") as bar:
            for i in range(0, len(features), cfg.batch_size):
                batch = features[i : i + cfg.batch_size]
                items = []
                for f in batch:
                    notes = glossary.notes_for(spec_text(f))
                    items.append((f, contexts_for(retriever, f, notes, cfg.k), notes))
                for (f, retrieved, _), res in zip(items, predictor.predict(items), strict=True):
                    if retrieved and not res.context:
                        log.warning("%s: the token budget left no law in the prompt (%d retrieved)", f.id, len(retrieved))
                        no_law += 1
                    row = answer_row(f, res.prediction, res.context, predictor.model_id, res.cut)
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                bar.update(len(batch))
    write_csv(cfg.jsonl_path, cfg.csv_path)
    return {"predicted": len(features), "skipped": len(done_ids), "bad": len(errors), "no_law_in_prompt": no_law}
