"""Check SageMaker instance quotas (Service Quotas API) before launching, so a job stops early with a clear
message and the next-best instance type instead of failing late with ``ResourceLimitExceeded``.

SageMaker quota names follow ``"<instance type> for <usage>"``, e.g. ``ml.g5.2xlarge for spot training job
usage``; new accounts often have 0 for GPU instances, which is exactly the case this guards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sft.core.errors import UserError

USAGE = {
    "training": "training job usage",
    "spot-training": "spot training job usage",
    "endpoint": "endpoint usage",
    "transform": "transform job usage",
}
# Instances that fit a 135M-8B LoRA fine-tune, in the order we would fall back to them: A10G (g5) first,
# then L4 (g6), then T4 (g4dn, no bf16 — slower, but widely available).
GPU_FAMILIES = ["g5", "g6", "g4dn"]
SIZES = ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"]


@dataclass(frozen=True)
class QuotaCheck:
    instance_type: str
    usage: str
    limit: float | None  # None: no quota of that name (unknown type or region)
    needed: int
    alternative: str | None = None

    @property
    def ok(self) -> bool:
        return self.limit is not None and self.limit >= self.needed

    def message(self, region: str) -> str:
        quota = f"'{self.instance_type} for {USAGE[self.usage]}'"
        have = "does not exist" if self.limit is None else f"is {self.limit:g}"
        msg = f"SageMaker quota {quota} in {region} {have}; this job needs {self.needed}."
        if self.alternative:
            msg += f" Next-best instance type with quota: {self.alternative} (--instance-type {self.alternative})."
        else:
            msg += " No similar GPU instance type has quota either."
        return msg + " Request an increase in the Service Quotas console (service: Amazon SageMaker)."


def sagemaker_quotas(client: Any) -> dict[str, float]:
    """All SageMaker quota values by quota name (applied values, which include granted increases)."""
    out: dict[str, float] = {}
    for page in client.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"):
        for q in page.get("Quotas", []):
            out[q["QuotaName"]] = float(q["Value"])
    return out


def candidates(instance_type: str) -> list[str]:
    """Alternatives to ``instance_type``, nearest first: same family by size distance, then other GPU
    families at the same size and outward."""
    try:
        _, family, size = instance_type.split(".")
    except ValueError:
        raise UserError(f"instance type {instance_type!r}: expected ml.<family>.<size>") from None
    rank = SIZES.index(size) if size in SIZES else 1
    by_distance = sorted(SIZES, key=lambda s: (abs(SIZES.index(s) - rank), SIZES.index(s)))
    families = [family] + [f for f in GPU_FAMILIES if f != family]
    return [f"ml.{f}.{s}" for f in families for s in by_distance if f"ml.{f}.{s}" != instance_type]


def check_quota(client: Any, instance_type: str, usage: str, needed: int = 1) -> QuotaCheck:
    if usage not in USAGE:
        raise ValueError(f"usage must be one of {sorted(USAGE)}")
    quotas = sagemaker_quotas(client)
    limit = quotas.get(f"{instance_type} for {USAGE[usage]}")
    if limit is not None and limit >= needed:
        return QuotaCheck(instance_type, usage, limit, needed)
    alt = next((c for c in candidates(instance_type) if quotas.get(f"{c} for {USAGE[usage]}", 0) >= needed), None)
    return QuotaCheck(instance_type, usage, limit, needed, alt)


def require_quota(client: Any, region: str, instance_type: str, usage: str, needed: int = 1) -> None:
    """Raise a UserError with the next-best instance type when the quota does not cover ``needed``."""
    result = check_quota(client, instance_type, usage, needed)
    if not result.ok:
        raise UserError(result.message(region))
