"""``geoprep extract``: a folder of law PDFs / texts -> law chunks JSONL + a run report.

* Files are matched to the law registry by name, else by content (the entry's ``signatures`` in the PDF
  metadata and first pages, after a legal database's cover page is stripped); a document no entry holds is
  still processed: its kind (law / secondary), jurisdiction and structure are inferred from its text
  (``data_prep.identify``) and every chunk says how its metadata was found.
* Image-only pages are OCR'd (``ocr="auto"``, Tesseract installed) or named in the report.
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
from typing import Any

from data_prep.registry import REGISTER_HINT, LawEntry, Registry, load_registry
from sft.core.chunks import read_chunks, write_chunks
from sft.core.contract import LawContext
from sft.core.errors import UserError
from sft.core.files import write_json_atomic

log = logging.getLogger(__name__)
SUFFIXES = (".pdf", ".txt")
# An unknown document with less text than this is not inferred (a note, a stray README): it is skipped
# with the hint to register it. The shortest real document in the sample corpus has ~9,000 characters.
MIN_UNKNOWN_CHARS = 200
CHUNKER_VERSION = 3  # bump when extraction/chunking output changes: cached parts are then redone


@dataclass
class FileResult:
    file: str
    status: str  # ok | cached (done by an earlier run) | skipped | duplicate
    law_id: str | None = None
    cause: str | None = None
    pages: int = 0
    chunks: int = 0
    found_by: str | None = None  # registry (file name) | content (signatures) | inferred (no entry)
    doc_kind: str | None = None
    jurisdiction: str | None = None
    notes: list[str] = field(default_factory=list)  # cover page removed, image-only / OCR'd pages


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


def read_document(path: Path, ocr: str):
    """The file's text as :class:`~data_prep.pdftext.PdfText` (a .txt file: one page, no metadata)."""
    from data_prep.pdftext import PdfText, read_pdf

    if path.suffix.lower() != ".pdf":
        paras = text_paragraphs(path)
        return PdfText([(0, p) for _, p in paras], "", "\n".join(paras[0][1][:80]), [], []), 0
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        doc = read_pdf(str(path), ocr=ocr)
    except (PermissionError, ValueError) as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # pymupdf raises FileDataError/RuntimeError for damaged files
        if type(e).__name__ == "NoTextLayer":
            raise
        raise ValueError(f"corrupt or unreadable PDF ({type(e).__name__}: {e})") from None
    return doc, len(doc.pages)


def identify(
    path: Path, entry: LawEntry | None, registry: Registry | None, doc: Any
) -> tuple[LawEntry, list[tuple[int, list[str]]], int]:
    """The entry a file's text is chunked with (name match, else content match, else inferred) and its
    cleaned pages (database cover page removed)."""
    from dataclasses import replace

    from data_prep.identify import head_text, infer_entry, match_content, strip_cover

    pages, covers = strip_cover(doc.pages)
    if entry is None and registry is not None:
        found = match_content(registry, "\n".join([doc.title, doc.head, head_text(pages)]))
        entry = replace(found, found_by="content") if found else None
    if entry is None:
        n = sum(len(p) for _, paras in pages for p in paras)
        if n < MIN_UNKNOWN_CHARS:
            raise ValueError(f"unknown document with only {n} characters of text (too little to infer what it "
                             f"is): {REGISTER_HINT}")
        entry = infer_entry(pages, path.name, doc.title).entry
    return entry, pages, covers


