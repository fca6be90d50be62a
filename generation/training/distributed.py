"""Where training runs: one CPU, one GPU, or several GPUs and nodes under `torchrun`
(DistributedDataParallel, ranks from the RANK / WORLD_SIZE / LOCAL_RANK environment), plus seeding
and the checks that refuse GPU-only options on a CPU. Pure torch, no Django.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """A device option cannot be honoured on this machine (e.g. bf16 or cuda without a GPU)."""


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def device_resolve(name: str = "auto", *, bf16: bool = False, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' or bf16 without a GPU is a `DeviceError`."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise DeviceError(f"device {name!r}: expected auto, cpu or cuda")
    has_cuda = torch.cuda.is_available()
    if name == "auto":
        name = "cuda" if has_cuda else "cpu"
    if name.startswith("cuda") and not has_cuda:
        raise DeviceError(f"device {name!r} asked for, but no CUDA GPU is available")
    if bf16 and not name.startswith("cuda"):
        raise DeviceError("--bf16 needs a CUDA GPU (bf16 autocast is GPU-only); drop --bf16 to run on the CPU")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def distributed_setup(device: str = "auto", *, bf16: bool = False) -> DistEnv:
    """Read the torchrun environment and start the process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = device_resolve(device, bf16=bf16, local_rank=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def distributed_cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def ddp_wrap(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if not env.distributed:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_across_ranks(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when `flag` is True on any (e.g. a stop asked on the main rank)."""
    if not env.distributed:
        return bool(flag)
    value = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (all devices); each rank gets its own stream."""
    s = (int(seed) + 1_000_003 * int(rank)) % 2**32
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
