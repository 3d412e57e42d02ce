"""``geoprep eval-retrieval``: how often the governing provision is in the law context a prompt shows.

Each feature goes through :func:`sft.core.prompt.law_context` (the one query and place rule that training data
and every inference path use) with ``k = 10``; its one-law, best-first list is a prefix-stable ranking (the first
3 of ``k = 10`` are exactly the ``k = 3`` context the model sees), so Hit@1/3/10 and MRR (reciprocal rank of the
first relevant item within the 10; 0 when absent) are read off one call per feature.

Two yardsticks, in one run, per retriever:

* ``generated``: positive features of a pipeline (features.jsonl) whose source obligation (obligations.jsonl)
  came from a chunk: relevant = that chunk id.
* ``realistic``: a labelled spec CSV (examples/realistic/specs.csv) rows with gold citations: relevant = a
  chunk whose citation matches a gold citation at a boundary (:func:`sft.core.gold.citation_matches`).

Throughput is features/s through ``law_context`` (one or more searches each: one more per named place when no
best hit applies there), measured uncached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sft.core.contract import Feature, LawContext, spec_text
from sft.core.errors import UserError
from sft.core.files import write_json_atomic, write_text_atomic
from sft.core.glossary import Glossary
from sft.core.gold import citation_matches, read_gold_specs
from sft.core.prompt import law_context

RANK_K = 10
CUTOFFS = (1, 3, 10)


@dataclass
class Query:
    feature: Feature
    relevant: Callable[[LawContext], bool]


@dataclass
class Score:
    retriever: str
    dataset: str
    n: int
    hit_at_1: float
    hit_at_3: float
    hit_at_10: float
    mrr: float
    queries_per_s: float


def generated_queries(features_path: Path, obligations_path: Path) -> list[Query]:
    from data_prep.features import POSITIVE, read_features
    from data_prep.mine import read_obligations

    for p in (features_path, obligations_path):
        if not p.is_file():
            raise UserError(f"{p}: no such file (run geoprep pipeline, or pass --features and --obligations)")
    chunk_of = {o.id: o.chunk_id for o in read_obligations(obligations_path)}
    out = []
    for spec in read_features(features_path):
        if spec.kind == POSITIVE and spec.obligation_id in chunk_of:
            gold = chunk_of[spec.obligation_id]
            out.append(Query(spec.feature, lambda c, g=gold: c.id == g))
    if not out:
        raise UserError(f"{features_path}: no positive features whose obligation is in {obligations_path}")
    return out


def realistic_queries(specs_path: Path) -> list[Query]:
    out = []
    for s in read_gold_specs(specs_path):
        if s.citations:
            out.append(Query(s.feature, lambda c, g=tuple(s.citations): citation_matches(c.citation, g)))
    if not out:
        raise UserError(f"{specs_path}: no rows with a gold citation (column 'citation')")
    return out


def first_relevant_rank(ranked: Sequence[LawContext], relevant: Callable[[LawContext], bool]) -> int | None:
    return next((i for i, c in enumerate(ranked, 1) if relevant(c)), None)


def score(retriever: Any, name: str, dataset: str, queries: list[Query], glossary: Glossary | None) -> Score:
    ranks: list[int | None] = []
    start = time.perf_counter()
    for q in queries:
        notes = glossary.notes_for(spec_text(q.feature)) if glossary else {}
        ranks.append(first_relevant_rank(law_context(retriever, q.feature, notes, k=RANK_K), q.relevant))
    elapsed = time.perf_counter() - start
    n = len(queries)
    hit = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in CUTOFFS}
    return Score(name, dataset, n, hit[1], hit[3], hit[10], sum(1 / r for r in ranks if r) / n,
                 n / elapsed if elapsed > 0 else float("inf"))


def report_markdown(scores: list[Score]) -> str:
    lines = ["| retriever | dataset | n | Hit@1 | Hit@3 | Hit@10 | MRR | queries/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in scores:
        lines.append(f"| {s.retriever} | {s.dataset} | {s.n} | {s.hit_at_1:.3f} | {s.hit_at_3:.3f} | "
                     f"{s.hit_at_10:.3f} | {s.mrr:.3f} | {s.queries_per_s:.1f} |")
    return "\n".join(lines) + "\n"


def run_eval_retrieval(retrievers: dict[str, Any], datasets: dict[str, list[Query]], out_dir: Path,
                       glossary: Glossary | None = None) -> list[Score]:
    """Score every retriever on every dataset; writes eval_retrieval.json and .md (atomically)."""
    scores = [score(r, name, ds, qs, glossary) for name, r in retrievers.items() for ds, qs in datasets.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "eval_retrieval.json", {"k": RANK_K, "scores": [asdict(s) for s in scores]})
    write_text_atomic(out_dir / "eval_retrieval.md", report_markdown(scores))
    return scores
