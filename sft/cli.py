"""geosft: train, evaluate, predict with and serve a geo-compliance model.

    geosft prompt data/train.jsonl --line 1     # the exact text the model sees for an example
    geosft check data/train.jsonl               # validate a training file against the contract
    geosft check data/train.jsonl --tokenizer demo --max-length 512   # ... and what the token budget does

Heavy imports (torch, transformers) happen inside the commands, so ``geosft --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sft.core.console import new_app, run_app
from sft.core.context import TOP_K
from sft.sagemaker.aws import DEFAULT_REGION
from sft.sagemaker.env import BIND_PORT_ENV, DEFAULT_PORT
from sft.sagemaker.env import ROOT as OPT_ML
from sft.sagemaker.env import ROOT_ENV as OPT_ML_ENV
from sft.training.config import TrainConfig

app = new_app("Train, evaluate, predict with and serve a geo-compliance model.")


@app.command()
def prompt(
    data: Annotated[Path, typer.Argument(help="Training/validation JSONL (instruction, input, output).")],
    line: Annotated[int, typer.Option(help="Which example (1-based, counting non-blank lines).")] = 1,
    with_answer: Annotated[bool, typer.Option(help="Also print the training target.")] = False,
) -> None:
    """Print the exact prompt the model sees for one example (rendered by the shared contract)."""
    from sft.core.contract import read_examples, render_completion, render_prompt
    from sft.core.errors import UserError

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
    tokenizer: Annotated[str | None, typer.Option(help="Model spec (demo, hub id, dir) whose tokenizer sets the "
                                                       "token budget: report fit / trimmed / dropped as geosft "
                                                       "train would, before any training.")] = None,
    max_length: Annotated[int, typer.Option(help="Token budget per example with --tokenizer.", min=64)] = 512,
) -> None:
    """Validate JSONL files against the data contract; print label counts and every bad line (and, with
    --tokenizer, what the token budget keeps, trims and drops, with reasons)."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from sft.core.budget import BudgetReport, fit_to_budget
    from sft.core.contract import ContractError, Label, read_examples
    from sft.core.errors import UserError

    tok = None
    if tokenizer:
        from sft import models

        tok = models.load_tokenizer(models.resolve(tokenizer))
    errors: list[ContractError] = []
    table = Table("file", "examples", *["label: " + x for x in ("needs", "not needed", "NEI")])
    budgets: list[tuple[Path, BudgetReport]] = []
    for path in data:
        examples = list(read_examples(path, on_error=errors.append))
        counts = Counter(ex.answer.compliance_flag for ex in examples)
        table.add_row(str(path), str(sum(counts.values())), *[str(counts[lab]) for lab in Label])
        if tok is not None:
            report = BudgetReport(max_length=max_length)
            for ex in examples:
                report.add(fit_to_budget(ex, tok, max_length))
            budgets.append((path, report))
    Console().print(table)
    for path, report in budgets:
        b = report.as_dict()
        total = b["fit"] + b["trimmed"] + b["dropped"]
        typer.echo(f"{path}: budget {max_length} tokens: {b['fit']} fit, {b['trimmed']} trimmed "
                   f"({b['context_items_dropped']} law-context items removed, {b['feature_text_cut']} feature "
                   f"texts cut at a sentence), {b['dropped']} dropped ({100 * b['dropped'] / max(total, 1):.1f} %)")
        for reason, n in b["drop_reasons"].items():
            typer.echo(f"  dropped {n}: {reason}")
    for e in errors:
        typer.echo(str(e), err=True)
    if errors:
        raise UserError(f"{len(errors)} bad line(s)")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Model: training output dir (adapter or merged/), model dir or 'demo'.")],
    data: Annotated[Path, typer.Option(
        help="Validation JSONL (instruction, input, output), or a labelled spec CSV (scored through predict's path).")],
    out: Annotated[Path, typer.Option(help="Directory for eval.json, report.md and confusion.png.")] = Path("eval"),
    constrained: Annotated[bool, typer.Option(help="Constrained decoding (always-valid answers).")] = True,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    train: Annotated[Path | None, typer.Option(
        help="Training JSONL: the majority baseline answers its most common label (default: the evaluated file's).")
    ] = None,
    glossary: Annotated[Path | None, typer.Option(help="Glossary CSV (labelled spec files: as with predict).")] = None,
    index_dir: Annotated[Path | None, typer.Option(help="Retrieval index for a spec file (default MODEL/index).")] = None,
    retriever: Annotated[str, typer.Option(
        help="Retriever for a spec file: 'local', 'kendra' or 'bedrock-kb' (as with predict).")] = "local",
    kendra_index_id: Annotated[str | None, typer.Option(
        envvar="KENDRA_INDEX_ID", help="Kendra index id for --retriever kendra.")] = None,
    knowledge_base_id: Annotated[str | None, typer.Option(
        envvar="KNOWLEDGE_BASE_ID", help="Bedrock knowledge base id for --retriever bedrock-kb.")] = None,
    calibrate: Annotated[bool, typer.Option(
        help="Fit confidence calibration (temperature, review threshold) on this file; saved with the model.")
    ] = False,
) -> None:
    """Score a model and two baselines (majority class, keyword rules) on a validation file."""
    from sft.inference.evaluate import EvalConfig, run_eval

    result = run_eval(EvalConfig(model, data, out, constrained=constrained, batch_size=batch_size, limit=limit,
                                 train=train, glossary=glossary, index_dir=index_dir, calibrate=calibrate,
                                 retriever=retriever, kendra_index_id=kendra_index_id,
                                 knowledge_base_id=knowledge_base_id))
    m = result["runs"]["model"]
    typer.echo(f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  valid {m['json_valid_rate']:.3f}"
               f"  -> {out / 'report.md'}")


