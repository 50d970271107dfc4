"""The processes of one evaluation under ``torchrun``: which batches each computes, and
gathering what they computed.

Without ``torchrun`` (or with one process) everything here is the identity: one rank owns
every batch. Under ``torchrun`` each process joins one process group (NCCL on CUDA
devices, gloo otherwise), works on every ``world``-th batch, and the ranks exchange their
per-image outcomes at the end of each row, so every rank ends with the same rows and
rank 0 writes them.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

__all__ = ["Ranks", "current", "gather", "launched", "process_group", "any_rank"]

GROUP_TIMEOUT = datetime.timedelta(hours=6)
"""How long a rank waits for the others at a row's end: the imbalance between shards, not
the row itself, so a few hours covers the slowest attack on a slow CPU."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1

    def owns(self, batch: int) -> bool:
        """Whether this process computes batch ``batch`` (round robin over the ranks)."""
        return batch % self.world == self.rank

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes results and prints."""
        return self.rank == 0


def launched() -> bool:
    """Whether ``torchrun`` started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Ranks:
    """The ranks of the process group this process has joined (one rank without one)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join the ``torchrun`` process group for the block; yields the device this rank uses.

    CUDA: NCCL, one GPU per process (``cuda:LOCAL_RANK``). CPU: gloo. A single process
    (no ``torchrun``, or ``--nproc-per-node 1``) joins nothing and keeps ``device``.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run one process")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"rank with LOCAL_RANK {local} but only "
                               f"{torch.cuda.device_count()} CUDA devices: lower --nproc-per-node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def gather(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order, on every rank (``[value]`` without a group)."""
    ranks = current()
    if ranks.world == 1:
        return [value]
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks take the same branch)."""
    return any(gather(bool(flag)))
