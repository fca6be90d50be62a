"""Progressive generator and projection discriminator (Karras et al., ICLR 2018; Miyato & Koyama, ICLR 2018).

Both networks hold every resolution from 4x4 up to the configured size; `depth` (0 = 4 px) picks the
resolution in training and `alpha` in [0, 1] fades the newest block in: the output is
lerp(upsampled lower-resolution output, new output, alpha) in the generator, and the discriminator
mixes its new block's features with those of the half-size image in the same way. Real images are
faded identically by `fade_in_images`.

Layers use the equalised learning rate (weights drawn from N(0, 1) and scaled at run time by He's
constant gain / sqrt(fan_in)), the generator pixel-normalises its features after every convolution,
the discriminator appends the minibatch standard deviation before its last block; all activations are
LeakyReLU(0.2). The generator receives the class through a learned label embedding concatenated to the
latent; the discriminator adds the projection term <embed(y), phi(x)> to its unconditional output
psi(phi(x)), phi(x) being its pooled features (the last dense layer's output).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from generation.progan.config import ProGANConfig


class EqualizedLinear(nn.Module):
    """A linear layer whose N(0, 1) weights are multiplied by gain / sqrt(fan_in) at every call."""

    def __init__(self, in_features: int, out_features: int, *, gain: float = math.sqrt(2.0), bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualizedConv2d(nn.Module):
    """A same-padded convolution with run-time weight scaling gain / sqrt(in_channels * k * k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedEmbedding(nn.Module):
    """A class embedding used as a linear map of the features (the projection): scale 1 / sqrt(dim)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return F.embedding(labels, self.weight) * self.scale


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit root mean square (Karras et al., section 4.2)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one feature map: the mean standard deviation of the features over groups of samples.

    The batch is split into groups of `group_size` (the largest divisor of the batch size not above
    it); within each group the standard deviation of every feature at every pixel is averaged to one
    number, broadcast to an extra channel for the group's members. Output: (N, C + 1, H, W).
    """
    n, c, h, w = x.shape
    g = next(d for d in range(min(group_size, n), 0, -1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w).float()
    y = (y - y.mean(dim=0)).pow(2).mean(dim=0)
    y = (y + eps).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
    y = y.to(x.dtype).reshape(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


def downsample_to(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Box-filter (average) images down to `resolution` pixels, as the real images are shown to D."""
    factor = images.shape[-1] // resolution
    if factor * resolution != images.shape[-1]:
        raise ValueError(f"images of {images.shape[-1]} px cannot be reduced to {resolution} px")
    return F.avg_pool2d(images, factor) if factor > 1 else images


def fade_in_images(images: torch.Tensor, alpha: float) -> torch.Tensor:
    """Blend real images with their half-resolution version upsampled: lerp(low, images, alpha)."""
    if alpha >= 1.0:
        return images
    low = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")
    return torch.lerp(low, images, float(alpha))


def _lrelu(cfg: ProGANConfig):
    return nn.LeakyReLU(cfg.leaky_slope)


class _GeneratorBlock(nn.Module):
    """Nearest-neighbour 2x upsampling, then two 3x3 convolutions, each with LeakyReLU and pixel norm."""

    def __init__(self, in_channels: int, out_channels: int, cfg: ProGANConfig):
        super().__init__()
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3)
        self.conv2 = EqualizedConv2d(out_channels, out_channels, 3)
        self.act = _lrelu(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = pixel_norm(self.act(self.conv1(x)))
        return pixel_norm(self.act(self.conv2(x)))


class Generator(nn.Module):
    """z (latent_dim) and a class label -> images in [-1, 1] (roughly) at the resolution of `depth`."""

    def __init__(self, cfg: ProGANConfig):
        super().__init__()
        self.cfg = cfg
        res = cfg.resolutions
        nf4 = cfg.channels(4)
        self.label_embed = nn.Embedding(cfg.num_classes, cfg.label_embed_dim)
        nn.init.normal_(self.label_embed.weight)
        self.dense = EqualizedLinear(cfg.latent_dim + cfg.label_embed_dim, nf4 * 16, gain=math.sqrt(2.0) / 4)
        self.conv4 = EqualizedConv2d(nf4, nf4, 3)
        self.blocks = nn.ModuleList(_GeneratorBlock(cfg.channels(r // 2), cfg.channels(r), cfg) for r in res[1:])
        self.to_rgb = nn.ModuleList(EqualizedConv2d(cfg.channels(r), cfg.image_channels, 1, gain=1.0) for r in res)
        self.act = _lrelu(cfg)

    @property
    def max_depth(self) -> int:
        return len(self.cfg.resolutions) - 1

    def forward(self, z: torch.Tensor, labels: torch.Tensor, depth: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        depth = self.max_depth if depth is None else depth
        _check_depth(depth, self.max_depth)
        x = pixel_norm(torch.cat([z, self.label_embed(labels)], dim=1))
        x = pixel_norm(self.act(self.dense(x).reshape(z.shape[0], -1, 4, 4)))
        x = pixel_norm(self.act(self.conv4(x)))
        if depth == 0:
            return self.to_rgb[0](x)
        for block in self.blocks[: depth - 1]:
            x = block(x)
        new = self.to_rgb[depth](self.blocks[depth - 1](x))
        if alpha >= 1.0:
            return new
        skip = F.interpolate(self.to_rgb[depth - 1](x), scale_factor=2, mode="nearest")
        return torch.lerp(skip, new, float(alpha))


class _DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU, then 2x average pooling."""

    def __init__(self, in_channels: int, out_channels: int, cfg: ProGANConfig):
        super().__init__()
        self.conv1 = EqualizedConv2d(in_channels, in_channels, 3)
        self.conv2 = EqualizedConv2d(in_channels, out_channels, 3)
        self.act = _lrelu(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return F.avg_pool2d(x, 2)


class Discriminator(nn.Module):
    """Images and labels -> one critic score each: psi(phi(x)) + <embed(y), phi(x)>."""

    def __init__(self, cfg: ProGANConfig):
        super().__init__()
        self.cfg = cfg
        res = cfg.resolutions
        nf4 = cfg.channels(4)
        self.from_rgb = nn.ModuleList(EqualizedConv2d(cfg.image_channels, cfg.channels(r), 1) for r in res)
        # blocks[i] takes resolution res[i + 1] down to res[i].
        self.blocks = nn.ModuleList(_DiscriminatorBlock(cfg.channels(r), cfg.channels(r // 2), cfg) for r in res[1:])
        self.conv4 = EqualizedConv2d(nf4 + 1, nf4, 3)
        self.dense = EqualizedLinear(nf4 * 16, nf4)
        self.out = EqualizedLinear(nf4, 1, gain=1.0)
        self.label_embed = EqualizedEmbedding(cfg.num_classes, nf4)
        self.act = _lrelu(cfg)

    @property
    def max_depth(self) -> int:
        return len(self.cfg.resolutions) - 1

    def features(self, images: torch.Tensor, depth: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """phi(x): the pooled features (N, channels(4)) that both output terms read."""
        depth = self.max_depth if depth is None else depth
        _check_depth(depth, self.max_depth)
        expected = self.cfg.resolutions[depth]
        if images.shape[-1] != expected or images.shape[-2] != expected:
            raise ValueError(f"discriminator at depth {depth} expects {expected} px images, got {tuple(images.shape)}")
        x = self.act(self.from_rgb[depth](images))
        if depth > 0:
            x = self.blocks[depth - 1](x)
            if alpha < 1.0:
                skip = self.act(self.from_rgb[depth - 1](F.avg_pool2d(images, 2)))
                x = torch.lerp(skip, x, float(alpha))
            for block in reversed(self.blocks[: depth - 1]):
                x = block(x)
        x = minibatch_stddev(x, self.cfg.mbstd_group_size)
        x = self.act(self.conv4(x))
        return self.act(self.dense(x.flatten(1)))

    def projection(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The class term of Miyato & Koyama: the inner product of the label's embedding with phi(x)."""
        return (self.label_embed(labels) * features).sum(dim=1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, depth: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        h = self.features(images, depth, alpha)
        return self.out(h).squeeze(1) + self.projection(h, labels)


def _check_depth(depth: int, max_depth: int) -> None:
    if not 0 <= depth <= max_depth:
        raise ValueError(f"depth={depth}: expected 0..{max_depth} (4 px .. {4 * 2 ** max_depth} px)")
