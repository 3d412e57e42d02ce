"""Data-parallel launch: from SageMaker's host list to a torchrun command line.

One training process per GPU on every host (one per host on CPU, unless ``processes_per_host`` says more,
e.g. the 2-process gloo test). torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; the Trainer picks them up and
wraps the model in DDP (NCCL on GPUs, gloo on CPU). The first host in the sorted host list is the rendezvous
master, as SageMaker's own launchers do.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from sft.core.errors import UserError

MASTER_PORT = 7777  # multi-host rendezvous: every host must agree on it, so it is fixed (SageMaker's choice)


@dataclass(frozen=True)
class Launch:
    hosts: list[str]
    current_host: str
    nproc_per_node: int

    @property
    def nnodes(self) -> int:
        return len(self.hosts)

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def command(self, module: str) -> list[str]:
        # One host: any free port, so two jobs sharing a machine (local mode, tests) cannot collide on 7777.
        port = MASTER_PORT if self.nnodes > 1 else free_port()
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(self.nnodes),
            "--node_rank", str(self.node_rank),
            "--nproc_per_node", str(self.nproc_per_node),
            "--master_addr", self.hosts[0] if self.nnodes > 1 else "127.0.0.1",
            "--master_port", str(port),
            "-m", module,
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpu_count() -> int:
    from sft.sagemaker.env import num_gpus

    n = num_gpus()
    if n is not None:
        return n
    import torch

    return torch.cuda.device_count()


def plan(resource_config: dict[str, Any], processes_per_host: int = 0) -> Launch:
    """``resource_config`` is SageMaker's resourceconfig.json ({"current_host", "hosts"})."""
    hosts = sorted(resource_config.get("hosts") or ["algo-1"])
    current = resource_config.get("current_host") or hosts[0]
    gpus = gpu_count()
    if processes_per_host == 1 and gpus > 1:
        # One process would see every GPU, and TRL refuses the DataParallel the Trainer then wraps the model in.
        raise UserError(f"processes_per_host=1 on a host with {gpus} GPUs: set 0 (one process per GPU, "
                        "data-parallel) or pick a single-GPU instance")
    nproc = processes_per_host or max(1, gpus)
    return Launch(hosts, current, nproc)


def inside_launcher() -> bool:
    """True in a process started by torchrun (so we must not launch again)."""
    return "LOCAL_RANK" in os.environ
