"""Law chunks on disk: JSONL, one :class:`~sft.core.contract.LawContext` per line (``model_dump_json()``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from sft.core.contract import LawContext, read_records
from sft.core.files import atomic_open


def read_chunks(path: str | Path) -> Iterator[LawContext]:
    """Yield chunks; a bad line raises :class:`ContractError` naming ``file:line`` and the field."""
    yield from read_records(path, LawContext)


def write_chunks(path: str | Path, chunks: Iterable[LawContext]) -> int:
    """Write chunks atomically (a crash leaves the old file, never half a new one). Returns the count."""
    n = 0
    with atomic_open(path) as fh:
        for chunk in chunks:
            fh.write(chunk.model_dump_json())
            fh.write("\n")
            n += 1
    return n
