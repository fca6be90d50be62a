"""Helpers for the multi-process training tests: launch `manage.py train_*` under torchrun, and
single-process references of what a data-parallel run must compute.

The references replay, in one process and without torch.distributed, the steps of a run with
`world_size` ranks: each rank's slice of the global batch (`make_loader(rank=r, world_size=W)`), its own
augmentation and noise streams (`step_generator(seed, step, r, ...)`), and one optimiser step on the
mean of the ranks' gradients. A torchrun job whose ranks stay in lockstep (same weights on every rank,
gradients averaged) writes a checkpoint equal to this, up to float reduction order.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def torchrun_manage(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node N manage.py ARGS` (gloo, 1 thread each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "manage.py", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def diffusion_reference(data: Path, ckpt: dict, *, seed: int, steps: int, world_size: int,
                        ranks_in_gradient: int | None = None):
    """(model, ema) after `steps` data-parallel diffusion steps; `ranks_in_gradient=k` keeps only the
    first k ranks' gradients (what a run that failed to average across ranks would do)."""
    from generation.diffusion.config import DiffusionConfig
    from generation.diffusion.diffusion import GaussianDiffusion
    from generation.diffusion.unet import DiffusionUNet
    from generation.training.data import PatchDataset, augment_dihedral, make_loader, step_generator, to_model_range
    from generation.training.distributed import seed_everything
    from generation.training.ema import EMA

    config = DiffusionConfig.from_dict(ckpt["config"])
    dataset = PatchDataset(data, classes=config.classes)
    seed_everything(seed, 0)  # rank 0's initial weights, which DDP broadcasts to the others
    model = DiffusionUNet(config).train()
    ema = EMA(model, config.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    diffusion = GaussianDiffusion(config, "cpu")
    local = config.batch_size // world_size
    loaders = [iter(make_loader(dataset, batch_size=local, seed=seed, rank=r, world_size=world_size))
               for r in range(world_size)]
    used = world_size if ranks_in_gradient is None else ranks_in_gradient
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        for rank, loader in enumerate(loaders):
            images, labels = next(loader)
            if rank >= used:
                continue
            images = augment_dihedral(images, step_generator(seed, step, rank, stream=1))
            x0 = to_model_range(images)
            t, noise, y = diffusion.draw(x0, labels, step_generator(seed, step, rank, stream=2))
            terms = diffusion.training_losses(model, x0, y, drawn=(t, noise, y))
            (terms.loss.sum() / local / used).backward()  # the mean over ranks of each rank's mean
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema.update(model)
    return model, ema.shadow


def progan_reference(data: Path, ckpt: dict, *, seed: int, world_size: int, ranks_in_gradient: int | None = None):
    """(G, D, EMA of G) after the whole data-parallel ProGAN schedule of the checkpoint's config."""
    from generation.progan.config import ProGANConfig
    from generation.progan.losses import critic_loss, generator_loss
    from generation.progan.networks import Discriminator, Generator, downsample_to, fade_in_images
    from generation.progan.schedule import GrowthSchedule
    from generation.progan.train import plan_segments
    from generation.training.data import PatchDataset, augment_dihedral, make_loader, step_generator, to_model_range
    from generation.training.ema import EMA

    cfg = ProGANConfig.from_dict(ckpt["config"])
    dataset = PatchDataset(data, classes=ckpt["extra"]["classes"])
    schedule = GrowthSchedule(cfg)
    torch.manual_seed(seed)
    G, D = Generator(cfg), Discriminator(cfg)
    ema = EMA(G, cfg.ema_decay)
    adam = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
    used = world_size if ranks_in_gradient is None else ranks_in_gradient
    for seg in plan_segments(schedule, world_size):
        # Adam starts afresh with every phase (ProGAN's reset_opt_for_new_lod)
        g_opt, d_opt = torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
        loaders = [iter(make_loader(dataset, batch_size=seg.phase.batch_size, seed=seed + 7919 * (seg.phase.index + 1),
                                    rank=r, world_size=world_size)) for r in range(world_size)]
        for step in range(seg.first_step, seg.end_step):
            state = schedule.at(seg.images_at(step))
            depth, alpha = state.depth, state.alpha
            ranks = []  # (real, labels, generator) of each rank whose gradient counts
            for rank, loader in enumerate(loaders):
                images, labels = next(loader)
                if rank >= used:
                    continue
                images = augment_dihedral(images, step_generator(seed, step, rank, stream=1))
                real = to_model_range(images)
                if real.shape[-1] != cfg.resolution:
                    real = downsample_to(real, cfg.resolution)
                real = fade_in_images(downsample_to(real, state.resolution), alpha)
                ranks.append((real, labels, step_generator(seed, step, rank, stream=2)))

            def critic(x, y):
                return D(x, y, depth, alpha)

            d_opt.zero_grad(set_to_none=True)
            for real, labels, gen in ranks:
                z = torch.randn(real.shape[0], cfg.latent_dim, generator=gen)
                with torch.no_grad():
                    fake = G(z, labels, depth, alpha)
                d = critic_loss(critic, real, fake, labels, gp_lambda=cfg.gp_lambda, drift=cfg.drift, generator=gen)
                (d.total / used).backward()
            d_opt.step()
            g_opt.zero_grad(set_to_none=True)
            D.requires_grad_(False)
            for real, labels, gen in ranks:
                z = torch.randn(real.shape[0], cfg.latent_dim, generator=gen)
                (generator_loss(critic, G(z, labels, depth, alpha), labels) / used).backward()
            D.requires_grad_(True)
            g_opt.step()
            ema.update(G)
    return G, D, ema.shadow


def max_abs_difference(state: dict, module: torch.nn.Module) -> float:
    """The largest |a - b| over all floating tensors of a saved state dict and a module's."""
    other = module.state_dict()
    assert state.keys() == other.keys()
    return max(float((state[k].float() - other[k].float()).abs().max()) for k in state if state[k].is_floating_point())


def share_differing(state: dict, module: torch.nn.Module, *, above: float) -> float:
    """The share of all floating weights whose |a - b| exceeds `above`."""
    other = module.state_dict()
    keys = [k for k in state if state[k].is_floating_point()]
    differing = sum(int(((state[k].float() - other[k].float()).abs() > above).sum()) for k in keys)
    return differing / sum(state[k].numel() for k in keys)
