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
    one d x d matrix plus a buffer of `flush_rows` rows, whatever the number of images. While there
    are fewer images than features the rows are kept too (no more memory than that matrix), for the
    low-rank Frechet distance."""

    def __init__(self, dim: int, flush_rows: int = 256):
        self.dim = dim
        self.flush_rows = flush_rows
        self._n = 0
        self._mean = np.zeros(dim)
        self._m2 = np.zeros((dim, dim))
        self._pending: list[np.ndarray] = []
        self._rows: list[np.ndarray] | None = []

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"expected a batch of shape (n, {self.dim}), got {batch.shape}")
        if len(batch) == 0:
            return
        self._pending.append(batch)
        if self._rows is not None:
            self._rows.append(batch.astype(np.float32))
            if self.n >= self.dim:
                self._rows = None
        if sum(len(b) for b in self._pending) >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch = np.concatenate(self._pending).astype(np.float64)
        self._pending = []
        nb = len(batch)
        mean_b = batch.mean(axis=0)
        centred = batch - mean_b
        delta = mean_b - self._mean
        total = self._n + nb
        self._m2 += centred.T @ centred
        self._m2 += np.outer(delta, delta) * (self._n * nb / total)
        self._mean = self._mean + delta * (nb / total)
        self._n = total

    @property
    def n(self) -> int:
        return self._n + sum(len(b) for b in self._pending)

    @property
    def mean(self) -> np.ndarray:
        self._flush()
        return self._mean

    @property
    def factor(self) -> np.ndarray | None:
        """F with cov = F^T F (centred rows over sqrt(n - 1)) while n < d, else None."""
        if self._rows is None or self.n < 2:
            return None
        rows = np.concatenate(self._rows).astype(np.float64)
        return (rows - self.mean) / np.sqrt(self.n - 1)

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (numpy's `np.cov`, as guided-diffusion's evaluator uses)."""
        self._flush()
        if self._n < 2:
            return np.full_like(self._m2, np.nan)
        return self._m2 / (self._n - 1)


@dataclass
class Moments:
    n: int
    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray
    sigma_s: np.ndarray
    # Low-rank factors of sigma and sigma_s while n < d (see `RunningMoments.factor`), else None.
    factor: np.ndarray | None = None
    factor_s: np.ndarray | None = None


@dataclass
class SetStatistics:
    """Everything the metrics need from one image set."""

    overall: Moments
    per_label: dict[str, Moments] = field(default_factory=dict)
    pool: np.ndarray | None = None  # (N, 2048) float32
    logits: np.ndarray | None = None  # (N, 1008) float32
    labels: np.ndarray | None = None  # (N,) str
    meta: dict = field(default_factory=dict)
    spatial: np.ndarray | None = None  # (N, 2023) float32, only when asked (sFID's bootstrap)

    @property
    def n(self) -> int:
        return self.overall.n

    def label_indices(self, label: str) -> np.ndarray:
        if self.labels is None:
            return np.arange(0)
        return np.flatnonzero(self.labels == label)


def compute_statistics(
    source: ImageSource, extractor: InceptionFeatures, *, batch_size: int = 32, per_label: bool = False,
    progress: Callable[[int, int], None] | None = None, keep_spatial: bool = False,
) -> SetStatistics:
    """Run the extractor over `source` in batches; moments are streamed, pool features and logits kept
    (and the sFID spatial features with `keep_spatial`, for their bootstrap). An extractor without
    spatial features (a timm space) gets an empty spatial moment."""
    labels = np.asarray(source.labels, dtype=str)
    pool_dim = getattr(extractor, "pool_dim", POOL_DIM)
    spatial_dim = SPATIAL_DIM if getattr(extractor, "has_spatial", True) else 0
    overall_pool, overall_spatial = RunningMoments(pool_dim), RunningMoments(spatial_dim)
    label_moments = {label: (RunningMoments(pool_dim), RunningMoments(spatial_dim))
                     for label in (sorted(set(labels)) if per_label else [])}
    pool = np.empty((len(source), pool_dim), np.float32)
    spatial = np.empty((len(source), spatial_dim), np.float32) if keep_spatial and spatial_dim else None
    logits = None
    done = 0
    for indices, batch in source.batches(batch_size):
        feats = extractor(batch)
        if logits is None:
            logits = np.empty((len(source), feats.logits.shape[1]), np.float32)
        pool[indices], logits[indices] = feats.pool, feats.logits
        if spatial is not None:
            spatial[indices] = feats.spatial
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
        pool=pool, logits=logits if logits is not None and logits.shape[1] else None, labels=labels, meta=meta,
        spatial=spatial,
    )


