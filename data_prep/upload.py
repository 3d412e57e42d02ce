"""``geoprep upload``: put train/validation JSONL on S3 where ``geosft launch`` expects them, verified.

Layout: ``s3://BUCKET/PREFIX/data/train.jsonl`` and ``.../validation.jsonl`` (the SageMaker channels).
Each object is uploaded with a SHA-256 checksum computed locally (S3 rejects the upload if the bytes it
received differ), then read back with ``ChecksumMode=ENABLED`` and compared again: what training reads is
exactly what was built. Files are validated against the data contract before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft.core.contract import read_examples
from sft.core.errors import UserError

SPLITS = ("train", "validation")


@dataclass
class Uploaded:
    split: str
    uri: str
    sha256_b64: str
    examples: int
    bytes: int


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise UserError(f"{uri}: expected s3://BUCKET/PREFIX")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise UserError(f"{uri}: missing bucket name")
    return bucket, prefix.strip("/")


def sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return base64.b64encode(h.digest()).decode()


def upload(data_dir: str | Path, s3_uri: str, *, client: Any = None, endpoint_url: str | None = None,
           region: str | None = None) -> list[Uploaded]:
    """Validate and upload ``DATA_DIR/{train,validation}.jsonl`` to ``S3_URI/data/``; returns what was sent."""
    data_dir = Path(data_dir)
    bucket, prefix = parse_s3_uri(s3_uri)
    files = {s: data_dir / f"{s}.jsonl" for s in SPLITS}
    counts = {}
    for split, path in files.items():
        if not path.is_file():
            raise UserError(f"{path}: no such file (run geoprep build first)")
        counts[split] = sum(1 for _ in read_examples(path))  # raises file:line errors on bad lines
        if counts[split] == 0:
            raise UserError(f"{path}: no examples")
    if client is None:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    out = []
    for split, path in files.items():
        key = "/".join(p for p in (prefix, "data", f"{split}.jsonl") if p)
        digest = sha256_b64(path)
        with path.open("rb") as fh:
            client.put_object(Bucket=bucket, Key=key, Body=fh, ChecksumAlgorithm="SHA256", ChecksumSHA256=digest)
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        remote = head.get("ChecksumSHA256")
        if remote != digest or head.get("ContentLength") != path.stat().st_size:
            raise UserError(
                f"s3://{bucket}/{key}: verification failed (local sha256 {digest}, remote {remote}, "
                f"size {path.stat().st_size} vs {head.get('ContentLength')})"
            )
        out.append(Uploaded(split, f"s3://{bucket}/{key}", digest, counts[split], path.stat().st_size))
    return out
