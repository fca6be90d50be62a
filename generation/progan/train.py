"""Training the conditional ProGAN (Karras et al., ICLR 2018; projection critic of Miyato & Koyama, 2018).

One step = one critic update (WGAN-GP, lambda 10, drift 0.001) and one generator update, both with
Adam (lr 1e-3, betas 0 and 0.99), then the generator EMA (0.999). Both Adam states are reset when a
phase begins (a new resolution fades in, then stabilises), as the reference implementation does
(`reset_opt_for_new_lod`). The growth schedule fixes, from the
number of images seen, the resolution, the fade-in weight alpha (for the generator, the critic and
the real images alike) and the batch size. The run is cut into one segment per phase (constant batch
size) and each segment goes through the shared loop of `generation.training` (progress bar, metrics
log, NaN guard, sample grids, atomic checkpoints; a checkpoint is written at the end of every phase).

Every random draw of step s (data order, flips, z, the penalty's interpolation weights) comes from
generators seeded by (seed, s, rank), so a run resumed from a checkpoint, mid-phase or mid-fade, goes
on exactly as the uninterrupted run would. Under `torchrun` the gradients of both networks are
averaged across ranks by hand after each backward pass (DistributedDataParallel supports neither the
gradient penalty's double backward nor the blocks left unused at low resolution). Imports no Django.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from generation.progan.config import ConfigError, ProGANConfig, preset_config
from generation.progan.losses import critic_loss, generator_loss
from generation.progan.networks import Discriminator, Generator, downsample_to, fade_in_images
from generation.progan.schedule import GrowthSchedule, GrowthState, Phase
from generation.training.checkpoint import checkpoint_load, checkpoint_save, rng_state_restore
from generation.training.data import (
    DataError,
    PatchDataset,
    augment_dihedral,
    make_loader,
    step_generator,
    to_model_range,
)
from generation.training.distributed import (
    DistEnv,
    distributed_cleanup,
    distributed_setup,
    seed_everything,
)
from generation.training.ema import EMA
from generation.training.grids import grid_save
from generation.training.logging import MetricsLog
from generation.training.loop import LoopSchedule, loop_run
from generation.training.progress import OnProgress

KIND = "progan"
DEFAULT_PRESET = "progan-128"
CHECKPOINT_NAME = "checkpoint.pt"
# Configuration fields a resumed run may change: they set how long it runs, not what it trains.
RESUME_MUTABLE = {"total_images"}


@dataclass(frozen=True)
class Segment:
    """A run of steps inside one phase: steps [first_step, end_step), `images` seen at first_step."""

    phase: Phase
    first_step: int
    end_step: int
    images: int
    global_batch: int

    def images_at(self, step: int) -> int:
        return self.images + (step - self.first_step) * self.global_batch


def plan_segments(schedule: GrowthSchedule, world_size: int = 1) -> list[Segment]:
    """The run, step by step: each phase's steps, the batch of a step chosen when the step starts."""
    total = schedule.total_images
    segments, step, images = [], 0, 0
    for i, phase in enumerate(schedule.phases):
        last = i == len(schedule.phases) - 1
        end = total if last else min(phase.end, total)
        if images >= end:
            continue
        gb = phase.batch_size * world_size
        n = math.ceil((end - images) / gb)
        segments.append(Segment(phase, step, step + n, images, gb))
        step, images = step + n, images + n * gb
    return segments


def segment_at(segments: list[Segment], step: int) -> Segment:
    for seg in segments:
        if seg.first_step <= step < seg.end_step:
            return seg
    return segments[-1]


@dataclass
class ProGANTrainResult:
    checkpoint: str
    step: int
    images_seen: int
    resolution: int
    alpha: float
    out: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def gan_step(*, G: Generator, D: Discriminator, ema: EMA, g_opt: torch.optim.Optimizer, d_opt: torch.optim.Optimizer,
             cfg: ProGANConfig, real: torch.Tensor, labels: torch.Tensor, depth: int, alpha: float,
             generator: torch.Generator, average_gradients: Callable[[torch.nn.Module], None] | None = None) -> dict:
    """One critic update and one generator update on `real` (already at the step's resolution and
    faded), then the EMA. `generator` (CPU) draws z and the penalty's interpolation weights."""
    dev, n = real.device, real.shape[0]

    def critic(x, y):
        return D(x, y, depth, alpha)

    z = torch.randn(n, cfg.latent_dim, generator=generator).to(dev)
    with torch.no_grad():
        fake = G(z, labels, depth, alpha)
    d_opt.zero_grad(set_to_none=True)
    d = critic_loss(critic, real, fake, labels, gp_lambda=cfg.gp_lambda, drift=cfg.drift, generator=generator)
    d.total.backward()
    if average_gradients is not None:
        average_gradients(D)
    d_opt.step()
    # Generator update: the critic's parameters get no gradient.
    z = torch.randn(n, cfg.latent_dim, generator=generator).to(dev)
    g_opt.zero_grad(set_to_none=True)
    D.requires_grad_(False)
    try:
        g_loss = generator_loss(critic, G(z, labels, depth, alpha), labels)
        g_loss.backward()
    finally:
        D.requires_grad_(True)
    if average_gradients is not None:
        average_gradients(G)
    g_opt.step()
    ema.update(G)
    return {"loss": d.total.detach(), "g_loss": g_loss.detach(),
            **{k: v for k, v in d.metrics().items() if k != "d_loss"}}


