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


def main() -> None:
    run_app(app, "geoprep")


if __name__ == "__main__":
    main()
