"""geosft deploy: dry-run requests (endpoint + Batch Transform, same image) and a real deploy against moto."""

from __future__ import annotations

import json

import boto3
import pytest
from typer.testing import CliRunner

from sft.cli import app
from sft.core.errors import UserError
from sft.sagemaker.deploy import DeployConfig, build_deploy_requests, deploy, model_data_of

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/geocomply:0123abc"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
MODEL = "s3://geo-bkt/runs/sft-1/output/model.tar.gz"


def test_dry_run_prints_model_endpoint_and_transform_requests():
    res = CliRunner().invoke(app, [
        "deploy", "--dry-run", "--image", IMAGE, "--role", ROLE, "--model-data", MODEL, "--name", "geo-1",
        "--transform-input", "s3://geo-bkt/predict/in", "--transform-output", "s3://geo-bkt/predict/out",
    ], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    reqs = json.loads(res.output)
    assert list(reqs) == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint", "CreateTransformJob"]
    container = reqs["CreateModel"]["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == MODEL
    assert reqs["CreateModel"]["ExecutionRoleArn"] == ROLE
    variant = reqs["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["ModelName"] == "geo-1" and variant["InstanceType"] == "ml.g5.xlarge"
    assert reqs["CreateEndpoint"] == {"EndpointName": "geo-1", "EndpointConfigName": "geo-1"}
    tj = reqs["CreateTransformJob"]
    assert tj["ModelName"] == "geo-1"
    assert tj["TransformInput"]["SplitType"] == "Line"
    assert tj["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://geo-bkt/predict/in"
    assert tj["TransformOutput"]["S3OutputPath"] == "s3://geo-bkt/predict/out"
    # One feature per request, one request at a time, each within its timeout.
    assert (tj["BatchStrategy"], tj["MaxPayloadInMB"], tj["MaxConcurrentTransforms"]) == ("SingleRecord", 1, 1)
    assert tj["ModelClientConfig"]["InvocationsTimeoutInSeconds"] == 600  # ml.g5.xlarge


def test_transform_timeout_follows_the_instance():
    from sft.sagemaker.deploy import transform_timeout

    assert transform_timeout("ml.g4dn.xlarge") == 600 and transform_timeout("ml.m5.xlarge") == 3600


@pytest.mark.parametrize(
    "args, message",
    [
        (["--training-job", "sft-1"], "--model-data"),  # dry-run cannot describe the job
        (["--model-data", "s3://geo-bkt/model/"], "model.tar.gz"),
        (["--model-data", MODEL, "--transform-input", "s3://geo-bkt/in"], "go together"),
        (["--model-data", MODEL, "--no-endpoint"], "nothing to do"),
        (["--model-data", MODEL, "--env", "API_KEY=plain"], "secrets only by reference"),
    ],
)
def test_bad_deploy_input(args, message):
    res = CliRunner().invoke(app, ["deploy", "--dry-run", "--image", IMAGE, *args])
    assert res.exit_code != 0
    assert message in str(res.exception) + res.output


def test_deploy_against_moto_uses_the_training_jobs_artifact(aws_env, monkeypatch):
    from sft.sagemaker.launch import LaunchConfig, launch

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    job = launch(LaunchConfig(image_uri=IMAGE, role=ROLE, train="s3://geo-bkt/t", output="s3://geo-bkt/runs",
                              job_name="sft-deploy-src"), wait=False, check_quotas=False)  # fmt: skip
    sm = boto3.client("sagemaker", region_name="us-west-2")
    data = model_data_of(sm, job)
    assert data.endswith("model.tar.gz")
    # moto's instance-type list predates g5, so this test uses g4dn.
    cfg = DeployConfig(image_uri=IMAGE, model_data=data, role=ROLE, name="geo-moto-1",
                       instance_type="ml.g4dn.xlarge", transform_instance_type="ml.g4dn.xlarge",
                       transform_input="s3://geo-bkt/in", transform_output="s3://geo-bkt/out")  # fmt: skip
    deploy(cfg, sm, wait=False)
    model = sm.describe_model(ModelName="geo-moto-1")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == data
    assert sm.describe_endpoint_config(EndpointConfigName="geo-moto-1")["ProductionVariants"][0]["ModelName"] == "geo-moto-1"
    assert sm.describe_endpoint(EndpointName="geo-moto-1")["EndpointConfigName"] == "geo-moto-1"
    tj = sm.describe_transform_job(TransformJobName="geo-moto-1")
    assert tj["ModelName"] == "geo-moto-1" and tj["TransformOutput"]["S3OutputPath"] == "s3://geo-bkt/out"
    assert build_deploy_requests(cfg)["CreateModel"]["PrimaryContainer"]["Image"] == model["PrimaryContainer"]["Image"]


def test_deploy_needs_a_role():
    with pytest.raises(UserError, match="--role"):
        deploy(DeployConfig(image_uri=IMAGE, model_data=MODEL), client=None, wait=False)
