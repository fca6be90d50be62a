"""The ADM UNet (Dhariwal & Nichol 2021) used by Moghadam et al. (WACV 2023), built from diffusers'
`UNet2DModel`, not written by hand.

BigGAN-style residual up/down-sampling blocks (ResnetDownsampleBlock2D / ResnetUpsampleBlock2D and
attention blocks with resnet down/up-sampling), scale-shift (AdaGN) timestep conditioning, self-
attention at the configured resolutions (32, 16, 8 px for 128 px images) with 64-channel heads, two
residual blocks per resolution, 6 output channels (noise + variance interpolation), the class label
through its own embedding (one extra row: the null class for classifier-free guidance) added to the
timestep embedding, and ADM's zero-initialised output layers. Pure torch, no Django.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from generation.diffusion.config import DiffusionConfig


class DiffusionUNet(nn.Module):
    """`forward(x, t, y) -> (N, 6, H, W)`: predicted noise (3) and variance interpolation v (3)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        down, up = [], []
        for res in config.resolutions:
            attn = res in config.attention_resolutions
            down.append("AttnDownBlock2D" if attn else "ResnetDownsampleBlock2D")
            up.insert(0, "AttnUpBlock2D" if attn else "ResnetUpsampleBlock2D")
        self.unet = UNet2DModel(
            sample_size=config.image_size,
            in_channels=3,
            out_channels=6,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            downsample_type="resnet",
            upsample_type="resnet",
            resnet_time_scale_shift="scale_shift",
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.norm_num_groups,
            # without it diffusers drops the middle attention's GroupNorm under scale_shift (not ADM)
            attn_norm_num_groups=config.norm_num_groups if config.mid_attention_norm else None,
            dropout=config.dropout,
            num_class_embeds=config.num_classes + 1,
            flip_sin_to_cos=True,
            freq_shift=0,
        )
        _zero_init_outputs(self.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.unet(x, t, class_labels=y).sample


def _zero_init_outputs(unet: UNet2DModel) -> None:
    """ADM's zero_module: the output conv, each residual block's last conv and each attention output."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    modules = [unet.conv_out]
    for m in unet.modules():
        if isinstance(m, ResnetBlock2D):
            modules.append(m.conv2)
        elif isinstance(m, Attention):
            modules.append(m.to_out[0])
    for m in modules:
        nn.init.zeros_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


MID_ATTENTION_NORM_KEY = "unet.mid_block.attentions.0.group_norm.weight"


def checkpoint_config(ckpt: dict) -> DiffusionConfig:
    """The config a checkpoint's weights were made with. Checkpoints written before the middle attention
    got ADM's GroupNorm lack its weights and have no `mid_attention_norm` field: they are rebuilt with
    `mid_attention_norm=False`, i.e. exactly the network they were trained as (a warning says so);
    that GroupNorm cannot be added after training without changing the outputs."""
    data = dict(ckpt["config"])
    if "mid_attention_norm" not in data:
        weights = ckpt.get("ema") or ckpt["model"]
        data["mid_attention_norm"] = MID_ATTENTION_NORM_KEY in weights
        if not data["mid_attention_norm"]:
            import warnings

            warnings.warn(f"{ckpt.get('path', 'checkpoint')}: made before the ADM-exact UNet (its middle attention "
                          "has no GroupNorm); loaded as that older network. Retrain for the ADM architecture.",
                          stacklevel=2)
    return DiffusionConfig.from_dict(data)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
