"""Safe file output: atomic writes (nothing half-written survives a crash) and resumable JSONL appends."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which races
    with other threads creating files); 0o022 where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets what open() would give it
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> int:
    """Write rows (dicts, or strings already serialised) as JSONL, atomically. Returns the count."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


def repair_jsonl_tail(path: str | Path) -> None:
    """Cut a torn last line (a crash mid-append) so the file can be appended to again."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def read_jsonl_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to a JSONL output (for resuming); a torn last line is repaired first."""
    path = Path(path)
    if not path.exists():
        return set()
    repair_jsonl_tail(path)
    ids: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                value = json.loads(line).get(key)
                if value is not None:
                    ids.add(str(value))
    return ids


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 120) -> None:
    """Write a matplotlib figure as a PNG atomically (a half-written plot never replaces a good one) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
