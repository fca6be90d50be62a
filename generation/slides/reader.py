"""Reading whole-slide images through OpenSlide, region by region, never the whole slide.

Any format OpenSlide reads (svs, tiff, ndpi, mrxs, ...). Regions come back as RGB uint8 arrays with
transparent pixels (outside the scanned area) composited onto white.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openslide
from PIL import Image


class SlideError(ValueError):
    """A slide could not be opened or read; the message names the file."""


class Slide:
    """An open whole-slide image. Use as a context manager, or call `close()`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise SlideError(f"{self.path}: no such slide file")
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise SlideError(f"{self.path}: not a slide OpenSlide can read ({exc})") from exc
        self.dimensions: tuple[int, int] = tuple(self._osr.dimensions)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(tuple(d) for d in self._osr.level_dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in self._osr.level_downsamples)
        if self.dimensions[0] <= 0 or self.dimensions[1] <= 0:
            raise SlideError(f"{self.path}: slide has no pixels ({self.dimensions})")

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._osr.close()

    # -- metadata --------------------------------------------------------------------------------
    @property
    def properties(self) -> dict[str, str]:
        return dict(self._osr.properties)

    @property
    def vendor(self) -> str:
        return self._osr.properties.get(openslide.PROPERTY_NAME_VENDOR, "")

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0 (mean of x and y), or None when the slide does not say."""
        values = []
        for key in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y):
            try:
                value = float(self._osr.properties[key])
            except (KeyError, ValueError):
                continue
            if math.isfinite(value) and value > 0:
                values.append(value)
        return sum(values) / len(values) if values else None

    def level_for_downsample(self, downsample: float) -> int:
        """The smallest level (most pixels) whose downsample is at most `downsample` (1 % slack, for
        scanners whose levels are 4.0003x apart): reading there and resizing hardly ever upsamples."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = level if ds >= self.level_downsamples[best] else best
        return best

    # -- pixels ----------------------------------------------------------------------------------
    def read_region(self, x: int, y: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array of `size` (w, h) pixels at `level`, top-left (x, y) in level-0 pixels."""
        try:
            region = self._osr.read_region((int(x), int(y)), int(level), (int(size[0]), int(size[1])))
        except (openslide.OpenSlideError, OSError, ValueError) as exc:
            raise SlideError(f"{self.path}: cannot read region at ({x}, {y}) level {level} ({exc})") from exc
        return rgba_to_rgb(region)

    def thumbnail(self, max_size: int) -> tuple[np.ndarray, float, float]:
        """RGB thumbnail no larger than `max_size` on its long side, and its downsample (x, y) from
        level 0. Read from the smallest level that still has enough pixels."""
        w0, h0 = self.dimensions
        target = max(w0, h0) / max_size
        level = self.level_for_downsample(max(target, 1.0))
        lw, lh = self.level_dimensions[level]
        ds = self.level_downsamples[level]
        scale = min(1.0, max_size / max(lw, lh))
        out_w, out_h = max(1, round(lw * scale)), max(1, round(lh * scale))
        sx, sy = lw / out_w, lh / out_h  # level pixels per thumbnail pixel
        thumb = np.empty((out_h, out_w, 3), np.uint8)
        # Read in horizontal strips of about `strip_px` level rows, so memory stays bounded.
        rows_per_strip = max(1, int(_STRIP_PX // sy))
        for r0 in range(0, out_h, rows_per_strip):
            r1 = min(out_h, r0 + rows_per_strip)
            y0, y1 = r0 * sy, r1 * sy
            iy0, iy1 = int(math.floor(y0)), min(lh, int(math.ceil(y1)))
            strip = Image.fromarray(self.read_region(0, round(iy0 * ds), level, (lw, iy1 - iy0)))
            box = (0.0, y0 - iy0, float(lw), y1 - iy0)
            thumb[r0:r1] = np.asarray(strip.resize((out_w, r1 - r0), Image.Resampling.BOX, box=box))
        return thumb, w0 / out_w, h0 / out_h


_STRIP_PX = 1024


def rgba_to_rgb(region: Image.Image) -> np.ndarray:
    """Composite OpenSlide's premultiplied RGBA onto white."""
    arr = np.asarray(region)
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.uint16)
        # OpenSlide returns premultiplied colour: out = rgb + (255 - alpha) for white background.
        rgb = arr[..., :3].astype(np.uint16) + (255 - alpha)
        return np.minimum(rgb, 255).astype(np.uint8)
    return np.asarray(region.convert("RGB"))

