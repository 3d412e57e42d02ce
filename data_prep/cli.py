"""geoprep: regulation PDFs -> law chunks -> obligations -> features -> grounded, QC-checked JSONL.

    geoprep glossary examples/corpus/glossary/terminology.csv "PF rollout with ASL for minors"

Heavy imports (pymupdf, bm25s, boto3) happen inside the commands, so ``geoprep --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sft.core.console import new_app, run_app
from sft.core.context import TOP_K
from sft.core.errors import UserError

app = new_app("Turn regulation PDFs into grounded, QC-checked training data for geosft.")


@app.command()
def glossary(
    path: Annotated[Path, typer.Argument(help="Terminology CSV with columns term,definition.")],
    text: Annotated[str, typer.Argument(help="Feature text whose abbreviations should be explained.")],
) -> None:
    """Show which glossary terms a feature text uses (what goes into the prompt's glossary notes)."""
    from sft.core.glossary import Glossary

    for term, definition in Glossary.load(path).notes_for(text).items():
        typer.echo(f"{term}: {definition}")


@app.command()
def extract(
    input_dir: Annotated[Path, typer.Argument(help="Folder (searched recursively) of law PDFs and .txt texts.")],
    out: Annotated[Path, typer.Option(help="Chunks JSONL to write; the run report goes beside it.")] = Path(
        "chunks.jsonl"
    ),
    registry: Annotated[Path | None, typer.Option(help="Extra law registry YAML (your own laws).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes (0: one per CPU).", min=0)] = 0,
    ocr: Annotated[str, typer.Option(help="OCR image-only pages: auto (when Tesseract is installed), always "
                                          "(every page), never (image-only pages are named in the report).")] = "auto",
) -> None:
    """Extract regulation PDFs/texts into law chunks: registry laws by file name or content, unknown
    documents with inferred kind, jurisdiction and structure (resumable; bad files reported)."""
    from data_prep.extract import report_path, run_extract
    from sft.core.console import setup_logging

    _check_ocr(ocr)
    setup_logging()
    report = run_extract(input_dir, out, registry_file=registry, workers=workers, ocr=ocr)
    for f in report.files:
        if f.status not in ("ok", "cached"):
            typer.echo(f"{f.status}: {f.file}: {f.cause}", err=True)
        elif f.found_by != "registry" or f.notes:
            how = f"{f.found_by}: {f.law_id} ({f.doc_kind}, {f.jurisdiction})"
            typer.echo(f"{f.file}: {how}" + "".join(f"; {n}" for n in f.notes), err=True)
    typer.echo(f"{report.total_chunks} chunks from {report.total_pages} PDF pages -> {out} "
               f"(report: {report_path(out)})")


def _check_ocr(ocr: str) -> None:
    from data_prep.pdftext import OCR_MODES
    from sft.core.errors import UserError

    if ocr not in OCR_MODES:
        raise UserError(f"--ocr: {ocr!r} is not one of {', '.join(OCR_MODES)}")


registry_app = typer.Typer(help="Draft registry entries for your own documents.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("suggest")
def registry_suggest(
    input_dir: Annotated[Path, typer.Argument(help="Folder (searched recursively) of PDFs and .txt texts.")],
    out: Annotated[Path, typer.Option(help="Draft registry YAML to write (review it, then pass it with "
                                           "--registry).")] = Path("registry_draft.yaml"),
    registry: Annotated[Path | None, typer.Option(help="Your registry so far (its laws are not drafted again).")] = None,
    ocr: Annotated[str, typer.Option(help="OCR image-only pages: auto, always or never.")] = "auto",
) -> None:
    """Write a draft registry entry (title, jurisdiction, kind, citation style, patterns, unit regex, each
    with a confidence) for every document the registry does not hold yet."""
    from data_prep.commands import registry_suggest_command

    _check_ocr(ocr)
    registry_suggest_command(input_dir, out, registry, ocr)


@app.command()
def index(
    chunks: Annotated[Path, typer.Argument(help="Chunks JSONL from geoprep extract.")],
    out: Annotated[Path, typer.Option(help="Index directory to write (self-contained, shippable).")] = Path(
        "law_index"
    ),
    dense: Annotated[bool, typer.Option(help="Also store WordLlama vectors, for geoprep eval-retrieval "
                                        "--retriever local-hybrid (needs wordllama; BM25 measured better).")] = False,
) -> None:
    """Build the local BM25 index over law chunks."""
    from sft.core.retrieval import build_local_index

    n = build_local_index(chunks, out, dense=dense)
    typer.echo(f"indexed {n} chunks -> {out}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, e.g. a feature description.")],
    index: Annotated[Path | None, typer.Option(help="Local index directory (geoprep index).")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="Filter: 'US' also matches US-CA etc.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.", min=1)] = 5,
    retriever: Annotated[str, typer.Option(help="Backend: local, kendra or bedrock-kb.")] = "local",
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id (--retriever kendra).")] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(
        help="Bedrock knowledge base id (--retriever bedrock-kb; load it with geoprep kb-load).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra.")] = None,
    cache: Annotated[Path | None, typer.Option(help="sqlite cache file (no repeat backend calls).")] = None,
) -> None:
    """Search law chunks and print the hits as a table."""
    from rich.console import Console
    from rich.table import Table

    from data_prep.registry import load_registry
    from sft.core.retrieval import check_retriever, open_retriever

    check_retriever(retriever, kendra_index_id, knowledge_base_id)
    r = open_retriever(retriever, index_dir=index, kendra_index_id=kendra_index_id, cache_path=cache,
                       region=region, knowledge_base_id=knowledge_base_id,
                       jurisdictions=load_registry().jurisdictions())
    hits = r.search(query, k=k, jurisdiction=jurisdiction)
    if not hits:
        typer.echo("no matching law text (BM25 matches words: try the law's own terms, e.g. 'minors', "
                   "'advertising', or drop --jurisdiction)", err=True)
        return
    table = Table("score", "citation", "jurisdiction", "page", "text")
    for c in hits:
        table.add_row(f"{c.score:.2f}", c.citation, c.jurisdiction, str(c.page or ""), c.snippet[:160])
    Console().print(table)


