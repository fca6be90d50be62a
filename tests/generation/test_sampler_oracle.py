"""Every sampler, driven by an exact denoiser, lands on the data.

For data that is a single image x0 the ideal noise prediction is known in closed form,
eps(x_t, t) = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), so a correct sampler must return x0 for
any noise, any schedule and any number of steps. This checks the samplers' wiring of diffusers'
schedulers (timesteps, noise scaling, learned-variance channels) independently of any training.
"""
import pytest
import torch

from generation.diffusion.config import preset_config
from generation.diffusion.diffusion import scheduler_kwargs
from generation.diffusion.samplers import SAMPLER_NAMES, sampler_get
from generation.training.data import step_generator


def oracle(x0: torch.Tensor, alphas_cumprod: torch.Tensor, variance_channel: float):
    def model_fn(x, t):
        abar = alphas_cumprod[t.long()].view(-1, 1, 1, 1).to(x.dtype)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        v = torch.full_like(eps, variance_channel)  # the learned-range interpolation, in [-1, 1]
        return torch.cat([eps, v], dim=1)

    return model_fn


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
@pytest.mark.parametrize("steps", [10, 50])
def test_an_exact_denoiser_is_sampled_back_to_its_data(sampler, schedule, steps):
    torch.manual_seed(0)
    config = preset_config("tiny", schedule=schedule)
    kwargs = scheduler_kwargs(config)
    from diffusers import DDPMScheduler

    alphas_cumprod = DDPMScheduler(**kwargs).alphas_cumprod.to(torch.float32)
    x0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8  # inside [-1, 1], away from the clip
    noise = torch.randn(2, 3, 8, 8)
    out = sampler_get(sampler)(
        oracle(x0, alphas_cumprod, variance_channel=0.0), noise, steps=steps, schedule=kwargs,
        generator=step_generator(0, 0),
    )
    assert out.shape == x0.shape
    # DDPM adds fresh noise at every step but the last; with the exact posterior it still ends at x0.
    tolerance = 0.05 if sampler == "ddpm" else 0.02
    assert (out - x0).abs().max().item() < tolerance, (out - x0).abs().max().item()