class ProGANTrainer:
    """Holds networks, optimisers, EMA and data for one run; `run()` trains to the end or `max_steps`."""

    def __init__(self, *, cfg: ProGANConfig, dataset: PatchDataset, out: Path, env: DistEnv, seed: int,
                 log_every: int = 50, sample_every: int = 500, save_every: int = 1000, num_workers: int = 0,
                 augment: bool = True, metrics_file: str = "metrics.csv", show_progress: bool = True,
                 on_progress: OnProgress | None = None):
        self.cfg, self.dataset, self.out, self.env, self.seed = cfg, dataset, out, env, seed
        self.log_every, self.sample_every, self.save_every = log_every, sample_every, save_every
        self.num_workers, self.augment, self.metrics_file = num_workers, augment, metrics_file
        self.show_progress, self.user_on_progress = show_progress, on_progress
        self.stop_requested = False
        self.schedule = GrowthSchedule(cfg)
        self.segments = plan_segments(self.schedule, env.world_size)
        self.total_steps = self.segments[-1].end_step
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.G = Generator(cfg).to(env.device)
        self.D = Discriminator(cfg).to(env.device)
        self.ema = EMA(self.G, cfg.ema_decay)
        self.optimizers_reset()
        self.step = 0
        self.last_checkpoint: Path | None = None
        seed_everything(seed, env.rank)

    def on_progress(self, step: int, total: int, metrics: dict) -> bool | None:
        """The caller's callback, remembering a stop request (it may come at a phase's last step)."""
        answer = self.user_on_progress(step, total, metrics) if self.user_on_progress is not None else None
        if answer is False:
            self.stop_requested = True
        return answer

    def optimizers_reset(self) -> None:
        """Fresh Adam states for both networks (at the start of the run and of every later phase)."""
        adam = dict(lr=self.cfg.lr, betas=self.cfg.betas, eps=self.cfg.adam_eps)
        self.g_opt = torch.optim.Adam(self.G.parameters(), **adam)
        self.d_opt = torch.optim.Adam(self.D.parameters(), **adam)

    def trained_state(self, steps_done: int) -> GrowthState:
        """Resolution and fade-in weight of the last step done (of step 0 before any)."""
        step = max(steps_done - 1, 0)
        return self.schedule.at(segment_at(self.segments, step).images_at(step))

    # --- checkpoints -----------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def save(self, step: int) -> Path:
        images = segment_at(self.segments, step).images_at(step)
        state = self.trained_state(step)
        extra = {
            "discriminator": self.D.state_dict(),
            "d_optimizer": self.d_opt.state_dict(),
            "images_seen": images,  # at the next step: where a resumed run goes on
            # The resolution and fade-in of the last step trained: what sampling uses.
            "resolution": state.resolution,
            "depth": state.depth,
            "alpha": state.alpha,
            "classes": list(self.dataset.classes),
            "seed": self.seed,
            "data": str(self.dataset.root),
        }
        self.last_checkpoint = checkpoint_save(
            self.checkpoint_path, kind=KIND, config=self.cfg.to_dict(), model=self.G, step=step,
            ema=self.ema, optimizer=self.g_opt, extra=extra,
        )
        return self.last_checkpoint

    def load(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.g_opt.load_state_dict(ckpt["optimizer"])
        self.D.load_state_dict(ckpt["extra"]["discriminator"])
        self.d_opt.load_state_dict(ckpt["extra"]["d_optimizer"])
        self.step = int(ckpt["step"])
        expected = segment_at(self.segments, self.step).images_at(self.step)
        if int(ckpt["extra"]["images_seen"]) != expected:
            raise ConfigError(
                f"{ckpt['path']}: {ckpt['extra']['images_seen']} images seen at step {self.step}, but this "
                f"schedule gives {expected}; resume with the checkpoint's own schedule"
            )
        if self.env.world_size == 1:
            rng_state_restore(ckpt["rng"])
        self.last_checkpoint = Path(ckpt["path"])

    # --- one step --------------------------------------------------------------------------------

    def _average_gradients(self, module: torch.nn.Module) -> None:
        if not self.env.distributed:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]  # the same set on every rank
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.env.world_size
        torch._foreach_copy_(grads, [c.view_as(g) for c, g in zip(flat.split([g.numel() for g in grads]), grads)])

    def train_step(self, step: int, batch: tuple[torch.Tensor, torch.Tensor], seg: Segment) -> dict:
        cfg, dev, rank = self.cfg, self.env.device, self.env.rank
        state = self.schedule.at(seg.images_at(step))
        images, labels = batch
        images, labels = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
        if self.augment:
            images = augment_dihedral(images, step_generator(self.seed, step, rank, stream=1))
        real = to_model_range(images)
        if real.shape[-1] != cfg.resolution:
            real = downsample_to(real, cfg.resolution)
        real = fade_in_images(downsample_to(real, state.resolution), state.alpha)
        metrics = gan_step(
            G=self.G, D=self.D, ema=self.ema, g_opt=self.g_opt, d_opt=self.d_opt, cfg=cfg, real=real,
            labels=labels, depth=state.depth, alpha=state.alpha,
            generator=step_generator(self.seed, step, rank, stream=2), average_gradients=self._average_gradients,
        )
        return {**metrics, "resolution": float(state.resolution), "alpha": float(state.alpha)}

    # --- samples ---------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_grid(self, step: int) -> Path:
        """A grid from the EMA generator at the current resolution: fixed z, one row per class."""
        state = self.trained_state(step)
        per_class = 8
        k = self.cfg.num_classes
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(k * per_class, self.cfg.latent_dim, generator=gen).to(self.env.device)
        labels = torch.arange(k, device=self.env.device).repeat_interleave(per_class)
        images = self.ema.shadow(z, labels, state.depth, state.alpha)
        return grid_save(images, self.out / "grids" / f"step_{step:07d}_{state.resolution}px.png", nrow=per_class)

    # --- the run ---------------------------------------------------------------------------------

    def run(self, *, max_steps: int | None = None) -> ProGANTrainResult:
        stop = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        metrics = MetricsLog(self.out / self.metrics_file, resume_step=self.step, enabled=self.env.is_main)
        for seg in self.segments:
            if seg.end_step <= self.step or seg.first_step >= stop:
                continue
            end = min(seg.end_step, stop)
            self._run_segment(seg, end, metrics)
            if self.stop_requested:  # on_progress asked to stop; the checkpoint of this step is written
                break
        if self.step == 0 or self.last_checkpoint is None:
            self.save(self.step)
        state = self.trained_state(self.step)
        images = segment_at(self.segments, self.step).images_at(self.step)
        return ProGANTrainResult(str(self.checkpoint_path), self.step, images, state.resolution, state.alpha,
                                 str(self.out))

    def _run_segment(self, seg: Segment, end: int, metrics: MetricsLog) -> None:
        start = max(seg.first_step, self.step)
        if start == seg.first_step and seg.phase.index > 0:
            self.optimizers_reset()  # a new phase: new resolution or end of its fade-in
        loader = make_loader(
            self.dataset, batch_size=seg.phase.batch_size, seed=self.seed + 7919 * (seg.phase.index + 1),
            start_step=start - seg.first_step, rank=self.env.rank, world_size=self.env.world_size,
            num_workers=self.num_workers,
        )
        batches = iter(loader)
        self.step = loop_run(
            step_fn=lambda step: self.train_step(step, next(batches), seg), start_step=start,
            schedule=LoopSchedule(end, self.log_every, self.sample_every, self.save_every),
            env=self.env, images_per_step=seg.global_batch, metrics_log=metrics, save_fn=self.save,
            sample_fn=self.sample_grid if self.sample_every else None, last_checkpoint=self.last_checkpoint,
            desc=f"progan {seg.phase.name}", progress=self.show_progress, on_progress=self.on_progress,
            progress_total=self.total_steps,
        )