def extract_file(
    path: Path, entry: LawEntry | None, registry: Registry | None = None, ocr: str = "never",
) -> tuple[int, list[LawContext], FileResult]:
    """(pages, chunks, result) of one file. Raises with a one-line cause when the file cannot be used."""
    from dataclasses import replace

    from data_prep.chunker import chunk_law

    doc, n_pages = read_document(path, ocr)
    entry, pages, covers = identify(path, entry, registry, doc)
    stream = [(page or None, para) for page, paras in pages for para in paras]
    chunks = chunk_law(stream, entry, source=path.name)
    if not chunks and entry.found_by == "inferred" and entry.style != "pages":
        entry = replace(entry, style="pages", unit_regex=None, stop_regex=None,
                        citation=entry.title[:60] + ", p. {unit}")
        chunks = chunk_law(stream, entry, source=path.name)
    if not chunks:
        raise ValueError(
            f"no {'articles' if entry.style == 'eu' else 'sections'} found for {entry.law_id} "
            "(is this the right law for the registry pattern, and does unit_regex match?)"
            if entry.style != "pages" else "no text left after removing page furniture"
        )
    notes = [f"database cover page removed ({covers})"] if covers else []
    if doc.image_only:
        notes.append(f"image-only pages not OCR'd (install tesseract-ocr; --ocr auto): {_pages(doc.image_only)}")
    if doc.ocr_pages:
        notes.append(f"OCR'd pages: {_pages(doc.ocr_pages)}")
    result = FileResult(path.name, "ok", entry.law_id, pages=n_pages, chunks=len(chunks), found_by=entry.found_by,
                        doc_kind=entry.doc_kind, jurisdiction=entry.jurisdiction, notes=notes)
    return n_pages, chunks, result


def _pages(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:20])) + (f" (+{len(numbers) - 20} more)" if len(numbers) > 20 else "")


def _work(path: str, entry: LawEntry | None, registry: Registry | None, part: str, ocr: str) -> FileResult:
    """Runs in a worker process; writes the file's chunks to ``part`` (atomically) on success."""
    p = Path(path)
    try:
        _, chunks, result = extract_file(p, entry, registry, ocr)
    except Exception as e:  # reported, never fatal: one bad file must not stop the run
        return FileResult(p.name, "skipped", entry.law_id if entry else None, f"{e}")
    write_chunks(part, chunks)
    write_json_atomic(part + ".meta", asdict(result))
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry_key(entry: LawEntry | Registry, ocr: str) -> str:
    """Changes when the registry entry (for a file no name matches: the whole registry), the OCR mode or
    the chunker changes, so a stale cached part is never reused."""
    entries = list(entry) if isinstance(entry, Registry) else [entry]
    fields = [{k: v for k, v in asdict(e).items() if k != "where"} for e in entries]
    blob = json.dumps([CHUNKER_VERSION, ocr, fields], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


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
    ocr: str = "auto",
) -> ExtractReport:
    """Extract every law file under ``input_dir`` into ``out`` (JSONL) and ``out``.report.json."""
    import os

    registry = load_registry(registry_file)
    files = list_inputs(Path(input_dir))
    parts_dir = out.with_name(out.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport(out=str(out))
    todo: list[tuple[Path, LawEntry | None, Path]] = []
    done: list[tuple[FileResult, Path]] = []
    for path in files:
        entry = registry.match(path)
        key = _entry_key(entry or registry, ocr)
        part = parts_dir / f"{_sha256(path)[:16]}-{key}-{entry.law_id if entry else 'content'}.jsonl"
        meta = part.with_name(part.name + ".meta")
        if part.exists() and meta.exists():
            cached = FileResult(**json.loads(meta.read_text()))
            cached.status = "cached"
            done.append((cached, part))
        else:
            todo.append((path, entry, part))

    workers = workers or min(len(todo), os.cpu_count() or 1) or 1
    if todo:
        with _progress(progress) as bar:
            task = bar.add_task("extract", total=len(todo)) if bar else None
            for result, part in _run_all(todo, workers, registry, ocr):
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


def _run_all(todo: list[tuple[Path, LawEntry | None, Path]], workers: int, registry: Registry, ocr: str):
    """Yield (result, part) as files finish. One worker runs in-process (no pool start-up, easy to
    debug); more use processes, largest files first so the long AI Act does not start last."""
    if workers == 1:
        for path, entry, part in todo:
            yield _work(str(path), entry, registry, str(part), ocr), part
        return
    todo = sorted(todo, key=lambda t: -t[0].stat().st_size)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent)
    try:
        futures = {pool.submit(_work, str(p), e, registry, str(part), ocr): part for p, e, part in todo}
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
