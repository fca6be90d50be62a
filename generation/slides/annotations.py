"""Tumour areas of a slide as a boolean mask at a known downsample from level 0.

Three sources: a mask image at any downsample (its aspect ratio must match the slide's), polygons
in GeoJSON as QuPath exports them (Polygon and MultiPolygon, with holes; every vertex must lie on
the slide), or, without annotation, tissue detection by Otsu's threshold on a thumbnail's
saturation (with a warning: tissue is not tumour).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.filters import threshold_otsu

Image.MAX_IMAGE_PIXELS = None  # masks of large slides are legitimately big; we never trust them blindly

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
GEOJSON_SUFFIXES = (".geojson", ".json")
# Tolerated disagreement between a mask's aspect ratio and its slide's (relative), beyond rounding.
ASPECT_TOLERANCE = 0.02


class AnnotationError(ValueError):
    """An annotation cannot be used for its slide; the message names the file and the fault."""


class TissueDetectionWarning(UserWarning):
    """No annotation was given: patches are sampled from all detected tissue, not only tumour."""


@dataclass
class TumourMask:
    """`mask[r, c]` is True where the slide is tumour; one mask pixel spans (`downsample_x`,
    `downsample_y`) level-0 pixels. `source` says where it came from (file name or "tissue")."""

    mask: np.ndarray
    downsample_x: float
    downsample_y: float
    source: str

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fractions(self, xs: np.ndarray, ys: np.ndarray, size: int, grid: int = 16) -> np.ndarray:
        """Fraction of each square patch (top-left `xs`, `ys`, side `size`, level-0 pixels) inside
        the mask, estimated on a `grid` x `grid` lattice of points at the centres of sub-squares."""
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        offsets = (np.arange(grid) + 0.5) * size / grid
        px = (xs[:, None] + offsets[None, :]) / self.downsample_x  # (n, grid)
        py = (ys[:, None] + offsets[None, :]) / self.downsample_y
        h, w = self.mask.shape
        cols = np.floor(px).astype(np.int64)
        rows = np.floor(py).astype(np.int64)
        col_ok = (cols >= 0) & (cols < w)
        row_ok = (rows >= 0) & (rows < h)
        cols = np.clip(cols, 0, w - 1)
        rows = np.clip(rows, 0, h - 1)
        inside = self.mask[rows[:, :, None], cols[:, None, :]] & row_ok[:, :, None] & col_ok[:, None, :]
        return inside.reshape(len(xs), -1).mean(axis=1)


def find_annotation(annotations_dir: Path | None, slide_id: str) -> Path | None:
    """The annotation file for `slide_id` in `annotations_dir`: `<slide_id>.geojson|.json` or a mask
    image `<slide_id>[_mask].png|.tif|...`. None when there is none."""
    if annotations_dir is None:
        return None
    annotations_dir = Path(annotations_dir)
    found = []
    for stem in (slide_id, f"{slide_id}_mask", f"{slide_id}-mask"):
        for suffix in GEOJSON_SUFFIXES + MASK_SUFFIXES:
            candidate = annotations_dir / f"{stem}{suffix}"
            if candidate.is_file():
                found.append(candidate)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise AnnotationError(f"{annotations_dir}: several annotations for slide {slide_id!r} ({names}); keep one")
    return found[0] if found else None


def load_annotation(path: Path, slide_dimensions: tuple[int, int], downsample: float) -> TumourMask:
    """A mask from a GeoJSON file (rasterised at `downsample`) or from a mask image (its own scale)."""
    path = Path(path)
    if path.suffix.lower() in GEOJSON_SUFFIXES:
        return mask_from_geojson(path, slide_dimensions, downsample)
    return mask_from_image(path, slide_dimensions)


# -- mask images -------------------------------------------------------------------------------------
def mask_from_image(path: Path, slide_dimensions: tuple[int, int]) -> TumourMask:
    """A mask image at any downsample: non-zero (after conversion to grey; above 127 for JPEG) is tumour. Its downsample
    is the slide's size over the mask's; the two axes must agree (same aspect ratio)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            grey = np.asarray(img.convert("L"))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt files
        raise AnnotationError(f"{path}: not a readable mask image ({exc})") from exc
    w0, h0 = slide_dimensions
    mh, mw = grey.shape
    check_aspect_ratio(path, (mw, mh), slide_dimensions)
    # Lossless masks are label maps (any non-zero class is tumour); JPEG noise needs a mid threshold.
    cut = 127 if path.suffix.lower() in (".jpg", ".jpeg") else 0
    return TumourMask(mask=grey > cut, downsample_x=w0 / mw, downsample_y=h0 / mh, source=path.name)