def _moments(pool: RunningMoments, spatial: RunningMoments) -> Moments:
    return Moments(n=pool.n, mu=pool.mean, sigma=pool.cov, mu_s=spatial.mean, sigma_s=spatial.cov,
                   factor=pool.factor, factor_s=spatial.factor)


def _moment_arrays(prefix: str, m: Moments) -> dict[str, np.ndarray]:
    """A small set's covariance is stored as its low-rank factor only (d x d float64 is 33 MB)."""
    arrays = {f"{prefix}mu": m.mu, f"{prefix}mu_s": m.mu_s}
    if prefix:
        arrays[f"{prefix}n"] = np.array(m.n)
    for sigma, factor in (("sigma", "factor"), ("sigma_s", "factor_s")):
        if getattr(m, factor) is not None:
            arrays[f"{prefix}{factor}"] = getattr(m, factor)
        else:
            arrays[f"{prefix}{sigma}"] = getattr(m, sigma)
    return arrays


def _read_moments(npz, prefix: str, n: int) -> Moments:
    get = lambda key: npz[f"{prefix}{key}"] if f"{prefix}{key}" in npz.files else None  # noqa: E731
    factor, factor_s = get("factor"), get("factor_s")
    sigma = get("sigma") if factor is None else factor.T @ factor
    sigma_s = get("sigma_s") if factor_s is None else factor_s.T @ factor_s
    return Moments(n=n, mu=npz[f"{prefix}mu"], sigma=sigma, mu_s=npz[f"{prefix}mu_s"], sigma_s=sigma_s,
                   factor=factor, factor_s=factor_s)


def save_statistics(path, stats: SetStatistics) -> Path:
    """Write the npz atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        **_moment_arrays("", stats.overall),
        "meta": np.array(json.dumps({**stats.meta, "n": stats.n, "label_names": list(stats.per_label)})),
    }
    if stats.pool is not None:
        arrays["pool"] = stats.pool
    if stats.logits is not None:
        arrays["logits"] = stats.logits
    if stats.labels is not None:
        arrays["labels"] = stats.labels
    if stats.spatial is not None:
        arrays["spatial"] = stats.spatial
    for i, moments in enumerate(stats.per_label.values()):
        arrays.update(_moment_arrays(f"label{i}_", moments))
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
        missing = {"mu", "mu_s"} - keys
        missing |= {"sigma"} - keys if "factor" not in keys else set()
        missing |= {"sigma_s"} - keys if "factor_s" not in keys else set()
        if missing:
            raise ValueError(f"{path}: no reference statistics (missing {', '.join(sorted(missing))})")
        meta = json.loads(str(npz["meta"])) if "meta" in keys else {}
        n = int(meta.get("n", len(npz["arr_0"]) if "arr_0" in keys else 0))
        overall = _read_moments(npz, "", n)
        per_label = {name: _read_moments(npz, f"label{i}_", int(npz[f"label{i}_n"]))
                     for i, name in enumerate(meta.get("label_names", []))}
        return SetStatistics(
            overall=overall, per_label=per_label,
            pool=npz["pool"] if "pool" in keys else None,
            logits=npz["logits"] if "logits" in keys else None,
            labels=npz["labels"] if "labels" in keys else None,
            meta=meta, spatial=npz["spatial"] if "spatial" in keys else None,
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
    keep_spatial: bool = False,
) -> SetStatistics:
    """Statistics of an image source, from `cache_path` when it matches (same extractor, weights and
    content), else computed and written there. A path to a reference npz is read as it is; when it has
    images (guided-diffusion's `arr_0`) but no pool features, those are computed from the images."""
    if not isinstance(source, ImageSource):
        stats = load_statistics(source)
        _check_extractor(stats, extractor, source)
        with np.load(source) as npz:
            has_images = "arr_0" in npz.files
        if stats.pool is None and has_images:
            computed = compute_statistics(NpzSource(source), extractor, batch_size=batch_size, progress=progress)
            stats.pool, stats.logits, stats.labels = computed.pool, computed.logits, computed.labels
        return stats
    if cache_path is not None and Path(cache_path).is_file():
        cached = load_statistics(cache_path)
        if (cached.meta.get("version") == CACHE_VERSION and cached.meta.get("extractor") == extractor.name
                and cached.meta.get("weights_sha256") == extractor.weights_sha256
                and cached.meta.get("fingerprint") == source.fingerprint()
                and (cached.meta.get("per_label") or not per_label)
                and (cached.spatial is not None or not keep_spatial or not getattr(extractor, "has_spatial", True))):
            return cached
    stats = compute_statistics(source, extractor, batch_size=batch_size, per_label=per_label, progress=progress,
                               keep_spatial=keep_spatial)
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