@app.command()
def mine(
    chunks: Annotated[Path, typer.Argument(help="Chunks JSONL from geoprep extract.")],
    out: Annotated[Path, typer.Option(help="Obligations JSONL to write.")] = Path("obligations.jsonl"),
    registry: Annotated[Path | None, typer.Option(
        help="Extra law registry YAML; a law's 'topics' limit what it can ground (none listed: all).")] = None,
) -> None:
    """Mine obligations (shall/must/may not ... about online services) from law chunks, tagged by topic."""
    from data_prep.commands import mine_command

    mine_command(chunks, out, registry)


GENERATOR_HELP = ("Who writes the specs: templates (offline, default), bedrock (Bedrock Converse) or openai "
                  "(any OpenAI-compatible endpoint: vLLM, Ollama, ...). See docs/teacher-generators.md.")


@app.command()
def features(
    obligations: Annotated[Path, typer.Argument(help="Obligations JSONL from geoprep mine.")],
    out: Annotated[Path, typer.Option(help="Feature specs JSONL to write (a teacher's answer cache goes beside "
                                           "it: teacher_cache.sqlite).")] = Path("features.jsonl"),
    per_law: Annotated[int, typer.Option(help="Obligations per law turned into features (0: all).", min=0)] = 30,
    per_obligation: Annotated[int, typer.Option(help="Differently worded features per obligation.", min=1)] = 2,
    seed: Annotated[int, typer.Option(help="Seed for template choice (same seed, same features).")] = 0,
    generator: Annotated[str, typer.Option(help=GENERATOR_HELP)] = "templates",
    teacher_model: Annotated[str | None, typer.Option(help="Teacher model: a Bedrock model id / inference profile "
                                                           "or the endpoint's model name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://localhost:8000.")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Name of the environment variable holding the API key "
                                                         "(the key itself is never logged or written).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Bedrock.")] = None,
    max_calls: Annotated[int | None, typer.Option(help="At most this many teacher calls in this run (cost cap; "
                                                       "re-run to continue).", min=1)] = None,
    glossary: Annotated[Path | None, typer.Option(help="Terminology CSV whose terms the teacher may use.")] = None,
) -> None:
    """Generate product-style feature specs from obligations (positives, NEI and no-compliance negatives), from
    templates or written by a teacher model."""
    from data_prep.commands import features_command

    teacher = dict(generator=generator, teacher_model=teacher_model, base_url=base_url, api_key_env=api_key_env,
                   region=region, max_calls=max_calls, glossary=glossary)
    features_command(obligations, out, per_law or None, per_obligation, seed, teacher)


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="Your features: CSV or JSONL with name, description[, label, law].")],
    out: Annotated[Path, typer.Option(help="Feature specs JSONL to write (appended to with --append).")] = Path(
        "features.jsonl"),
    append: Annotated[bool, typer.Option(help="Add to an existing features file instead of replacing it.")] = False,
    skip_bad: Annotated[bool, typer.Option(help="Report bad rows (file:line) and go on.")] = False,
    on_duplicate: Annotated[str, typer.Option(
        help="Two rows with one id: error (default), or keep the first / last and report the other.")] = "error",
) -> None:
    """Import your own features so build enriches them with retrieved law context."""
    from data_prep.commands import import_command

    import_command(path, out, append, skip_bad, on_duplicate)


