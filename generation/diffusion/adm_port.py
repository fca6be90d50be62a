"""Weights of guided-diffusion's `UNetModel` (Dhariwal & Nichol 2021, github.com/openai/guided-diffusion)
in this project's `DiffusionUNet`: the layer mapping between the two, so an ADM checkpoint (e.g. the
released 128 px class-conditional model) can be loaded, and so a test can prove the two networks are
the same function (tests/generation/test_adm_port.py).

Assumes the ADM configuration this project builds: `resblock_updown=True`, `use_scale_shift_norm=True`,
`learn_sigma=True`, class-conditional, attention with `num_head_channels = config.attention_head_dim`
in the legacy q/k/v order (`use_new_attention_order=False`, guided-diffusion's default). Pure torch,
no Django.
"""
from __future__ import annotations

import torch

from generation.diffusion.config import DiffusionConfig

RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
          "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def adm_module_map(config: DiffusionConfig) -> dict[str, tuple[str, str]]:
    """ADM module prefix -> (ours, kind) with kind one of "resnet", "attention", "plain"."""
    out: dict[str, tuple[str, str]] = {
        "time_embed.0": ("unet.time_embedding.linear_1", "plain"),
        "time_embed.2": ("unet.time_embedding.linear_2", "plain"),
        "label_emb": ("unet.class_embedding", "plain"),
        "input_blocks.0.0": ("unet.conv_in", "plain"),
        "middle_block.0": ("unet.mid_block.resnets.0", "resnet"),
        "middle_block.1": ("unet.mid_block.attentions.0", "attention"),
        "middle_block.2": ("unet.mid_block.resnets.1", "resnet"),
        "out.0": ("unet.conv_norm_out", "plain"),
        "out.2": ("unet.conv_out", "plain"),
    }
    levels, per = len(config.channel_mult), config.layers_per_block
    attention = [res in config.attention_resolutions for res in config.resolutions]
    block = 1
    for level in range(levels):
        for j in range(per):
            out[f"input_blocks.{block}.0"] = (f"unet.down_blocks.{level}.resnets.{j}", "resnet")
            if attention[level]:
                out[f"input_blocks.{block}.1"] = (f"unet.down_blocks.{level}.attentions.{j}", "attention")
            block += 1
        if level != levels - 1:
            out[f"input_blocks.{block}.0"] = (f"unet.down_blocks.{level}.downsamplers.0", "resnet")
            block += 1
    block = 0
    for up in range(levels):
        level = levels - 1 - up
        for j in range(per + 1):
            out[f"output_blocks.{block}.0"] = (f"unet.up_blocks.{up}.resnets.{j}", "resnet")
            if attention[level]:
                out[f"output_blocks.{block}.1"] = (f"unet.up_blocks.{up}.attentions.{j}", "attention")
            if level and j == per:
                out[f"output_blocks.{block}.{1 + attention[level]}"] = (f"unet.up_blocks.{up}.upsamplers.0", "resnet")
            block += 1
    return out


def adm_state_dict_convert(adm_state: dict[str, torch.Tensor], config: DiffusionConfig) -> dict[str, torch.Tensor]:
    """A guided-diffusion `UNetModel` state dict as a `DiffusionUNet(config)` state dict. A key of the
    ADM state that the mapping does not place is a ValueError naming it (nothing is dropped silently)."""
    modules = adm_module_map(config)
    out: dict[str, torch.Tensor] = {}
    for key, value in adm_state.items():
        prefix, _, leaf = key.rpartition(".")
        head = next((p for p in modules if prefix == p or prefix.startswith(p + ".")), None)
        if head is None:
            raise ValueError(f"guided-diffusion weight {key!r} has no place in the {config.preset} UNet")
        ours, kind = modules[head]
        rest = prefix[len(head) + 1:]
        if kind == "plain":
            out[f"{ours}.{leaf}"] = value
        elif kind == "resnet":
            if rest not in RESNET:
                raise ValueError(f"guided-diffusion weight {key!r}: unknown residual-block layer {rest!r}")
            out[f"{ours}.{RESNET[rest]}.{leaf}"] = value
        else:
            out.update(_attention(ours, rest, leaf, value, config.attention_head_dim, key))
    return out


def _attention(ours: str, rest: str, leaf: str, value: torch.Tensor, head_dim: int, key: str) -> dict:
    if rest == "norm":
        return {f"{ours}.group_norm.{leaf}": value}
    if rest == "proj_out":
        return {f"{ours}.to_out.0.{leaf}": value.squeeze(-1) if leaf == "weight" else value}
    if rest == "qkv":
        # legacy order: the 3C output channels are (head, q/k/v, channel within the head)
        channels = value.shape[0] // 3
        split = value.reshape(channels // head_dim, 3, head_dim, *value.shape[1:])
        parts = {}
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            part = split[:, i].reshape(channels, *value.shape[1:])
            parts[f"{ours}.{name}.{leaf}"] = part.squeeze(-1) if leaf == "weight" else part
        return parts
    raise ValueError(f"guided-diffusion weight {key!r}: unknown attention layer {rest!r}")
