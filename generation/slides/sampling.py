"""Choosing, checking and resizing tumour patches of one slide (Moghadam et al., WACV 2023, sec. 4:
up to 100 patches of 512x512 at level 0 inside the tumour, scaled to 128x128).

Candidates are the cells of a square grid with a seeded random offset, so patches never overlap;
a cell is a candidate when at least `tumour_fraction` of it lies in the tumour mask. Candidates are
visited in a seeded random order, read at the pyramid level that needs the least reading without
upsampling, checked for background (low saturation or near-white pixels) and blur (variance of
the Laplacian, median over sub-blocks), optionally stain-normalised, and resized with antialiasing,
until `per_slide` are kept. Every rejection is counted by its reason.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from generation.slides.annotations import TumourMask
from generation.slides.reader import Slide

# Rejection reasons, as they appear in reports.
BELOW_TUMOUR_FRACTION = "below_tumour_fraction"
BACKGROUND = "background"
BLURRED = "blurred"
STAIN_FAILED = "stain_failed"
REASONS = (BELOW_TUMOUR_FRACTION, BACKGROUND, BLURRED, STAIN_FAILED)


class SamplingError(ValueError):
    """Patches cannot be sampled from a slide with these settings; the message says why."""


@dataclass(frozen=True)
class SamplingConfig:
    patch_size: int = 512  # side of a patch in level-0 pixels
    patch_microns: float | None = None  # side in microns instead (needs the slide's MPP)
    tumour_fraction: float = 0.9  # least fraction of a patch inside the tumour
    per_slide: int = 100  # most patches kept per slide
    out_size: int = 128  # side of the saved patch
    # A pixel is background when its saturation is below `background_saturation` or all channels are
    # above `background_brightness` (0-255); a patch with more than `max_background` such pixels is rejected.
    background_saturation: float = 0.07
    background_brightness: int = 220
    max_background: float = 0.5
    # Variance of the Laplacian of the grey output patch (0-255 scale); below it the patch is blurred.
    blur_threshold: float = 20.0
    seed: int = 0

    def __post_init__(self):
        if self.patch_microns is None and self.patch_size <= 0:
            raise SamplingError(f"patch size must be positive, not {self.patch_size}")
        if self.patch_microns is not None and not self.patch_microns > 0:
            raise SamplingError(f"patch microns must be positive, not {self.patch_microns}")
        if not 0.0 < self.tumour_fraction <= 1.0:
            raise SamplingError(f"tumour fraction must be in (0, 1], not {self.tumour_fraction}")
        if self.per_slide <= 0:
            raise SamplingError(f"patches per slide must be positive, not {self.per_slide}")
        if self.out_size <= 0:
            raise SamplingError(f"output size must be positive, not {self.out_size}")


@dataclass
class Patch:
    """A kept patch: top-left (x, y) and side `size` in level-0 pixels, the level it was read from,
    its tumour fraction and the RGB uint8 image of side `out_size`."""

    x: int
    y: int
    size: int
    level: int
    tumour_fraction: float
    image: np.ndarray


@dataclass
class SamplingCounts:
    candidates: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)


def patch_size_level0(config: SamplingConfig, mpp: float | None, slide_name: str = "slide") -> int:
    """The patch side in level-0 pixels: given, or `patch_microns` over the slide's microns per pixel."""
    if config.patch_microns is None:
        return int(config.patch_size)
    if mpp is None:
        raise SamplingError(
            f"{slide_name}: patch size given in microns but the slide has no microns-per-pixel "
            "property (openslide.mpp-x/y); give the size in pixels instead"
        )
    size = round(config.patch_microns / mpp)
    if size < 1:
        raise SamplingError(f"{slide_name}: {config.patch_microns} microns is less than one pixel at {mpp} mpp")
    return int(size)


def slide_rng(seed: int, slide_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the slide id, not on worker order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(slide_id.encode("utf-8"))])


