"""Reading feature tables without losing rows: one CSV reader and one duplicate-id rule for every path
(``geoprep import``, ``geosft predict``, the endpoint).

The standard library's ``csv.DictReader`` in its default (non-strict) mode turns one unclosed quote into a
field that swallows the rest of the file, and ``line_num`` then names the file's last line (a probe: a stray
quote on line 3 of a 1,000-row file became "1 features imported", 998 rows gone, the error blamed line 1001).
Here the reader is strict, every record carries the line it *starts* on, and an unterminated quote is a
fatal error naming that line: it cannot be skipped, because there is no way to know where the next row
begins. Blank lines are skipped like DictReader does; a field over the csv module's 128 KiB limit is an error
naming its line, not a traceback.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from sft.core.contract import ContractError

T = TypeVar("T")

ON_DUPLICATE = ("error", "first", "last")
"""What to do with a row whose id an earlier row already used: stop (default), keep the first, keep the last."""


def csv_records(fh: IO[str], where: str) -> Iterator[tuple[int, list[str]]]:
    """``(line the record starts on, cells)`` for each non-blank record of an open CSV (``newline=''``).

    ``where`` is the file name used in errors (``where:line: problem``). CR-only, LF and CRLF line endings
    all work when the file is opened with ``newline=''``.
    """
    reader = csv.reader(fh, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            msg = str(e)
            if "end of data" in msg or "EOF" in msg:
                raise ContractError(
                    f"{where}:{start}: unterminated quote: a quoted field opens on line {start} and never closes "
                    f"(lines {start}-{reader.line_num} would become one field); close or escape the quote (\"\")"
                ) from None
            if "field larger than field limit" in msg:
                raise ContractError(f"{where}:{start}: a field is longer than the {csv.field_size_limit()}-character "
                                    "limit") from None
            raise ContractError(f"{where}:{reader.line_num}: malformed CSV: {msg}") from None
        if row:
            yield start, row
        start = reader.line_num + 1


def open_text(path: str | Path) -> io.StringIO:
    """A UTF-8 file (a BOM is dropped) as text for :func:`csv_records`; bytes that are not UTF-8 are a
    ContractError naming the line, not a UnicodeDecodeError traceback."""
    data = Path(path).read_bytes()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ContractError(f"{path}:{line}: not UTF-8 text (byte {data[e.start:e.start + 1]!r}); save the file "
                            "as UTF-8") from None


def csv_dicts(fh: IO[str], where: str) -> tuple[list[str], Iterator[tuple[int, dict[str, str | None]]]]:
    """The header and ``(line, {column: value})`` rows, like ``csv.DictReader`` (short rows get None, extra
    cells go under the None key) but strict and with the line each row starts on."""
    records = csv_records(fh, where)
    first = next(records, None)
    header = first[1] if first else []

    def rows() -> Iterator[tuple[int, dict[str, str | None]]]:
        for line, cells in records:
            row: dict = dict(zip(header, cells, strict=False))
            for col in header[len(cells):]:
                row[col] = None
            if len(cells) > len(header):
                row[None] = cells[len(header):]
            yield line, row

    return header, rows()


def check_unique_ids(
    items: Iterable[tuple[str, T]], key: Callable[[T], str | None], policy: str = "error",
    on_drop: Callable[[str], None] | None = None,
) -> list[tuple[str, T]]:
    """``(where, item)`` pairs with each id once. ``policy``: ``error`` raises ContractError at the second use
    (``where: id 'x': already used at first_where``); ``first``/``last`` keep that one and report the other
    through ``on_drop``. Items whose key is None are all kept."""
    if policy not in ON_DUPLICATE:
        raise ContractError(f"--on-duplicate must be one of {', '.join(ON_DUPLICATE)}, got {policy!r}")
    out: list[tuple[str, T] | None] = []
    index: dict[str, int] = {}
    for where, item in items:
        fid = key(item)
        if fid is None or fid not in index:
            if fid is not None:
                index[fid] = len(out)
            out.append((where, item))
            continue
        first_where = out[index[fid]][0]  # type: ignore[index]
        msg = f"{where}: id {fid!r}: already used at {first_where}"
        if policy == "error":
            raise ContractError(msg + " (ids must be unique; --on-duplicate first|last keeps one)")
        if on_drop:
            on_drop(msg + f" (kept the {policy})")
        if policy == "last":
            out[index[fid]] = None
            index[fid] = len(out)
            out.append((where, item))
    return [x for x in out if x is not None]
