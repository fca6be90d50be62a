"""Samplers for the diffusion model: small pure functions with one shared signature (in the manner of
k-diffusion), each driving one of diffusers' schedulers, and ONE factory that picks them by name.

    sampler(model_fn, x, *, steps, schedule, generator=None, progress=False) -> x_0

`model_fn(x_t, t)` returns the model's 6 channels (noise + variance interpolation) for a batch at
integer timestep t (labels and guidance are bound inside it); `x` is the initial Gaussian noise;
`schedule` holds the training schedule's scheduler arguments (`diffusion.scheduler_kwargs`);
`generator` (one, or one per image) draws the noise of stochastic samplers.

Timesteps: DDPM and DPM-Solver++ step from each evaluated timestep to the next one in their list, so
they are spaced evenly from T-1 to 0 ("linspace", both ends kept). DDIM in diffusers always steps back
by T // N, so it uses guided-diffusion's `ddimN` spacing ("leading": t = 0, T // N, 2 T // N, ...), where
the next evaluated timestep is exactly T // N below.

Clipping the predicted x0 to [-1, 1]: DDPM (the posterior mean) and DPM-Solver++ (thresholding, its
data-prediction update) then use the clipped x0 and so re-derive the noise from it, as guided-diffusion
does; diffusers' DDIM clips x0 but keeps the model's own noise. With a good model the two agree. With
one whose noise prediction is off, the predicted x0 near t = T is far outside [-1, 1] (its error is
amplified by sigma/alpha, 157 at t = 999 under the linear schedule), the re-derived noise is about
x_t itself, little noise is removed while x0 stays clipped, and DDPM and DPM-Solver++ end noisy or
saturated where DDIM does not (issue 15: an EMA still half the untrained network; see
tests/generation/test_sampler_trained_like.py). That is the model, not the samplers' wiring.
Pure torch, no Django.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SamplerName = Literal["ddpm", "ddim", "dpmsolver++"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)


def _run(scheduler, model_fn: ModelFn, x: torch.Tensor, *, steps: int, progress: bool, **step_kwargs) -> torch.Tensor:
    total = scheduler.config.num_train_timesteps
    if not 1 <= steps <= total:
        raise ValueError(f"steps {steps}: expected 1 to {total}")
    scheduler.set_timesteps(steps, device=x.device)
    x = x * scheduler.init_noise_sigma
    for t in tqdm(scheduler.timesteps, disable=not progress, desc="sampling", leave=False):
        out = model_fn(x, t.expand(x.shape[0]))
        x = scheduler.step(out.float(), t, x, **step_kwargs).prev_sample
    return x


def sample_ddpm(model_fn: ModelFn, x: torch.Tensor, *, steps: int, schedule: dict, generator=None,
                progress: bool = False) -> torch.Tensor:
    """Ancestral DDPM (Ho et al. 2020) with the learned-range variance of Nichol & Dhariwal 2021;
    with steps < T the process is respaced (betas recomputed between the kept timesteps)."""
    scheduler = DDPMScheduler(**schedule, variance_type="learned_range", clip_sample=True, timestep_spacing="linspace")
    return _run(scheduler, model_fn, x, steps=steps, progress=progress, generator=generator)


def sample_ddim(model_fn: ModelFn, x: torch.Tensor, *, steps: int, schedule: dict, generator=None,
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0) on guided-diffusion's ddimN timesteps (every
    update lands on the next evaluated timestep); uses the noise prediction only."""
    scheduler = DDIMScheduler(**schedule, clip_sample=True, timestep_spacing="leading",
                              steps_offset=0, set_alpha_to_one=True)
    return _run(scheduler, lambda x_, t: model_fn(x_, t)[:, :3], x, steps=steps, progress=progress, eta=0.0)


def sample_dpmsolver_pp(model_fn: ModelFn, x: torch.Tensor, *, steps: int, schedule: dict, generator=None,
                        progress: bool = False) -> torch.Tensor:
    """DPM-Solver++ (Lu et al. 2022), 2nd-order multistep, data prediction; the learned variance
    channels are dropped by the scheduler (variance_type="learned_range"); predicted x_0 is clipped
    to [-1, 1] as in ADM (thresholding with sample_max_value 1 is a plain clip)."""
    scheduler = DPMSolverMultistepScheduler(**schedule, algorithm_type="dpmsolver++", solver_order=2,
                                            variance_type="learned_range", timestep_spacing="linspace",
                                            thresholding=True, sample_max_value=1.0)
    return _run(scheduler, model_fn, x, steps=steps, progress=progress)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmsolver++": sample_dpmsolver_pp,
}
assert tuple(SAMPLERS) == SAMPLER_NAMES


def sampler_get(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called `name`; an unknown name is a ValueError listing the choices."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"sampler {name!r}: expected one of {', '.join(SAMPLER_NAMES)}") from None
