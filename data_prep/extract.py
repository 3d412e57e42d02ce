"""``geoprep extract``: a folder of law PDFs / texts -> law chunks JSONL + a run report.

* Files are matched to the law registry by name; an unknown file is reported with a hint and skipped.
* Each file is extracted in its own process (PyMuPDF is CPU-bound); a corrupt, encrypted, empty or
  image-only PDF is reported with its cause and skipped, and the run goes on.
* Resumable: each finished file's chunks are cached under ``<out>.parts/`` keyed by the file's sha256,
  its registry entry and the chunker version; a
  re-run (after a crash or with one more file) only extracts files it has not done. The final chunks file
  and the report are written atomically and de-duplicated by chunk id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_prep.registry import REGISTER_HINT, LawEntry, load_registry
from sft.core.chunks import read_chunks, write_chunks
from sft.core.contract import LawContext
from sft.core.errors import UserError
from sft.core.files import write_json_atomic

log = logging.getLogger(__name__)
SUFFIXES = (".pdf", ".txt")
CHUNKER_VERSION = 1  # bump when extraction/chunking output changes: cached parts are then redone


@dataclass
class FileResult:
    file: str
    status: str  # ok | cached (done by an earlier run) | skipped | duplicate
    law_id: str | None = None
    cause: str | None = None
    pages: int = 0
    chunks: int = 0


@dataclass
class ExtractReport:
    out: str
    files: list[FileResult] = field(default_factory=list)
    chunks_per_law: dict[str, int] = field(default_factory=dict)
    total_chunks: int = 0
    total_pages: int = 0

    @property
    def skipped(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "skipped"]


def text_paragraphs(path: Path) -> list[tuple[int | None, list[str]]]:
    """A plain-text law: one paragraph per non-blank line, no page numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = [" ".join(ln.replace("\u00a0", " ").split()) for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError("empty text file")
    return [(None, lines)]


def extract_file(path: Path, entry: LawEntry) -> tuple[int, list[LawContext]]:
    """(pages, chunks) of one file. Raises with a one-line cause when the file cannot be used."""
    if path.suffix.lower() == ".pdf":
        from data_prep.pdftext import pdf_paragraphs

        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        try:
            pages = pdf_paragraphs(str(path))
        except (PermissionError, ValueError) as e:
            raise ValueError(str(e)) from None
        except Exception as e:  # pymupdf raises FileDataError/RuntimeError for damaged files
            if type(e).__name__ == "NoTextLayer":
                raise
            raise ValueError(f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    else:
        pages = text_paragraphs(path)
    from data_prep.chunker import chunk_law

    stream = ((page, para) for page, paras in pages for para in paras)
    chunks = chunk_law(stream, entry, source=path.name)
    if not chunks:
        raise ValueError(
            f"no {'articles' if entry.style == 'eu' else 'sections'} found for {entry.law_id} "
            "(is this the right law for the registry pattern, and does unit_regex match?)"
        )
    return (len(pages) if path.suffix.lower() == ".pdf" else 0), chunks


def _work(path: str, entry: LawEntry, part: str) -> FileResult:
    """Runs in a worker process; writes the file's chunks to ``part`` (atomically) on success."""
    p = Path(path)
    try:
        pages, chunks = extract_file(p, entry)
    except Exception as e:  # reported, never fatal: one bad file must not stop the run
        return FileResult(p.name, "skipped", entry.law_id, f"{e}")
    write_chunks(part, chunks)
    write_json_atomic(part + ".meta", {"pages": pages})
    return FileResult(p.name, "ok", entry.law_id, pages=pages, chunks=len(chunks))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry_key(entry: LawEntry) -> str:
    """Changes when the registry entry or the chunker changes, so a stale cached part is never reused."""
    fields = {k: v for k, v in asdict(entry).items() if k != "where"}
    return hashlib.sha256(json.dumps([CHUNKER_VERSION, fields], sort_keys=True).encode()).hexdigest()[:8]


def list_inputs(input_dir: Path) -> list[Path]:
    if input_dir.is_file():
        return [input_dir]
    if not input_dir.is_dir():
        raise UserError(f"{input_dir}: no such directory")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise UserError(f"{input_dir}: no .pdf or .txt files")
    return files


def run_extract(
    input_dir: Path,
    out: Path,
    registry_file: Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> ExtractReport:
    """Extract every law file under ``input_dir`` into ``out`` (JSONL) and ``out``.report.json."""
    import os

    registry = load_registry(registry_file)
    files = list_inputs(Path(input_dir))
    parts_dir = out.with_name(out.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(out=str(out))
    todo: list[tuple[Path, LawEntry, Path]] = []
    done: list[tuple[FileResult, Path]] = []
    for path in files:
        entry = registry.match(path)
        if entry is None:
            report.files.append(FileResult(path.name, "skipped", cause=f"unknown law: {REGISTER_HINT}"))
            continue
        part = parts_dir / f"{_sha256(path)[:16]}-{_entry_key(entry)}-{entry.law_id}.jsonl"
        meta = part.with_name(part.name + ".meta")
        if part.exists() and meta.exists():
            pages = json.loads(meta.read_text())["pages"]
            done.append((FileResult(path.name, "cached", entry.law_id, pages=pages), part))
        else:
            todo.append((path, entry, part))

    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    if todo:
        with _progress(progress) as bar:
            task = bar.add_task("extract", total=len(todo)) if bar else None
            for result, part in _run_all(todo, workers):
                if result.status == "skipped":
                    log.debug("skipped %s: %s", result.file, result.cause)  # the CLI prints the list
                    report.files.append(result)
                else:
                    done.append((result, part))
                if bar:
                    bar.advance(task)

    # One law may come as a PDF and as a text: keep the PDF (it has page numbers), report the other.
    chunks: dict[str, LawContext] = {}
    source_of: dict[str, str] = {}
    for result, part in sorted(done, key=lambda d: (not d[0].file.lower().endswith(".pdf"), d[0].file)):
        report.files.append(result)
        if result.law_id in source_of:
            result.status = "duplicate"
            result.cause = f"law {result.law_id} already extracted from {source_of[result.law_id]}"
            continue
        source_of[result.law_id] = result.file
        result.chunks = 0
        for chunk in read_chunks(part):
            if chunk.id not in chunks:
                chunks[chunk.id] = chunk
                result.chunks += 1
        report.total_pages += result.pages
    if not chunks and report.files:  # exit 0 with an empty chunks file would hide that nothing was read
        first = next((f for f in report.files if f.cause), report.files[0])
        raise UserError(f"{input_dir}: no law text extracted: {len(report.files)} file(s), none usable "
                        f"(first: {first.file}: {first.status}{': ' + first.cause if first.cause else ''})")
    write_chunks(out, chunks.values())
    for c in chunks.values():
        report.chunks_per_law[c.law_id] = report.chunks_per_law.get(c.law_id, 0) + 1
    report.total_chunks = len(chunks)
    report.files.sort(key=lambda f: f.file)
    write_json_atomic(report_path(out), asdict(report))
    return report


def _run_all(todo: list[tuple[Path, LawEntry, Path]], workers: int):
    """Yield (result, part) as files finish. One worker runs in-process (no pool start-up, easy to
    debug); more use processes, largest files first so the long AI Act does not start last."""
    if workers == 1:
        for path, entry, part in todo:
            yield _work(str(path), entry, str(part)), part
        return
    todo = sorted(todo, key=lambda t: -t[0].stat().st_size)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    try:
        futures = {pool.submit(_work, str(p), e, str(part)): part for p, e, part in todo}
        for fut in as_completed(futures):
            yield fut.result(), futures[fut]
    except BaseException:  # Ctrl-C, SIGTERM (see below), a bad file: no worker outlives the run
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _die_with_parent() -> None:
    """Pool initializer. Linux sends the worker SIGTERM when the process that started it dies, even by
    SIGKILL (an interrupted run left ~160 MB workers alive a minute later); elsewhere the parent's cleanup
    in ``_run_all`` is what ends them."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def report_path(out: Path) -> Path:
    return out.with_name(out.stem + ".report.json")


def _progress(enabled: bool):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=True)
