"""Bodies of the geoprep mine/features/import/build/pipeline commands (the typer functions stay thin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from data_prep.build import BuildConfig, BuildResult, report_table
from sft.core.console import setup_logging
from sft.core.errors import UserError


def mine_command(chunks: Path, out: Path, registry: Path | None = None) -> None:
    from collections import Counter

    from data_prep.mine import mine, summary, write_obligations
    from data_prep.registry import load_registry
    from sft.core.chunks import read_chunks

    stats: Counter = Counter()
    obligations = mine(read_chunks(chunks), load_registry(registry), stats)
    n = write_obligations(out, obligations)
    s = summary(obligations, stats)
    typer.echo(f"{n} obligations -> {out}")
    typer.echo("by law:   " + json.dumps(s["by_law"]))
    typer.echo("by topic: " + json.dumps(s["by_topic"]))
    typer.echo("skipped, topic not allowed for the law: " + json.dumps(s["skipped_topic_not_allowed"]))


def features_command(obligations: Path, out: Path, per_law: int | None, per_obligation: int, seed: int,
                     teacher: dict[str, Any] | None = None) -> None:
    """``teacher``: generator, teacher_model, base_url, api_key_env, region, max_calls, glossary (None: templates)."""
    from collections import Counter

    from data_prep.features import generate, write_features
    from data_prep.mine import read_obligations

    if teacher is not None and teacher.get("generator", "templates") == "templates":
        given = [f"--{k.replace('_', '-')}" for k in ("teacher_model", "base_url", "api_key_env", "max_calls")
                 if teacher.get(k) is not None]
        if given:
            raise UserError(f"{', '.join(given)}: only used with --generator bedrock or openai")
    if teacher is None or teacher.get("generator", "templates") == "templates":
        specs = generate(read_obligations(obligations), seed=seed, per_law=per_law, per_obligation=per_obligation)
    else:
        from data_prep.teacher import open_generator, summary, teacher_features
        from sft.core.glossary import Glossary

        setup_logging()
        gen = open_generator(teacher["generator"], model=teacher.get("teacher_model"), base_url=teacher.get("base_url"),
                             api_key_env=teacher.get("api_key_env"), region=teacher.get("region"))
        glossary = teacher.get("glossary")
        run = teacher_features(read_obligations(obligations), gen, out.parent / "teacher_cache.sqlite", seed=seed,
                               per_law=per_law, per_obligation=per_obligation, max_calls=teacher.get("max_calls"),
                               jargon=Glossary.load(glossary).terms if glossary else None)
        specs = run.specs
        typer.echo(summary(run), err=True)
    n = write_features(out, specs)
    typer.echo(f"{n} feature specs -> {out}  " + json.dumps(dict(Counter(s.kind for s in specs))))


def import_command(path: Path, out: Path, append: bool, skip_bad: bool, on_duplicate: str = "error") -> None:
    from data_prep.features import import_features, read_features, write_features

    errors: list[str] = []
    dropped: list[str] = []
    specs = import_features(path, on_error=(lambda e: errors.append(str(e))) if skip_bad else None,
                            on_duplicate=on_duplicate, on_drop=dropped.append)
    for err in errors:
        typer.echo(f"skipped: {err}", err=True)
    for msg in dropped:
        typer.echo(f"duplicate: {msg}", err=True)
    existing = read_features(out) if append and out.exists() else []
    ids = {s.feature.id for s in specs}
    # Re-importing the same rows replaces them (ids are content hashes), never duplicates them.
    merged = [s for s in existing if s.feature.id not in ids] + specs
    write_features(out, merged)
    typer.echo(f"{len(specs)} features imported ({len(errors)} bad rows skipped) -> {out} ({len(merged)} total)")


def _print_result(result: BuildResult | None, out: Path) -> None:
    if result is None:
        typer.echo(f"build up to date; report: {out / 'qc_report.md'}")
        typer.echo((out / "qc_report.md").read_text(encoding="utf-8"))
        return
    typer.echo(report_table(result.report))
    typer.echo(f"{len(result.train)} train / {len(result.validation)} validation examples -> {out} "
               f"(report: {out / 'qc_report.json'}, {out / 'qc_report.md'})")


def build_command(
    features: Path, obligations: Path, chunks: Path, out: Path, cfg: BuildConfig, *, index: Path | None,
    retriever: str, kendra_index_id: str | None, region: str | None, glossary: Path | None, tokenizer: str | None,
    knowledge_base_id: str | None = None,
) -> None:
    from data_prep.pipeline import load_tokenizer, run_build
    from data_prep.registry import load_registry
    from sft.core.glossary import Glossary
    from sft.core.retrieval import MANAGED, check_retriever, open_retriever

    setup_logging()
    check_retriever(retriever, kendra_index_id, knowledge_base_id)
    # Billed per query: cached, so a re-run does not pay twice (one cache file per backend).
    cache = out / f"{retriever.replace('-', '_')}_cache.sqlite" if retriever in MANAGED else None
    r: Any = open_retriever(retriever, index_dir=index, kendra_index_id=kendra_index_id, cache_path=cache,
                            region=region, knowledge_base_id=knowledge_base_id,
                            jurisdictions=load_registry().jurisdictions())
    result = run_build(features, obligations, chunks, r, cfg, out,
                       glossary=Glossary.load(glossary) if glossary else None,
                       tokenizer=load_tokenizer(tokenizer) if tokenizer else None)
    _print_result(result, out)


def pipeline_command(cfg: Any) -> None:
    from data_prep.pipeline import run_pipeline

    setup_logging()
    result, ran = run_pipeline(cfg)
    typer.echo("stages: " + ", ".join(f"{k} {'ran' if v else 'skipped (up to date)'}" for k, v in ran.items()))
    _print_result(result, cfg.out_dir)


def registry_suggest_command(input_dir: Path, out: Path, registry: Path | None, ocr: str) -> None:
    """Draft registry entries for every document under ``input_dir`` that no entry holds (by name or content)."""
    from data_prep.extract import list_inputs, read_document
    from data_prep.identify import draft_yaml, head_text, infer_entry, match_content, strip_cover
    from data_prep.registry import load_registry
    from sft.core.files import atomic_open

    reg = load_registry(registry)
    drafts, known, bad = [], 0, []
    for path in list_inputs(input_dir):
        try:
            doc, _ = read_document(path, ocr)
        except Exception as e:  # named with its cause, like geoprep extract
            bad.append(f"{path.name}: {e}")
            continue
        pages, _ = strip_cover(doc.pages)
        head = "\n".join([doc.title, doc.head, head_text(pages)])
        if reg.match(path) or match_content(reg, head):
            known += 1
            continue
        drafts.append((infer_entry(pages, path.name, doc.title), head))
    with atomic_open(out) as fh:
        fh.write(draft_yaml(drafts))
    for line in bad:
        typer.echo(f"skipped: {line}", err=True)
    typer.echo(f"{len(drafts)} draft entries -> {out} ({known} documents already in the registry, {len(bad)} unreadable); "
               f"review, then: geoprep extract {input_dir} --registry {out}")
