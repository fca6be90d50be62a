"""ProGAN networks: equalised learning rate, pixel norm, minibatch stddev, fade-in, label conditioning
and the projection discriminator's output, each checked against an independent computation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from generation.progan.config import preset_config
from generation.progan.networks import (
    Discriminator,
    EqualizedConv2d,
    EqualizedLinear,
    Generator,
    fade_in_images,
    minibatch_stddev,
    pixel_norm,
)

torch.set_num_threads(1)


@pytest.fixture
def cfg():
    return preset_config("tiny", num_classes=3)


def test_equalised_conv_scales_unit_weights_at_run_time():
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 32, 3)
    # Stored weights are N(0, 1): the learning rate acts on every layer alike.
    assert abs(conv.weight.std().item() - 1.0) < 0.05
    x = torch.randn(2, 64, 5, 5)
    he = math.sqrt(2.0) / math.sqrt(64 * 3 * 3)
    expected = F.conv2d(x, conv.weight.detach() * he, conv.bias.detach(), padding=1)
    torch.testing.assert_close(conv(x), expected)
    # The scale is applied in the forward pass, not baked into the parameter: the gradient w.r.t.
    # the stored weight is the gradient w.r.t. the effective weight times the scale.
    w_eff = (conv.weight.detach() * he).requires_grad_(True)
    F.conv2d(x, w_eff, conv.bias.detach(), padding=1).sum().backward()
    conv(x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w_eff.grad * he)


def test_equalised_linear_uses_gain_over_sqrt_fan_in():
    lin = EqualizedLinear(10, 4, gain=0.5)
    x = torch.randn(3, 10)
    torch.testing.assert_close(lin(x), x @ (lin.weight.detach() * 0.5 / math.sqrt(10)).T + lin.bias.detach())


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(2, 7, 3, 3) * 5
    y = pixel_norm(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5, rtol=0)


def test_minibatch_stddev_shape_and_value():
    torch.manual_seed(0)
    x = torch.randn(8, 5, 4, 4)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (8, 6, 4, 4)
    torch.testing.assert_close(y[:, :5], x)
    # Independent: groups are samples {m, m + M, m + 2M, ...} with M = N / G.
    xs = x.numpy().astype(np.float64)
    m_count = 8 // 4
    for i in range(8):
        members = xs[[i % m_count + k * m_count for k in range(4)]]
        expected = members.std(axis=0, ddof=0).mean()
        assert np.allclose(y[i, 5].numpy(), expected, atol=1e-5)
    # A batch size the group does not divide uses the largest divisor (here 3 of 6 with group 4).
    assert minibatch_stddev(torch.randn(6, 2, 4, 4), group_size=4).shape == (6, 3, 4, 4)


def test_generator_and_discriminator_shapes_at_every_depth(cfg):
    torch.manual_seed(0)
    g, d = Generator(cfg), Discriminator(cfg)
    z, y = torch.randn(4, cfg.latent_dim), torch.tensor([0, 1, 2, 0])
    for depth, res in enumerate(cfg.resolutions):
        for alpha in (0.3, 1.0):
            img = g(z, y, depth, alpha)
            assert img.shape == (4, 3, res, res)
            assert d(img, y, depth, alpha).shape == (4,)
    with pytest.raises(ValueError, match="depth=3"):
        g(z, y, 3)
    with pytest.raises(ValueError, match="expects 16 px"):
        d(torch.zeros(4, 3, 8, 8), y, 2)


def test_generator_fade_in_blends_upsampled_previous_output(cfg):
    torch.manual_seed(0)
    g = Generator(cfg)
    z, y = torch.randn(3, cfg.latent_dim), torch.tensor([0, 1, 2])
    with torch.no_grad():
        low = F.interpolate(g(z, y, 1, 1.0), scale_factor=2, mode="nearest")
        new = g(z, y, 2, 1.0)
        torch.testing.assert_close(g(z, y, 2, 0.0), low)
        torch.testing.assert_close(g(z, y, 2, 0.25), 0.75 * low + 0.25 * new, atol=1e-5, rtol=1e-5)


def test_discriminator_fade_in_blends_the_half_size_path(cfg):
    torch.manual_seed(0)
    d = Discriminator(cfg)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        # alpha = 0: exactly the previous resolution's critic on the box-downsampled image.
        torch.testing.assert_close(d(x, y, 2, 0.0), d(F.avg_pool2d(x, 2), y, 1, 1.0))
        assert not torch.allclose(d(x, y, 2, 0.5), d(x, y, 2, 1.0))


def test_real_images_fade_like_the_generator():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(fade_in_images(x, 0.0), low)
    torch.testing.assert_close(fade_in_images(x, 0.6), 0.4 * low + 0.6 * x)
    assert fade_in_images(x, 1.0) is x


def test_projection_term_equals_its_definition(cfg):
    torch.manual_seed(0)
    d = Discriminator(cfg)
    # Make the embedding and output non-trivial.
    with torch.no_grad():
        d.out.bias.fill_(0.3)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        h = d.features(x)
        nf = h.shape[1]
        psi = h @ (d.out.weight / math.sqrt(nf)).T + d.out.bias  # the unconditional output, gain 1
        embed = d.label_embed.weight[y] / math.sqrt(nf)
        expected = psi.squeeze(1) + (embed * h).sum(dim=1)
        torch.testing.assert_close(d(x, y), expected, atol=1e-5, rtol=1e-5)
        # Another label changes the score by the difference of the two inner products only.
        y2 = torch.tensor([0, 1, 2, 1])
        diff = d(x, y2) - d(x, y)
        torch.testing.assert_close(
            diff, ((d.label_embed.weight[y2] - d.label_embed.weight[y]) / math.sqrt(nf) * h).sum(1),
            atol=1e-5, rtol=1e-5,
        )


def test_label_changes_the_generated_image(cfg):
    torch.manual_seed(0)
    g = Generator(cfg)
    z = torch.randn(1, cfg.latent_dim).expand(3, -1)
    with torch.no_grad():
        out = g(z, torch.tensor([0, 1, 2]))
    assert (out[0] - out[1]).abs().mean() > 1e-3
    assert (out[1] - out[2]).abs().mean() > 1e-3


def test_paper_scale_channels():
    cfg = preset_config("progan-128")
    assert cfg.resolutions == [4, 8, 16, 32, 64, 128]
    assert [cfg.channels(r) for r in cfg.resolutions] == [512, 512, 512, 512, 256, 128]


def test_full_growth_path_to_128_pixels_with_few_channels():
    cfg = preset_config("progan-128", fmap_base=32, fmap_max=4, latent_dim=4, label_embed_dim=2)
    g, d = Generator(cfg), Discriminator(cfg)
    z, y = torch.randn(2, 4), torch.tensor([0, 1])
    with torch.no_grad():
        for depth, alpha in ((4, 0.5), (5, 0.5), (5, 1.0)):
            img = g(z, y, depth, alpha)
            assert img.shape == (2, 3, cfg.resolutions[depth], cfg.resolutions[depth])
            assert d(img, y, depth, alpha).shape == (2,)
