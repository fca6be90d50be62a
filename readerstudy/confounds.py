"""Low-level confound audit of a study's source images: could the arms be told apart without the tissue?

Plain numpy/PIL/scikit-learn (no Django). For each source image it measures what survives
re-encoding or betrays the file's history rather than its content: the source format, JPEG
quantisation (estimated quality), native size, upscaling evidence, bit depth and colour mode, an
embedded ICC profile, noise level, high-frequency energy and JPEG 8x8 blockiness. Per arm (real
against each generator) a seeded, stratified, cross-validated logistic regression on those
features gives a "low-level separability" AUC; above 0.7 a warning names the features that carry
the difference, ranked by their own (univariate) AUC.

The AUC is an honest out-of-fold estimate, but with a few dozen images per arm it is noisy (a
perfectly confounded pair gives about 1.0, identical distributions about 0.5 give or take 0.15);
it says whether a simple model finds a shortcut, not what readers will do.
"""
import io
import math
from collections import Counter

import numpy as np
from PIL import Image as PILImage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

WARN_ABOVE = 0.7
# Feature name -> what a study author reads in the warning.
FEATURES = {
    "format_jpeg": "source format (JPEG)",
    "format_png": "source format (PNG)",
    "jpeg_quality": "JPEG quantisation (estimated quality)",
    "width": "native width",
    "height": "native height",
    "upscaling": "upscaling evidence (little detail beyond half the native resolution)",
    "bit_depth": "bit depth",
    "channels": "colour mode (number of channels)",
    "has_icc": "embedded ICC colour profile",
    "noise": "noise level",
    "high_frequency": "high-frequency energy",
    "blockiness": "JPEG 8x8 blockiness",
}
# The IJG (libjpeg) standard luminance table at quality 50, which every quality setting scales.
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])


class ConfoundError(ValueError):
    """An image could not be measured; the message names it."""


def image_features(data: bytes, *, name: str = "image") -> dict[str, float]:
    """The low-level features of one source image file."""
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            fmt = (img.format or "").upper()
            mode, size = img.mode, img.size
            has_icc = bool(img.info.get("icc_profile"))
            quality = estimate_jpeg_quality(img.quantization) if fmt == "JPEG" else 100.0
            img.load()
            grey = _grey(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ConfoundError(f"{name}: not a readable image ({exc})") from exc
    return {
        "format_jpeg": float(fmt == "JPEG"),
        "format_png": float(fmt == "PNG"),
        "jpeg_quality": quality,
        "width": float(size[0]),
        "height": float(size[1]),
        "upscaling": upscaling_evidence(grey),
        "bit_depth": 16.0 if mode.startswith("I;16") or mode in ("I", "F") else 8.0,
        "channels": float(len(mode)) if mode not in ("P", "I", "F") and not mode.startswith("I;") else 1.0,
        "has_icc": float(has_icc),
        "noise": noise_sigma(grey),
        "high_frequency": high_frequency_energy(grey),
        "blockiness": blockiness(grey),
    }


def estimate_jpeg_quality(quantization: dict) -> float:
    """The IJG quality (1..100) whose luminance table is closest in scale to table 0 of `quantization`."""
    if not quantization:
        return 100.0
    table = np.asarray(quantization[min(quantization)], dtype=float)[:64]
    scale = 100.0 * table.sum() / _IJG_LUMINANCE.sum()  # a sum does not care about zig-zag order
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(min(100.0, max(1.0, quality)))


def _grey(img: PILImage.Image) -> np.ndarray:
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img.convert("I"), dtype=float) / 256.0
    else:
        arr = np.asarray(img.convert("L"), dtype=float)
    return arr


def noise_sigma(grey: np.ndarray) -> float:
    """Immerkær's (1996) noise estimate: the image filtered with a Laplacian difference mask."""
    if min(grey.shape) < 3:
        return 0.0
    g = grey
    conv = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )
    h, w = grey.shape
    return float(math.sqrt(math.pi / 2) * np.abs(conv).sum() / (6 * (w - 2) * (h - 2)))


