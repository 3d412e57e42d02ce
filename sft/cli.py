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


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Model: training output dir (adapter or merged/), model dir or 'demo'.")],
    data: Annotated[Path, typer.Option(help="Validation JSONL (instruction, input, output).")],
    out: Annotated[Path, typer.Option(help="Directory for eval.json, report.md and confusion.png.")] = Path("eval"),
    constrained: Annotated[bool, typer.Option(help="Constrained decoding (always-valid answers).")] = True,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
) -> None:
    """Score a model and two baselines (majority class, keyword rules) on a validation file."""
    from sft.evaluate import EvalConfig, run_eval

    result = run_eval(EvalConfig(model, data, out, constrained=constrained, batch_size=batch_size, limit=limit))
    m = result["runs"]["model"]
    typer.echo(f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  valid {m['json_valid_rate']:.3f}"
               f"  -> {out / 'report.md'}")


@app.command()
def predict(
    model: Annotated[str, typer.Option(help="Model: training output dir (adapter or merged/), model dir or 'demo'.")],
    features: Annotated[Path, typer.Option(help="Features file: CSV or JSONL with id, name, description.")],
    out: Annotated[Path, typer.Option(help="Output prefix: writes OUT.jsonl and OUT.csv.")] = Path("predictions"),
    retriever: Annotated[str, typer.Option(help="'local' (MODEL/index or --index-dir) or 'kendra'.")] = "local",
    index_dir: Annotated[Path | None, typer.Option(help="Local retrieval index (geoprep).")] = None,
    kendra_index_id: Annotated[
        str | None, typer.Option(envvar="KENDRA_INDEX_ID", help="Kendra index id for --retriever kendra.")
    ] = None,
    glossary: Annotated[Path | None, typer.Option(help="Glossary CSV (term,definition) for internal jargon.")] = None,
    k: Annotated[int, typer.Option(help="Law context items per feature.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Features per forward pass.")] = 8,
) -> None:
    """Flag features with an audit trail; resumable (ids already in OUT.jsonl are skipped)."""
    from sft.predict import PredictConfig, run_predict

    cfg = PredictConfig(model, features, out, retriever, index_dir, kendra_index_id, glossary, k, batch_size)
    counts = run_predict(cfg)
    typer.echo(f"predicted {counts['predicted']}, already done {counts['skipped']}, bad rows {counts['bad']}"
               f" -> {cfg.jsonl_path}, {cfg.csv_path}")


@app.command()
def serve(
    model_dir: Annotated[Path | None, typer.Option(help="Model dir (default: /opt/ml/model or $GEOCOMPLY_OPT_ML/model).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="Port (default: $SAGEMAKER_BIND_TO_PORT or 8080).")] = None,
) -> None:
    """Serve the SageMaker inference contract: GET /ping, POST /invocations (json, jsonlines, csv)."""
    from sft.console import setup_logging
    from sft.serve import serve as run_server

    setup_logging()
    run_server(model_dir, host, port)


def main() -> None:
    run_app(app, "geosft")


if __name__ == "__main__":
    main()
