"""Small AWS helpers shared by launch, deploy and the quota check: sessions, S3 URIs, secret screening.

boto3 is imported inside functions so that ``geosft --help`` stays instant.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sft.core.errors import UserError
from sft.core.secrets import CREDENTIAL, looks_like_credential

DEFAULT_REGION = "us-west-2"
# Names that mark a value as a secret; such values may only be passed as references (an ARN the job
# resolves at runtime with its own role), never inline, because hyperparameters and environment
# variables are visible in DescribeTrainingJob, the console and CloudTrail.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY", re.I)
_SECRET_VALUE = CREDENTIAL
_REFERENCE = re.compile(r"^arn:aws[a-z-]*:(secretsmanager|ssm):")
# Names that say the value *is* a reference (e.g. TrainConfig's hf_token_secret: a Secrets Manager name).
_REFERENCE_NAME = re.compile(r"_SECRET(_NAME|_ARN|_ID)?$|_(SSM_)?PARAM(ETER)?$", re.I)


def boto_session(region: str) -> Any:
    import boto3

    return boto3.Session(region_name=region)


def check_s3_uri(uri: str, what: str) -> str:
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?", uri):
        raise UserError(f"{what}: {uri!r} is not an s3://bucket/prefix URI")
    return uri


def screen_secrets(values: dict[str, str], what: str) -> None:
    """Refuse inline secrets: secret-looking names must hold an ARN reference; known key formats anywhere."""
    for name, value in values.items():
        if _SECRET_VALUE.search(str(value)):
            raise UserError(f"{what} {name}: looks like a credential; pass a Secrets Manager/SSM ARN instead")
        if _SECRET_NAME.search(name) and not (_REFERENCE.match(str(value)) or _REFERENCE_NAME.search(name)):
            raise UserError(
                f"{what} {name}: secrets only by reference (arn:aws:secretsmanager:... or arn:aws:ssm:...), "
                "never the value itself"
            )


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{what} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def unique_name(base: str) -> str:
    """SageMaker-style unique name: ``base-YYYYmmdd-HHMMSS-mmm`` (≤ 63 chars, [a-zA-Z0-9-])."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"
    base = re.sub(r"[^a-zA-Z0-9-]", "-", base)[: 63 - len(stamp) - 1].strip("-")
    return f"{base}-{stamp}"


def read_token_secret(secret_id: str, region: str | None, *, what: str) -> str:
    """A token kept in Secrets Manager: the bare string, or a JSON object with an ``HF_TOKEN`` / ``hf_token`` /
    ``token`` key. ``what`` names the setting in errors. The value is never logged."""
    import json
    import logging

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    if looks_like_credential(secret_id):  # the token itself where its secret's name belongs: never echo it
        raise UserError(f"{what}: holds what looks like a token itself (not shown); give the name of the "
                        "Secrets Manager secret that holds it")
    # botocore's DEBUG log prints response bodies, i.e. the secret: keep it quiet for this one call.
    quiet = [logging.getLogger(n) for n in ("botocore", "boto3", "urllib3")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        client = boto3.client("secretsmanager", region_name=region)
        value = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as e:
        raise UserError(f"{what} {secret_id!r}: cannot read it ({e})") from None
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        value = next((data[k] for k in ("HF_TOKEN", "hf_token", "token") if k in data), None)
        if not value:
            raise UserError(f"{what} {secret_id!r}: JSON without an HF_TOKEN key")
    return value.strip()
