"""``geoprep pipeline``: extract -> index -> mine -> features -> build, in one resumable command.

Each stage writes its output atomically and records a stamp (a hash of its inputs and parameters) in
``OUT/.stages.json``. Re-running skips a stage whose output exists and whose stamp matches, so a run that was
interrupted resumes at the stage it was in, and nothing is ever appended twice. Changing a parameter or an
input file re-runs that stage and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_prep.build import BuildConfig, BuildResult, build, write_outputs
from data_prep.features import generate, import_features, read_features, write_features
from data_prep.mine import mine, read_obligations, write_obligations
from data_prep.registry import BUNDLED, load_registry
from sft.core.errors import UserError
from sft.core.files import write_json_atomic
from sft.core.glossary import Glossary

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    input_dir: Path = field(metadata={"help": "Folder with law PDFs/texts (e.g. examples/corpus)."})
    out_dir: Path = field(metadata={"help": "Where chunks, index, obligations, features and the splits go."})
    retriever: str = field(default="local", metadata={"help": "'local' (BM25 index), 'kendra' or 'bedrock-kb'."})
    kendra_index_id: str | None = None
    knowledge_base_id: str | None = None
    region: str | None = None
    glossary: Path | None = field(default=None, metadata={"help": "Terminology CSV; default INPUT/glossary/terminology.csv."})
    features_file: Path | None = field(default=None, metadata={"help": "Your own features (CSV/JSONL) to add."})
    per_law: int | None = field(default=30, metadata={"help": "Obligations per law turned into features (None: all)."})
    registry: Path | None = None
    build: BuildConfig = field(default_factory=BuildConfig)
    tokenizer: str | None = field(default=None, metadata={"help": "Model spec whose tokenizer sets the budget."})
    generator: str = field(default="templates", metadata={"help": "Feature writer: templates, bedrock or openai."})
    teacher_model: str | None = field(default=None, metadata={"help": "Bedrock model id or the endpoint's model."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible server (generator openai)."})
    api_key_env: str | None = field(default=None, metadata={
        "help": "Name of the environment variable holding the endpoint's key (the key is never stored)."})
    max_calls: int | None = field(default=None, metadata={"help": "At most this many teacher calls per run."})

    def __post_init__(self) -> None:
        self.input_dir, self.out_dir = Path(self.input_dir), Path(self.out_dir)
        from sft.core.retrieval import check_retriever

        check_retriever(self.retriever, self.kendra_index_id, self.knowledge_base_id)
        if self.per_law is not None and self.per_law < 1:
            raise UserError(f"per_law must be >= 1, got {self.per_law}")
        if self.glossary is None and (self.input_dir / "glossary" / "terminology.csv").is_file():
            self.glossary = self.input_dir / "glossary" / "terminology.csv"
        if self.generator not in ("templates", "bedrock", "openai"):
            raise UserError(f"generator must be 'templates', 'bedrock' or 'openai', got {self.generator!r}")
        if self.generator == "templates" and (self.teacher_model or self.base_url or self.max_calls is not None):
            raise UserError("--teacher-model, --base-url and --max-calls are only used with --generator bedrock "
                            "or openai")
        if self.generator != "templates" and not self.teacher_model:
            raise UserError(f"--generator {self.generator} needs --teacher-model")
        if self.generator == "openai" and not self.base_url:
            raise UserError("--generator openai needs --base-url")
        if self.tokenizer is not None and self.build.max_length is None:
            self.build.max_length = 512


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def code_digest(*modules: str) -> str:
    """The source of the modules that make a stage's output: upgrading geocomply re-runs what it changed."""
    import importlib.util

    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


