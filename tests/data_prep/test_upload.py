"""geoprep upload against moto's S3 server on 127.0.0.1 (real boto3 over HTTP): checksums, layout, errors."""

from __future__ import annotations

import base64
import hashlib
import socket
from pathlib import Path

import pytest

from data_prep.upload import upload
from sft.core.errors import UserError

LINE = ('{"instruction": "i", "input": "x", "output": "{\\"compliance_flag\\": \\"Needs Geo-Compliance\\", '
        '\\"law\\": \\"X\\", \\"citation\\": \\"X 1\\", \\"reason\\": \\"r\\"}", "id": "%s", "group": "g%s"}\n')


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch: pytest.MonkeyPatch):
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="geo-bucket")
    return client


def _data(tmp_path: Path, n_train: int = 3) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(LINE % (i, i) for i in range(n_train)))
    (d / "validation.jsonl").write_text(LINE % ("v", "v"))
    return d


def test_upload_puts_splits_under_prefix_with_verified_sha256(s3, s3_endpoint, tmp_path: Path):
    data = _data(tmp_path)
    done = upload(data, "s3://geo-bucket/runs/exp1", endpoint_url=s3_endpoint)
    assert [u.uri for u in done] == ["s3://geo-bucket/runs/exp1/data/train.jsonl",
                                     "s3://geo-bucket/runs/exp1/data/validation.jsonl"]
    assert [u.examples for u in done] == [3, 1]
    for u, name in zip(done, ("train", "validation"), strict=True):
        local = (data / f"{name}.jsonl").read_bytes()
        obj = s3.get_object(Bucket="geo-bucket", Key=f"runs/exp1/data/{name}.jsonl", ChecksumMode="ENABLED")
        assert obj["Body"].read() == local
        expected = base64.b64encode(hashlib.sha256(local).digest()).decode()
        assert obj["ChecksumSHA256"] == expected == u.sha256_b64


def test_cli_upload(s3, s3_endpoint, tmp_path: Path):
    from typer.testing import CliRunner

    from data_prep.cli import app

    data = _data(tmp_path, n_train=2)
    res = CliRunner().invoke(app, ["upload", str(data), "s3://geo-bucket/p", "--endpoint-url", s3_endpoint])
    assert res.exit_code == 0, res.output
    assert "s3://geo-bucket/p/data/train.jsonl  2 examples" in res.output and "verified" in res.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="geo-bucket", Prefix="p/")["Contents"]]
    assert sorted(keys) == ["p/data/train.jsonl", "p/data/validation.jsonl"]


def test_bad_data_is_rejected_before_anything_is_sent(s3, s3_endpoint, tmp_path: Path):
    data = _data(tmp_path)
    (data / "validation.jsonl").write_text('{"instruction": "i", "input": "x"}\n')
    with pytest.raises(UserError, match=r"validation\.jsonl:1: field 'output': missing"):
        upload(data, "s3://geo-bucket/bad", endpoint_url=s3_endpoint)
    assert s3.list_objects_v2(Bucket="geo-bucket", Prefix="bad/")["KeyCount"] == 0
    with pytest.raises(UserError, match="expected s3://"):
        upload(data, "geo-bucket/bad", endpoint_url=s3_endpoint)
    (data / "train.jsonl").unlink()
    with pytest.raises(UserError, match="run geoprep build first"):
        upload(data, "s3://geo-bucket/bad", endpoint_url=s3_endpoint)
