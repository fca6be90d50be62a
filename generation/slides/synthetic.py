"""Synthetic whole-slide images for tests and benchmarks: pyramidal tiled TIFF written tile by tile
with tifffile (so a 20,000 x 20,000 slide never sits in memory), which OpenSlide opens through its
"generic-tiff" vendor. White glass, pink tissue-like texture in given regions, optionally a smooth
(blurred-looking) region. Not real tissue: only for exercising the pipeline.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

TILE = 256
GLASS = np.array([242, 241, 239], np.float32)


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in level-0 pixels: x0 <= x < x1, y0 <= y < y1."""

    x0: int
    y0: int
    x1: int
    y1: int

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return (xs >= self.x0) & (xs < self.x1) & (ys >= self.y0) & (ys < self.y1)

    def polygon(self) -> list[list[float]]:
        """The exterior ring, closed, as GeoJSON wants it."""
        return [[self.x0, self.y0], [self.x1, self.y0], [self.x1, self.y1], [self.x0, self.y1], [self.x0, self.y0]]


class _Textures:
    """A small bank of random glass and tissue tiles (seeded): tiles are picked from it, so writing a
    large slide costs little more than compressing it."""

    def __init__(self, seed: int, n: int = 8):
        rng = np.random.default_rng(seed)
        self.glass = [np.clip(GLASS + rng.normal(0, 1.5, (TILE, TILE, 1)), 0, 255).astype(np.uint8) for _ in range(n)]
        self.tissue = []
        for _ in range(n):
            # Eosin-pink stroma with haematoxylin-purple nuclei: coarse blobs plus fine grain.
            grain = rng.normal(0, 1, (TILE, TILE, 1)).astype(np.float32)
            blobs = np.kron(rng.random((TILE // 8, TILE // 8)), np.ones((8, 8)))[..., None] > 0.7
            pink = np.array([226, 150, 196], np.float32) + 18 * grain
            purple = np.array([118, 64, 150], np.float32) + 12 * grain
            self.tissue.append(np.clip(np.where(blobs, purple, pink), 0, 255).astype(np.uint8))
        # A featureless, evenly stained area: what an out-of-focus scan of tissue looks like.
        self.smooth = np.broadcast_to(np.array([205, 130, 180], np.uint8), (TILE, TILE, 3))
        self.n = n


def _tile(x0: int, y0: int, ds: int, tissue: Sequence[Rect], smooth: Sequence[Rect], bank: _Textures) -> np.ndarray:
    """One TILE x TILE tile of the level with downsample `ds`, top-left (x0, y0) in level-0 pixels."""
    pick = (x0 // (TILE * ds) * 7919 + y0 // (TILE * ds) * 104729 + ds) % bank.n
    xs = (x0 + (np.arange(TILE) + 0.5) * ds)[None, :]
    ys = (y0 + (np.arange(TILE) + 0.5) * ds)[:, None]
    out = bank.glass[pick]
    for rects, texture in ((tissue, bank.tissue[pick]), (smooth, bank.smooth)):
        inside = np.zeros((TILE, TILE), bool)
        for rect in rects:
            inside |= rect.contains(xs, ys)
        if inside.any():
            out = np.where(inside[..., None], texture, out)
    return np.ascontiguousarray(out)


def write_slide(
    path: Path | str,
    width: int,
    height: int,
    *,
    tissue: Sequence[Rect] = (),
    smooth: Sequence[Rect] = (),
    downsamples: Sequence[int] = (1, 2),
    mpp: float | None = 0.5,
    seed: int = 0,
    on_tile: Callable[[], None] | None = None,
) -> Path:
    """Write a pyramidal tiled TIFF (deflate, 256-px tiles), one page per level, level by level and
    tile by tile. `tissue` rectangles get tissue texture, `smooth` rectangles a flat colour."""
    path = Path(path)
    if list(downsamples)[0] != 1:
        raise ValueError("the first downsample must be 1 (level 0)")

    bank = _Textures(seed)

    def tiles(ds: int, lw: int, lh: int) -> Iterator[np.ndarray]:
        for ty in range(0, lh, TILE):
            for tx in range(0, lw, TILE):
                if on_tile is not None:
                    on_tile()
                yield _tile(tx * ds, ty * ds, ds, tissue, smooth, bank)

    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tw:
        for k, ds in enumerate(downsamples):
            lw, lh = max(1, width // ds), max(1, height // ds)
            extra = {}
            if mpp is not None:
                extra = dict(resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)), resolutionunit="CENTIMETER")
            tw.write(
                tiles(ds, lw, lh), shape=(lh, lw, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                compression="zlib", compressionargs={"level": 1}, subfiletype=0 if k == 0 else 1, metadata=None,
                **extra,
            )
    return path