class Stages:
    """The stamp file: which stage ran with which inputs."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / ".stages.json"
        self.done: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def run(self, name: str, stamp_parts: list[Any], outputs: list[Path], fn: Callable[[], None]) -> bool:
        """Run ``fn`` unless ``outputs`` exist with the same stamp. Returns True if it ran."""
        stamp = hashlib.sha256(json.dumps(stamp_parts, default=str, sort_keys=True).encode()).hexdigest()
        if self.done.get(name) == stamp and all(p.exists() for p in outputs):
            log.info("%s: up to date, skipped", name)
            return False
        log.info("%s: running", name)
        fn()
        self.done[name] = stamp
        write_json_atomic(self.path, self.done)
        return True


def open_pipeline_retriever(cfg: PipelineConfig, index_dir: Path, kendra_client: Any = None,
                            bedrock_client: Any = None) -> Any:
    from sft.core import retrieval

    if cfg.retriever == "local":
        return retrieval.LocalRetriever(index_dir)
    jurisdictions = load_registry(cfg.registry).jurisdictions()
    if cfg.retriever == "bedrock-kb":
        inner: Any = retrieval.BedrockKBRetriever(cfg.knowledge_base_id or "", client=bedrock_client,
                                                  region=cfg.region, jurisdictions=jurisdictions)
    else:
        inner = retrieval.KendraRetriever(cfg.kendra_index_id, client=kendra_client, region=cfg.region,
                                          page_size=min(100, cfg.build.search_k), jurisdictions=jurisdictions)
    # Cached: a resumed or repeated build does not pay for the same managed queries twice.
    return retrieval.CachedRetriever(inner, cfg.out_dir / f"{cfg.retriever.replace('-', '_')}_cache.sqlite")


def load_tokenizer(spec: str) -> Any:
    """Only the tokenizer of a model spec (``demo``, a hub id, a directory): no weights are loaded."""
    from sft import models

    return models.load_tokenizer(models.resolve(spec))


def run_pipeline(
    cfg: PipelineConfig, *, kendra_client: Any = None, progress: bool = True, teacher: Any = None,
    bedrock_client: Any = None,
) -> tuple[BuildResult | None, dict[str, bool]]:
    """Run all stages; returns the build result (None if the build was up to date) and which stages ran."""
    from data_prep.extract import run_extract
    from sft.core.chunks import read_chunks

    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out)
    chunks_path, index_dir = out / "chunks.jsonl", out / "index"
    obligations_path, features_path = out / "obligations.jsonl", out / "features.jsonl"
    ran: dict[str, bool] = {}
    ran["extract"] = stages.run(
        "extract", [file_digest(cfg.input_dir), str(cfg.registry and file_digest(cfg.registry)), file_digest(BUNDLED),
                    code_digest("data_prep.extract", "data_prep.pdftext", "data_prep.chunker", "sft.core.chunks",
                                "data_prep.registry")], [chunks_path],
        lambda: run_extract(cfg.input_dir, chunks_path, cfg.registry, progress=progress),
    )
    chunks_stamp = file_digest(chunks_path)
    if cfg.retriever == "local":
        from sft.core.retrieval import build_local_index

        ran["index"] = stages.run("index", [chunks_stamp, code_digest("sft.core.retrieval")], [index_dir],
                                  lambda: build_local_index(chunks_path, index_dir))
    registry = load_registry(cfg.registry)
    # The laws' allowed topics are part of the key: editing them in a registry re-mines.
    topics_key = json.dumps({e.law_id: e.topics for e in registry}, sort_keys=True)

    def _mine() -> None:
        stats: Counter = Counter()
        n = write_obligations(obligations_path, mine(read_chunks(chunks_path), registry, stats))
        log.info("mine: %d obligations; %d sentences skipped (topic not allowed for their law)", n,
                 stats["topic_not_allowed"])

    ran["mine"] = stages.run("mine", [chunks_stamp, topics_key, code_digest("data_prep.mine", "data_prep.topics")], [obligations_path],
                             _mine)
    obligations_stamp = file_digest(obligations_path)

    def _features() -> None:
        if cfg.generator == "templates":
            specs = generate(read_obligations(obligations_path), seed=cfg.build.seed, per_law=cfg.per_law)
        else:
            specs = _teacher_specs(cfg, obligations_path, teacher, progress)
        if cfg.features_file:
            specs += import_features(cfg.features_file)
        write_features(features_path, specs)

    features_key = [obligations_stamp, cfg.per_law, cfg.build.seed,
                    str(cfg.features_file and file_digest(cfg.features_file)), code_digest("data_prep.features")]
    if cfg.generator != "templates":  # the templates' stamp is unchanged: no needless re-run after an upgrade
        features_key += [cfg.generator, cfg.teacher_model, cfg.base_url, str(cfg.glossary and file_digest(cfg.glossary)),
                         code_digest("data_prep.teacher")]
    ran["features"] = stages.run("features", features_key, [features_path], _features)
    result: dict[str, BuildResult] = {}

    def _build() -> None:
        glossary = Glossary.load(cfg.glossary) if cfg.glossary else None
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        retriever = open_pipeline_retriever(cfg, index_dir, kendra_client, bedrock_client)
        result["r"] = run_build(features_path, obligations_path, chunks_path, retriever, cfg.build, out,
                                glossary=glossary, tokenizer=tokenizer, progress=progress)

    ran["build"] = stages.run(
        "build", [file_digest(features_path), obligations_stamp, chunks_stamp, asdict(cfg.build), cfg.tokenizer,
                  cfg.retriever, cfg.kendra_index_id, cfg.knowledge_base_id, str(cfg.glossary and file_digest(cfg.glossary)),
                  code_digest("data_prep.build", "sft.core.context", "sft.core.prompt", "sft.core.glossary", "sft.core.contract",
                              "sft.core.budget")],
        [out / "train.jsonl", out / "validation.jsonl", out / "qc_report.json"], _build,
    )
    return result.get("r"), ran


def _teacher_specs(cfg: PipelineConfig, obligations_path: Path, generator: Any, progress: bool) -> list:
    """Teacher-written specs; a run cut short by --max-calls writes what it has and stops before build (the stage
    is not stamped, so a re-run continues from the cache)."""
    from data_prep import teacher

    gen = generator or teacher.open_generator(cfg.generator, model=cfg.teacher_model, base_url=cfg.base_url,
                                              api_key_env=cfg.api_key_env, region=cfg.region)
    jargon = Glossary.load(cfg.glossary).terms if cfg.glossary else None
    run = teacher.teacher_features(read_obligations(obligations_path), gen, cfg.out_dir / "teacher_cache.sqlite",
                                   seed=cfg.build.seed, per_law=cfg.per_law, max_calls=cfg.max_calls, jargon=jargon,
                                   progress=progress)
    log.info("%s", teacher.summary(run))
    if not run.complete:
        write_features(cfg.out_dir / "features.partial.jsonl", run.specs)
        raise UserError(f"{teacher.summary(run)} (written so far: {cfg.out_dir / 'features.partial.jsonl'})")
    return run.specs


def run_build(
    features_path: Path, obligations_path: Path, chunks_path: Path, retriever: Any, config: BuildConfig,
    out_dir: Path, *, glossary: Glossary | None = None, tokenizer: Any = None, progress: bool = True,
) -> BuildResult:
    """Read the stage files, build, write the splits and the QC report (atomically)."""
    from sft.core.chunks import read_chunks

    specs = read_features(features_path)
    obligations = read_obligations(obligations_path)
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("build", total=len(specs))
            result = build(specs, obligations, read_chunks(chunks_path), retriever, config, glossary=glossary,
                           tokenizer=tokenizer, progress=lambda: bar.advance(task))
    else:
        result = build(specs, obligations, read_chunks(chunks_path), retriever, config, glossary=glossary,
                       tokenizer=tokenizer)
    write_outputs(result, out_dir)
    return result