def candidate_grid(mask: TumourMask, dimensions: tuple[int, int], size: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-left corners of all whole, non-overlapping grid cells of side `size` on the slide (grid
    offset drawn from `rng`) and the tumour fraction of each."""
    w0, h0 = dimensions
    if size > w0 or size > h0:
        raise SamplingError(f"patch side {size} px is larger than the slide ({w0}x{h0})")
    ox = int(rng.integers(0, min(size, w0 - size + 1)))
    oy = int(rng.integers(0, min(size, h0 - size + 1)))
    xs = np.arange(ox, w0 - size + 1, size)
    ys = np.arange(oy, h0 - size + 1, size)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    fractions = np.concatenate(
        [mask.fractions(gx[i:i + 65536], gy[i:i + 65536], size) for i in range(0, len(gx), 65536)]
    ) if len(gx) else np.zeros(0)
    return gx, gy, fractions


def background_fraction(rgb: np.ndarray, config: SamplingConfig) -> float:
    """Fraction of pixels that are background: unsaturated (grey, glass) or near white."""
    arr = rgb.astype(np.float32)
    cmax, cmin = arr.max(axis=2), arr.min(axis=2)
    saturation = (cmax - cmin) / np.maximum(cmax, 1.0)
    white = cmin > config.background_brightness
    return float(np.mean((saturation < config.background_saturation) | white))


def blur_score(rgb: np.ndarray, blocks: int = 4) -> float:
    """Variance of the Laplacian of the grey image (0-255), taken in `blocks` x `blocks` tiles and
    the median returned: low means most of the patch is blurred or featureless, even when a sharp
    edge crosses the rest."""
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = ndimage.laplace(grey, mode="reflect")
    h, w = lap.shape
    rows = np.array_split(np.arange(h), min(blocks, h))
    cols = np.array_split(np.arange(w), min(blocks, w))
    return float(np.median([lap[r[0]:r[-1] + 1, c[0]:c[-1] + 1].var() for r in rows for c in cols]))


def resize(rgb: np.ndarray, out_size: int) -> np.ndarray:
    """Square RGB array to `out_size` with antialiasing (Lanczos, PIL widens the kernel when reducing)."""
    if rgb.shape[0] == out_size and rgb.shape[1] == out_size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((out_size, out_size), Image.Resampling.LANCZOS))


def sample_patches(
    slide: Slide,
    mask: TumourMask,
    config: SamplingConfig,
    *,
    slide_id: str,
    counts: SamplingCounts,
    normalise: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Patch]:
    """Yield up to `config.per_slide` checked patches of the slide, updating `counts` as it goes.
    Raises SamplingError when the mask leaves no candidate at all."""
    size = patch_size_level0(config, slide.mpp, slide_id)
    rng = slide_rng(config.seed, slide_id)
    xs, ys, fractions = candidate_grid(mask, slide.dimensions, size, rng)
    good = fractions >= config.tumour_fraction - 1e-9
    counts.rejected[BELOW_TUMOUR_FRACTION] += int(np.sum((fractions > 0) & ~good))
    order = np.flatnonzero(good)
    counts.candidates = int(len(order))
    if not len(order):
        if not np.any(fractions > 0):
            raise SamplingError(f"{slide_id}: no tumour area on the slide ({mask.source})")
        raise SamplingError(
            f"{slide_id}: no {size}-px patch is at least {config.tumour_fraction:.0%} tumour "
            f"(best is {float(fractions.max()):.0%}; mask from {mask.source})"
        )
    order = order[rng.permutation(len(order))]
    level = slide.level_for_downsample(max(size / config.out_size, 1.0))
    level_ds = slide.level_downsamples[level]
    read = max(1, math.ceil(size / level_ds))
    for i in order:
        if counts.kept >= config.per_slide:
            break
        x, y = int(xs[i]), int(ys[i])
        rgb = slide.read_region(x, y, level, (read, read))
        if background_fraction(rgb, config) > config.max_background:
            counts.rejected[BACKGROUND] += 1
            continue
        small = resize(rgb, config.out_size)
        if blur_score(small) < config.blur_threshold:
            counts.rejected[BLURRED] += 1
            continue
        if normalise is not None:
            try:
                small = normalise(small)
            except Exception:  # noqa: BLE001 - stain estimation fails on degenerate patches
                counts.rejected[STAIN_FAILED] += 1
                continue
        counts.kept += 1
        yield Patch(x=x, y=y, size=size, level=level, tumour_fraction=float(fractions[i]), image=small)
