"""Stain normalisation of patches to a reference image, through torchstain (numpy backend):
Macenko (stain vectors by SVD of optical density) or Reinhard (LAB mean and spread). The paper
(Moghadam et al., WACV 2023) normalises stain before training.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

METHODS = ("macenko", "reinhard")


class StainError(ValueError):
    """The stain normaliser cannot be built; the message names the method or reference file."""


def load_reference(path: Path | str) -> np.ndarray:
    """The reference image as an RGB uint8 array."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise StainError(f"{path}: not a readable stain reference image ({exc})") from exc


def make_normaliser(method: str, reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function RGB uint8 -> RGB uint8 that maps a patch's stain onto the reference's.
    The function raises on degenerate patches (e.g. no stained pixels); callers count those."""
    from torchstain.base.normalizers import MacenkoNormalizer, ReinhardNormalizer

    method = (method or "").lower()
    if method not in METHODS:
        raise StainError(f"stain method {method!r}: expected one of {', '.join(METHODS)}")
    reference = np.ascontiguousarray(reference[..., :3]).astype(np.uint8)
    if method == "macenko":
        normaliser = MacenkoNormalizer(backend="numpy")
    else:
        normaliser = ReinhardNormalizer(backend="numpy")
    try:
        with np.errstate(divide="raise", invalid="raise"):
            normaliser.fit(reference)
    except Exception as exc:  # noqa: BLE001 - linear algebra on a bad reference fails many ways
        raise StainError(f"stain reference cannot be fitted with {method} ({exc})") from exc

    def normalise(rgb: np.ndarray) -> np.ndarray:
        with np.errstate(divide="raise", invalid="raise"):
            if method == "macenko":
                out, _, _ = normaliser.normalize(I=rgb, stains=False)
            else:
                out = normaliser.normalize(rgb)
        out = np.asarray(out)
        if out.shape != rgb.shape or not np.isfinite(out.astype(np.float32)).all():
            raise StainError("stain normalisation gave an invalid image")
        return out.astype(np.uint8)

    return normalise
