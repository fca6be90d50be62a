"""WGAN-GP losses with the drift term, as in Karras et al. (ICLR 2018), for a conditional critic.

Critic: E[D(fake)] - E[D(real)] + lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] + drift * E[D(real)^2],
x_hat = eps * real + (1 - eps) * fake with eps ~ U(0, 1) per sample (Gulrajani et al., 2017);
lambda = 10, drift = 0.001. Generator: -E[D(fake)]. The labels of each image go to D unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Critic = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, labels) -> scores (N,)


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """Per-sample (||grad_x D(x_hat, y)|| - 1)^2 at x_hat = eps * real + (1 - eps) * fake (eps: (N,))."""
    e = eps.reshape(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat, labels)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2)


@dataclass
class CriticLoss:
    total: torch.Tensor
    wasserstein: torch.Tensor  # E[D(real)] - E[D(fake)], the critic's distance estimate
    penalty: torch.Tensor
    drift: torch.Tensor

    def metrics(self) -> dict[str, float]:
        return {
            "d_loss": float(self.total.detach()),
            "w_distance": float(self.wasserstein.detach()),
            "gp": float(self.penalty.detach()),
            "drift": float(self.drift.detach()),
        }


def critic_loss(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor,
    *,
    gp_lambda: float = 10.0,
    drift: float = 0.001,
    generator: torch.Generator | None = None,
) -> CriticLoss:
    """The WGAN-GP critic loss with drift; `generator` draws the interpolation weights."""
    real_scores = critic(real, labels)
    fake_scores = critic(fake.detach(), labels)
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], device=device, generator=generator).to(real.device)
    penalty = gradient_penalty(critic, real, fake, labels, eps).mean()
    drift_term = real_scores.pow(2).mean()
    wasserstein = real_scores.mean() - fake_scores.mean()
    total = -wasserstein + gp_lambda * penalty + drift * drift_term
    return CriticLoss(total=total, wasserstein=wasserstein, penalty=penalty, drift=drift_term)


def generator_loss(critic: Critic, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z, y), y)]."""
    return -critic(fake, labels).mean()
