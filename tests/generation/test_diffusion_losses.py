"""The diffusion process and its loss checked against closed forms computed independently:
schedules, KL between Gaussians, discretised Gaussian likelihood, P2 weights, the hybrid loss."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from generation.diffusion.config import preset_config
from generation.diffusion.diffusion import (
    GaussianDiffusion, betas_for, discretized_gaussian_log_likelihood, normal_kl, p2_weights,
)


def _alpha_bar_cosine(t):
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def test_linear_and_cosine_schedules_match_their_definitions():
    linear = betas_for(preset_config("tiny", schedule="linear")).numpy()
    assert np.allclose(linear, np.linspace(1e-4, 0.02, 1000), atol=1e-7)
    cosine = betas_for(preset_config("tiny", schedule="cosine")).numpy()
    expected = [min(1 - _alpha_bar_cosine((i + 1) / 1000) / _alpha_bar_cosine(i / 1000), 0.999) for i in range(1000)]
    assert np.allclose(cosine, expected, rtol=1e-4, atol=1e-7)


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, lv1, lv2 = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(Normal(m1, torch.exp(0.5 * lv1)), Normal(m2, torch.exp(0.5 * lv2)))
    assert torch.allclose(normal_kl(m1, lv1, m2, lv2), expected, atol=1e-10)


def test_discretized_gaussian_log_likelihood_matches_normal_cdf():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (200,), generator=g).double() / 127.5 - 1.0
    means = x + 0.05 * torch.randn(200, generator=g, dtype=torch.float64)
    log_scales = torch.rand(200, generator=g, dtype=torch.float64) * 3 - 5  # sigma in (0.007, 0.14)
    dist = Normal(means, torch.exp(log_scales))
    upper = dist.cdf(x + 1 / 255)
    lower = dist.cdf(x - 1 / 255)
    expected = torch.where(x < -0.999, upper.log(), torch.where(x > 0.999, (1 - lower).log(), (upper - lower).log()))
    finite = expected > -30  # float64 CDF differences underflow far in the tails; compare where they do not
    got = discretized_gaussian_log_likelihood(x, means=means, log_scales=log_scales)
    assert finite.sum() > 100
    assert torch.allclose(got[finite], expected[finite], atol=1e-6, rtol=1e-6)
    assert torch.isfinite(got).all() and (got <= 0).all()
    # the likelihoods of all 256 values sum to one
    values = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0
    total = discretized_gaussian_log_likelihood(values, means=torch.full((256,), 0.1, dtype=torch.float64),
                                                log_scales=torch.full((256,), math.log(0.3), dtype=torch.float64))
    assert total.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("gamma,k", [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0)])
def test_p2_weights_follow_choi_et_al(gamma, k):
    d = GaussianDiffusion(preset_config("tiny", p2_gamma=gamma, p2_k=k))
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    expected = 1.0 / (k + abar / (1 - abar)) ** gamma
    assert np.allclose(d.p2_weight.numpy(), expected, rtol=1e-5)
    if gamma > 0:  # P2 down-weights the easy, high-SNR (small t) steps
        assert d.p2_weight[0] < d.p2_weight[500] < d.p2_weight[999]
    assert torch.allclose(p2_weights(torch.tensor([0.5], dtype=torch.float64), gamma=gamma, k=k),
                          torch.tensor([(k + 1.0) ** -gamma], dtype=torch.float64))


def test_q_sample_and_a_perfect_model_has_zero_kl():
    d = GaussianDiffusion(preset_config("tiny"))
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([1, 10, 300, 999])
    xt = d.q_sample(x0, t, noise)
    ab = d.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(xt.double(), ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double(), atol=1e-5)
    # eps exact and v = -1 (variance = the true posterior variance): KL(q || p) vanishes
    perfect = torch.cat([noise, -torch.ones_like(noise)], dim=1)
    assert torch.allclose(d.vb_terms(perfect, x0, xt, t), torch.zeros(4), atol=1e-3)
    # eps off by 0.3 everywhere: KL = (mean error)^2 / (2 var) with the closed-form posterior (float64)
    worse = torch.cat([noise + 0.3, -torch.ones_like(noise)], dim=1)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    tt = t.numpy()
    beta, ab, ab_prev = 1 - abar[tt] / abar[tt - 1], abar[tt], abar[tt - 1]
    coef_x0 = beta * np.sqrt(ab_prev) / (1 - ab)
    var = beta * (1 - ab_prev) / (1 - ab)
    error = coef_x0 * np.sqrt(1 - ab) / np.sqrt(ab) * 0.3
    expected = error**2 / (2 * var) / math.log(2)
    assert np.allclose(d.vb_terms(worse, x0, xt, t).numpy(), expected, rtol=2e-3)


def test_hybrid_loss_weights_and_stops_the_mean_gradient_in_vlb():
    cfg = preset_config("tiny", p2_gamma=1.0, p2_k=1.0)
    d = GaussianDiffusion(cfg)
    out = torch.zeros(4, 6, 8, 8, requires_grad=True)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    terms = d.training_losses(lambda x, t, y: out * 1.0, x0, torch.zeros(4, dtype=torch.long),
                              torch.Generator().manual_seed(3))
    assert torch.allclose(terms.loss, terms.mse + 0.001 * 1000 * terms.vb)
    terms.vb.sum().backward()
    assert out.grad[:, :3].abs().max() == 0 and out.grad[:, 3:].abs().max() > 0


def test_label_dropout_sends_the_null_class():
    cfg = preset_config("tiny", num_classes=3, cfg_drop=0.5)
    seen = []

    def model(x, t, y):
        seen.append(y)
        return torch.zeros(x.shape[0], 6, *x.shape[2:])

    GaussianDiffusion(cfg).training_losses(model, torch.zeros(400, 3, 4, 4), torch.ones(400, dtype=torch.long),
                                           torch.Generator().manual_seed(0))
    y = seen[0]
    assert set(y.tolist()) == {1, 3} and 150 < int((y == 3).sum()) < 250
