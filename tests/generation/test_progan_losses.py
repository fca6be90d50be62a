"""WGAN-GP with drift: the gradient penalty and the critic loss against hand computations."""
import torch

from generation.progan.losses import critic_loss, generator_loss, gradient_penalty

torch.set_num_threads(1)


def test_gradient_penalty_matches_hand_computation():
    torch.manual_seed(0)
    w = torch.tensor([0.3, -1.7])  # per-class weight of a quadratic critic D(x, y) = w[y] * sum(x^2)

    def critic(x, y):
        return w[y] * x.pow(2).flatten(1).sum(1)

    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    labels, eps = torch.tensor([0, 1]), torch.tensor([0.25, 0.9])
    gp = gradient_penalty(critic, real, fake, labels, eps)
    for i in range(2):
        x_hat = eps[i] * real[i] + (1 - eps[i]) * fake[i]
        grad_norm = (2 * w[labels[i]] * x_hat).pow(2).sum().sqrt()  # dD/dx = 2 w x
        torch.testing.assert_close(gp[i], (grad_norm - 1) ** 2)


def test_critic_loss_combines_wasserstein_penalty_and_drift():
    a = torch.randn(3, 4, 4)  # linear critic D(x) = <a, x> + c[y]: its gradient norm is ||a|| everywhere
    c = torch.tensor([0.5, -2.0])

    def critic(x, y):
        return (x * a).flatten(1).sum(1) + c[y]

    real, fake, labels = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), torch.tensor([0, 1, 1, 0, 1])
    loss = critic_loss(critic, real, fake, labels, gp_lambda=10.0, drift=0.001)
    d_real, d_fake = critic(real, labels), critic(fake, labels)
    expected = d_fake.mean() - d_real.mean() + 10.0 * (a.norm() - 1) ** 2 + 0.001 * d_real.pow(2).mean()
    torch.testing.assert_close(loss.total, expected)
    torch.testing.assert_close(loss.wasserstein, d_real.mean() - d_fake.mean())
    torch.testing.assert_close(generator_loss(critic, fake, labels), -d_fake.mean())


def test_penalty_gradient_reaches_the_critic_parameters():
    lin = torch.nn.Linear(12, 1)

    def critic(x, y):
        return lin(x.flatten(1)).squeeze(1)

    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    gp = gradient_penalty(critic, real, fake, torch.zeros(4, dtype=torch.long), torch.rand(4)).mean()
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    w = lin.weight.detach()
    torch.testing.assert_close(lin.weight.grad, 2 * (w.norm() - 1) * w / w.norm())
