"""From SageMaker's host list to the torchrun command line."""

from __future__ import annotations

import socket

from sft.sagemaker.distributed import MASTER_PORT, plan


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_multi_host_rendezvous_on_first_sorted_host_and_fixed_port(monkeypatch):
    monkeypatch.setenv("SM_NUM_GPUS", "4")
    launch = plan({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]})
    cmd = launch.command("sft.sagemaker.training_job")
    assert (launch.world_size, _arg(cmd, "--nnodes"), _arg(cmd, "--node_rank")) == (8, "2", "1")
    assert (_arg(cmd, "--nproc_per_node"), _arg(cmd, "--master_addr")) == ("4", "algo-1")
    assert _arg(cmd, "--master_port") == str(MASTER_PORT)  # every host must agree on it
    assert cmd[-2:] == ["-m", "sft.sagemaker.training_job"]


def test_single_host_uses_a_free_local_port(monkeypatch):
    """Two jobs on one machine (local mode, a CI beside a developer) must not collide on the fixed port."""
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    with socket.socket() as busy:  # someone else holds 7777 (or it is free; either way we must not need it)
        try:
            busy.bind(("127.0.0.1", MASTER_PORT))
            busy.listen()
        except OSError:
            pass
        cmd = plan({"current_host": "algo-1", "hosts": ["algo-1"]}, processes_per_host=2).command("sft.sagemaker.training_job")
        port = int(_arg(cmd, "--master_port"))
        assert port != MASTER_PORT and _arg(cmd, "--master_addr") == "127.0.0.1"
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free right now


def test_one_process_on_a_multi_gpu_host_is_refused(monkeypatch):
    """It would skip torchrun; the Trainer would wrap the model in DataParallel, which TRL refuses."""
    import pytest

    from sft.core.errors import UserError

    monkeypatch.setenv("SM_NUM_GPUS", "4")
    with pytest.raises(UserError, match="processes_per_host=1 on a host with 4 GPUs: set 0"):
        plan({"current_host": "algo-1", "hosts": ["algo-1"]}, processes_per_host=1)
    assert plan({"current_host": "algo-1", "hosts": ["algo-1"]}).world_size == 4
    monkeypatch.setenv("SM_NUM_GPUS", "1")
    assert plan({"current_host": "algo-1", "hosts": ["algo-1"]}, processes_per_host=1).world_size == 1
