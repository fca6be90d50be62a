"""Statistics of one image set: streamed float64 means and covariances (pool_3 and sFID spatial), the
pool_3 features and logits kept for the metrics that need every image, overall and per class label,
and their npz cache.

The npz uses the layout of guided-diffusion's reference batches (`mu`, `sigma`, `mu_s`, `sigma_s`),
plus `pool` (N, 2048), `logits` (N, 1008), `labels`, per-label statistics and a JSON `meta` record
(extractor, weights hash, source fingerprint). It also reads guided-diffusion's own reference batches
(`VIRTUAL_imagenet256_labeled.npz` and the like): their statistics, and their `arr_0` images when
pool features are needed.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation.features import POOL_DIM, SPATIAL_DIM, InceptionFeatures
from evaluation.images import ImageSource, NpzSource

CACHE_VERSION = 1


class RunningMoments:
    """Mean and covariance of a stream of batches in float64 (Chan et al.'s pairwise update): memory is
    one d x d matrix, whatever the number of images."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self._m2 = np.zeros((dim, dim))

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        nb = len(batch)
        if nb == 0:
            return
        mean_b = batch.mean(axis=0)
        centred = batch - mean_b
        delta = mean_b - self.mean
        total = self.n + nb
        self._m2 += centred.T @ centred + np.outer(delta, delta) * (self.n * nb / total)
        self.mean = self.mean + delta * (nb / total)
        self.n = total

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (numpy's `np.cov`, as guided-diffusion's evaluator uses)."""
        if self.n < 2:
            return np.full_like(self._m2, np.nan)
        return self._m2 / (self.n - 1)


@dataclass
class Moments:
    n: int
    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray
    sigma_s: np.ndarray


@dataclass
class SetStatistics:
    """Everything the metrics need from one image set."""

    overall: Moments
    per_label: dict[str, Moments] = field(default_factory=dict)
    pool: np.ndarray | None = None  # (N, 2048) float32
    logits: np.ndarray | None = None  # (N, 1008) float32
    labels: np.ndarray | None = None  # (N,) str
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.overall.n

    def label_indices(self, label: str) -> np.ndarray:
        if self.labels is None:
            return np.arange(0)
        return np.flatnonzero(self.labels == label)


def compute_statistics(
    source: ImageSource, extractor: InceptionFeatures, *, batch_size: int = 32, per_label: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SetStatistics:
    """Run the extractor over `source` in batches; moments are streamed, pool features and logits kept."""
    labels = np.asarray(source.labels, dtype=str)
    overall_pool, overall_spatial = RunningMoments(POOL_DIM), RunningMoments(SPATIAL_DIM)
    label_moments = {label: (RunningMoments(POOL_DIM), RunningMoments(SPATIAL_DIM))
                     for label in (sorted(set(labels)) if per_label else [])}
    pool = np.empty((len(source), POOL_DIM), np.float32)
    logits = None
    done = 0
    for indices, batch in source.batches(batch_size):
        feats = extractor(batch)
        if logits is None:
            logits = np.empty((len(source), feats.logits.shape[1]), np.float32)
        pool[indices], logits[indices] = feats.pool, feats.logits
        overall_pool.update(feats.pool)
        overall_spatial.update(feats.spatial)
        for label, (m_pool, m_spatial) in label_moments.items():
            mask = labels[indices] == label
            if mask.any():
                m_pool.update(feats.pool[mask])
                m_spatial.update(feats.spatial[mask])
        done += len(indices)
        if progress:
            progress(done, len(source))
    meta = {
        "version": CACHE_VERSION, "extractor": extractor.name, "weights_sha256": extractor.weights_sha256,
        "calibrated": extractor.calibrated, "source": source.description, "fingerprint": source.fingerprint(),
        "formats": source.format_counts(), "sizes": source.size_counts(), "per_label": per_label,
    }
    return SetStatistics(
        overall=_moments(overall_pool, overall_spatial),
        per_label={label: _moments(*pair) for label, pair in label_moments.items()},
        pool=pool, logits=logits, labels=labels, meta=meta,
    )


def _moments(pool: RunningMoments, spatial: RunningMoments) -> Moments:
    return Moments(n=pool.n, mu=pool.mean, sigma=pool.cov, mu_s=spatial.mean, sigma_s=spatial.cov)


def save_statistics(path, stats: SetStatistics) -> Path:
    """Write the npz atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mu": stats.overall.mu, "sigma": stats.overall.sigma, "mu_s": stats.overall.mu_s,
        "sigma_s": stats.overall.sigma_s,
        "meta": np.array(json.dumps({**stats.meta, "n": stats.n, "label_names": list(stats.per_label)})),
    }
    if stats.pool is not None:
        arrays["pool"] = stats.pool
    if stats.logits is not None:
        arrays["logits"] = stats.logits
    if stats.labels is not None:
        arrays["labels"] = stats.labels
    for i, moments in enumerate(stats.per_label.values()):
        arrays.update({f"label{i}_mu": moments.mu, f"label{i}_sigma": moments.sigma,
                       f"label{i}_mu_s": moments.mu_s, f"label{i}_sigma_s": moments.sigma_s,
                       f"label{i}_n": np.array(moments.n)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_statistics(path) -> SetStatistics:
    """Read our cache or a guided-diffusion reference batch (then `meta` is empty and `pool` is None
    unless computed later from its `arr_0` images)."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable npz file ({exc})") from exc
    with npz:
        keys = set(npz.files)
        missing = {"mu", "sigma", "mu_s", "sigma_s"} - keys
        if missing:
            raise ValueError(f"{path}: no reference statistics (missing {', '.join(sorted(missing))})")
        meta = json.loads(str(npz["meta"])) if "meta" in keys else {}
        n = int(meta.get("n", len(npz["arr_0"]) if "arr_0" in keys else 0))
        overall = Moments(n=n, mu=npz["mu"], sigma=npz["sigma"], mu_s=npz["mu_s"], sigma_s=npz["sigma_s"])
        per_label = {
            name: Moments(n=int(npz[f"label{i}_n"]), mu=npz[f"label{i}_mu"], sigma=npz[f"label{i}_sigma"],
                          mu_s=npz[f"label{i}_mu_s"], sigma_s=npz[f"label{i}_sigma_s"])
            for i, name in enumerate(meta.get("label_names", []))
        }
        return SetStatistics(
            overall=overall, per_label=per_label,
            pool=npz["pool"] if "pool" in keys else None,
            logits=npz["logits"] if "logits" in keys else None,
            labels=npz["labels"] if "labels" in keys else None,
            meta=meta,
        )


def is_reference_file(path) -> bool:
    """True for an npz that holds statistics (ours or guided-diffusion's), not only images."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    with np.load(path) as npz:
        return "mu" in npz.files


def statistics_for(
    source: ImageSource | str | Path, extractor: InceptionFeatures, *, batch_size: int = 32,
    per_label: bool = False, cache_path=None, progress: Callable[[int, int], None] | None = None,
) -> SetStatistics:
    """Statistics of an image source, from `cache_path` when it matches (same extractor, weights and
    content), else computed and written there. A path to a reference npz is read as it is; when it has
    images (guided-diffusion's `arr_0`) but no pool features, those are computed from the images."""
    if not isinstance(source, ImageSource):
        stats = load_statistics(source)
        _check_extractor(stats, extractor, source)
        if stats.pool is None and "arr_0" in np.load(source).files:
            computed = compute_statistics(NpzSource(source), extractor, batch_size=batch_size, progress=progress)
            stats.pool, stats.logits, stats.labels = computed.pool, computed.logits, computed.labels
        return stats
    if cache_path is not None and Path(cache_path).is_file():
        cached = load_statistics(cache_path)
        if (cached.meta.get("version") == CACHE_VERSION and cached.meta.get("extractor") == extractor.name
                and cached.meta.get("weights_sha256") == extractor.weights_sha256
                and cached.meta.get("fingerprint") == source.fingerprint()
                and (cached.meta.get("per_label") or not per_label)):
            return cached
    stats = compute_statistics(source, extractor, batch_size=batch_size, per_label=per_label, progress=progress)
    if cache_path is not None:
        save_statistics(cache_path, stats)
    return stats


def _check_extractor(stats: SetStatistics, extractor: InceptionFeatures, path) -> None:
    recorded = stats.meta.get("extractor")
    if recorded is None:
        if not extractor.calibrated:
            raise ValueError(
                f"{path}: reference statistics without an extractor record (guided-diffusion's, made with the "
                f"TensorFlow Inception) cannot be compared with {extractor.name} features"
            )
        stats.meta.update(extractor=extractor.name, weights_sha256=extractor.weights_sha256, calibrated=True,
                          source=str(path), external=True)
        return
    if recorded != extractor.name or stats.meta.get("weights_sha256") != extractor.weights_sha256:
        raise ValueError(
            f"{path}: statistics made with {recorded} (weights {stats.meta.get('weights_sha256')}), not with "
            f"{extractor.name} (weights {extractor.weights_sha256}): recompute them from the images"
        )
