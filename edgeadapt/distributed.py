"""Data-parallel training under ``torchrun``: each process trains on its share of every batch and
DistributedDataParallel averages the gradients, so all processes hold the same weights at every step.

Training runs on the CPU, so the backend is gloo (nccl needs the tensors on GPUs, which training does not
use yet). Outside ``torchrun`` (no ``WORLD_SIZE`` above 1) nothing here is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Group:
    """This process's place in the training group."""

    rank: int
    world: int
    backend: str

    @property
    def leader(self) -> bool:
        """Only the first process logs and writes the run folder."""
        return self.rank == 0

    def share(self, idx):
        """This process's rows of a batch (every process sees the same batch order: one shared seed)."""
        return idx[self.rank::self.world]

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over all processes (epoch statistics)."""
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def join_from_env() -> Group | None:
    """Join the group ``torchrun`` set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), or None alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Group(dist.get_rank(), dist.get_world_size(), dist.get_backend())