@app.command()
def build(
    features: Annotated[Path, typer.Argument(help="Feature specs JSONL (geoprep features / import).")],
    obligations: Annotated[Path, typer.Option(help="Obligations JSONL (geoprep mine).")] = Path("obligations.jsonl"),
    chunks: Annotated[Path, typer.Option(help="Chunks JSONL (geoprep extract).")] = Path("chunks.jsonl"),
    out: Annotated[Path, typer.Option(help="Output folder for train/validation JSONL and the QC report.")] = Path(
        "data"),
    index: Annotated[Path | None, typer.Option(help="Local index directory (geoprep index).")] = None,
    retriever: Annotated[str, typer.Option(help="Backend: local, kendra or bedrock-kb.")] = "local",
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id (--retriever kendra).")] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(
        help="Bedrock knowledge base id (--retriever bedrock-kb; load it with geoprep kb-load).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra.")] = None,
    glossary: Annotated[Path | None, typer.Option(help="Terminology CSV (term,definition).")] = None,
    top_k: Annotated[int, typer.Option(help="Law snippets per example (inference shows as many: keep the default).",
                                       min=1)] = TOP_K,
    nei_share: Annotated[float, typer.Option(help="Target share of 'Not Enough Information'.")] = 0.30,
    validation_fraction: Annotated[float, typer.Option(help="Share of obligation groups in validation.")] = 0.15,
    tokenizer: Annotated[str | None, typer.Option(help="Model spec (e.g. demo) whose tokenizer sets the token "
                                                       "budget; omitted: no budget (geosft train trims anyway).")] = None,
    max_length: Annotated[int, typer.Option(help="Token budget per example with --tokenizer.", min=64)] = 512,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the split.")] = 0,
) -> None:
    """Assemble grounded examples, run QC (citations, near-duplicates, balance, budget) and split them."""
    from data_prep.build import BuildConfig
    from data_prep.commands import build_command

    cfg = BuildConfig(top_k=top_k, nei_share=nei_share, validation_fraction=validation_fraction, seed=seed,
                      max_length=max_length if tokenizer else None)
    build_command(features, obligations, chunks, out, cfg, index=index, retriever=retriever,
                  kendra_index_id=kendra_index_id, region=region, glossary=glossary, tokenizer=tokenizer,
                  knowledge_base_id=knowledge_base_id)


@app.command()
def upload(
    data_dir: Annotated[Path, typer.Argument(help="Folder with train.jsonl and validation.jsonl.")],
    s3_uri: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX; files go to PREFIX/data/.")],
    endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint (tests, MinIO).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region.")] = None,
) -> None:
    """Upload the splits to S3 with SHA-256 checksums and verify them after upload."""
    from data_prep.upload import upload as do_upload

    for u in do_upload(data_dir, s3_uri, endpoint_url=endpoint_url, region=region):
        typer.echo(f"{u.uri}  {u.examples} examples  {u.bytes} bytes  sha256={u.sha256_b64}  verified")


