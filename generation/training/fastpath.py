"""The GPU fast path of the trainers and samplers: which speed-ups are on, decided once per run.

Every switch defaults to None, meaning "on on CUDA, off elsewhere"; True or False forces it (a switch
that needs a GPU, bf16, refuses a CPU with a clear error). So CPU runs keep their exact fp32 numbers
and GPU runs get bf16 autocast, channels_last, torch.compile of the network, TF32 matmuls, fused
AdamW, a DataLoader with workers, pinned memory and persistent workers, and augmentation with the
uint8->float conversion done on the device. Pure torch, no Django.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass, fields, replace

import torch

from generation.training.distributed import DeviceError


@dataclass(frozen=True)
class FastPath:
    bf16: bool | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    tf32: bool | None = None
    fused_adamw: bool | None = None
    num_workers: int | None = None  # None: min(8, CPUs) on CUDA, 0 (the main process) elsewhere
    device_augment: bool | None = None  # flips, rotations and float conversion after the move to the device

    def resolve(self, device: torch.device) -> FastPath:
        """Every None replaced by its value on `device`; bf16 forced on a CPU is a `DeviceError`."""
        cuda = device.type == "cuda"
        if self.bf16 and not cuda:
            raise DeviceError("--bf16 needs a CUDA GPU (bf16 autocast is GPU-only); drop --bf16 to run on the CPU")
        values = {f.name: (cuda if getattr(self, f.name) is None else getattr(self, f.name)) for f in fields(self)}
        if self.num_workers is None:
            values["num_workers"] = min(8, os.cpu_count() or 1) if cuda else 0
        return replace(self, **values)

    def autocast(self, device: torch.device):
        """bf16 autocast on CUDA when on, else a no-op context."""
        if self.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def apply_global(self) -> None:
        """Process-wide switches: TF32 for float32 matmuls and convolutions."""
        if self.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def compiled(self, module: torch.nn.Module, *, log=None) -> torch.nn.Module:
        """`torch.compile(module)` when on and possible; otherwise `module`, with a message saying why."""
        if not self.compile:
            return module
        reason = compile_unavailable(module)
        if reason:
            (log or _stderr)(f"torch.compile off: {reason}; running eagerly (pass --no-compile to silence this)")
            return module
        return torch.compile(module)

    def adamw(self, params, **kwargs) -> torch.optim.AdamW:
        return torch.optim.AdamW(params, fused=True, **kwargs) if self.fused_adamw else torch.optim.AdamW(params, **kwargs)


def compile_unavailable(module: torch.nn.Module) -> str:
    """Why torch.compile cannot run here ("" when it can)."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "triton is not installed (torch.compile needs it for CUDA)"
    return ""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
