"""The main job: bundled law corpus -> training data -> trained demo model -> eval -> predictions -> summary.

    ./local_run.sh                                  # runs: python -m sft.mainjob --out runs/demo
    python -m sft.mainjob --out runs/demo --full    # the seed configuration: 3 epochs over all data
    python -m sft.mainjob --max-steps 10 --eval-limit 8   # a quick smoke run

Every step skips itself when its output is already there, so a second run reuses what is built (delete a
step's directory to redo it). Training goes through the image's own entry point (``container/train``, the
SageMaker container mode): inside the image through SageMaker SDK local mode when a Docker engine answers
(``--image auto``, the default, builds ``geocomply:local`` from the offline base first; Docker's layer cache
makes that seconds after the first time), otherwise against a SageMaker container layout under OUT/job on this machine
(``--image none`` forces that).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.core.errors import UserError, exit_on_user_error
from sft.core.files import write_json_atomic
from sft.sagemaker.env import OptMl

log = logging.getLogger("geocomply.mainjob")
REPO = Path(__file__).resolve().parents[1]

# Tuned so the whole job takes <= 20 minutes on 2 CPU cores (about 6 s per step for SmolLM2-135M at 384 tokens,
# batch 4): measured on the held-out split, lr 1e-3 for 100 steps at 384 tokens gave macro-F1 55% where lr 3e-4
# for 60 steps at 512 tokens gave 28% (it learned the majority label). --full runs the seed configuration
# instead (3 epochs over all examples, 512 tokens).
DEMO_HYPERPARAMETERS: dict[str, Any] = {
    "model": "demo",
    # The flag comes from the label head fitted after training (sft.core.label_head; ~4 min here for its features),
    # reading layer 15, below the LoRA layers: the steps teach law, citation and reason, not the decision.
    # LoRA on the top 15 of 30 layers makes a CPU step ~1.5x cheaper (docs/benchmarks.md). Steps cost 4-6 s on
    # 2 cores (Xeon / AMD EPYC); 104 of them leave room for the head and the two evaluations in 20 minutes on the
    # slower machine (120 steps took 23.7 min there with the full validation loss; law accuracy in docs/model-quality.md).
    "max_steps": 104,
    "lora_layers": 15,
    "learning_rate": 1e-3,  # LoRA on a 135M model needs a far higher rate than the 7B seed's 5e-5 to learn in 100 steps
    "batch_size": 4,
    # Examples are trimmed to 448 tokens by the one budget rule (sft.core.prompt: the prompt gets 448 - 112 tokens,
    # the answer the rest), which eval and predict then apply to their prompts too: at 384 a product-style spec with
    # glossary notes kept one law item at most; 448 keeps two for most, ~15% slower steps than 384.
    "max_length": 448,
    "eval_sample": 8,  # generated-answer check at each evaluation (cheap: 8 answers)
    "max_new_tokens": 96,
    # The flag is ~5 of ~70 answer tokens: unweighted, 100 steps taught the reason's wording and the majority label
    # (realistic set 2026-12-03: 92 % of answers "No Geo-Compliance Needed", macro-F1 22.9 %).
    "label_loss_weight": 5.0,
    "balance_labels": True,
    "logging_steps": 5,
    "save_steps": 52,  # evaluate + checkpoint halfway and at the end: an interrupted run resumes from the last
    # The loss at each evaluation (which picks the best checkpoint) on 48 of the 216 validation examples, each
    # label's share kept: ~28 s instead of ~125 s per evaluation on 2 cores. geosft eval still scores the split.
    "eval_loss_sample": 48,
}


@dataclass
class MainJobConfig:
    out: Path = field(default=Path("runs/demo"), metadata={"help": "Where every artefact goes."})
    corpus: Path = field(default=REPO / "examples" / "corpus", metadata={"help": "Law PDFs/texts + glossary."})
    features: Path = field(default=REPO / "examples" / "features.csv", metadata={"help": "Feature specs to flag."})
    max_steps: int = field(default=DEMO_HYPERPARAMETERS["max_steps"], metadata={"help": "Training steps."})
    per_law: int = field(default=30, metadata={
        "help": "Obligations per law the generator turns into features (0: all); the hand-written specs come on top."})
    full: bool = field(default=False, metadata={"help": "Seed configuration: 3 epochs, all data."})
    eval_limit: int | None = field(default=64, metadata={
        "help": "Validation-split examples to evaluate (and calibrate confidence on); the realistic set is always whole."})
    realistic: Path = field(default=REPO / "examples" / "realistic" / "specs.csv", metadata={
        "help": "Hand-written labelled specs, kept out of training: the headline figures."})
    # On by default since the flag comes from the label head (sft.core.label_head): fitted on them plus the
    # generated data it scores realistic macro-F1 ~0.83 vs ~0.67 on the generated data alone (docs/model-quality.md).
    train_specs: Path | None = field(default=REPO / "examples" / "handwritten" / "train_specs.csv", metadata={
        "help": "Hand-written labelled specs added to the generated training data (geoprep's --features); '' for "
                "none. Never the realistic set."})
    image: str = field(default="auto", metadata={
        "help": "Where training runs: 'auto' (inside geocomply:local through SageMaker local mode when a Docker engine "
                "answers, built here first; else on this machine), an image tag, or 'none' (on this machine)."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.train_specs = None if self.train_specs in (None, "") else Path(self.train_specs)
        for path in (self.corpus, self.features, *([self.train_specs] if self.train_specs else [])):
            if not Path(path).exists():
                raise UserError(f"{path}: not found")
        if self.train_specs and self.train_specs.resolve() == Path(self.realistic).resolve():
            raise UserError(f"{self.train_specs}: the realistic set is the yardstick; it cannot be training data")
        if self.per_law < 0:
            raise UserError(f"--per-law must be >= 0 (0: all), got {self.per_law}")
        if self.max_steps < 1 and not self.full:
            raise UserError(f"--max-steps must be >= 1, got {self.max_steps}")

    def hyperparameters(self) -> dict[str, str]:
        hp = dict(DEMO_HYPERPARAMETERS, max_steps=self.max_steps)
        if self.full:
            # 3 epochs over all data: the seed's 512 tokens, so the budget drops nothing the data kept
            hp.update(max_steps=-1, epochs=3, max_length=512, save_steps=0)
        return {k: str(v) for k, v in hp.items()}  # SageMaker passes strings; container mode decodes them


def _step(name: str, done: bool) -> bool:
    log.info("[bold]%s[/bold]: %s", name, "already done, reusing it" if done else "running", extra={"markup": True})
    return not done


def prepare_data(cfg: MainJobConfig) -> Path:
    from data_prep.build import BuildConfig
    from data_prep.pipeline import PipelineConfig, run_pipeline

    data = cfg.out / "data"
    # The pipeline keeps its own stage stamps: it re-runs only what changed.
    log.info("[bold]prep[/bold]: law PDFs -> chunks -> index -> obligations -> features -> splits", extra={"markup": True})
    # The splits are fitted to the budget training will use (the same rule, sft.core.prompt), so the QC report
    # counts what training sees: at the pipeline's default 512, training trimmed 150 more of 985 examples at 448.
    run_pipeline(PipelineConfig(input_dir=cfg.corpus, out_dir=data, tokenizer=DEMO_HYPERPARAMETERS["model"],
                                features_file=cfg.train_specs, per_law=cfg.per_law or None,
                                build=BuildConfig(max_length=int(cfg.hyperparameters()["max_length"]))))
    return data


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def compose_available() -> bool:
    """SageMaker SDK local mode runs its containers through Docker Compose (the plugin or docker-compose)."""
    return shutil.which("docker-compose") is not None or \
        subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


AUTO_IMAGE = "geocomply:local"


def training_image(cfg: MainJobConfig) -> str | None:
    """The image to train in, or None to run the image's entry point on this machine."""
    if cfg.image == "none":
        return None
    if not docker_answers():
        log.info("no Docker engine answers: training through the image's entry point on this machine")
        return None
    if not compose_available():
        log.warning("Docker answers but Docker Compose is missing (SageMaker local mode needs it): training through "
                    "the image's entry point on this machine")
        return None
    if cfg.image != "auto":
        return cfg.image
    log.info("[bold]image[/bold]: building %s from the offline base (cached after the first build)", AUTO_IMAGE,
             extra={"markup": True})
    proc = subprocess.run([str(REPO / "container" / "build_local.sh"), "--base", "offline", "--tag", AUTO_IMAGE],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        log.warning("image build failed (%s): training through the image's entry point on this machine", reason)
        return None
    return AUTO_IMAGE


def train(cfg: MainJobConfig, data: Path) -> Path:
    job = cfg.out / "job"
    opt = OptMl(job)
    model = opt.model_dir
    if not _step("train", (model / "metrics.json").is_file()):
        return model
    hp = cfg.hyperparameters()
    image = training_image(cfg)
    if image:
        sys.path.insert(0, str(REPO / "container"))
        from local_mode import train_local  # the SDK local-mode harness of container/local_mode.py

        from sft.models import resolve

        log.info("training inside the image %s (SageMaker local mode)", image)
        channels = {"train": data / "train.jsonl", "validation": data / "validation.jsonl", "index": data / "index"}
        channels = {k: v.parent if v.is_file() else v for k, v in channels.items()}
        # The base weights travel as the 'model' channel, as in a network-isolated SageMaker job: the container
        # then ships merged weights, which eval and predict load directly.
        channels["model"] = Path(resolve(hp["model"]).path)
        try:
            tarball = train_local(image, "local_cpu", job, channels, hp)
        except RuntimeError as e:  # the SDK's "Failed to run: docker-compose ..."; the job's log is above
            raise UserError(f"training in the image {image} failed: {e}") from None
        import tarfile

        model.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tf:
            tf.extractall(model, filter="data")
        return model
    opt.write_training_inputs({"train": data / "train.jsonl", "validation": data / "validation.jsonl",
                               "index": data / "index"}, hp)
    proc = subprocess.run([sys.executable, str(REPO / "container" / "train")], env=opt.env())
    if proc.returncode != 0:
        failure = opt.failure_file
        reason = failure.read_text().strip() if failure.is_file() else f"exit code {proc.returncode}"
        raise UserError(f"training failed: {reason} (resume by running the same command again)")
    return model


def evaluate(cfg: MainJobConfig, model: Path, data: Path) -> dict[str, Any]:
    from sft.inference.evaluate import EvalConfig, run_eval

    out = cfg.out / "eval"
    report = cfg.out / "eval-summary.json"
    fresh = report.is_file() and report.stat().st_mtime > (model / "metrics.json").stat().st_mtime
    if not _step("eval", fresh):
        return json.loads(report.read_text())
    # The validation split calibrates confidence (temperature + review threshold, saved with the model); the
    # realistic set, scored through the predict path, is the yardstick.
    val = run_eval(EvalConfig(model=str(model), data=data / "validation.jsonl", out_dir=out, limit=cfg.eval_limit,
                              train=data / "train.jsonl", calibrate=True))
    real = run_eval(EvalConfig(model=str(model), data=cfg.realistic, out_dir=cfg.out / "eval-realistic",
                               train=data / "train.jsonl", glossary=cfg.corpus / "glossary" / "terminology.csv"))
    from data_prep.features import IMPORTED

    # Imported rows (the hand-written training specs' held-out share) carry ids of data_prep's IMPORTED kind.
    handwritten = sum(str(p.get("id", "")).startswith(f"{IMPORTED}-") for p in val.get("predictions", []))
    real["template_split"] = {"n": val["n"], "runs": val["runs"], "handwritten": handwritten}
    write_json_atomic(report, real)
    return real


def predict(cfg: MainJobConfig, model: Path) -> Path:
    from sft.inference.predict import PredictConfig, run_predict

    log.info("[bold]predict[/bold]: %s (resumable: ids already written are skipped)", cfg.features, extra={"markup": True})
    pc = PredictConfig(
        model=str(model), features=cfg.features, out=cfg.out / "predictions",
        glossary=cfg.corpus / "glossary" / "terminology.csv",
    )
    run_predict(pc)
    return pc.csv_path


def summary(cfg: MainJobConfig, result: dict[str, Any], predictions: Path, seconds: float) -> str:
    """A short table of the model against the baselines, and where the artefacts are (also summary.md)."""
    rows = [("metric", *result["runs"].keys())]
    metrics = [
        ("valid answers", "json_valid_rate"),
        ("label accuracy", "accuracy"),
        ("macro-F1", "macro_f1"),
        ("law accuracy (the bundled law where one applies, else none)", "law_accuracy"),
        ("citation grounding", "citation_grounding_rate"),
        ("abstention (NEI) rate", "abstention_rate"),
    ]
    m = result["runs"]["model"]
    metrics += [("law accuracy, positives with a bundled law", "law_accuracy_on_positives"),
                ("citation accuracy, same", "citation_accuracy_on_positives"),
                ("'No Geo-Compliance Needed' recall", "not_needed_recall")]
    for title, key in metrics:
        vals = [run.get(key) for run in result["runs"].values()]
        rows.append((title, *["-" if v is None else f"{v:.1%}" for v in vals]))
    rows.append(("reasons naming an absent law", str(m["reasons_naming_absent_law"]), "-", "-"))
    lines = [f"| {' | '.join(r)} |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    tpl = result.get("template_split", {})
    hand = tpl.get("handwritten", 0)
    made = (f"{tpl['n'] - hand} generated by our own templates, {hand} from the hand-written training specs; it "
            "shares templates and authors with training" if hand else "generated by our own templates")
    tpl_line = ("" if not tpl else f"Validation split ({tpl['n']} held-out examples, {made}: it measures recall "
                f"of the training data, not quality): macro-F1 "
                f"{tpl['runs']['model']['macro_f1']:.1%}, accuracy {tpl['runs']['model']['accuracy']:.1%} (majority "
                f"{tpl['runs']['majority']['macro_f1']:.1%}).")
    calib = m.get("calibration") or {}
    calib_line = ("" if not calib else f"Confidence: T={calib['temperature']:.2f} (fitted on the validation split), "
                  f"ECE {calib['ece']:.3f} on the realistic set; {calib['needs_review_rate']:.0%} routed to review "
                  f"(threshold {calib['review_threshold']:.2f}).")
    from sft.inference.evaluate import flag_line

    md = "\n".join(
        [
            f"# geocomply main job ({seconds / 60:.1f} min)",
            "",
            f"Realistic hand-written specs ({result['n']}, `{cfg.realistic.name}`, never trained on), through the "
            "predict path:",
            "",
            *lines,
            "",
            *flag_line(result.get("flag"))[1:],
            tpl_line,
            calib_line,
            "",
            f"- training data + QC report: {cfg.out / 'data'} (qc_report.md)",
            f"- model (adapter, merged weights if any, law index): {cfg.out / 'job' / 'model'}",
            f"- evaluation: {cfg.out / 'eval-realistic'} (realistic set: eval.json, report.md, confusion.png, "
            f"reliability.png), {cfg.out / 'eval'} (validation split)",
            f"- predictions with audit trail: {predictions} (+ .jsonl)",
        ]
    )
    (cfg.out / "summary.md").write_text(md + "\n")
    return md


def run(cfg: MainJobConfig) -> str:
    start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg)
    model = train(cfg, data)
    result = evaluate(cfg, model, data)
    predictions = predict(cfg, model)
    return summary(cfg, result, predictions, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    from sft.core.console import setup_logging

    ap = argparse.ArgumentParser(prog="python -m sft.mainjob", description=__doc__.split("\n")[0])
    fields = MainJobConfig.__dataclass_fields__
    for name, kind in (("out", Path), ("corpus", Path), ("features", Path), ("realistic", Path),
                       ("train_specs", str), ("max_steps", int), ("per_law", int), ("eval_limit", int), ("image", str)):
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=fields[name].default,
                        help=fields[name].metadata["help"])
    ap.add_argument("--full", action="store_true", help=fields["full"].metadata["help"])
    args = ap.parse_args(argv)
    setup_logging()
    with exit_on_user_error("mainjob"):
        md = run(MainJobConfig(**vars(args)))
    Console().print(Markdown(md))


if __name__ == "__main__":
    main()
