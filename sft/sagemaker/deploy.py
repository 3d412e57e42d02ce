"""``geosft deploy``: a real-time endpoint and/or a Batch Transform job from a training job's
``model.tar.gz``, served by the same image (SageMaker hosting starts the container with ``serve``).

``build_deploy_requests`` is pure (what ``--dry-run`` prints); ``deploy`` sends the same requests with boto3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sft.core.errors import UserError
from sft.sagemaker.aws import DEFAULT_REGION, check_s3_uri, screen_secrets, unique_name


@dataclass
class DeployConfig:
    image_uri: str = field(metadata={"help": "The image the model was trained with (serves with `serve`)."})
    model_data: str = field(metadata={"help": "s3://.../model.tar.gz of a finished training job."})
    role: str = ""
    name: str | None = None
    region: str = DEFAULT_REGION
    endpoint: bool = True
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    transform_input: str | None = None
    transform_output: str | None = None
    transform_instance_type: str = "ml.g5.xlarge"
    network_isolation: bool = False
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.image_uri:
            raise UserError("--image is required")
        check_s3_uri(self.model_data, "--model-data")
        if not self.model_data.endswith(".tar.gz"):
            raise UserError(f"--model-data {self.model_data}: expected the job's model.tar.gz")
        if bool(self.transform_input) != bool(self.transform_output):
            raise UserError("--transform-input and --transform-output go together")
        for opt in ("transform_input", "transform_output"):
            if getattr(self, opt):
                check_s3_uri(getattr(self, opt), f"--{opt.replace('_', '-')}")
        if not self.endpoint and not self.transform_input:
            raise UserError("nothing to do: --no-endpoint and no --transform-input")
        if self.role and not self.role.startswith("arn:aws"):
            raise UserError(f"--role {self.role!r}: expected an IAM role ARN")
        screen_secrets(self.environment, "environment")
        self.name = self.name or unique_name("geocomply")


def transform_timeout(instance_type: str) -> int:
    """Seconds one Batch Transform record may take. A 7B answers a feature in ~1-3 s on a GPU (constrained
    decoding: three scoring passes + ~48 reason tokens); on CPUs it takes minutes: the API's maximum."""
    gpu = instance_type.startswith(("ml.g", "ml.p", "ml.inf", "ml.trn"))
    return 600 if gpu else 3600


def build_deploy_requests(cfg: DeployConfig) -> dict[str, dict[str, Any]]:
    """{API name: request} in call order: CreateModel, then CreateEndpointConfig + CreateEndpoint and/or
    CreateTransformJob."""
    reqs: dict[str, dict[str, Any]] = {
        "CreateModel": {
            "ModelName": cfg.name,
            "PrimaryContainer": {
                "Image": cfg.image_uri,
                "ModelDataUrl": cfg.model_data,
                "Environment": dict(cfg.environment),
            },
            "ExecutionRoleArn": cfg.role or "<--role>",
            "EnableNetworkIsolation": cfg.network_isolation,
        }
    }
    if cfg.endpoint:
        reqs["CreateEndpointConfig"] = {
            "EndpointConfigName": cfg.name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": cfg.name,
                    "InstanceType": cfg.instance_type,
                    "InitialInstanceCount": cfg.instance_count,
                    # Loading an LLM takes longer than the 60 s default health-check budget.
                    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                    "ModelDataDownloadTimeoutInSeconds": 1200,
                }
            ],
        }
        reqs["CreateEndpoint"] = {"EndpointName": cfg.name, "EndpointConfigName": cfg.name}
    if cfg.transform_input:
        reqs["CreateTransformJob"] = {
            "TransformJobName": cfg.name,
            "ModelName": cfg.name,
            # One JSON object per line in and out; each line is one /invocations request. One feature is a
            # few hundred bytes: 1 MB is ample, and one record per request keeps each within its timeout
            # (a 6 MB multi-record payload is ~20k features, hours of decoding in one request).
            "BatchStrategy": "SingleRecord",
            "MaxPayloadInMB": 1,
            # The server answers one request at a time (the model holds the GPU): more in flight only queue,
            # and the queueing counts against each one's timeout.
            "MaxConcurrentTransforms": 1,
            "ModelClientConfig": {
                "InvocationsTimeoutInSeconds": transform_timeout(cfg.transform_instance_type),
                "InvocationsMaxRetries": 1,
            },
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": cfg.transform_input}},
                "ContentType": "application/jsonlines",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": cfg.transform_output,
                "Accept": "application/jsonlines",
                "AssembleWith": "Line",
            },
            "TransformResources": {"InstanceType": cfg.transform_instance_type, "InstanceCount": 1},
        }
    return reqs


def model_data_of(client: Any, training_job: str) -> str:
    """The model.tar.gz of a completed training job."""
    job = client.describe_training_job(TrainingJobName=training_job)
    if job["TrainingJobStatus"] != "Completed":
        raise UserError(f"training job {training_job} is {job['TrainingJobStatus']}, not Completed")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def deploy(cfg: DeployConfig, client: Any, *, wait: bool) -> dict[str, dict[str, Any]]:
    """Send the requests in order; returns {API name: response}."""
    if not cfg.role:
        raise UserError("--role is required to deploy (the SageMaker execution role ARN)")
    calls = {
        "CreateModel": client.create_model,
        "CreateEndpointConfig": client.create_endpoint_config,
        "CreateEndpoint": client.create_endpoint,
        "CreateTransformJob": client.create_transform_job,
    }
    out = {api: calls[api](**req) for api, req in build_deploy_requests(cfg).items()}
    if wait and cfg.endpoint:
        client.get_waiter("endpoint_in_service").wait(EndpointName=cfg.name)
    if wait and cfg.transform_input:
        client.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=cfg.name)
    return out


def deploy_from_cli(make: Any, training_job: str | None, model_data: str | None, region: str, *,
                    wait: bool, check_quotas: bool) -> str:  # fmt: skip
    """Resolve the model artefact (from the training job when not given), check quotas, deploy."""
    from sft.sagemaker.aws import boto_session
    from sft.sagemaker.quotas import require_quota

    session = boto_session(region)
    client = session.client("sagemaker")
    cfg: DeployConfig = make(model_data or model_data_of(client, training_job or ""))
    if check_quotas:
        sq = session.client("service-quotas")
        if cfg.endpoint:
            require_quota(sq, region, cfg.instance_type, "endpoint", cfg.instance_count)
        if cfg.transform_input:
            require_quota(sq, region, cfg.transform_instance_type, "transform", 1)
    deploy(cfg, client, wait=wait)
    parts = [f"model {cfg.name}"]
    if cfg.endpoint:
        parts.append(f"endpoint {cfg.name}")
    if cfg.transform_input:
        parts.append(f"transform job {cfg.name} -> {cfg.transform_output}")
    return ", ".join(parts)
