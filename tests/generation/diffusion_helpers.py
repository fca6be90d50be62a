"""Helpers for the diffusion / training / sampling tests: small patch folders and a tiny config."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generation.diffusion.config import preset_config


def write_patches(root: Path, *, n: int = 8, size: int = 32, labels=("A", "B"), manifest: bool = False,
                  split: bool = False) -> Path:
    """Smooth, distinct RGB patches; class sub-folders, or a flat folder with manifest.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        label = labels[i % len(labels)]
        base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy + 2 * i), xx * yy], -1)
        pixels = ((base * 0.5 + 0.5) * 255).astype(np.uint8)
        if labels.index(label) % 2:
            pixels = 255 - pixels
        rel = Path(f"p{i:03d}.png") if manifest else Path(label) / f"p{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel)
        rows.append((rel.as_posix(), label, "train" if i < n - 2 else "val"))
    if manifest:
        header = "path,label,split\n" if split else "path,label\n"
        lines = [f"{p},{lab},{s}\n" if split else f"{p},{lab}\n" for p, lab, s in rows]
        (root / "manifest.csv").write_text(header + "".join(lines))
    return root


def tiny_config(**overrides):
    """The tiny preset shrunk further for fast CPU tests (about 0.2 M parameters at 32 px)."""
    torch.set_num_threads(1)
    base = dict(base_channels=16, layers_per_block=1, attention_head_dim=16, batch_size=8, lr=3e-3,
                ema_decay=0.9, grid_steps=2)
    return preset_config("tiny", **{**base, **overrides})


def random_checkpoint(path: Path, *, classes=("A", "B"), **overrides) -> Path:
    """A diffusion checkpoint with small random weights (outputs depend on input, time and label)."""
    from generation.diffusion.unet import DiffusionUNet
    from generation.training.checkpoint import checkpoint_save
    from generation.training.ema import EMA

    cfg = tiny_config(num_classes=len(classes), classes=tuple(classes), **overrides)
    torch.manual_seed(0)
    model = DiffusionUNet(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ema = EMA(model, 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # raw weights differ from the EMA
    return checkpoint_save(path, kind="diffusion", config=cfg.to_dict(), model=model, ema=ema, step=3)
