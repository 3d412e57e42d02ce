"""The shared table readers: nothing swallowed, every problem named by file and line."""

from __future__ import annotations

import io
import os

import pytest

from sft.core.contract import ContractError, iter_jsonl
from sft.core.tables import check_unique_ids, csv_records, open_text


def test_non_utf8_is_a_one_line_error_naming_the_line(tmp_path):
    csv_file = tmp_path / "f.csv"
    csv_file.write_bytes(b"id,name,description\n1,a,b\n2,caf\xe9,x\n")
    with pytest.raises(ContractError, match=r"f\.csv:3: not UTF-8 text \(byte b'\\xe9'\)"):
        open_text(csv_file)
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"b": "caf\xe9"}\n' + b"[" * 100_000 + b"\n{\"c\": 3}\n")
    errors: list = []
    assert [obj for _, obj in iter_jsonl(jsonl, errors.append)] == [{"a": 1}, {"c": 3}]  # BOM on line 1 is fine
    assert [str(e).split(": ", 1)[0] for e in errors] == [f"{jsonl}:2", f"{jsonl}:3"]
    assert "not UTF-8" in str(errors[0]) and "nested too deeply" in str(errors[1])


def test_csv_records_start_lines_line_endings_and_limits():
    text = 'id,name\r1,"two\rlines"\r\r3,c\r'  # CR-only endings, a quoted field over two lines, a blank line
    assert list(csv_records(io.StringIO(text, newline=""), "f")) == [(1, ["id", "name"]), (2, ["1", "two\rlines"]),
                                                                    (5, ["3", "c"])]
    with pytest.raises(ContractError, match=r"^f:3: unterminated quote: a quoted field opens on line 3"):
        list(csv_records(io.StringIO('a,b\n1,2\n3,"x\n4,5\n5,6\n', newline=""), "f"))
    with pytest.raises(ContractError, match=r"^f:2: a field is longer than the 131072-character limit"):
        list(csv_records(io.StringIO("a\n" + "x" * 200_000 + "\n", newline=""), "f"))


def test_duplicate_ids_policies():
    rows = [("f:2", {"id": "a", "v": 1}), ("f:3", {"id": None, "v": 2}), ("f:4", {"id": "a", "v": 3}),
            ("f:5", {"id": None, "v": 4})]

    def key(row):
        return row["id"]

    with pytest.raises(ContractError, match=r"^f:4: id 'a': already used at f:2"):
        check_unique_ids(rows, key)
    dropped: list = []
    assert [r["v"] for _, r in check_unique_ids(rows, key, "first", dropped.append)] == [1, 2, 4]
    assert [r["v"] for _, r in check_unique_ids(rows, key, "last")] == [2, 3, 4]
    assert dropped == ["f:4: id 'a': already used at f:2 (kept the first)"]
    with pytest.raises(ContractError, match="--on-duplicate must be one of error, first, last"):
        check_unique_ids(rows, key, "both")


def test_atomic_writes_follow_the_umask(tmp_path):
    from sft.core.files import write_text_atomic

    old = os.umask(0o002)
    try:
        write_text_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o664  # mkstemp alone gives 0600