def _power(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum (DC removed) and each bin's radial frequency in cycles per pixel (0..~0.7)."""
    spectrum = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy = np.fft.fftfreq(grey.shape[0])[:, None]
    fx = np.fft.fftfreq(grey.shape[1])[None, :]
    return spectrum, np.sqrt(fx**2 + fy**2)


def high_frequency_energy(grey: np.ndarray) -> float:
    """Share of the (non-DC) spectral power above a quarter cycle per pixel."""
    spectrum, radius = _power(grey)
    total = spectrum.sum()
    return float(spectrum[radius > 0.25].sum() / total) if total > 0 else 0.0


def upscaling_evidence(grey: np.ndarray) -> float:
    """How empty the outer half of the spectrum is next to its low band, in decades (high: upscaled).

    An image enlarged by two or more has almost no power above half its native Nyquist frequency,
    while a native patch keeps at least its sensor and tissue noise there.
    """
    spectrum, radius = _power(grey)
    outer_band, low_band = (radius > 0.25) & (radius <= 0.5), (radius > 0) & (radius <= 0.125)
    if not outer_band.any() or not low_band.any():
        return 0.0
    outer, low = spectrum[outer_band].mean(), spectrum[low_band].mean()
    if low <= 0:
        return 0.0
    return float(-math.log10(max(outer / low, 1e-9)))


def blockiness(grey: np.ndarray) -> float:
    """Mean step across 8-pixel block borders over the mean step elsewhere (about 1 without JPEG blocks)."""
    if grey.shape[1] < 16:
        return 1.0
    steps = np.abs(np.diff(grey, axis=1)).mean(axis=0)
    border = steps[7::8].mean()
    inside = np.delete(steps, np.arange(7, steps.size, 8)).mean()
    return float(border / inside) if inside > 0 else 1.0


def separability(
    real: list[dict[str, float]], arm: list[dict[str, float]], *, seed: int = 0, warn_above: float = WARN_ABOVE
) -> dict:
    """Cross-validated AUC of telling `arm` from `real` on the features, and the features responsible."""
    names = list(FEATURES)
    x = np.array([[row[n] for n in names] for row in real + arm], dtype=float)
    y = np.array([0] * len(real) + [1] * len(arm))
    univariate = {n: _strength(y, x[:, k]) for k, n in enumerate(names)}
    ranked = sorted(((auc, n) for n, auc in univariate.items() if auc >= warn_above), reverse=True)
    n_folds = min(5, len(real), len(arm))
    result = {
        "n_real": len(real), "n_arm": len(arm),
        "univariate_auc": {n: round(v, 3) for n, v in univariate.items()},
    }
    if n_folds < 2:
        return {**result, "auc": None, "warning": f"too few images to audit ({len(real)} real, {len(arm)} in the arm)"}
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, scores))
    responsible = [f"{FEATURES[n]} (AUC {v:.2f})" for v, n in ranked]
    warning = ""
    if auc > warn_above:
        warning = (
            f"low-level separability AUC {auc:.2f} > {warn_above}: the arm can be told from the real images "
            f"without looking at the tissue; responsible: {', '.join(responsible) or 'a combination of features'}"
        )
    return {**result, "auc": round(auc, 3), "cv_folds": n_folds, "responsible": [n for _, n in ranked],
            "warning": warning}


def _strength(y: np.ndarray, values: np.ndarray) -> float:
    """A feature's AUC in whichever direction separates better (0.5 for a constant)."""
    if np.ptp(values) == 0:
        return 0.5
    auc = float(roc_auc_score(y, values))
    return max(auc, 1.0 - auc)


def describe_arm(features: list[dict[str, float]]) -> dict:
    """What an author reads about an arm's sources: formats, sizes, qualities, typical noise and detail."""
    formats = Counter("JPEG" if f["format_jpeg"] else "PNG" if f["format_png"] else "other" for f in features)
    sizes = Counter(f"{int(f['width'])}x{int(f['height'])}" for f in features)
    jpeg_q = [f["jpeg_quality"] for f in features if f["format_jpeg"]]
    return {
        "n": len(features),
        "formats": dict(formats),
        "native_sizes": dict(sizes.most_common(5)),
        "jpeg_quality_median": round(float(np.median(jpeg_q)), 1) if jpeg_q else None,
        "with_icc": int(sum(f["has_icc"] for f in features)),
        "bit_depths": dict(Counter(int(f["bit_depth"]) for f in features)),
        "noise_median": round(float(np.median([f["noise"] for f in features])), 3) if features else None,
        "high_frequency_median": (
            round(float(np.median([f["high_frequency"] for f in features])), 4) if features else None
        ),
    }


def confound_audit(arms: dict[str, list[dict[str, float]]], *, real: str = "real", seed: int = 0) -> dict:
    """The audit of every arm against `real`: per arm its description, separability AUC and warning."""
    if real not in arms:
        raise ConfoundError(f"no {real!r} arm to compare the others with")
    report = {"warn_above": WARN_ABOVE, "seed": seed, "real": describe_arm(arms[real]), "arms": {}, "warnings": []}
    for name in sorted(a for a in arms if a != real):
        result = {**separability(arms[real], arms[name], seed=seed), "sources": describe_arm(arms[name])}
        report["arms"][name] = result
        if result["warning"]:
            report["warnings"].append(f"real vs {name}: {result['warning']}")
    return report
