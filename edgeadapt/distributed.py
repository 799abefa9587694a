"""Where training runs: one CPU or GPU, or data-parallel under ``torchrun``, where each process trains on its
share of every batch and DistributedDataParallel averages the gradients, so all processes hold the same
weights at every step.

On CPUs the group's backend is gloo; on GPUs it is nccl, one GPU per process (``LOCAL_RANK``). Outside
``torchrun`` (no ``WORLD_SIZE`` above 1) the group is not used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import UserError


@dataclass(frozen=True)
class Group:
    """This process's place in the training group."""

    rank: int
    world: int
    backend: str
    device: torch.device = torch.device("cpu")

    @property
    def leader(self) -> bool:
        """Only the first process logs and writes the run folder."""
        return self.rank == 0

    def share(self, idx):
        """This process's rows of a batch (every process sees the same batch order: one shared seed)."""
        return idx[self.rank::self.world]

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over all processes (epoch statistics); nccl reduces only tensors on the GPU."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def local_rank() -> int:
    """This process's index on its machine (``torchrun`` sets ``LOCAL_RANK``; 0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def training_device(requested: str) -> torch.device:
    """``auto``: a GPU when torch sees one (under torchrun, the one of this process's local rank), else the CPU;
    ``cuda`` where torch sees no GPU is a mistake to say in one line (the training spec's ``accelerator``)."""
    has_gpu = torch.cuda.is_available()
    if requested == "cuda" and not has_gpu:
        raise UserError("accelerator cuda, but torch sees no CUDA GPU here (a CPU-only torch build, or no "
                        "driver); use --set accelerator=cpu or auto")
    if requested == "cpu" or not has_gpu:
        return torch.device("cpu")
    return torch.device("cuda", local_rank() % torch.cuda.device_count())


def join_from_env(device: torch.device) -> Group | None:
    """Join the group ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), or None alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(), dist.get_backend(), device)
