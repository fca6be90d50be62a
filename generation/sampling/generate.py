"""Generic generation from a checkpoint: `generate(request)` rebuilds the generator named by the
checkpoint's `kind` through a small registry (diffusion here; the ProGAN registers itself), draws N
images per label or spread over all labels with EMA weights by default, deterministic for a seed
(image i of label L always gets the same noise, whatever the batch), and writes PNGs, a
`manifest.csv`, `provenance.json` and an `.npz` in the guided-diffusion evaluator's layout (`arr_0`
uint8 N x H x W x 3, `arr_1` label indices). The folder is built under a temporary name and renamed
at the end: nothing half-written is left behind. Pure torch, no Django.
"""
from __future__ import annotations

import csv
import importlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generation.training.checkpoint import checkpoint_load
from generation.training.data import step_generator, to_uint8
from generation.training.distributed import device_resolve
from generation.training.progress import OnProgress, ProgressBar, StopRequested, progress_call

Loader = Callable[..., object]
_REGISTRY: dict[str, Loader] = {}


class GenerateError(ValueError):
    """A generation request cannot be honoured; the message names the option at fault."""


def register_generator(kind: str, loader: Loader) -> None:
    """Make checkpoints of `kind` usable by `generate` (see `generation.sampling` for the contract)."""
    _REGISTRY[kind] = loader


def _load_diffusion(ckpt: dict, *, device: torch.device, use_ema: bool, bf16: bool | None = None):
    from generation.diffusion.pipeline import DiffusionGenerator

    return DiffusionGenerator.from_checkpoint(ckpt, device=device, use_ema=use_ema, bf16=bf16)


register_generator("diffusion", _load_diffusion)


def generator_load(ckpt: dict, *, device: torch.device, use_ema: bool = True, bf16: bool | None = None):
    kind = ckpt["kind"]
    for module in (f"generation.{kind}.sampling", f"generation.{kind}.sample"):
        if kind in _REGISTRY:
            break
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module and not module.startswith(str(exc.name)):
                raise
    if kind not in _REGISTRY:
        raise GenerateError(f"{ckpt.get('path', 'checkpoint')}: no generator registered for kind {kind!r} "
                            f"(known: {', '.join(sorted(_REGISTRY))})")
    loader = _REGISTRY[kind]
    if "bf16" in inspect.signature(loader).parameters:
        return loader(ckpt, device=device, use_ema=use_ema, bf16=bf16)
    if bf16:
        raise GenerateError(f"{kind} checkpoints take no bf16 option")
    return loader(ckpt, device=device, use_ema=use_ema)  # float32 anyway


@dataclass
class GenerateRequest:
    checkpoint: Path
    out: Path
    n: int | None = None  # total, spread over all labels (or all of `label`)
    label: str | None = None
    per_label: int | None = None
    sampler: str | None = None  # None: the generator's default
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 16
    device: str = "auto"
    use_ema: bool = True
    progress: bool = False
    bf16: bool | None = None  # None: bf16 sampling on CUDA (the GPU fast path), float32 elsewhere
    # (images done, images to draw, {}) after each batch; False stops: nothing is written, and
    # `generate` raises StopRequested
    on_progress: OnProgress | None = None


@dataclass
class GenerateResult:
    out: Path
    manifest: Path
    npz: Path
    count: int
    provenance: dict = field(default_factory=dict)


def plan_labels(classes: list[str], *, n: int | None, label: str | None, per_label: int | None) -> list[int]:
    """Label index of every image to draw, in output order."""
    if per_label is not None and (n is not None or label is not None):
        raise GenerateError("--per-label cannot be combined with --n or --label")
    if per_label is not None:
        if per_label < 1:
            raise GenerateError(f"--per-label {per_label}: must be >= 1")
        return [i for i in range(len(classes)) for _ in range(per_label)]
    if n is None or n < 1:
        raise GenerateError("give --n N (>= 1), optionally with --label L, or --per-label N")
    if label is not None:
        if label not in classes:
            raise GenerateError(f"--label {label!r}: unknown; this checkpoint knows {', '.join(classes)}")
        return [classes.index(label)] * n
    return [i % len(classes) for i in range(n)]


def generate(request: GenerateRequest) -> GenerateResult:
    out = Path(request.out)
    if out.exists() and any(out.iterdir()):
        raise GenerateError(f"{out}: output folder exists and is not empty")
    if request.batch_size < 1:
        raise GenerateError(f"batch size {request.batch_size}: must be >= 1")
    device = device_resolve(request.device)
    ckpt = checkpoint_load(request.checkpoint)
    gen = generator_load(ckpt, device=device, use_ema=request.use_ema, bf16=request.bf16)
    options = {"sampler": request.sampler, "steps": request.steps, "guidance": request.guidance}
    given = {k: v for k, v in options.items() if v is not None}
    if not gen.accepts_sampler_options and given:
        raise GenerateError(f"{ckpt['kind']} checkpoints take no sampler options; drop "
                            + ", ".join(f"--{k}" for k in given))
    if gen.accepts_sampler_options:
        options = {"sampler": request.sampler or gen.default_sampler, "steps": gen.default_steps if request.steps is None else request.steps,
                   "guidance": 1.0 if request.guidance is None else request.guidance}
    else:
        options = {}
    labels = plan_labels(list(gen.classes), n=request.n, label=request.label, per_label=request.per_label)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counters = {i: 0 for i in range(len(gen.classes))}
        plan = []  # (label index, index within label)
        for y in labels:
            plan.append((y, counters[y]))
            counters[y] += 1
        rows, arrays = [], []
        started = time.perf_counter()
        bar = ProgressBar(desc="generate", unit="image", show=(), enabled=request.progress)
        for start in range(0, len(plan), request.batch_size):
            chunk = plan[start:start + request.batch_size]
            ys = torch.tensor([y for y, _ in chunk], dtype=torch.long)
            gens = [step_generator(request.seed, i, rank=y, stream=11) for y, i in chunk]
            images = gen.sample(ys, gens, **options)
            pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
            for (y, i), array in zip(chunk, pixels):
                name = gen.classes[y]
                rel = Path(_safe(name)) / f"{_safe(name)}_{i:05d}.png"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(tmp / rel, format="PNG")
                rows.append({"path": rel.as_posix(), "label": name, "label_index": y, "index": i, "seed": request.seed})
                arrays.append(array)
            if progress_call([bar, request.on_progress], len(rows), len(plan)):
                raise StopRequested(f"generation stopped on request after {len(rows)} of {len(plan)} images; "
                                    f"nothing was written to {out}")
        seconds = time.perf_counter() - started
        with (tmp / "manifest.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        stack = np.stack(arrays)
        npz_name = f"samples_{'x'.join(str(d) for d in stack.shape)}.npz"
        np.savez(tmp / npz_name, arr_0=stack, arr_1=np.array([r["label_index"] for r in rows], dtype=np.int64))
        provenance = {
            "generator": ckpt["kind"],
            "checkpoint": str(Path(request.checkpoint).resolve()),
            "checkpoint_step": int(ckpt.get("step", 0)),
            "config": ckpt.get("config", {}),
            "weights": "ema" if request.use_ema and ckpt.get("ema") is not None else "model",
            "classes": list(gen.classes),
            "seed": request.seed,
            "count": len(rows),
            "device": str(device),
            "seconds": round(seconds, 3),
            **options,
            "request": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request).items()},
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GenerateResult(out=out, manifest=out / "manifest.csv", npz=out / npz_name, count=len(rows),
                          provenance=provenance)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
