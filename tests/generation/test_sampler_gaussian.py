"""Every sampler, driven by the exact denoiser of Gaussian data, does what its update rule says.

Data x0 ~ N(mu, s^2) per pixel has, at x_t = a x0 + b eps (a^2 = abar_t, b^2 = 1 - abar_t), the exact
noise prediction E[eps | x_t] = b (x_t - a mu) / (a^2 s^2 + b^2). Each sampler step is then affine in
x_t, so the result is known in closed form: recomputed here in float64 from the papers' update rules on
the timesteps each sampler must visit, independently of diffusers. Unlike the single-point oracle
(test_sampler_oracle.py), where any timestep sequence ends at x0, this sees an update that jumps to a
timestep the model was not evaluated at (diffusers' DDIM with "linspace" spacing: 10 steps evaluate
t = 999, 888, ... but step to 899, 788, ...).
"""
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from generation.diffusion.config import preset_config
from generation.diffusion.diffusion import scheduler_kwargs
from generation.diffusion.samplers import sampler_get

MU, S = 0.1, 0.25  # narrow enough that clipping predicted x0 to [-1, 1] almost never acts


def _abar(schedule: str) -> torch.Tensor:
    return DDPMScheduler(**scheduler_kwargs(preset_config("tiny", schedule=schedule))).alphas_cumprod.double()


def _eps(x, abar_t):
    a, b = abar_t.sqrt(), (1 - abar_t).sqrt()
    return b * (x - a * MU) / (a * a * S * S + b * b)


def _x0(x, abar_t, eps_scale: float = 1.0):
    return ((x - (1 - abar_t).sqrt() * eps_scale * _eps(x, abar_t)) / abar_t.sqrt()).clamp(-1, 1)


def gaussian_denoiser(abar: torch.Tensor, variance_channel: float = -1.0):
    def model_fn(x, t):
        eps = _eps(x.double(), abar[t.long()].view(-1, 1, 1, 1))
        return torch.cat([eps, torch.full_like(eps, variance_channel)], dim=1).float()

    return model_fn


def ddim_reference(x: torch.Tensor, abar: torch.Tensor, steps: int) -> torch.Tensor:
    """guided-diffusion's ddimN: t = k * (T // N), each update to the next of them, the last to abar = 1."""
    stride = len(abar) // steps
    ts = list(range(0, steps * stride, stride))[::-1]
    x = x.double()
    for i, t in enumerate(ts):
        prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x = prev.sqrt() * _x0(x, abar[t]) + (1 - prev).sqrt() * _eps(x, abar[t])
    return x


def linspace_timesteps(total: int, steps: int) -> list[int]:
    return [int(t) for t in np.linspace(0, total - 1, steps).round()[::-1]]


def ddpm_moments(abar: torch.Tensor, steps: int, *, variance: str = "beta~") -> tuple[float, float]:
    """Mean and std of respaced ancestral DDPM started from N(0, 1), without clip, with the posterior
    variance beta~ (v = -1) or beta (v = +1), both recomputed between the kept timesteps."""
    ts = linspace_timesteps(len(abar), steps)
    mean, var = 0.0, 1.0
    for i, t in enumerate(ts):
        ab = float(abar[t])
        ab_prev = float(abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        beta = 1 - ab / ab_prev
        a, b2 = ab ** 0.5, 1 - ab
        gain = a * S * S / (a * a * S * S + b2)  # x0_hat = MU + gain (x - a MU)
        c1, c2 = ab_prev ** 0.5 * beta / (1 - ab), (1 - beta) ** 0.5 * (1 - ab_prev) / (1 - ab)
        slope, offset = c1 * gain + c2, c1 * (MU - gain * a * MU)
        step_var = beta * (1 - ab_prev) / (1 - ab) if variance == "beta~" else beta
        noise_var = step_var if i + 1 < len(ts) else 0.0
        mean, var = slope * mean + offset, slope * slope * var + noise_var
    return mean, var ** 0.5


def dpmsolver_pp_reference(x: torch.Tensor, abar: torch.Tensor, steps: int, *, eps_scale: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on t_i = linspace(T-1, 0, N+1)[:-1], then to sigma 0;
    first order at the first step and at the last (to sigma 0, where it returns the x0 prediction).
    `eps_scale` scales the noise prediction (a model that under-predicts the noise)."""
    ts = [int(t) for t in np.linspace(0, len(abar) - 1, steps + 1).round()[::-1][:-1]]
    alpha = [float(abar[t]) ** 0.5 for t in ts] + [1.0]
    sigma = [float(1 - abar[t]) ** 0.5 for t in ts] + [0.0]
    lam = [np.log(a / s) if s > 0 else np.inf for a, s in zip(alpha, sigma)]
    x, previous = x.double(), None
    for i, t in enumerate(ts):
        d0 = _x0(x, abar[t], eps_scale)
        h = lam[i + 1] - lam[i]
        first_order = previous is None or i == steps - 1
        decay = -np.expm1(-h) if np.isfinite(h) else 1.0  # 1 - exp(-h)
        if first_order:
            x = sigma[i + 1] / sigma[i] * x + alpha[i + 1] * decay * d0
        else:
            r = (lam[i] - lam[i - 1]) / h
            x = sigma[i + 1] / sigma[i] * x + alpha[i + 1] * decay * (d0 + 0.5 * (d0 - previous) / r)
        previous = d0
    return x


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 25, 50])
def test_ddim_lands_on_the_evaluated_timesteps(schedule, steps):
    abar = _abar(schedule)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sampler_get("ddim")(gaussian_denoiser(abar), x, steps=steps, schedule=scheduler_kwargs(
        preset_config("tiny", schedule=schedule)))
    assert (out.double() - ddim_reference(x, abar, steps)).abs().max().item() < 1e-4


def test_the_check_sees_ddim_stepping_between_evaluated_timesteps():
    from diffusers import DDIMScheduler

    from generation.diffusion.samplers import _run

    abar = _abar("linear")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    old = DDIMScheduler(**scheduler_kwargs(preset_config("tiny")), clip_sample=True, timestep_spacing="linspace")
    out = _run(old, lambda x_, t: gaussian_denoiser(abar)(x_, t)[:, :3], x, steps=10, progress=False, eta=0.0)
    assert (out.double() - ddim_reference(x, abar, 10)).abs().max().item() > 0.05


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 20])
def test_dpmsolver_pp_follows_its_update_rule(schedule, steps):
    abar = _abar(schedule)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = sampler_get("dpmsolver++")(gaussian_denoiser(abar), x, steps=steps, schedule=scheduler_kwargs(
        preset_config("tiny", schedule=schedule)))
    # diffusers works in float32 with sigma_999 = 2e4 under the cosine schedule: 5e-4, not 1e-4
    assert (out.double() - dpmsolver_pp_reference(x, abar, steps)).abs().max().item() < 5e-4


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [50, 250])
def test_ddpm_output_has_the_closed_form_mean_and_spread(schedule, steps):
    abar = _abar(schedule)
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out = sampler_get("ddpm")(gaussian_denoiser(abar), x, steps=steps, schedule=scheduler_kwargs(
        preset_config("tiny", schedule=schedule)), generator=torch.Generator().manual_seed(3))
    mean, std = ddpm_moments(abar, steps)
    # 12,288 independent pixels: the sample std is within about 1% of the true one
    assert abs(float(out.mean()) - mean) < 0.01
    assert abs(float(out.std()) / std - 1) < 0.03
    # and 250 steps come close to the data itself
    if steps == 250:
        assert abs(std / S - 1) < 0.06