@app.command("kendra-load")
def kendra_load(
    chunks: Annotated[Path, typer.Argument(help="Chunks JSONL from geoprep extract.")],
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id to load the chunks into.")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra.")] = None,
    fields: Annotated[bool, typer.Option("--fields/--no-fields", help="Declare the index fields the retriever "
                                         "reads (UpdateIndex); --no-fields only checks they exist.")] = True,
    delete_stale: Annotated[bool, typer.Option(help="Delete documents loaded earlier whose chunk is gone.")] = False,
) -> None:
    """Load law chunks into an Amazon Kendra index with the attributes --retriever kendra reads (resumable)."""
    from data_prep.kendra import kendra_load_command
    from sft.core.console import setup_logging

    setup_logging()
    kendra_load_command(chunks, kendra_index_id, region, fields, delete_stale)


@app.command("kb-load")
def kb_load(
    chunks: Annotated[Path, typer.Argument(help="Chunks JSONL from geoprep extract.")],
    bucket: Annotated[str | None, typer.Option(
        help="s3://BUCKET/PREFIX of the knowledge base's S3 data source (one .txt + .metadata.json per chunk).")
    ] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(help="Bedrock knowledge base id.")] = None,
    data_source_id: Annotated[str | None, typer.Option(help="Its S3 data source id (StartIngestionJob).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region of the knowledge base.")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint (tests).")] = None,
    delete_stale: Annotated[bool, typer.Option(help="Delete objects loaded earlier whose chunk is gone.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the ingestion job and report "
                                       "failed documents.")] = True,
) -> None:
    """Load law chunks into a Bedrock knowledge base (S3 objects + metadata sidecars, then an ingestion job)
    for --retriever bedrock-kb; a re-run sends only what changed."""
    from data_prep.kbload import kb_load_command
    from sft.core.console import setup_logging

    setup_logging()
    kb_load_command(chunks, bucket, knowledge_base_id, data_source_id, region=region, endpoint_url=endpoint_url,
                    delete_stale=delete_stale, wait=wait)


@app.command("eval-retrieval")
def eval_retrieval(
    retriever: Annotated[list[str], typer.Option(
        help="Retriever(s) to score, repeatable: local (the index's default), local-bm25, local-hybrid, kendra, "
             "bedrock-kb.")] = ["local"],  # noqa: B006
    index: Annotated[Path | None, typer.Option(help="Local index directory (default: PIPELINE/index).")] = None,
    pipeline_dir: Annotated[Path | None, typer.Option(
        "--pipeline", help="A geoprep pipeline output folder: its features/obligations/index are used.")] = None,
    features: Annotated[Path | None, typer.Option(help="Generated features JSONL (default PIPELINE/features.jsonl).")
                        ] = None,
    obligations: Annotated[Path | None, typer.Option(
        help="Obligations JSONL (default PIPELINE/obligations.jsonl).")] = None,
    specs: Annotated[Path | None, typer.Option(
        help="Labelled spec CSV with gold citations, e.g. examples/realistic/specs.csv.")] = None,
    glossary: Annotated[Path | None, typer.Option(help="Terminology CSV (its notes join the query, as in predict).")
                        ] = None,
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id (--retriever kendra).")] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(help="Bedrock knowledge base id (--retriever bedrock-kb).")
                                 ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra / Bedrock.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for eval_retrieval.json and .md.")] = Path("eval_retrieval"),
) -> None:
    """Hit@1/3/10, MRR and queries/s of the governing provision per retriever, through the prompt's own
    retrieval rule: on generated features (their source chunk) and on a labelled spec set (gold citations)."""
    from data_prep.evalretrieval import (
        generated_queries,
        realistic_queries,
        report_markdown,
        run_eval_retrieval,
    )
    from data_prep.registry import load_registry
    from sft.core.glossary import Glossary
    from sft.core.retrieval import LocalRetriever, check_retriever, open_retriever

    if pipeline_dir is not None:
        features = features or pipeline_dir / "features.jsonl"
        obligations = obligations or pipeline_dir / "obligations.jsonl"
        index = index or pipeline_dir / "index"
    datasets = {}
    if features or obligations:
        if not (features and obligations):
            raise UserError("eval-retrieval: --features needs --obligations (or pass --pipeline DIR)")
        datasets["generated"] = generated_queries(features, obligations)
    if specs:
        datasets["realistic"] = realistic_queries(specs)
    if not datasets:
        raise UserError("eval-retrieval: nothing to score: pass --pipeline DIR, --features/--obligations or --specs")
    retrievers = {}
    for kind in dict.fromkeys(retriever):
        if kind in ("local-bm25", "local-hybrid"):  # one index, both rankings: compared in one run
            if index is None:
                raise UserError(f"eval-retrieval: --retriever {kind} needs --index (or --pipeline)")
            retrievers[kind] = LocalRetriever(index, mode=kind.split("-")[1])
            continue
        check_retriever(kind, kendra_index_id, knowledge_base_id)
        retrievers[kind] = open_retriever(kind, index_dir=index, kendra_index_id=kendra_index_id, region=region,
                                          knowledge_base_id=knowledge_base_id,
                                          jurisdictions=load_registry().jurisdictions())
    scores = run_eval_retrieval(retrievers, datasets, out, Glossary.load(glossary) if glossary else None)
    typer.echo(report_markdown(scores) + f"-> {out / 'eval_retrieval.json'}, {out / 'eval_retrieval.md'}")


