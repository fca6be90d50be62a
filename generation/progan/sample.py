"""Sampling a ProGAN checkpoint: rebuild the generator from the checkpoint alone (config, EMA weights,
the resolution and fade-in it was trained at) and draw class-conditional images, one latent per image
from that image's own random generator (deterministic for a seed, whatever the batch). Importing this
module registers the kind "progan" with `generation.sampling.generate`, so `generate_images` takes
ProGAN checkpoints. A GAN draws an image in one forward pass: the diffusion sampler options (sampler,
steps, guidance) do not apply and are refused with a clear message. Imports no Django.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from generation.progan.config import ProGANConfig
from generation.progan.networks import Generator
from generation.sampling.generate import register_generator
from generation.training.checkpoint import CheckpointError, checkpoint_load

KIND = "progan"


class SamplerOptionError(ValueError):
    """A diffusion-only option was given for a ProGAN checkpoint."""


def refuse_sampler_options(**options) -> None:
    """Raise `SamplerOptionError` naming every option that was set (not None / False)."""
    given = [name for name, value in options.items() if value is not None and value is not False]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SamplerOptionError(
            f"{flags}: not applicable to a ProGAN checkpoint (a GAN draws each image in one forward pass; "
            "sampler options are for diffusion checkpoints only). Leave them out."
        )


def progan_generator_load(ckpt: dict | str, *, use_ema: bool = True, device: str | torch.device = "cpu"):
    """(generator in eval mode, config, depth, alpha, classes) from a checkpoint dict or path."""
    if not isinstance(ckpt, dict):
        ckpt = checkpoint_load(ckpt, kind=KIND)
    if ckpt.get("kind") != KIND:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: a {ckpt.get('kind')!r} checkpoint, expected 'progan'")
    cfg = ProGANConfig.from_dict(ckpt["config"])
    weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    g = Generator(cfg)
    try:
        g.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: weights do not fit its configuration ({exc})") from exc
    extra = ckpt.get("extra", {})
    depth = int(extra.get("depth", g.max_depth))
    alpha = float(extra.get("alpha", 1.0))
    classes = list(extra.get("classes") or [str(i) for i in range(cfg.num_classes)])
    return g.to(device).eval().requires_grad_(False), cfg, depth, alpha, classes


class ProGANSampler:
    """The object `generation.sampling.generate` draws from (its loader contract): classes, image size,
    no sampler options, and `sample(labels, generators)` with one torch.Generator per image."""

    accepts_sampler_options = False

    def __init__(self, ckpt: dict | str, *, device: str | torch.device = "cpu", use_ema: bool = True):
        self.device = torch.device(device)
        self.generator, self.config, self.depth, self.alpha, self.classes = progan_generator_load(
            ckpt, use_ema=use_ema, device=self.device
        )
        self.image_size = 4 * 2**self.depth

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generators: Sequence[torch.Generator], **options) -> torch.Tensor:
        """Float images in [-1, 1], (N, 3, H, W); image i's latent is drawn from `generators[i]` alone."""
        refuse_sampler_options(**options)
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if len(generators) != labels.numel():
            raise ValueError(f"{labels.numel()} labels but {len(generators)} generators: one per image")
        n_classes = self.config.num_classes
        bad = labels[(labels < 0) | (labels >= n_classes)]
        if bad.numel():
            raise ValueError(f"label index {int(bad[0])}: the checkpoint has {n_classes} classes (0..{n_classes - 1})")
        z = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=g.device).cpu() for g in generators])
        images = self.generator(z.to(self.device), labels.to(self.device), self.depth, self.alpha)
        return images.float().clamp(-1.0, 1.0).cpu()


def _load_for_generate(ckpt: dict, *, device: torch.device, use_ema: bool = True) -> ProGANSampler:
    return ProGANSampler(ckpt, device=device, use_ema=use_ema)


register_generator(KIND, _load_for_generate)
