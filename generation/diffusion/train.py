"""Training the class-conditional diffusion model (Moghadam et al., WACV 2023; ADM recipe): AdamW
(lr 1e-4), EMA 0.9999, no gradient clipping unless asked, micro-batching (`auto`: the largest that
fits the GPU), DDP under torchrun, the GPU fast path (`generation.training.fastpath`: bf16, channels_last,
torch.compile, TF32, fused AdamW, loader workers, augmentation on the device; all off on a CPU), a
metrics log, sample grids and atomic checkpoints every N steps, an `on_progress` callback that can stop
the run cleanly (checkpoint written), and `resume` that continues exactly (data order, augmentation,
timesteps and noise are functions of (seed, step, rank); model, EMA, optimiser and RNG states come from
the checkpoint). Pure torch, no Django.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from generation.diffusion.config import ConfigError, DiffusionConfig, preset_config
from generation.diffusion.diffusion import GaussianDiffusion
from generation.diffusion.pipeline import DiffusionGenerator
from generation.diffusion.unet import DiffusionUNet, checkpoint_config, count_parameters
from generation.training.checkpoint import checkpoint_load, checkpoint_save, rng_state_restore
from generation.training.data import PatchDataset, augment_dihedral, make_loader, step_generator, to_model_range
from generation.training.distributed import ddp_wrap, distributed_cleanup, distributed_setup, seed_everything
from generation.training.ema import EMA
from generation.training.fastpath import FastPath
from generation.training.grids import grid_save
from generation.training.logging import MetricsLog
from generation.training.loop import LoopSchedule, loop_run
from generation.training.progress import OnProgress

KIND = "diffusion"


@dataclass
class TrainOptions:
    """How to run (not what to learn): paths, length, schedule of logs/grids/checkpoints, device."""

    data: Path
    out: Path
    steps: int = 1000
    seed: int = 0
    log_every: int = 50
    sample_every: int = 0
    save_every: int = 1000
    resume: bool = False
    device: str = "auto"
    bf16: bool | None = None  # None: on on CUDA (see FastPath); the other switches live in `fast`
    num_workers: int | None = None  # None: the fast path's choice (workers on CUDA, 0 on a CPU)
    metrics_format: str = "csv"  # csv | jsonl
    augment: bool = True
    split: str | None = None
    progress: bool = True
    micro_batch_auto: bool = False  # measure the largest micro-batch that fits (CUDA); the config's otherwise
    fast: FastPath = field(default_factory=FastPath)
    on_progress: OnProgress | None = None  # (step, total, metrics) -> False asks for a clean stop


def train(config: DiffusionConfig, options: TrainOptions) -> Path:
    """Train (or resume) into `options.out`; returns the checkpoint path. `config.num_classes` and
    `config.classes` and `config.image_size` are taken from the data. Under torchrun the process
    group lives for this call only."""
    env = distributed_setup(options.device, bf16=bool(options.bf16))
    try:
        return _train(config, options, env)
    finally:
        distributed_cleanup()


def _train(config: DiffusionConfig, options: TrainOptions, env) -> Path:
    out = Path(options.out)
    ckpt_path = out / "checkpoint.pt"
    ckpt = None
    if options.resume:
        ckpt = checkpoint_load(ckpt_path, kind=KIND)
        saved = checkpoint_config(ckpt)
        if saved.preset != config.preset:
            raise ConfigError(f"{ckpt_path}: made with preset {saved.preset!r}, not {config.preset!r}")
        config = saved
    elif ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")

    dataset = PatchDataset(options.data, split=options.split, classes=config.classes or None,
                           image_size=config.image_size if options.resume else None)
    if not options.resume:
        if config.preset == "tiny":  # any size from 32 px: the preset adds levels for larger images
            fields = {k: v for k, v in config.to_dict().items() if k not in ("preset", "channel_mult")}
            config = preset_config("tiny", **{**fields, "image_size": dataset.image_size})
        elif dataset.image_size != config.image_size:
            raise ConfigError(f"{options.data}: images are {dataset.image_size} px but preset {config.preset!r} "
                              f"is built for {config.image_size} px; use --preset tiny for other sizes")
        config = config.with_(num_classes=len(dataset.classes), classes=tuple(dataset.classes))
    global_batch = config.batch_size
    if global_batch % env.world_size:
        raise ConfigError(f"batch_size {global_batch} is not divisible by the {env.world_size} processes")
    local_batch = global_batch // env.world_size
    fast = FastPath(**{**options.fast.__dict__, "bf16": options.bf16,
                       "num_workers": options.num_workers}).resolve(env.device)
    fast.apply_global()

    # a resumed run keeps its own seed: the data order and noise of step s depend on (seed, s, rank)
    seed = int(ckpt["extra"].get("seed", options.seed)) if ckpt is not None else options.seed
    seed_everything(seed, env.rank)
    model = DiffusionUNet(config).to(env.device, memory_format=fast.memory_format())
    optimizer = fast.adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    diffusion = GaussianDiffusion(config, env.device)
    if options.micro_batch_auto and ckpt is None:
        config = config.with_(micro_batch=micro_batch_fit(model, diffusion, config, local_batch, env.device, fast))
    micro = min(config.micro_batch or local_batch, local_batch)
    if local_batch % micro:
        raise ConfigError(f"micro_batch {micro} does not divide the per-process batch {local_batch}")
    start_step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        rng_state_restore(ckpt["rng"])
    ddp_model = ddp_wrap(model, env)
    # After the wrap, which broadcasts rank 0's weights: every rank's EMA starts from the same model.
    ema = EMA(model, config.ema_decay)
    if ckpt is not None:
        ema.load_state_dict(ckpt["ema"])
    forward = fast.compiled(ddp_model)
    loader = iter(make_loader(dataset, batch_size=local_batch, seed=seed, start_step=start_step,
                              rank=env.rank, world_size=env.world_size, num_workers=fast.num_workers,
                              pin_memory=env.device.type == "cuda"))

    def step_fn(step: int) -> dict:
        images, labels = next(loader)
        if fast.device_augment:  # uint8 to the device first: flips, rotations and conversion happen there
            images = images.to(env.device, non_blocking=True)
        if options.augment:
            images = augment_dihedral(images, step_generator(seed, step, env.rank, stream=1))
        x0 = to_model_range(images.to(env.device, non_blocking=True)).contiguous(memory_format=fast.memory_format())
        y = labels.to(env.device, non_blocking=True)
        gen = step_generator(seed, step, env.rank, stream=2, device=env.device)
        optimizer.zero_grad(set_to_none=True)
        total = {"loss": 0.0, "mse": 0.0, "vb": 0.0}
        # drawn for the whole batch, then split: micro-batching does not change the randomness
        t, noise, y_drop = diffusion.draw(x0, y, gen)
        chunks = list(zip(x0.split(micro), t.split(micro), noise.split(micro), y_drop.split(micro)))
        for i, (xc, tc, nc, yc) in enumerate(chunks):
            # gradients are all-reduced once, in the last micro-batch's backward: one no_sync context
            # around the forward AND backward of each other micro-batch
            sync = i == len(chunks) - 1 or not env.distributed
            with contextlib.nullcontext() if sync else ddp_model.no_sync():
                with fast.autocast(env.device):
                    terms = diffusion.training_losses(forward, xc, yc, drawn=(tc, nc, yc))
                loss = terms.loss.sum() / local_batch
                loss.backward()
            total["loss"] += loss.detach()
            total["mse"] += terms.mse.detach().sum() / local_batch
            total["vb"] += terms.vb.detach().sum() / local_batch
        # ADM does not clip; the norm is logged either way (max_norm inf only measures it)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
        optimizer.step()
        ema.update(model)
        return {**total, "grad_norm": grad_norm}

    extra = {"seed": seed, "data": str(options.data), "classes": list(config.classes),
             "parameters": count_parameters(model)}

    def save_fn(step: int) -> Path:
        return checkpoint_save(ckpt_path, kind=KIND, config=config.to_dict(), model=model, ema=ema,
                               optimizer=optimizer, step=step, extra=extra)

    def sample_fn(step: int) -> None:
        n = min(16, 4 * config.num_classes)
        labels = torch.arange(n) % config.num_classes
        gen = DiffusionGenerator(ema.shadow, config, env.device)
        images = gen.sample(labels, [step_generator(seed, 0, i, stream=3) for i in range(n)],
                            sampler=config.grid_sampler, steps=config.grid_steps)
        grid_save(images, out / "grids" / f"step_{step:07d}.png", nrow=config.num_classes)

    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    metrics = MetricsLog(out / f"metrics.{options.metrics_format}", resume_step=start_step if ckpt else None,
                         enabled=env.is_main)
    schedule = LoopSchedule(total_steps=options.steps, log_every=options.log_every,
                            sample_every=options.sample_every, save_every=options.save_every)
    model.train()
    loop_run(step_fn=step_fn, start_step=start_step, schedule=schedule, env=env, images_per_step=global_batch,
             metrics_log=metrics, save_fn=save_fn, sample_fn=sample_fn,
             last_checkpoint=ckpt_path if ckpt is not None else None, desc=f"diffusion {config.preset}",
             progress=options.progress, on_progress=options.on_progress)
    del ddp_model
    return ckpt_path


def micro_batch_fit(model, diffusion: GaussianDiffusion, config: DiffusionConfig, local_batch: int,
                    device: torch.device, fast: FastPath) -> int:
    """The largest divisor of `local_batch` whose forward and backward fit the GPU's memory (tried from
    the largest down, with a 10% margin left free); on a CPU, the whole batch."""
    if device.type != "cuda":
        return local_batch
    free_floor = 0.1 * torch.cuda.get_device_properties(device).total_memory
    for micro in sorted((d for d in range(1, local_batch + 1) if local_batch % d == 0), reverse=True):
        try:
            torch.cuda.reset_peak_memory_stats(device)
            x = torch.zeros(micro, 3, config.image_size, config.image_size, device=device)
            y = torch.zeros(micro, dtype=torch.long, device=device)
            with fast.autocast(device):
                loss = diffusion.training_losses(model, x.contiguous(memory_format=fast.memory_format()), y,
                                                 torch.Generator(device=device).manual_seed(0)).loss.sum()
            loss.backward()
            peak = torch.cuda.max_memory_allocated(device)
            model.zero_grad(set_to_none=True)
            if peak <= torch.cuda.get_device_properties(device).total_memory - free_floor:
                return micro
        except torch.cuda.OutOfMemoryError:
            pass
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
    raise ConfigError(f"not even one {config.image_size} px image fits this GPU for preset {config.preset!r}")