@app.command()
def predict(
    model: Annotated[str, typer.Option(help="Model: training output dir (adapter or merged/), model dir or 'demo'.")],
    features: Annotated[Path, typer.Option(help="Features file: CSV or JSONL with id, name, description.")],
    out: Annotated[Path, typer.Option(help="Output prefix: writes OUT.jsonl and OUT.csv.")] = Path("predictions"),
    retriever: Annotated[str, typer.Option(
        help="'local' (MODEL/index or --index-dir), 'kendra' or 'bedrock-kb'.")] = "local",
    index_dir: Annotated[Path | None, typer.Option(help="Local retrieval index (geoprep).")] = None,
    kendra_index_id: Annotated[
        str | None, typer.Option(envvar="KENDRA_INDEX_ID", help="Kendra index id for --retriever kendra.")
    ] = None,
    glossary: Annotated[Path | None, typer.Option(help="Glossary CSV (term,definition) for internal jargon.")] = None,
    k: Annotated[int, typer.Option(help="Law context items per feature (as in the training data).")] = TOP_K,
    batch_size: Annotated[int, typer.Option(help="Features per forward pass.")] = 8,
    on_duplicate: Annotated[str, typer.Option(
        help="Two input rows with one id: error (default), or keep the first / last and report the other.")] = "error",
    knowledge_base_id: Annotated[str | None, typer.Option(
        envvar="KNOWLEDGE_BASE_ID", help="Bedrock knowledge base id for --retriever bedrock-kb.")] = None,
) -> None:
    """Flag features with an audit trail; resumable (ids already in OUT.jsonl are skipped)."""
    from sft.inference.predict import PredictConfig, run_predict

    cfg = PredictConfig(model, features, out, retriever, index_dir, kendra_index_id, glossary, k, batch_size,
                        on_duplicate=on_duplicate, knowledge_base_id=knowledge_base_id)
    counts = run_predict(cfg)
    typer.echo(f"predicted {counts['predicted']}, already done {counts['skipped']}, bad rows {counts['bad']}"
               f" -> {cfg.jsonl_path}, {cfg.csv_path}")
    if counts["no_law_in_prompt"]:
        typer.echo(f"{counts['no_law_in_prompt']} feature(s) had their retrieved law cut by the token budget "
                   "(see prompt_cut in the output)", err=True)


