"""A trained diffusion model ready to sample: rebuilt from a checkpoint alone (config, EMA or raw
weights), with class labels and classifier-free guidance bound into the model function the samplers
call. Used by the training grids and by `generation.sampling.generate`. Pure torch, no Django.
"""
from __future__ import annotations

import torch

from generation.diffusion.config import DiffusionConfig
from generation.diffusion.diffusion import scheduler_kwargs
from generation.diffusion.samplers import sampler_get
from generation.diffusion.unet import DiffusionUNet, checkpoint_config
from generation.training.checkpoint import checkpoint_load


class DiffusionGenerator:
    kind = "diffusion"
    accepts_sampler_options = True
    default_sampler = "ddpm"
    default_steps = 250

    def __init__(self, model: DiffusionUNet, config: DiffusionConfig, device: torch.device, *, step: int = 0,
                 bf16: bool | None = None):
        self.model = model.to(device).eval()
        # bf16 sampling is the GPU default (None: on on CUDA); the scheduler arithmetic stays float32
        self.bf16 = device.type == "cuda" if bf16 is None else bf16
        if self.bf16 and device.type != "cuda":
            raise ValueError("bf16 sampling needs a CUDA GPU; drop bf16 to sample on the CPU")
        self.config = config
        self.device = device
        self.step = step
        self.classes = list(config.classes) or [str(i) for i in range(config.num_classes)]
        self.image_size = config.image_size

    @classmethod
    def from_checkpoint(cls, ckpt: dict | str, *, device: torch.device | str = "cpu", use_ema: bool = True,
                        bf16: bool | None = None):
        if not isinstance(ckpt, dict):
            ckpt = checkpoint_load(ckpt, kind="diffusion")
        config = checkpoint_config(ckpt)
        model = DiffusionUNet(config)
        weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
        model.load_state_dict(weights)
        return cls(model, config, torch.device(device), step=int(ckpt.get("step", 0)), bf16=bf16)

    def model_fn(self, labels: torch.Tensor, guidance: float = 1.0):
        """x_t, t -> 6 channels; guidance w != 1 mixes eps_uncond + w (eps_cond - eps_uncond)."""
        if guidance != 1.0 and self.config.cfg_drop <= 0.0:
            raise ValueError(f"guidance {guidance}: this model was trained without label dropout (cfg_drop 0), "
                             "so it has no unconditional branch; train with --cfg-drop > 0 or use guidance 1")
        labels = labels.to(self.device)
        null = torch.full_like(labels, self.config.null_class)

        def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if not self.bf16:
                return self.model(x, t, y)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.model(x, t, y).float()

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guidance == 1.0:
                return net(x, t, labels)
            out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).float()
            cond, uncond = out.chunk(2)
            eps = uncond[:, :3] + guidance * (cond[:, :3] - uncond[:, :3])
            return torch.cat([eps, cond[:, 3:]], dim=1)

        return fn

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generators: list[torch.Generator], *, sampler: str | None = None,
               steps: int | None = None, guidance: float = 1.0, progress: bool = False) -> torch.Tensor:
        """Images in [-1, 1] (N x 3 x H x W, on the CPU), one per label; image i's noise comes from
        generators[i] alone, so results do not depend on the batch they are drawn in."""
        sample_fn = sampler_get(sampler or self.default_sampler)
        steps = self.default_steps if steps is None else steps
        if len(generators) != len(labels):
            raise ValueError(f"{len(generators)} generators for {len(labels)} labels")
        bad = [int(y) for y in labels if not 0 <= int(y) < self.config.num_classes]
        if bad:
            raise ValueError(f"label index {bad[0]}: expected 0 to {self.config.num_classes - 1}")
        shape = (1, 3, self.image_size, self.image_size)
        x = torch.cat([torch.randn(shape, generator=g, device=g.device) for g in generators]).to(self.device)
        out = sample_fn(self.model_fn(labels, guidance), x, steps=steps, schedule=scheduler_kwargs(self.config),
                        generator=generators, progress=progress)
        return out.float().clamp(-1, 1).cpu()