@app.command()
def pipeline(
    input_dir: Annotated[Path, typer.Argument(help="Folder of law PDFs/texts (e.g. examples/corpus).")],
    out: Annotated[Path, typer.Option(help="Output folder (all stage files, splits, QC report).")] = Path("data"),
    retriever: Annotated[str, typer.Option(
        help="Backend: local (BM25 index built here), kendra or bedrock-kb.")] = "local",
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id (--retriever kendra).")] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(
        help="Bedrock knowledge base id (--retriever bedrock-kb; load it with geoprep kb-load).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra and Bedrock.")] = None,
    glossary: Annotated[Path | None, typer.Option(help="Terminology CSV; default INPUT/glossary/terminology.csv.")] = None,
    features_file: Annotated[Path | None, typer.Option("--features", help="Your own features (CSV/JSONL).")] = None,
    per_law: Annotated[int, typer.Option(help="Obligations per law turned into features (0: all).", min=0)] = 30,
    top_k: Annotated[int, typer.Option(help="Law snippets per example (inference shows as many: keep the default).",
                                       min=1)] = TOP_K,
    nei_share: Annotated[float, typer.Option(help="Target share of 'Not Enough Information'.")] = 0.30,
    tokenizer: Annotated[str | None, typer.Option(help="Model spec (e.g. demo) for the token budget; "
                                                       "omitted: no budget.")] = None,
    max_length: Annotated[int, typer.Option(help="Token budget per example with --tokenizer.", min=64)] = 512,
    seed: Annotated[int, typer.Option(help="Seed for sampling and the split.")] = 0,
    generator: Annotated[str, typer.Option(help=GENERATOR_HELP)] = "templates",
    teacher_model: Annotated[str | None, typer.Option(help="Teacher model (--generator bedrock|openai).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server (--generator openai).")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Environment variable holding the endpoint's API key.")] = None,
    max_calls: Annotated[int | None, typer.Option(help="At most this many teacher calls per run.", min=1)] = None,
) -> None:
    """extract -> index -> mine -> features -> build in one resumable command (finished stages are skipped)."""
    from data_prep.build import BuildConfig
    from data_prep.commands import pipeline_command
    from data_prep.pipeline import PipelineConfig

    cfg = PipelineConfig(
        input_dir=input_dir, out_dir=out, retriever=retriever, kendra_index_id=kendra_index_id, region=region,
        knowledge_base_id=knowledge_base_id, glossary=glossary, features_file=features_file, per_law=per_law or None,
        tokenizer=tokenizer, generator=generator, teacher_model=teacher_model, base_url=base_url,
        api_key_env=api_key_env, max_calls=max_calls,
        build=BuildConfig(top_k=top_k, nei_share=nei_share, seed=seed, max_length=max_length if tokenizer else None),
    )
    pipeline_command(cfg)


def main() -> None:
    run_app(app, "geoprep")


if __name__ == "__main__":
    main()