@app.command()
def serve(
    model_dir: Annotated[Path | None, typer.Option(help=f"Model dir (default: {OPT_ML}/model, or ${OPT_ML_ENV}/model).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0: every interface, as the container does).")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help=f"Port (default: ${BIND_PORT_ENV} or {DEFAULT_PORT}).")] = None,
) -> None:
    """Serve the SageMaker inference contract: GET /ping, POST /invocations (json, jsonlines, csv)."""
    from sft.core.console import setup_logging
    from sft.inference.serve import serve as run_server

    setup_logging()
    run_server(model_dir, host, port)


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Training JSONL (contract or seed-shaped).")] = None,
    validation: Annotated[Path | None, typer.Option(help="Validation JSONL (loss + answer metrics).")] = None,
    model: Annotated[str | None, typer.Option(help="Hub id, local dir, .gguf, or 'demo'.")] = None,
    output: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings; flags override it.")] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option(help="Token budget per example.")] = None,
    quantize: Annotated[str | None, typer.Option(help="'4bit' for QLoRA (CUDA).")] = None,
    merge: Annotated[bool | None, typer.Option("--merge/--no-merge", help="Also write merged weights.")] = None,
    index: Annotated[Path | None, typer.Option(help="geoprep index dir to ship with the adapter.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Any other setting as KEY=VALUE (see TrainConfig).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Fine-tune a LoRA adapter (TRL SFT): budgeted data, answer-only loss, best checkpoint kept."""
    from sft.core.console import setup_logging
    from sft.training.config import cli_config
    from sft.training.train import run_training

    setup_logging(verbose)
    flags = dict(data=data, validation=validation, model=model, output=output, epochs=epochs, max_steps=max_steps,
                 learning_rate=learning_rate, batch_size=batch_size, max_length=max_length, quantize=quantize,
                 merge=merge, index=index)
    metrics = run_training(cli_config(config, flags, set_ or []))
    typer.echo(f"global step {metrics['global_step']}; best eval loss {metrics['best_eval_loss']}")

@app.command()
def launch(
    image: Annotated[str, typer.Option(help="ECR image URI (container/build_and_push.sh prints it).")],
    train: Annotated[str, typer.Option(help="s3:// prefix of the train JSONL, or a local file/dir to upload.")],
    output: Annotated[str, typer.Option(help="s3:// prefix for model.tar.gz and job output.")],
    role: Annotated[str, typer.Option(help="SageMaker execution role ARN.")] = "",
    validation: Annotated[str | None, typer.Option(help="s3:// prefix or local file/dir (uploaded).")] = None,
    model_channel: Annotated[
        str | None, typer.Option(help=f"s3:// prefix of a base model (sets model={OPT_ML}/input/data/model).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML training config (TrainConfig fields).")] = None,
    hp: Annotated[list[str] | None, typer.Option(help="Hyperparameter KEY=VALUE (repeatable; overrides --config).")] = None,
    env: Annotated[list[str] | None, typer.Option(help="Environment KEY=VALUE; secrets only as ARNs.")] = None,
    instance_type: Annotated[str, typer.Option(help="Training instance type.")] = "ml.g5.2xlarge",
    instance_count: Annotated[int, typer.Option(help="Number of instances.")] = 1,
    region: Annotated[str, typer.Option(help="AWS region.")] = DEFAULT_REGION,
    spot: Annotated[bool, typer.Option(help="Managed spot training (resumes from checkpoints).")] = True,
    checkpoint: Annotated[str | None, typer.Option(help="s3:// checkpoint URI (default under --output).")] = None,
    max_run_hours: Annotated[float, typer.Option(help="Max training time.")] = 24,
    max_wait_hours: Annotated[float, typer.Option(help="Max time including waiting for spot capacity.")] = 48,
    network_isolation: Annotated[bool, typer.Option(help="No network in the job (needs --model-channel).")] = False,
    job_name: Annotated[str | None, typer.Option(help="Job name (default geocomply-sft-<time>).")] = None,
    quota_check: Annotated[bool, typer.Option(help="Check Service Quotas before launching.")] = True,
    wait: Annotated[bool, typer.Option(help="Wait for the job and stream its log.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Print the CreateTrainingJob request; call no AWS API.")] = False,
) -> None:
    """Train on SageMaker with the geocomply image (SDK v3 ModelTrainer; spot + checkpoints by default)."""
    import json

    from sft.sagemaker.aws import parse_pairs
    from sft.sagemaker.launch import LaunchConfig, build_training_request, launch, load_hyperparameters

    cfg = LaunchConfig(
        image_uri=image, train=train, output=output, role=role, validation=validation,
        model_channel=model_channel, checkpoint=checkpoint, instance_type=instance_type,
        instance_count=instance_count, region=region, spot=spot, max_run_s=int(max_run_hours * 3600),
        max_wait_s=int(max_wait_hours * 3600), network_isolation=network_isolation, job_name=job_name,
        hyperparameters=load_hyperparameters(config, parse_pairs(hp or [], "--hp")),
        environment=parse_pairs(env or [], "--env"),
    )  # fmt: skip
    if dry_run:
        typer.echo(json.dumps({"CreateTrainingJob": build_training_request(cfg)}, indent=2))
        return
    typer.echo(f"training job: {launch(cfg, wait=wait, check_quotas=quota_check)}")


@app.command()
def deploy(
    image: Annotated[str, typer.Option(help="The image the model was trained with.")],
    training_job: Annotated[str | None, typer.Option(help="Completed training job to deploy.")] = None,
    model_data: Annotated[str | None, typer.Option(help="s3://.../model.tar.gz (instead of a job).")] = None,
    role: Annotated[str, typer.Option(help="SageMaker execution role ARN.")] = "",
    name: Annotated[str | None, typer.Option(help="Model/endpoint/transform job name.")] = None,
    region: Annotated[str, typer.Option(help="AWS region.")] = DEFAULT_REGION,
    endpoint: Annotated[bool, typer.Option(help="Create a real-time endpoint.")] = True,
    instance_type: Annotated[str, typer.Option(help="Endpoint instance type.")] = "ml.g5.xlarge",
    instance_count: Annotated[int, typer.Option(help="Endpoint instances.")] = 1,
    transform_input: Annotated[str | None, typer.Option(help="s3:// JSONL to run Batch Transform on.")] = None,
    transform_output: Annotated[str | None, typer.Option(help="s3:// prefix for Batch Transform output.")] = None,
    transform_instance_type: Annotated[str, typer.Option(help="Batch Transform instance type.")] = "ml.g5.xlarge",
    env: Annotated[list[str] | None, typer.Option(help="Environment KEY=VALUE; secrets only as ARNs.")] = None,
    quota_check: Annotated[bool, typer.Option(help="Check Service Quotas before deploying.")] = True,
    wait: Annotated[bool, typer.Option(help="Wait until the endpoint is in service / the transform ends.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Print the requests; call no AWS API.")] = False,
) -> None:
    """Serve a trained model with the same image: real-time endpoint and/or Batch Transform."""
    import json

    from sft.core.errors import UserError
    from sft.sagemaker.aws import parse_pairs
    from sft.sagemaker.deploy import DeployConfig, build_deploy_requests, deploy_from_cli

    if not model_data and not training_job:
        raise UserError("give --training-job or --model-data")
    if dry_run and not model_data:
        raise UserError("--dry-run calls no AWS API, so it needs --model-data (the job's model.tar.gz)")

    def make(data: str) -> DeployConfig:
        return DeployConfig(
            image_uri=image, model_data=data, role=role, name=name, region=region, endpoint=endpoint,
            instance_type=instance_type, instance_count=instance_count, transform_input=transform_input,
            transform_output=transform_output, transform_instance_type=transform_instance_type,
            environment=parse_pairs(env or [], "--env"),
        )  # fmt: skip

    if dry_run:
        typer.echo(json.dumps(build_deploy_requests(make(model_data)), indent=2))
        return
    typer.echo(deploy_from_cli(make, training_job, model_data, region, wait=wait, check_quotas=quota_check))


@app.command()
def preflight(
    model: Annotated[str, typer.Option(help="Hub id, local dir or 'demo'.")] = TrainConfig.default("model"),
    instance: Annotated[str, typer.Option(help="SageMaker instance type.")] = "ml.g5.2xlarge",
    quantize: Annotated[str | None, typer.Option(help="'4bit' for QLoRA.")] = None,
    max_length: Annotated[int, typer.Option()] = TrainConfig.default("max_length"),
    batch_size: Annotated[int, typer.Option()] = TrainConfig.default("batch_size"),
    lora_r: Annotated[int, typer.Option()] = TrainConfig.default("lora_r"),
    gradient_checkpointing: Annotated[bool, typer.Option(help="As training sets it (on by default on GPUs).")] = True,
    merge: Annotated[bool, typer.Option(help="Also check host memory for merge=true.")] = False,
) -> None:
    """Estimate per-GPU training memory (and host memory for the merge); say whether it fits and what to change."""
    from sft.sagemaker.preflight import report

    est, text = report(model, instance, quantize=quantize, max_length=max_length, batch_size=batch_size,
                       lora_r=lora_r, checkpointing=gradient_checkpointing, merge=merge)
    typer.echo(text)
    if not est.fits or not est.host_fits:
        raise typer.Exit(2)

# ------------------------------------------------------------------------------------------ review

review_app = typer.Typer(help="Review queue: reviewers confirm or correct flags; decisions become training data.",
                         pretty_exceptions_enable=False, add_completion=False)
app.add_typer(review_app, name="review")

RunDirOpt = Annotated[Path, typer.Option(help="Run directory: the default database is RUN_DIR/review.sqlite.")]
DbOpt = Annotated[str | None, typer.Option(
    envvar="GEOCOMPLY_REVIEW_DB", help="Database URL (e.g. postgresql://user@host/db for a team); "
    "default: SQLite in --run-dir.")]


def _review_db(run_dir: Path, db: str | None):
    from sft.review.db import open_db

    return open_db(_review_url(run_dir, db))


def _review_url(run_dir: Path, db: str | None) -> str:
    from sft.review.db import default_url

    return db or default_url(run_dir)


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    run_dir: RunDirOpt = Path("runs/demo"),
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 only behind a proxy/TLS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    trust_header: Annotated[str | None, typer.Option(
        help="Reverse-proxy header naming the signed-in reviewer (e.g. X-Forwarded-User); only when nothing "
        "but the proxy can reach the app.")] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted (MB).", min=0.001)] = 20,
    secure_cookies: Annotated[bool, typer.Option(help="Session cookie only over HTTPS (behind TLS).")] = False,
) -> None:
    """Start the review web app (subcommands: add-user, import, export)."""
    if ctx.invoked_subcommand is not None:
        return
    from sft.review.app import ReviewConfig, create_app, make_server, users_exist

    sessions = _review_db(run_dir, db)
    if not users_exist(sessions) and not trust_header:
        typer.echo("no reviewer accounts yet: create one with `geosft review add-user NAME`", err=True)
    cfg = ReviewConfig(_review_url(run_dir, db), trust_header=trust_header, max_upload_mb=max_upload_mb,
                       secure_cookies=secure_cookies)
    server = make_server(create_app(cfg, sessions), host, port)
    typer.echo(f"review queue on http://{host}:{server.server_port}/ (Ctrl+C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@review_app.command("add-user")
def review_add_user(
    name: Annotated[str, typer.Argument(help="Reviewer name (shown in the audit trail).")],
    run_dir: RunDirOpt = Path("runs/demo"),
    db: DbOpt = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin (scripts).")] = False,
) -> None:
    """Create a reviewer account (or reset its password). The password is stored as a salted scrypt hash."""
    import sys

    from sft.review.store import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    add_user(_review_db(run_dir, db), name, password)
    typer.echo(f"reviewer {name!r} can sign in")


@review_app.command("import")
def review_import(
    predictions: Annotated[Path, typer.Argument(help="geosft predict's .jsonl/.csv or the endpoint's JSON Lines.")],
    features: Annotated[Path | None, typer.Option(help="The features file predicted (descriptions).")] = None,
    chunks: Annotated[Path | None, typer.Option(help="Law chunks JSONL or geoprep index dir (snippets).")] = None,
    reviewer: Annotated[str, typer.Option("--as", help="Name recorded as the importer.")] = "cli",
    run_dir: RunDirOpt = Path("runs/demo"),
    db: DbOpt = None,
) -> None:
    """Import predictions into the queue (all or nothing; rows already there are skipped)."""
    from sft.review.store import import_predictions

    res = import_predictions(_review_db(run_dir, db), predictions, reviewer, features=features, chunks=chunks)
    typer.echo(f"imported {res.added}, already there {res.skipped}, law chunks {res.chunks}")


@review_app.command("export")
def review_export(
    out: Annotated[Path, typer.Option(help="Folder for reviewed_features.jsonl and reviewed_train.jsonl.")],
    run_dir: RunDirOpt = Path("runs/demo"),
    db: DbOpt = None,
) -> None:
    """Write reviewed items as labelled features (geoprep import) and training JSONL (geosft check/train)."""
    from sft.review.store import write_export

    with _review_db(run_dir, db)() as s:
        exp = write_export(s, out)
    typer.echo(f"{len(exp.features)} feature(s), {len(exp.examples)} training example(s) -> {out}")
    if exp.no_description:
        typer.echo(f"left out (no description imported): {', '.join(exp.no_description)}", err=True)
    if exp.missing_chunks:
        typer.echo(f"features only (law chunks not imported): {', '.join(exp.missing_chunks)}", err=True)


def main() -> None:
    run_app(app, "geosft")


if __name__ == "__main__":
    main()
