"""torchrun / DDP plumbing: process group setup from the torchrun environment, rank helpers, gathers.

    torchrun --nproc_per_node=2 -m darkhaloscope train --data TIER --out RUN --device=cpu   # gloo
    torchrun --nproc_per_node=8 -m darkhaloscope train --data s3://... --out RUN            # nccl

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op for a single process.
Only rank 0 writes files (checkpoints, logs, mirror uploads); the others only compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from darkhaloscope.errors import UsageError


@dataclass
class DistInfo:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)
    initialized: bool = False  # a process group was created by `setup`

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK when CUDA is available, else cpu; anything else is checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"device={name!r} is not a torch device (use auto, cpu, cuda, cuda:0 ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device={name} but this torch has no CUDA ({torch.__version__}); use --device=cpu")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    info = DistInfo(rank, world, local, False)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        info.initialized = True
    return info, device


def teardown(info: DistInfo) -> None:
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def all_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of `t` over ranks (in place on a clone); identity for one process."""
    if info.world_size == 1:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size


def all_gather_objects(obj, info: DistInfo) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (pickled; keep it small)."""
    if info.world_size == 1:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank."""
    if info.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
