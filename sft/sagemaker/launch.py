"""``geosft launch``: run training on SageMaker with the geocomply image (SDK v3 ``ModelTrainer``).

``build_training_request`` is a pure function: the CreateTrainingJob request that ``--dry-run`` prints, and
the single source the real launch configures ``ModelTrainer`` from (a test checks that the job SageMaker
receives equals the printed request). The image's ``train`` reads the string hyperparameters with the
training config's field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft.core.errors import UserError
from sft.sagemaker.aws import DEFAULT_REGION, check_s3_uri, screen_secrets, unique_name
from sft.sagemaker.env import OptMl

# Regexes over the training log; SageMaker turns the captures into console charts and CloudWatch metrics.
# The HF Trainer prints dicts such as {'loss': '6.258', 'grad_norm': '0.04479', ...} (transformers 5 quotes
# the numbers; 4.x did not) and {'eval_loss': '6.253', ...}; geosft train logs the generated-answer check as
# "generated answers: 92% valid JSON, 71% correct label".
_NUM = r"['\"]?([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def _key(name: str) -> str:
    return rf"['\"]{name}['\"]:\s*" + _NUM


METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": _key("loss")},
    {"Name": "train:learning_rate", "Regex": _key("learning_rate")},
    {"Name": "train:grad_norm", "Regex": _key("grad_norm")},
    {"Name": "train:mean_token_accuracy", "Regex": _key("mean_token_accuracy")},
    {"Name": "train:epoch", "Regex": _key("epoch")},
    {"Name": "eval:loss", "Regex": _key("eval_loss")},
    {"Name": "eval:mean_token_accuracy", "Regex": _key("eval_mean_token_accuracy")},
    {"Name": "eval:valid_json_pct", "Regex": r"generated answers: ([0-9.]+)% valid JSON"},
    {"Name": "eval:label_accuracy_pct", "Regex": r"valid JSON, ([0-9.]+)% correct label"},
]
IN_CONTAINER = OptMl.in_container()
CHECKPOINT_LOCAL_PATH = str(IN_CONTAINER.checkpoint_dir)


@dataclass
class LaunchConfig:
    image_uri: str = field(metadata={"help": "ECR URI of the geocomply image (container/build_and_push.sh)."})
    train: str = field(metadata={"help": "s3:// prefix or local file/dir of train JSONL."})
    output: str = field(metadata={"help": "s3:// prefix for model.tar.gz and output."})
    role: str = field(default="", metadata={"help": "SageMaker execution role ARN (required to launch)."})
    validation: str | None = field(default=None, metadata={"help": "s3:// prefix or local file/dir of validation JSONL."})
    model_channel: str | None = field(
        default=None, metadata={"help": "s3:// prefix of a base model (for network-isolated jobs)."}
    )
    checkpoint: str | None = field(default=None, metadata={"help": "s3:// checkpoint URI (spot resume)."})
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = 1
    volume_gb: int = 100
    region: str = DEFAULT_REGION
    spot: bool = True
    max_run_s: int = 24 * 3600
    max_wait_s: int = 48 * 3600
    network_isolation: bool = False
    job_name: str | None = None
    base_job_name: str = "geocomply-sft"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    local_inputs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.image_uri:
            raise UserError("--image is required (the ECR URI printed by container/build_and_push.sh)")
        self.job_name = self.job_name or unique_name(self.base_job_name)
        check_s3_uri(self.output, "--output")
        if self.checkpoint:
            check_s3_uri(self.checkpoint, "--checkpoint")
        # Channels may be local files/dirs: they are uploaded to OUTPUT/JOB/input/CHANNEL before launching.
        for name, channel in (("train", "train"), ("validation", "validation"), ("model_channel", "model")):
            value = getattr(self, name)
            if not value or value.startswith("s3://"):
                if value:
                    check_s3_uri(value, f"--{name.replace('_', '-')}")
                continue
            if not Path(value).exists():
                raise UserError(f"--{name.replace('_', '-')} {value}: no such file or directory (or give an s3:// URI)")
            self.local_inputs[channel] = Path(value)
            setattr(self, name, f"{self.output.rstrip('/')}/{self.job_name}/input/{channel}")
        if self.instance_count < 1:
            raise UserError("--instance-count must be ≥ 1")
        if self.spot and self.max_wait_s < self.max_run_s:
            raise UserError("--max-wait must be ≥ --max-run for managed spot training")
        if self.network_isolation and not self.model_channel:
            raise UserError("--network-isolation needs --model-channel (the job cannot download a base model)")
        if self.role and not self.role.startswith("arn:aws"):
            raise UserError(f"--role {self.role!r}: expected an IAM role ARN")
        screen_secrets({k: str(v) for k, v in self.hyperparameters.items()}, "hyperparameter")
        screen_secrets(self.environment, "environment")
        # What the container will decode and validate, checked here: a typo must not cost an instance start.
        from sft.sagemaker.env import decode_hyperparameter
        from sft.training.config import TrainConfig

        train = TrainConfig.from_hyperparameters(
            {k: decode_hyperparameter(v) for k, v in self.string_hyperparameters().items()}, where="--config/--hp")
        from sft.sagemaker.preflight import HOST_GIB, KNOWN_ARCHS, Arch, check_merge_host

        if train.merge and train.model in KNOWN_ARCHS and self.instance_type in HOST_GIB:
            # The merge runs after training: out of host memory there would lose the hours before it.
            check_merge_host(Arch.from_config(KNOWN_ARCHS[train.model]), HOST_GIB[self.instance_type],
                             self.instance_type, self.instance_type)

    @property
    def checkpoint_uri(self) -> str:
        return self.checkpoint or f"{self.output.rstrip('/')}/{self.job_name}/checkpoints"

    def string_hyperparameters(self) -> dict[str, str]:
        """SageMaker carries hyperparameters as strings; lists/dicts go as JSON (the image decodes them)."""
        import json

        hp = dict(self.hyperparameters)
        if self.model_channel:
            hp.setdefault("model", str(IN_CONTAINER.channel("model")))
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in hp.items()}

    def channels(self) -> dict[str, str]:
        pairs = {"train": self.train, "validation": self.validation, "model": self.model_channel}
        return {k: v for k, v in pairs.items() if v}


def load_hyperparameters(config: Path | None, overrides: dict[str, str]) -> dict[str, Any]:
    """Hyperparameters from a YAML training config (a mapping of TrainConfig fields) plus --hp overrides."""
    import yaml

    hp: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"{config}: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{config}: expected a mapping of training config fields")
        hp.update({k: v for k, v in (loaded or {}).items() if v is not None})  # null: the image's default
    hp.update(overrides)
    return hp


def build_training_request(cfg: LaunchConfig) -> dict[str, Any]:
    """The CreateTrainingJob request (API field names) for ``cfg``; no AWS call."""
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": cfg.max_run_s}
    if cfg.spot:
        stopping["MaxWaitTimeInSeconds"] = cfg.max_wait_s
    req: dict[str, Any] = {
        "TrainingJobName": cfg.job_name,
        "AlgorithmSpecification": {
            "TrainingImage": cfg.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": cfg.role or "<--role>",
        "HyperParameters": cfg.string_hyperparameters(),
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for name, uri in cfg.channels().items()
        ],
        "OutputDataConfig": {"S3OutputPath": cfg.output},
        "ResourceConfig": {
            "InstanceType": cfg.instance_type,
            "InstanceCount": cfg.instance_count,
            "VolumeSizeInGB": cfg.volume_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": cfg.spot,
        "CheckpointConfig": {"S3Uri": cfg.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH},
        "EnableNetworkIsolation": cfg.network_isolation,
        "Environment": dict(cfg.environment),
    }
    return req


def upload_inputs(cfg: LaunchConfig, s3: Any) -> list[str]:
    """Upload local channel files/dirs to their S3 channel prefixes; returns the uploaded URIs."""
    uris = []
    for channel, local in cfg.local_inputs.items():
        bucket, _, prefix = cfg.channels()[channel].removeprefix("s3://").partition("/")
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        if not files:
            raise UserError(f"{local}: no files to upload for channel '{channel}'")
        for f in files:
            key = f"{prefix}/{f.name if f == local else f.relative_to(local).as_posix()}"
            s3.upload_file(str(f), bucket, key)
            uris.append(f"s3://{bucket}/{key}")
    return uris


def model_trainer(cfg: LaunchConfig, session: Any) -> tuple[Any, list[Any]]:
    """The SDK v3 ``ModelTrainer`` (and its input channels) equivalent to ``build_training_request(cfg)``."""
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        MetricDefinition,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.train import ModelTrainer

    stopping = {"max_runtime_in_seconds": cfg.max_run_s}
    if cfg.spot:
        stopping["max_wait_time_in_seconds"] = cfg.max_wait_s
    trainer = ModelTrainer(
        sagemaker_session=Session(boto_session=session),
        role=cfg.role,
        training_image=cfg.image_uri,
        compute=Compute(
            instance_type=cfg.instance_type,
            instance_count=cfg.instance_count,
            volume_size_in_gb=cfg.volume_gb,
            enable_managed_spot_training=cfg.spot,
        ),
        stopping_condition=StoppingCondition(**stopping),
        output_data_config=OutputDataConfig(s3_output_path=cfg.output),
        checkpoint_config=CheckpointConfig(s3_uri=cfg.checkpoint_uri, local_path=CHECKPOINT_LOCAL_PATH),
        networking=Networking(enable_network_isolation=cfg.network_isolation) if cfg.network_isolation else None,
        hyperparameters=cfg.string_hyperparameters(),
        environment=dict(cfg.environment),
        base_job_name=cfg.base_job_name,
    ).with_metric_definitions([MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in METRIC_DEFINITIONS])
    inputs = [InputData(channel_name=k, data_source=v) for k, v in cfg.channels().items()]
    return trainer, inputs


def launch(cfg: LaunchConfig, *, wait: bool, check_quotas: bool = True, quota_client: Any = None) -> str:
    """Check quotas, then start the job; returns the training job name."""
    from sft.sagemaker.aws import boto_session
    from sft.sagemaker.quotas import require_quota

    if not cfg.role:
        raise UserError("--role is required to launch (the SageMaker execution role ARN)")
    session = boto_session(cfg.region)
    if check_quotas:
        sq = quota_client or session.client("service-quotas")
        require_quota(sq, cfg.region, cfg.instance_type, "training", cfg.instance_count)
        if cfg.spot:
            require_quota(sq, cfg.region, cfg.instance_type, "spot-training", cfg.instance_count)
    upload_inputs(cfg, session.client("s3"))
    trainer, inputs = model_trainer(cfg, session)
    # ModelTrainer names the job itself (base_job_name + timestamp); pin ours so that the printed request,
    # the checkpoint prefix and the job agree.
    trainer.base_job_name = cfg.job_name
    trainer.train(input_data_config=inputs, wait=wait, logs=wait)
    job = trainer._latest_training_job
    return job.training_job_name if job is not None else cfg.job_name
