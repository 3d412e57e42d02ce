"""geoprep: regulation PDFs -> law chunks -> obligations -> features -> grounded, QC-checked JSONL.

    geoprep glossary examples/corpus/glossary/terminology.csv "PF rollout with ASL for minors"

Heavy imports (pymupdf, bm25s, boto3) happen inside the commands, so ``geoprep --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sft.console import new_app, run_app

app = new_app("Turn regulation PDFs into grounded, QC-checked training data for geosft.")


@app.command()
def glossary(
    path: Annotated[Path, typer.Argument(help="Terminology CSV with columns term,definition.")],
    text: Annotated[str, typer.Argument(help="Feature text whose abbreviations should be explained.")],
) -> None:
    """Show which glossary terms a feature text uses (what goes into the prompt's glossary notes)."""
    from data_prep.glossary import Glossary

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
) -> None:
    """Extract law PDFs/texts into article/section-sized law chunks (resumable; bad files reported)."""
    from data_prep.extract import report_path, run_extract
    from sft.console import setup_logging

    setup_logging()
    report = run_extract(input_dir, out, registry_file=registry, workers=workers)
    for f in report.files:
        if f.status not in ("ok", "cached"):
            typer.echo(f"{f.status}: {f.file}: {f.cause}", err=True)
    typer.echo(f"{report.total_chunks} chunks from {report.total_pages} PDF pages -> {out} "
               f"(report: {report_path(out)})")


@app.command()
def index(
    chunks: Annotated[Path, typer.Argument(help="Chunks JSONL from geoprep extract.")],
    out: Annotated[Path, typer.Option(help="Index directory to write (self-contained, shippable).")] = Path(
        "law_index"
    ),
) -> None:
    """Build the local BM25 index over law chunks."""
    from data_prep.retrieval import build_local_index

    n = build_local_index(chunks, out)
    typer.echo(f"indexed {n} chunks -> {out}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, e.g. a feature description.")],
    index: Annotated[Path | None, typer.Option(help="Local index directory (geoprep index).")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="Filter: 'US' also matches US-CA etc.")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.", min=1)] = 5,
    retriever: Annotated[str, typer.Option(help="Backend: local or kendra.")] = "local",
    kendra_index_id: Annotated[str | None, typer.Option(help="Kendra index id (--retriever kendra).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for Kendra.")] = None,
    cache: Annotated[Path | None, typer.Option(help="sqlite cache file (no repeat backend calls).")] = None,
) -> None:
    """Search law chunks and print the hits as a table."""
    from rich.console import Console
    from rich.table import Table

    from data_prep.retrieval import open_retriever

    r = open_retriever(retriever, index_dir=index, kendra_index_id=kendra_index_id, cache_path=cache,
                       region=region)
    table = Table("score", "citation", "jurisdiction", "page", "text")
    for c in r.search(query, k=k, jurisdiction=jurisdiction):
        table.add_row(f"{c.score:.2f}", c.citation, c.jurisdiction, str(c.page or ""), c.snippet[:160])
    Console().print(table)


def main() -> None:
    run_app(app, "geoprep")


if __name__ == "__main__":
    main()
