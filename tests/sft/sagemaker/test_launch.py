"""geosft launch: the dry-run request, secret screening, metric regexes, and a real launch against moto."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from sft.cli import app
from sft.core.errors import UserError
from sft.sagemaker.launch import METRIC_DEFINITIONS, LaunchConfig, build_training_request, launch

IMAGE = "123456789012.dkr.ecr.us-west-2.amazonaws.com/geocomply:0123abc"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
SECRET_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:hf-token-AbCdEf"


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_dry_run_prints_the_full_training_request(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("model: demo\nepochs: 2\nlearning_rate: 2.0e-4\ntarget_modules: [q_proj, v_proj]\nlora_r: null\n")
    res = run_cli(
        "launch", "--dry-run", "--image", IMAGE, "--role", ROLE,
        "--train", "s3://geo-bkt/data/train", "--validation", "s3://geo-bkt/data/validation",
        "--output", "s3://geo-bkt/runs", "--config", str(config), "--hp", "epochs=3", "--hp", "hf_token_secret=prod/hf-token",
        "--env", f"HF_TOKEN_SECRET_ARN={SECRET_ARN}", "--job-name", "sft-test-1",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    req = json.loads(res.output)["CreateTrainingJob"]
    assert req["TrainingJobName"] == "sft-test-1"
    assert req["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert req["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert req["RoleArn"] == ROLE
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    assert channels == {"train": "s3://geo-bkt/data/train", "validation": "s3://geo-bkt/data/validation"}
    assert req["EnableManagedSpotTraining"] is True
    stop = req["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] > 0
    assert req["CheckpointConfig"] == {"S3Uri": "s3://geo-bkt/runs/sft-test-1/checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    assert req["OutputDataConfig"]["S3OutputPath"] == "s3://geo-bkt/runs"
    # Hyperparameters: strings, --hp overrides the YAML, lists as JSON, a YAML null leaves the image's default.
    hp = req["HyperParameters"]
    assert hp == {"model": "demo", "epochs": "3", "learning_rate": "0.0002",
                  "target_modules": '["q_proj", "v_proj"]', "hf_token_secret": "prod/hf-token"}  # fmt: skip
    # The secret goes by reference only.
    assert req["Environment"] == {"HF_TOKEN_SECRET_ARN": SECRET_ARN}
    assert {m["Name"] for m in req["AlgorithmSpecification"]["MetricDefinitions"]} >= {"train:loss", "eval:loss"}


def test_no_spot_and_model_channel_for_network_isolation():
    cfg = LaunchConfig(image_uri=IMAGE, train="s3://geo-bkt/t", output="s3://geo-bkt/o", spot=False,
                       model_channel="s3://geo-bkt/models/smollm2", network_isolation=True)  # fmt: skip
    req = build_training_request(cfg)
    assert req["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in req["StoppingCondition"]
    assert req["EnableNetworkIsolation"] is True
    assert req["HyperParameters"]["model"] == "/opt/ml/input/data/model"
    assert [c["ChannelName"] for c in req["InputDataConfig"]] == ["train", "model"]
    with pytest.raises(UserError, match="--model-channel"):
        LaunchConfig(image_uri=IMAGE, train="s3://geo-bkt/t", output="s3://geo-bkt/o", network_isolation=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "HF_TOKEN=hf_" + "a" * 34], "HF_TOKEN"),
        (["--env", "WANDB_API_KEY=0123456789abcdef"], "secrets only by reference"),
        (["--hp", "hf_token=abc123"], "secrets only by reference"),
        (["--hp", "note=AKIA" + "A" * 16], "credential"),
        (["--train", "/local/train.jsonl"], "s3://"),
        (["--max-wait-hours", "1"], "--max-wait"),
        # What the container would refuse minutes into a paid job is refused before launching.
        (["--hp", "lora_rank=16"], "--config/--hp: unknown setting 'lora_rank'"),
        (["--hp", "data=s3://geo-bkt/other"], "'data' is set by the container"),
        (["--hp", "model=deepseek-ai/deepseek-llm-8b-base"], "deepseek-llm-7b-base"),
        (["--hp", "lora_r=eight"], "lora_r"),
    ],
)
def test_bad_input_is_refused_before_printing_anything(args, message):
    base = ["launch", "--dry-run", "--image", IMAGE, "--train", "s3://geo-bkt/t", "--output", "s3://geo-bkt/o"]
    res = CliRunner().invoke(app, base + args)
    assert res.exit_code != 0
    assert message in str(res.exception) + res.output
    assert "hf_aaaa" not in res.output and "CreateTrainingJob" not in res.output


def test_metric_regexes_capture_the_training_log():
    # Lines as `train` prints them in the image (transformers 5 quotes the numbers), tqdm noise included.
    log = (
        " 25%|##5       | 1/4 [00:02<00:06,  2.21s/it] {'loss': '6.258', 'grad_norm': '0.04479', "
        "'learning_rate': '5e-05', 'entropy': '6.235', 'mean_token_accuracy': '0.125', 'epoch': '0.5'}\n"
        "[A{'eval_loss': '6.253', 'eval_runtime': '0.7998', 'eval_mean_token_accuracy': '0.25', 'epoch': '1'}\n"
        "INFO sft.training.train: step 2: generated answers: 92% valid JSON, 71% correct label (n=16)\n"
        "{'train_runtime': '13.88', 'train_loss': '6.257', 'epoch': '2'}\n"
        "{'loss': 2.5, 'epoch': 2.5}\n"  # transformers 4.x style
    )
    found = {m["Name"]: [float(x) for x in re.findall(m["Regex"], log)] for m in METRIC_DEFINITIONS}
    assert found["train:loss"] == [6.258, 2.5]  # neither eval_loss nor train_loss
    assert found["eval:loss"] == [6.253]
    assert found["train:learning_rate"] == [5e-05]
    assert found["train:mean_token_accuracy"] == [0.125]  # not eval_mean_token_accuracy
    assert found["eval:mean_token_accuracy"] == [0.25]
    assert found["train:epoch"] == [0.5, 1.0, 2.0, 2.5]
    assert found["eval:valid_json_pct"] == [92.0] and found["eval:label_accuracy_pct"] == [71.0]


def test_launch_creates_the_job_sagemaker_receives(aws_env, monkeypatch):
    """The real path (ModelTrainer) sends what --dry-run prints: checked on the job moto stored."""
    import boto3

    # The SDK's client-side role check calls IAM SimulatePrincipalPolicy, which moto does not implement.
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")

    cfg = LaunchConfig(image_uri=IMAGE, role=ROLE, train="s3://geo-bkt/data/train",
                       validation="s3://geo-bkt/data/validation", output="s3://geo-bkt/runs",
                       hyperparameters={"epochs": 1, "model": "demo"}, job_name="sft-moto-1")  # fmt: skip
    expected = build_training_request(cfg)
    name = launch(cfg, wait=False, check_quotas=False)
    got = boto3.client("sagemaker", region_name="us-west-2").describe_training_job(TrainingJobName=name)
    assert name.startswith("sft-moto-1")
    assert got["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert got["RoleArn"] == ROLE
    assert got["HyperParameters"] == expected["HyperParameters"]
    assert got["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert got["EnableManagedSpotTraining"] is True
    assert got["StoppingCondition"] == expected["StoppingCondition"]
    assert got["CheckpointConfig"]["S3Uri"] == expected["CheckpointConfig"]["S3Uri"]
    assert [c["ChannelName"] for c in got["InputDataConfig"]] == ["train", "validation"]
    assert got["OutputDataConfig"]["S3OutputPath"] == "s3://geo-bkt/runs"


def test_launch_needs_a_role():
    cfg = LaunchConfig(image_uri=IMAGE, train="s3://geo-bkt/t", output="s3://geo-bkt/o")
    with pytest.raises(UserError, match="--role"):
        launch(cfg, wait=False)


def test_local_channels_are_uploaded_to_the_job_prefix(aws_env, monkeypatch, tmp_path):
    import boto3

    from sft.sample_data import write_examples

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    boto3.client("s3", region_name="us-west-2").create_bucket(
        Bucket="geo-upload", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})  # fmt: skip
    train = write_examples(tmp_path / "train.jsonl", 3)
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    write_examples(val_dir / "validation.jsonl", 2, seed=3)
    cfg = LaunchConfig(image_uri=IMAGE, role=ROLE, train=str(train), validation=str(val_dir),
                       output="s3://geo-upload/runs", job_name="sft-upload-1")  # fmt: skip
    # The dry-run request already names where the files will go; nothing is uploaded by building it.
    req = build_training_request(cfg)
    uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    assert uris == {"train": "s3://geo-upload/runs/sft-upload-1/input/train",
                    "validation": "s3://geo-upload/runs/sft-upload-1/input/validation"}  # fmt: skip
    s3 = boto3.client("s3", region_name="us-west-2")
    assert s3.list_objects_v2(Bucket="geo-upload").get("KeyCount") == 0
    launch(cfg, wait=False, check_quotas=False)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="geo-upload")["Contents"]}
    assert keys == {"runs/sft-upload-1/input/train/train.jsonl", "runs/sft-upload-1/input/validation/validation.jsonl"}
    body = s3.get_object(Bucket="geo-upload", Key="runs/sft-upload-1/input/train/train.jsonl")["Body"].read()
    assert body == train.read_bytes()


def test_missing_local_channel_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        LaunchConfig(image_uri=IMAGE, train=str(tmp_path / "nope.jsonl"), output="s3://geo-bkt/o")


def test_sdk_telemetry_is_opted_out_without_aws(monkeypatch):
    """The SDK config that local mode and the tests use is valid for the SDK and turns its telemetry (an STS call
    and a GET to an S3 URL after each job) off; a schema typo would silently leave it on."""
    from sagemaker.core.common_utils import resolve_value_from_config
    from sagemaker.core.config.config_schema import TELEMETRY_OPT_OUT_PATH
    from sagemaker.core.telemetry.telemetry_logging import _get_default_sagemaker_session

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    session = _get_default_sagemaker_session()
    assert resolve_value_from_config(config_path=TELEMETRY_OPT_OUT_PATH, default_value=False,
                                     sagemaker_session=session) is True


@pytest.mark.parametrize(("config", "instance"), [("lora-7b-g5.yaml", "ml.g5.2xlarge"),
                                                  ("qlora-7b-g4dn.yaml", "ml.g4dn.xlarge")])
def test_bundled_configs_launch_and_fit_their_instance(config, instance):
    """examples/configs: each is a valid job for the instance it names, by the same preflight users run."""
    from pathlib import Path

    from sft.sagemaker.preflight import estimate, load_arch
    from sft.training.config import TrainConfig

    path = Path(__file__).resolve().parents[3] / "examples" / "configs" / config
    assert instance in path.read_text()  # the file says where it is meant to run
    res = run_cli("launch", "--dry-run", "--image", IMAGE, "--role", ROLE, "--train", "s3://geo-bkt/t",
                  "--output", "s3://geo-bkt/o", "--config", str(path), "--instance-type", instance)
    assert res.exit_code == 0, res.output
    hp = json.loads(res.output)["CreateTrainingJob"]["HyperParameters"]
    assert "null" not in hp.values()
    cfg = TrainConfig.from_yaml(path)
    checkpointing = cfg.gradient_checkpointing is not False  # null = on for CUDA
    est = estimate(load_arch(cfg.model), instance, quantize=cfg.quantize, batch_size=cfg.batch_size,
                   max_length=cfg.max_length, checkpointing=checkpointing)
    assert est.fits, est


def test_launch_refuses_a_merge_the_instance_cannot_hold():
    """The 7B g5 config (merge: true) on a 16 GiB ml.g5.xlarge: refused before paying, naming the instance."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "configs" / "lora-7b-g5.yaml"
    args = ("launch", "--dry-run", "--image", IMAGE, "--role", ROLE, "--train", "s3://geo-bkt/t",
            "--output", "s3://geo-bkt/o", "--config", str(path))
    with pytest.raises(UserError, match=r"merge: needs .* ml\.g5\.xlarge has 16 GiB: .* train on ml\.g5\.2xlarge"):
        run_cli(*args, "--instance-type", "ml.g5.xlarge")
    assert run_cli(*args, "--instance-type", "ml.g5.xlarge", "--hp", "merge=false").exit_code == 0
