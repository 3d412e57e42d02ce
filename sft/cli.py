"""geosft: train, evaluate, predict with and serve a geo-compliance model.

    geosft prompt data/train.jsonl --line 1     # the exact text the model sees for an example
    geosft check data/train.jsonl               # validate a training file against the contract

Heavy imports (torch, transformers) happen inside the commands, so ``geosft --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sft.console import new_app, run_app

app = new_app("Train, evaluate, predict with and serve a geo-compliance model.")


@app.command()
def prompt(
    data: Annotated[Path, typer.Argument(help="Training/validation JSONL (instruction, input, output).")],
    line: Annotated[int, typer.Option(help="Which example (1-based, counting non-blank lines).")] = 1,
    with_answer: Annotated[bool, typer.Option(help="Also print the training target.")] = False,
) -> None:
    """Print the exact prompt the model sees for one example (rendered by the shared contract)."""
    from sft.contract import read_examples, render_completion, render_prompt
    from sft.errors import UserError

    for i, ex in enumerate(read_examples(data), start=1):
        if i == line:
            typer.echo(render_prompt(ex.instruction, ex.input), nl=False)
            if with_answer:
                typer.echo(render_completion(ex.output))
            return
    raise UserError(f"{data}: has fewer than {line} examples")


@app.command()
def check(
    data: Annotated[list[Path], typer.Argument(help="JSONL files to validate.")],
) -> None:
    """Validate JSONL files against the data contract; print label counts and every bad line."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from sft.contract import ContractError, read_examples
    from sft.errors import UserError

    errors: list[ContractError] = []
    table = Table("file", "examples", *["label: " + x for x in ("needs", "not needed", "NEI")])
    for path in data:
        counts = Counter(ex.answer.compliance_flag for ex in read_examples(path, on_error=errors.append))
        from sft.contract import Label

        table.add_row(str(path), str(sum(counts.values())), *[str(counts[lab]) for lab in Label])
    Console().print(table)
    for e in errors:
        typer.echo(str(e), err=True)
    if errors:
        raise UserError(f"{len(errors)} bad line(s)")


def main() -> None:
    run_app(app, "geosft")


if __name__ == "__main__":
    main()