def check_aspect_ratio(path: Path, mask_size: tuple[int, int], slide_dimensions: tuple[int, int]) -> None:
    """Raise when a mask of `mask_size` (w, h) cannot be a downsample of the slide: the aspect ratios
    must agree within rounding of one mask pixel plus `ASPECT_TOLERANCE`."""
    mw, mh = mask_size
    w0, h0 = slide_dimensions
    if mw <= 0 or mh <= 0:
        raise AnnotationError(f"{path}: empty mask image")
    # Height the mask would have if its width were exact, with one pixel of rounding either way.
    expected_h = h0 * mw / w0
    slack = 1.0 + ASPECT_TOLERANCE * expected_h
    if abs(mh - expected_h) > slack:
        raise AnnotationError(
            f"{path}: mask is {mw}x{mh} (aspect {mw / mh:.4f}) but the slide is {w0}x{h0} "
            f"(aspect {w0 / h0:.4f}); a mask must be the slide downsampled, same aspect ratio"
        )


# -- GeoJSON polygons (QuPath) -----------------------------------------------------------------------
def read_geojson_polygons(path: Path) -> list[list[list[tuple[float, float]]]]:
    """Polygons (each a list of rings, exterior first, then holes) from a GeoJSON file as QuPath
    writes it: a FeatureCollection, a list of Features, one Feature or a bare geometry. Geometries
    other than Polygon/MultiPolygon (points, lines) are ignored; GeometryCollections are opened."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: not readable JSON ({exc})") from exc
    polygons: list[list[list[tuple[float, float]]]] = []

    def add_geometry(geometry: dict, where: str) -> None:
        if not isinstance(geometry, dict):
            raise AnnotationError(f"{path}: {where}: geometry is not an object")
        kind = geometry.get("type")
        coords = geometry.get("coordinates")
        if kind == "Polygon":
            polygons.append(_rings(coords, f"{where} Polygon"))
        elif kind == "MultiPolygon":
            if not isinstance(coords, list):
                raise AnnotationError(f"{path}: {where} MultiPolygon: coordinates are not a list")
            for i, poly in enumerate(coords):
                polygons.append(_rings(poly, f"{where} MultiPolygon part {i}"))
        elif kind == "GeometryCollection":
            for i, part in enumerate(geometry.get("geometries") or []):
                add_geometry(part, f"{where} part {i}")

    def _rings(coords, where: str) -> list[list[tuple[float, float]]]:
        try:
            rings = [[(float(p[0]), float(p[1])) for p in ring] for ring in coords]
        except (TypeError, ValueError, IndexError) as exc:
            raise AnnotationError(f"{path}: {where}: coordinates are not [[x, y], ...] rings ({exc})") from exc
        if not rings or len(rings[0]) < 3:
            raise AnnotationError(f"{path}: {where}: a polygon needs an exterior ring of at least 3 points")
        for ring in rings:
            for x, y in ring:
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise AnnotationError(f"{path}: {where}: coordinate ({x}, {y}) is not finite")
        return rings

    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and ("coordinates" in data or data.get("type") == "GeometryCollection"):
        features = [{"type": "Feature", "geometry": data}]
    else:
        raise AnnotationError(
            f"{path}: not GeoJSON (expected a FeatureCollection, Feature, list of Features or geometry)"
        )
    for i, feature in enumerate(features):
        if not isinstance(feature, dict):
            raise AnnotationError(f"{path}: feature {i} is not an object")
        geometry = feature.get("geometry", feature if "coordinates" in feature else None)
        if geometry is None:
            continue
        add_geometry(geometry, f"feature {i}")
    return polygons


def mask_from_geojson(path: Path, slide_dimensions: tuple[int, int], downsample: float) -> TumourMask:
    """Rasterise the polygons of a QuPath GeoJSON file (level-0 pixel coordinates) at `downsample`.
    Every vertex must lie on the slide (within one pixel); holes are cut out of their polygon."""
    path = Path(path)
    w0, h0 = slide_dimensions
    polygons = read_geojson_polygons(path)
    if not polygons:
        raise AnnotationError(f"{path}: no Polygon or MultiPolygon in the file")
    for p, rings in enumerate(polygons):
        xs = [x for ring in rings for x, _ in ring]
        ys = [y for ring in rings for _, y in ring]
        if min(xs) < -1 or min(ys) < -1 or max(xs) > w0 + 1 or max(ys) > h0 + 1:
            raise AnnotationError(
                f"{path}: polygon {p} spans x {min(xs):.0f}..{max(xs):.0f}, y {min(ys):.0f}..{max(ys):.0f}, "
                f"outside the slide ({w0}x{h0}); are the coordinates in level-0 pixels of this slide?"
            )
    downsample = max(float(downsample), 1.0)
    mw, mh = max(1, math.ceil(w0 / downsample)), max(1, math.ceil(h0 / downsample))
    dx, dy = w0 / mw, h0 / mh
    mask = np.zeros((mh, mw), dtype=bool)
    for rings in polygons:
        # Each polygon is drawn on its own crop, holes cut out, then OR-ed in: one polygon's hole
        # never erases another polygon.
        xs = [x / dx for ring in rings for x, _ in ring]
        ys = [y / dy for ring in rings for _, y in ring]
        c0, r0 = max(0, int(math.floor(min(xs)))), max(0, int(math.floor(min(ys))))
        c1, r1 = min(mw, int(math.ceil(max(xs))) + 1), min(mh, int(math.ceil(max(ys))) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        layer = Image.new("1", (c1 - c0, r1 - r0), 0)
        draw = ImageDraw.Draw(layer)
        for k, ring in enumerate(rings):
            # Pixel (c, r) covers [c, c+1): its centre is at c + 0.5, so shift vertices by -0.5.
            pts = [(x / dx - c0 - 0.5, y / dy - r0 - 0.5) for x, y in ring]
            if len(pts) >= 3:
                draw.polygon(pts, fill=1 if k == 0 else 0)
        mask[r0:r1, c0:c1] |= np.asarray(layer, dtype=bool)
    return TumourMask(mask=mask, downsample_x=dx, downsample_y=dy, source=path.name)


# -- tissue detection ----------------------------------------------------------------------------------
def mask_from_tissue(thumbnail: np.ndarray, downsample_x: float, downsample_y: float, *, warn: bool = True,
                     slide_name: str = "") -> TumourMask:
    """Tissue by Otsu's threshold on the saturation of an RGB thumbnail, cleaned by a small opening
    and hole filling. Warns (TissueDetectionWarning) that this is tissue, not tumour."""
    if warn:
        warnings.warn(
            f"{slide_name or 'slide'}: no tumour annotation; sampling from all tissue found by Otsu thresholding",
            TissueDetectionWarning,
            stacklevel=2,
        )
    rgb = thumbnail.astype(np.float32) / 255.0
    cmax, cmin = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(cmax > 0, (cmax - cmin) / np.maximum(cmax, 1e-6), 0.0)
    if float(saturation.max() - saturation.min()) < 1e-3:
        return TumourMask(mask=np.zeros(saturation.shape, bool), downsample_x=downsample_x,
                          downsample_y=downsample_y, source="tissue")
    threshold = threshold_otsu(saturation)
    tissue = saturation > max(threshold, 0.05)
    tissue = ndimage.binary_opening(tissue, iterations=1)
    tissue = ndimage.binary_fill_holes(tissue)
    return TumourMask(mask=tissue, downsample_x=downsample_x, downsample_y=downsample_y, source="tissue")
