"""The ``torchrun`` environment, read in one place: rank, world size, local rank, process group.

``torchrun --nproc_per_node K`` starts K processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; without it they are absent and the process is rank 0 of 1.
:func:`distributed_env` reads (and checks) them without touching ``torch.distributed``;
:func:`distributed_context` also joins the default process group when there are several
ranks (training and the cache builder both use it; the device of a rank is ``cuda:LOCAL_RANK``,
:func:`local_device`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DistributedContext", "distributed_context", "distributed_env", "local_device"]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the ranks (``(0, 1, 0)`` without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def distributed_env() -> DistributedContext:
    """Rank, world size and local rank from the environment ``torchrun`` sets; no process group is joined.

    Raises:
        ValueError: if a variable is not an integer, or the rank is outside ``[0, WORLD_SIZE)``.
    """
    try:
        rank, world_size, local_rank = (int(os.environ.get(name, default)) for name, default in
                                        (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # fmt: skip
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK should be integers (as torchrun sets them): {error}") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(f"RANK should be in [0, WORLD_SIZE) and LOCAL_RANK >= 0 (as torchrun sets them), but got "
                         f"RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}")  # fmt: skip
    return DistributedContext(rank, world_size, local_rank)


def distributed_context(backend: str | None = None) -> DistributedContext:
    """:func:`distributed_env`, joining the default process group first when ``WORLD_SIZE > 1``.

    Args:
        backend: of a group created here; None: ``nccl`` when CUDA is available, else ``gloo``.
            An existing group is kept whatever its backend.
    """
    env = distributed_env()
    if not env.is_distributed:
        return env
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return DistributedContext(dist.get_rank(), dist.get_world_size(), env.local_rank)


def local_device() -> str:
    """``cuda:LOCAL_RANK`` when a GPU is present, else ``cpu``."""
    import torch

    return f"cuda:{distributed_env().local_rank}" if torch.cuda.is_available() else "cpu"
