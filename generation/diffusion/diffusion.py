"""The Gaussian diffusion process and its training loss (Nichol & Dhariwal 2021 "Improved DDPM", as
used by ADM and by Moghadam et al., WACV 2023).

Schedules: 1000-step linear and cosine betas, taken from diffusers' `DDPMScheduler` ("linear",
"squaredcos_cap_v2"). Loss: the hybrid L_simple + lambda * L_vlb (lambda = 0.001) with a learned-
range variance, the mean stop-gradded inside L_vlb; L_simple optionally P2-weighted (Choi et al.
2022: w_t = 1 / (k + SNR_t)^gamma, the paper's "prioritized morphology weighting"); labels dropped
to the null class with probability `cfg_drop` for classifier-free guidance. Pure torch, no Django.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler

from generation.diffusion.config import DiffusionConfig

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def scheduler_kwargs(config: DiffusionConfig) -> dict:
    """The diffusers scheduler arguments that reproduce this config's training schedule."""
    return {"num_train_timesteps": config.num_timesteps, "beta_schedule": DIFFUSERS_SCHEDULE[config.schedule]}


def betas_for(config: DiffusionConfig) -> torch.Tensor:
    """float64 betas of the schedule (diffusers computes them; we keep float64 for the VLB)."""
    return DDPMScheduler(**scheduler_kwargs(config)).betas.to(torch.float64)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit data x in [-1, 1] (bins of width 2/255) under N(means, exp(log_scales)^2),
    the outermost bins extended to -inf / +inf; elementwise, in nats. Exact normal CDF (`ndtr`)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    upper = inv_std * (centered + 1.0 / 255.0)
    lower = inv_std * (centered - 1.0 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_one_minus_cdf_lower = torch.special.log_ndtr(-lower)
    # log(Phi(u) - Phi(l)) computed stably: log Phi(u) + log(1 - exp(log Phi(l) - log Phi(u)))
    log_cdf_lower = torch.special.log_ndtr(lower)
    log_delta = log_cdf_upper + torch.log(-torch.expm1((log_cdf_lower - log_cdf_upper).clamp(max=-1e-12)))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_one_minus_cdf_lower, log_delta))


def p2_weights(alphas_cumprod: torch.Tensor, *, gamma: float, k: float) -> torch.Tensor:
    """P2 weight per timestep, 1 / (k + SNR_t)^gamma with SNR_t = abar_t / (1 - abar_t)."""
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    return (k + snr) ** (-gamma)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


@dataclass
class LossTerms:
    loss: torch.Tensor  # per sample, what is optimised
    mse: torch.Tensor  # per sample, P2-weighted L_simple
    vb: torch.Tensor  # per sample, L_vlb term in bits/dim (unscaled)


class GaussianDiffusion:
    """Schedule tables (float64, on `device`) and the operations on them."""

    def __init__(self, config: DiffusionConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.num_timesteps = config.num_timesteps
        betas = betas_for(config)
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, dim=0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        tables = {
            "betas": betas,
            "alphas_cumprod": ac,
            "sqrt_alphas_cumprod": ac.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1.0).sqrt(),
            "posterior_variance": post_var,
            # the posterior variance is 0 at t = 0: clip the log to its value at t = 1
            "posterior_log_variance_clipped": torch.log(torch.cat([post_var[1:2], post_var[1:]])),
            "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
            "p2_weight": p2_weights(ac, gamma=config.p2_gamma, k=config.p2_k),
        }
        for name, value in tables.items():
            setattr(self, name, value.to(device))

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        out = table.to(t.device)[t].float()
        return out.view(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, t, xt) * x0 + self._at(self.posterior_mean_coef2, t, xt) * xt
        return mean, self._at(self.posterior_log_variance_clipped, t, xt).expand_as(xt)

    def p_mean_logvar(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, *, clip: bool = True):
        """p(x_{t-1} | x_t) from the 6-channel output: eps and v, log var = v' log beta + (1 - v') log beta~."""
        eps, v = model_output.float().chunk(2, dim=1)
        min_log = self._at(self.posterior_log_variance_clipped, t, xt)
        max_log = self._at(torch.log(self.betas), t, xt)
        frac = (v + 1.0) / 2.0
        logvar = frac * max_log + (1.0 - frac) * min_log
        x0 = self._at(self.sqrt_recip_alphas_cumprod, t, xt) * xt - self._at(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, logvar, x0

    def vb_terms(self, model_output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """L_t per sample in bits/dim: KL(q || p) for t > 0, the decoder NLL at t = 0."""
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        mean, logvar, _ = self.p_mean_logvar(model_output, xt, t, clip=False)
        kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, means=mean, log_scales=0.5 * logvar)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def draw(self, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        """The random parts of a training step for a whole batch: timesteps t, noise and the labels
        after dropout to the null class (probability cfg_drop), all from `generator`."""
        n, dev = x0.shape[0], generator.device
        t = torch.randint(0, self.num_timesteps, (n,), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0.device)
        drop = torch.rand((n,), generator=generator, device=dev).to(x0.device) < self.config.cfg_drop
        return t, noise, torch.where(drop, torch.full_like(y, self.config.null_class), y)

    def training_losses(self, model, x0: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                        *, drawn: tuple | None = None) -> LossTerms:
        """Hybrid loss per sample; the random parts come from `drawn` (see `draw`) or `generator`."""
        t, noise, y = drawn if drawn is not None else self.draw(x0, y, generator)
        xt = self.q_sample(x0, t, noise)
        out = model(xt, t, y).float()
        eps, v = out.chunk(2, dim=1)
        mse = mean_flat((noise - eps) ** 2) * self._at(self.p2_weight, t, eps).flatten()
        # L_vlb trains only the variance: the mean is stop-gradded (Nichol & Dhariwal, sec. 3.1)
        vb = self.vb_terms(torch.cat([eps.detach(), v], dim=1), x0, xt, t)
        # lambda * L_vlb with L_vlb = T * E_t[L_t]
        loss = mse + self.config.lambda_vlb * self.num_timesteps * vb
        return LossTerms(loss=loss, mse=mse, vb=vb)