def _config_for_run(*, preset: str | None, overrides: dict, num_classes: int, resume_ckpt: dict | None) -> ProGANConfig:
    if resume_ckpt is None:
        return preset_config(preset or DEFAULT_PRESET, num_classes=num_classes, **overrides)
    saved = ProGANConfig.from_dict(resume_ckpt["config"])
    preset = preset or saved.preset
    if saved.preset != preset:
        raise ConfigError(f"{resume_ckpt['path']}: made with preset {saved.preset!r}, not {preset!r}")
    wanted = preset_config(preset, num_classes=num_classes, **overrides)
    changes = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name in RESUME_MUTABLE:
            changes[name] = value
        elif getattr(wanted, name) != getattr(saved, name):
            raise ConfigError(
                f"{resume_ckpt['path']}: {name} is {getattr(saved, name)!r} in the checkpoint, "
                f"{getattr(wanted, name)!r} asked for; a resumed run keeps its configuration"
            )
    return saved.replace(**changes) if changes else saved


def train_progan(
    *,
    data: str | Path,
    out: str | Path,
    preset: str | None = None,
    seed: int = 0,
    resume: bool = False,
    split: str | None = None,
    image_size: int | None = None,
    images_per_phase: int | None = None,
    images_per_phase_fade: int | None = None,
    images_per_phase_stable: int | None = None,
    batch_size: int | None = None,
    batch_sizes: dict[int, int] | None = None,
    total_images: int | None = None,
    lr: float | None = None,
    ema_decay: float | None = None,
    gp_lambda: float | None = None,
    drift: float | None = None,
    max_steps: int | None = None,
    log_every: int = 50,
    sample_every: int = 500,
    save_every: int = 1000,
    device: str = "auto",
    num_workers: int = 0,
    augment: bool = True,
    metrics_file: str = "metrics.csv",
    progress: bool = True,
    on_progress: OnProgress | None = None,
) -> ProGANTrainResult:
    """Train (or with `resume`, continue from `out`/checkpoint.pt) a conditional ProGAN on a patch folder.

    `preset` defaults to progan-128 for a new run and to the checkpoint's for a resumed one.
    `image_size` is the final resolution (patches larger than it are box-downsampled); `images_per_phase`
    sets both phase lengths, `batch_size` every resolution's batch; `max_steps` stops this invocation
    at that global step (a later `resume` goes on); `progress` shows the bar; `on_progress(step, total,
    metrics)` is called after every step and stops the run cleanly (checkpoint written) by returning False. Works on a CPU, one GPU or under `torchrun`.
    """
    out = Path(out)
    for name, value in (("log_every", log_every), ("save_every", save_every)):
        if value < 1:
            raise ConfigError(f"{name}={value}: must be at least 1")
    if sample_every < 0:
        raise ConfigError(f"sample_every={sample_every}: must be 0 (never) or more")
    env = distributed_setup(device)
    try:
        resume_ckpt = None
        if resume:
            resume_ckpt = checkpoint_load(out / CHECKPOINT_NAME, kind=KIND, map_location="cpu")
        classes = resume_ckpt["extra"]["classes"] if resume_ckpt else None
        dataset = PatchDataset(data, split=split, classes=classes)
        if batch_size is not None:
            batch_sizes = {2**k: batch_size for k in range(2, 12)} | dict(batch_sizes or {})
        overrides = dict(
            resolution=image_size,
            images_per_phase_fade=images_per_phase_fade or images_per_phase,
            images_per_phase_stable=images_per_phase_stable or images_per_phase,
            batch_sizes=batch_sizes, total_images=total_images, lr=lr, ema_decay=ema_decay, gp_lambda=gp_lambda,
            drift=drift,
        )
        cfg = _config_for_run(preset=preset, overrides=overrides, num_classes=len(dataset.classes),
                              resume_ckpt=resume_ckpt)
        if dataset.image_size < cfg.resolution or dataset.image_size % cfg.resolution:
            raise DataError(
                f"{data}: patches are {dataset.image_size} px; the ProGAN ({cfg.preset}) needs {cfg.resolution} px "
                "or a multiple of it (set image_size)"
            )
        out.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            (out / "config.json").write_text(json.dumps({"kind": KIND, "config": cfg.to_dict(),
                                                         "classes": dataset.classes}, indent=2))
        trainer = ProGANTrainer(cfg=cfg, dataset=dataset, out=out, env=env, seed=seed, log_every=log_every,
                                sample_every=sample_every, save_every=save_every, num_workers=num_workers,
                                augment=augment, metrics_file=metrics_file, show_progress=progress,
                                on_progress=on_progress)
        if resume_ckpt is not None:
            trainer.load(resume_ckpt)
        return trainer.run(max_steps=max_steps)
    finally:
        distributed_cleanup()
