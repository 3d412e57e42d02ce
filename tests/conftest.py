"""Shared fixtures: a tiny random Llama model built offline, and isolation from the user's caches."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = EXAMPLES / "corpus"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LlamaForCausalLM (hidden 16, 2 layers) + byte-level BPE tokenizer, saved as a model directory."""
    pytest.importorskip("torch")
    from sft.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # Unit tests never reach a model hub (there is none here anyway): fail fast instead of retrying.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # Nor AWS: the SageMaker SDK's telemetry (STS + an S3 URL) is opted out, as local mode does.
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(REPO / "container" / "sagemaker_config.yaml"))


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """A real moto server on 127.0.0.1 (S3, SageMaker, ...): AWS mocked at the wire, nothing else."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Point every boto3 client at the moto server with throwaway credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    return moto_endpoint


def stub_bedrock_retrieve(monkeypatch: pytest.MonkeyPatch, results_for):
    """A real bedrock-agent-runtime client under botocore's Stubber (requests and responses validated against
    the service model), handed to every ``boto3.client("bedrock-agent-runtime")``. Each Retrieve is answered
    with ``results_for(params)`` (a list of retrievalResults). Returns (client, stub, the params of each call);
    use ``with stub:``."""
    import boto3
    from botocore.stub import Stubber

    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-west-2")):
        monkeypatch.setenv(key, value)
    client = boto3.client("bedrock-agent-runtime", region_name="us-west-2")
    make = boto3.client
    monkeypatch.setattr(boto3, "client", lambda name, *a, **kw: client if name == "bedrock-agent-runtime"
                        else make(name, *a, **kw))
    stub, calls = Stubber(client), []

    def answer(params, **_):
        calls.append(params)
        stub.add_response("retrieve", {"retrievalResults": results_for(params)}, dict(params))

    # provide-client-params fires before the Stubber checks the request: queue the answer, then it checks.
    client.meta.events.register("provide-client-params.bedrock-agent-runtime.Retrieve", answer)
    return client, stub, calls


def kb_result(chunk_id: str, law_id: str, citation: str, jurisdiction: str, text: str, score: float = 0.8,
              title: str = "") -> dict:
    """One Retrieve result as Knowledge Bases return a chunk loaded by geoprep kb-load."""
    return {"content": {"text": text}, "score": score,
            "location": {"type": "S3", "s3Location": {"uri": f"s3://kb/chunks/{chunk_id}.txt"}},
            "metadata": {"chunk_id": chunk_id, "law_id": law_id, "citation": citation,
                         "jurisdiction": jurisdiction, "title": title or law_id}}
