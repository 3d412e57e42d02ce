"""Quota check through the Service Quotas API (botocore Stubber on a real client: moto has only VPC quotas)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from sft.core.errors import UserError
from sft.sagemaker.launch import LaunchConfig, launch
from sft.sagemaker.quotas import candidates, check_quota, require_quota

PAGE_1 = {
    "Quotas": [
        {"ServiceCode": "sagemaker", "QuotaName": "ml.g5.2xlarge for training job usage", "Value": 1.0, "QuotaCode": "L-1"},
        {"ServiceCode": "sagemaker", "QuotaName": "ml.g5.2xlarge for spot training job usage", "Value": 0.0, "QuotaCode": "L-2"},
        {"ServiceCode": "sagemaker", "QuotaName": "ml.g5.xlarge for spot training job usage", "Value": 0.0, "QuotaCode": "L-3"},
    ],
    "NextToken": "page-2",
}
PAGE_2 = {
    "Quotas": [
        {"ServiceCode": "sagemaker", "QuotaName": "ml.g5.4xlarge for spot training job usage", "Value": 2.0, "QuotaCode": "L-4"},
        {"ServiceCode": "sagemaker", "QuotaName": "ml.g6.2xlarge for spot training job usage", "Value": 4.0, "QuotaCode": "L-5"},
    ]
}


def stubbed(*pages):
    client = boto3.client("service-quotas", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    token = None
    for page in pages:  # each page is requested with the previous page's NextToken
        stub.add_response("list_service_quotas", page, {"ServiceCode": "sagemaker"} | ({"NextToken": token} if token else {}))
        token = page.get("NextToken")
    stub.activate()
    return client, stub


def test_enough_quota_passes_and_reads_every_page():
    client, stub = stubbed(PAGE_1, PAGE_2)
    result = check_quota(client, "ml.g5.2xlarge", "training")
    assert result.ok and result.limit == 1.0
    stub.assert_no_pending_responses()


def test_zero_spot_quota_names_the_next_best_type():
    client, _ = stubbed(PAGE_1, PAGE_2)
    with pytest.raises(UserError) as e:
        require_quota(client, "us-west-2", "ml.g5.2xlarge", "spot-training")
    msg = str(e.value)
    assert "'ml.g5.2xlarge for spot training job usage' in us-west-2 is 0" in msg
    # Same family first (g5.xlarge has 0, so g5.4xlarge), before another family (g6.2xlarge).
    assert "--instance-type ml.g5.4xlarge" in msg


def test_more_instances_than_the_quota():
    client, _ = stubbed(PAGE_1, PAGE_2)
    result = check_quota(client, "ml.g5.2xlarge", "spot-training", needed=3)
    assert not result.ok and result.alternative == "ml.g6.2xlarge"


def test_unknown_quota_and_no_alternative():
    client, _ = stubbed({"Quotas": []})
    with pytest.raises(UserError, match="does not exist.*No similar GPU instance type"):
        require_quota(client, "us-west-2", "ml.g5.2xlarge", "training")


def test_candidates_nearest_first():
    c = candidates("ml.g5.2xlarge")
    assert c[:3] == ["ml.g5.xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge"]
    assert c.index("ml.g6.2xlarge") < c.index("ml.g4dn.2xlarge")
    assert "ml.g5.2xlarge" not in c


def test_launch_stops_before_creating_a_job(aws_env):
    """No quota for spot: launch fails with the message and SageMaker never sees a job."""
    cfg = LaunchConfig(image_uri="123456789012.dkr.ecr.us-west-2.amazonaws.com/geocomply:x",
                       role="arn:aws:iam::123456789012:role/R", train="s3://geo-bkt/t", output="s3://geo-bkt/o",
                       job_name="quota-stop-1")  # fmt: skip
    client, _ = stubbed(PAGE_1, PAGE_2, PAGE_1, PAGE_2)
    with pytest.raises(UserError, match="spot training job usage"):
        launch(cfg, wait=False, quota_client=client)
    jobs = boto3.client("sagemaker", region_name="us-west-2").list_training_jobs()["TrainingJobSummaries"]
    assert not [j for j in jobs if j["TrainingJobName"].startswith("quota-stop-1")]
