"""Sample grids: a batch of images in [-1, 1] (or uint8) saved as one PNG, written atomically.
Pure torch, no Django."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from generation.training.data import to_uint8


def grid_save(images: torch.Tensor, path: str | Path, *, nrow: int | None = None, padding: int = 2) -> Path:
    """Save N images (N x 3 x H x W, float in [-1, 1] or uint8) as a grid PNG with `nrow` per row."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"grid_save: expected N x C x H x W with C in (1, 3), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(images.cpu(), nrow=nrow, padding=padding, pad_value=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
