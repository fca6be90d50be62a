"""A PORT FOR TESTING, NOT THE PRODUCT: a minimal re-implementation of guided-diffusion's `UNetModel`
(openai/guided-diffusion, guided_diffusion/unet.py and nn.py; MIT licence), written from its source
for the configuration ADM uses here: 2-D, class-conditional, `use_scale_shift_norm=True`,
`resblock_updown=True`, `num_head_channels` fixed, legacy q/k/v attention order, fp32, no gradient
checkpointing. Module names and parameter shapes are ADM's, so its state dicts are guided-diffusion's
own. Used by test_adm_port.py to show `DiffusionUNet` computes the same function.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels=None, *, up=False, down=False, groups=32):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.up, self.down = up, down
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x):
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x, emb):
        h = self.in_layers[:-1](x)
        h, x = self._resample(h), self._resample(x)
        h = self.in_layers[-1](h)
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


class AttentionBlock(nn.Module):
    def __init__(self, channels, head_channels, groups=32):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x, emb=None):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length = qkv.shape[-1]
        ch = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, length).split(ch, dim=1)  # legacy order
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, -1, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class Sequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class UNetModel(nn.Module):
    """`attention_resolutions` are downsampling rates, as in guided-diffusion (image_size // px)."""

    def __init__(self, *, model_channels, num_res_blocks, attention_resolutions, channel_mult, num_classes,
                 num_head_channels, in_channels=3, out_channels=6, groups=32):
        super().__init__()
        self.model_channels = model_channels
        emb = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(num_classes, emb)

        def res(*a, **k):
            return ResBlock(*a, groups=groups, **k)

        def attn(c):
            return AttentionBlock(c, num_head_channels, groups=groups)

        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([Sequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, emb, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(Sequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Sequential(res(ch, emb, ch, down=True)))
                chans.append(ch)
                ds *= 2
        self.middle_block = Sequential(res(ch, emb), attn(ch), res(ch, emb))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + chans.pop(), emb, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, emb, ch, up=True))
                    ds //= 2
                self.output_blocks.append(Sequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x, timesteps, y):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels)) + self.label_emb(y)
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
