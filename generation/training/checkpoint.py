"""Checkpoints shared by the generators: one file holding everything needed to resume exactly or to
sample, written atomically (a temporary file, then `os.replace`), so a crash never leaves a half file.

Layout: {"format": 1, "kind", "config", "model", "ema", "optimizer", "step", "rng", "extra"}.
`kind` names the generator ("diffusion", "progan") and selects how sampling rebuilds it; `config` is
the generator's hyperparameter dataclass as a dict. Pure torch, no Django.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not of the expected kind; the message names the file."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def rng_state_capture() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_state_restore(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_save(path: str | Path, *, kind: str, config: dict, model: torch.nn.Module, step: int,
                    ema: Any = None, optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically; `ema` is anything with `state_dict()` (e.g. `training.ema.EMA`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "kind": kind,
        "config": dict(config),
        "model": unwrap(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "rng": rng_state_capture(),
        "extra": dict(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checkpoint_load(path: str | Path, *, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint; with `kind`, a checkpoint of another kind is a `CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # weights_only=False: the file holds RNG states (numpy arrays, tuples); only load your own runs.
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "kind" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a HistoSynth checkpoint (no 'kind'/'model')")
    if kind is not None and ckpt["kind"] != kind:
        raise CheckpointError(f"{path}: a {ckpt['kind']!r} checkpoint, expected {kind!r}")
    ckpt["path"] = str(path)
    return ckpt
