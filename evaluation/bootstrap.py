"""Uncertainty of the metrics: seeded bootstrap intervals that resample images, and FID-infinity.

Pure numpy and scipy, no torch, no Django. Every interval comes from the same resamples: each resample
draws, for each set, how many times each image is taken (multinomial counts, `resample_counts`), and
every metric is recomputed from the feature matrices already extracted, weighted by those counts.
Nothing is re-extracted, and no resample builds a resampled copy of the features:

- Frechet distances (FID, sFID): the resampled mean and covariance come from the counts: the Gram
  of the centred features is one symmetric rank-k product over the ~63% of images drawn, each
  weighted by sqrt(count) (a subset that keeps most images instead corrects the full Gram, computed
  once, by the rows it drops). The trace term tr((S1 S2)^1/2) then uses the exact forms of
  `metrics.frechet_distance`: the eigenvalues of the symmetric L^T S2 L of a Cholesky factor (in
  float32 for float32 features), or while a resample has fewer distinct images than features those
  of the r x r product of its weighted-row factors (r distinct images); never a general matrix
  square root, never a copy of the resampled features.
- Precision/recall and density/coverage: the k-NN radii are those of the full sets (a resampled
  duplicate would otherwise be its own nearest neighbour at distance 0 and shrink every ball), and
  which fake lies in which ball is recorded once as sparse matrices. Each resample is then two sparse
  products: "is it in a ball of an image drawn at least once" and "how many such balls".
- KID: the unbiased all-pairs MMD^2 with the polynomial kernel, written with counts as
  (w'Kw - w.diag K) / (m(m-1)) per set and w_x'K_xy w_y / (mn) across; the kernel is computed once,
  in blocks, and multiplied by all resamples' counts together. (The reported KID is the mean over
  random subsets, which estimates the same MMD^2; its interval is that of the all-pairs estimator.)

Intervals are percentile intervals (Efron's) at `level`. `fid_infinity` is Chong and Forsyth's
(2020) FID-infinity: FID of nested random subsets of the generated images at several sizes N,
a least-squares line in 1/N, its value at 1/N = 0.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse

from evaluation import metrics as M

INTERVAL_METHOD = "percentile bootstrap (images resampled with replacement)"
NOTES = {
    "pr": "precision/recall and density/coverage intervals keep each set's k-NN radii at their full-set values",
    "kid": "the KID interval is that of the all-pairs unbiased MMD^2 (the value is the mean over random subsets)",
    "fid_inf": "FID-infinity (Chong and Forsyth 2020): FID of nested random subsets of the generated images, "
               "a line fitted in 1/N, its value at 1/N = 0",
}


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) counts: how often each of n images is drawn in each resample of size n."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one image per set")
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The (1 - level)/2 and (1 + level)/2 quantiles of the finite bootstrap values (NaN when none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a number between 0 and 1")
    if len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


class WeightedMoments:
    """Mean and covariance of a feature matrix under integer weights (bootstrap counts, subset masks).

    The features are centred once at their mean, in their own precision (float32 features stay
    float32: half the time, relative error ~1e-7 on the Gram; the Frechet trace is then taken in
    float64), and their Gram matrix is kept; `moments(counts)` corrects it by the rows whose count is
    not 1. With fewer distinct images than features, `factor(counts)` gives the weighted-row factor
    F (S = F^T F) instead.
    """

    def __init__(self, features):
        x = np.asarray(features)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"expected a (images, features) matrix of at least 2 images, got shape {x.shape}")
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        self.mean = x.mean(axis=0, dtype=np.float64)
        self.centred = (x - self.mean).astype(dtype, copy=False)
        self.n, self.dim = x.shape
        self._gram: np.ndarray | None = None

    @property
    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = self.centred.T @ self.centred
        return self._gram

    def _offset(self, counts: np.ndarray) -> tuple[int, np.ndarray]:
        total = int(counts.sum())
        if total < 2:
            raise ValueError("a covariance needs at least 2 images")
        return total, (counts @ self.centred).astype(np.float64) / total

    def moments(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance) of the multiset that takes image i counts[i] times."""
        counts = np.asarray(counts)
        total, offset = self._offset(counts)
        dropped = np.flatnonzero(counts == 0)
        repeated_idx = np.flatnonzero(counts >= 2)
        if len(dropped) + len(repeated_idx) < np.count_nonzero(counts):
            # Fewer rows to correct than to sum: the full Gram, minus dropped rows, plus repeats.
            gram = self.gram.astype(np.float64)
            if len(dropped):
                rows = self.centred[dropped]
                gram -= rows.T @ rows  # A.T @ A: a symmetric rank-k product (syrk), half a matmul
            if len(repeated_idx):
                rows = self.centred[repeated_idx] * np.sqrt(counts[repeated_idx] - 1).astype(self.centred.dtype)[:, None]
                gram += rows.T @ rows
        else:
            # A bootstrap resample: every drawn row once, sqrt(count)-weighted, in one syrk.
            drawn = np.flatnonzero(counts)
            rows = self.centred[drawn] * np.sqrt(counts[drawn]).astype(self.centred.dtype)[:, None]
            gram = (rows.T @ rows).astype(np.float64)
        sigma = (gram - total * np.outer(offset, offset)) / (total - 1)
        return self.mean + offset, sigma

    def factor(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, F) with covariance F^T F: one row per distinct drawn image, sqrt(count) weighted."""
        counts = np.asarray(counts)
        total, offset = self._offset(counts)
        drawn = np.flatnonzero(counts)
        rows = (self.centred[drawn].astype(np.float64) - offset) * np.sqrt(counts[drawn] / (total - 1))[:, None]
        return self.mean + offset, rows


def weighted_frechet_distance(real: WeightedMoments, fake: WeightedMoments, real_counts, fake_counts) -> float:
    """FD between the count-weighted real and generated features, exactly (see the module docstring)."""
    stats = []
    for moments, counts in ((real, real_counts), (fake, fake_counts)):
        if np.count_nonzero(counts) < moments.dim:
            mu, f = moments.factor(counts)
            stats.append((mu, None, f))
        else:
            mu, sigma = moments.moments(counts)
            stats.append((mu, sigma, None))
    (mu1, s1, f1), (mu2, s2, f2) = stats
    if f1 is not None and f2 is not None:
        # tr((S1 S2)^1/2) is the sum of the singular values of F1 F2^T (r1 x r2).
        singular = linalg.svd(f1 @ f2.T, compute_uv=False)
        diff = mu1 - mu2
        return float(diff @ diff + np.einsum("ij,ij->", f1, f1) + np.einsum("ij,ij->", f2, f2) - 2.0 * singular.sum())
    if s1 is None:
        s1 = f1.T @ f1
    if s2 is None:
        s2 = f2.T @ f2
    if f1 is None and f2 is None and real.centred.dtype == np.float32 and fake.centred.dtype == np.float32:
        value = _frechet_float32(mu1, s1, mu2, s2)
        if value is not None:
            return value
    return M.frechet_distance(mu1, s1, mu2, s2, factor1=f1, factor2=f2)


def _frechet_float32(mu1, s1, mu2, s2) -> float | None:
    """The Frechet distance with the d^3 steps (Cholesky, L^T S2 L, eigenvalues) in float32: twice as
    fast; for float32 features (Inception's), whose Gram is float32 anyway. The trace of the square
    root then differs from float64's by ~1e-6 relative (the benchmark's 2048-d features: 1e-6), far
    inside any bootstrap interval. None when the float32 Cholesky fails (near-singular): use float64."""
    try:
        lower = linalg.cholesky(((s1 + s1.T) / 2).astype(np.float32), lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None
    s2_32 = ((s2 + s2.T) / 2).astype(np.float32)
    middle = lower.T @ s2_32 @ lower
    eigenvalues = linalg.eigvalsh((middle + middle.T) / 2, check_finite=False).astype(np.float64)
    tr_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_infinity(
    real: WeightedMoments, fake: WeightedMoments, *, points: int = 15, smallest: int | None = None, seed: int = 0,
) -> dict:
    """FID-infinity (Chong and Forsyth 2020): FID of the full real set against nested random subsets of
    the generated set of `points` sizes from `smallest` (default a fifth of the set, at least 2) to all,
    a least-squares line FID = a + b / N, and a (its intercept). Chong and Forsyth use N from 5,000 to
    50,000; with fewer images the extrapolation is longer and less certain."""
    n = fake.n
    smallest = max(2, n // 5) if smallest is None else smallest
    sizes = np.unique(np.linspace(smallest, n, points).round().astype(int))
    if len(sizes) < 2:
        raise ValueError(f"FID-infinity needs at least 2 subset sizes: {n} generated images are too few")
    order = np.random.default_rng(seed).permutation(n)
    ones = np.ones(real.n, dtype=np.int64)
    fids = []
    for size in sizes:
        counts = np.zeros(n, dtype=np.int64)
        counts[order[:size]] = 1
        fids.append(weighted_frechet_distance(real, fake, ones, counts))
    slope, intercept = np.polyfit(1.0 / sizes, np.asarray(fids), 1)
    return {"fid_inf": float(intercept), "slope": float(slope), "sizes": sizes.tolist(), "fids": fids}


@dataclass
class Ball:
    """Which fakes lie in which real images' k-NN balls (and reals in fakes' balls), as sparse matrices
    of shape (n_fake, n_real), from the full sets' radii."""

    fake_in_real_3: sparse.csr_matrix  # precision: d <= real radius (k = pr_k)
    real_in_fake_3: sparse.csr_matrix  # recall: d <= fake radius (k = pr_k)
    fake_in_real_5: sparse.csr_matrix  # density/coverage: d < real radius (k = dc_k), strict as in prdc


def balls(real, fake, *, pr_k: int = 3, dc_k: int = 5, block: int = M.DISTANCE_BLOCK) -> Ball:
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_r3 = M.kth_neighbour_distances(real, pr_k, block) ** 2
    fake_r3 = M.kth_neighbour_distances(fake, pr_k, block) ** 2
    real_r5 = M.kth_neighbour_distances(real, dc_k, block) ** 2
    parts: dict[str, list] = {"p": [], "r": [], "d": []}
    for start, d in M.pairwise_squared_distances(fake, real, block):
        parts["p"].append(sparse.csr_matrix(d <= real_r3[None, :]))
        parts["r"].append(sparse.csr_matrix(d <= fake_r3[start : start + len(d), None]))
        parts["d"].append(sparse.csr_matrix(d < real_r5[None, :]))
    stack = lambda key: sparse.vstack(parts[key], format="csr").astype(np.float64)  # noqa: E731
    return Ball(stack("p"), stack("r"), stack("d"))


def manifold_metrics(ball: Ball, real_counts: np.ndarray, fake_counts: np.ndarray, *, dc_k: int = 5) -> dict[str, np.ndarray]:
    """Precision, recall, density and coverage for each resample (rows of the count matrices)."""
    wr, wf = np.atleast_2d(real_counts).astype(np.float64), np.atleast_2d(fake_counts).astype(np.float64)
    n_real, n_fake = wr.shape[1], wf.shape[1]
    real_drawn, fake_drawn = (wr > 0).astype(np.float64), (wf > 0).astype(np.float64)
    in_real_manifold = (ball.fake_in_real_3 @ real_drawn.T) > 0  # (n_fake, B)
    in_fake_manifold = (ball.real_in_fake_3.T @ fake_drawn.T) > 0  # (n_real, B)
    balls_holding = ball.fake_in_real_5 @ wr.T  # (n_fake, B): drawn real balls holding each fake, with counts
    covered = (ball.fake_in_real_5.T @ fake_drawn.T) > 0  # (n_real, B)
    return {
        "precision": np.einsum("bj,jb->b", wf, in_real_manifold) / n_fake,
        "recall": np.einsum("bi,ib->b", wr, in_fake_manifold) / n_real,
        "density": np.einsum("bj,jb->b", wf, balls_holding) / (dc_k * n_fake),
        "coverage": np.einsum("bi,ib->b", wr, covered) / n_real,
    }


def kid_all_pairs(real, fake, real_counts, fake_counts, *, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0, block: int = M.DISTANCE_BLOCK) -> np.ndarray:
    """The unbiased all-pairs MMD^2 (polynomial kernel) for each resample (rows of the count matrices)."""
    x, y = np.asarray(real), np.asarray(fake)
    if x.dtype != np.float32 or y.dtype != np.float32:
        x, y = x.astype(np.float64), y.astype(np.float64)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    wx, wy = np.atleast_2d(real_counts).astype(np.float64), np.atleast_2d(fake_counts).astype(np.float64)
    m, n = wx.sum(axis=1), wy.sum(axis=1)

    def quadratic(a, wa, b, wb, same: bool) -> np.ndarray:
        total = np.zeros(len(wa))
        for start in range(0, len(a), block):
            k = M._polynomial_kernel(a[start : start + block], b, degree, gamma, coef0)
            total += np.einsum("bi,ib->b", wa[:, start : start + block], k @ wb.T)
            if same:
                diag = (gamma * np.einsum("ij,ij->i", a[start : start + block], a[start : start + block]).astype(np.float64) + coef0) ** degree
                total -= wa[:, start : start + block] @ diag
        return total

    xx = quadratic(x, wx, x, wx, True) / (m * (m - 1))
    yy = quadratic(y, wy, y, wy, True) / (n * (n - 1))
    xy = quadratic(x, wx, y, wy, False) / (m * n)
    return xx + yy - 2.0 * xy


@dataclass
class BootstrapSpec:
    resamples: int = 200
    level: float = 0.95
    seed: int = 0
    pr_k: int = 3
    dc_k: int = 5
    fid_inf_points: int = 15


def bootstrap_metrics(
    real_pool, fake_pool, *, real_spatial=None, fake_spatial=None, metrics=("fid", "sfid", "pr", "dc", "kid"),
    spec: BootstrapSpec = BootstrapSpec(), block: int = M.DISTANCE_BLOCK,
    on_resample: Callable[[int, int], bool | None] | None = None,
) -> dict:
    """Percentile intervals of FID, sFID, precision, recall, density, coverage and KID, and FID-infinity.

    Returns {"intervals": {metric key: [low, high]}, "fid_inf": float | None, "fid_inf_fit": {...},
    "interval": {"method", "resamples", "level", "seed", "n_real", "n_fake", "notes"}}. The keys of
    `intervals` are those of `evaluate.METRIC_KEYS` (`kid_mean` for KID). `on_resample(done, total)`
    is called after each Frechet resample; returning False stops (raises `BootstrapStopped`).
    """
    n_real, n_fake = len(real_pool), len(fake_pool)
    rng = np.random.default_rng(spec.seed)
    real_counts = resample_counts(n_real, spec.resamples, rng)
    fake_counts = resample_counts(n_fake, spec.resamples, rng)
    samples: dict[str, np.ndarray] = {}
    notes: list[str] = []
    out: dict = {"fid_inf": None, "fid_inf_fit": None}
    frechet = [("fid", real_pool, fake_pool)]
    if real_spatial is not None and fake_spatial is not None:
        frechet.append(("sfid", real_spatial, fake_spatial))
    frechet = [item for item in frechet if item[0] in metrics]
    total = spec.resamples * len(frechet)
    done = 0
    for key, real, fake in frechet:
        r, f = WeightedMoments(real), WeightedMoments(fake)
        values = np.empty(spec.resamples)
        for b in range(spec.resamples):
            values[b] = weighted_frechet_distance(r, f, real_counts[b], fake_counts[b])
            done += 1
            if on_resample is not None and on_resample(done, total) is False:
                raise BootstrapStopped(f"stopped after {done} of {total} resamples")
        samples[key] = values
        if key == "fid" and n_fake >= 10:
            fit = fid_infinity(r, f, points=spec.fid_inf_points, seed=spec.seed)
            out["fid_inf"], out["fid_inf_fit"] = fit["fid_inf"], fit
            notes.append(NOTES["fid_inf"])
    if {"pr", "dc"} & set(metrics) and min(n_real, n_fake) > max(spec.pr_k, spec.dc_k):
        manifold = manifold_metrics(balls(real_pool, fake_pool, pr_k=spec.pr_k, dc_k=spec.dc_k, block=block),
                                    real_counts, fake_counts, dc_k=spec.dc_k)
        for metric, keys in (("pr", ("precision", "recall")), ("dc", ("density", "coverage"))):
            if metric in metrics:
                samples.update({k: manifold[k] for k in keys})
        notes.append(NOTES["pr"])
    if "kid" in metrics and min(n_real, n_fake) >= 2:
        samples["kid_mean"] = kid_all_pairs(real_pool, fake_pool, real_counts, fake_counts, block=block)
        notes.append(NOTES["kid"])
    out["intervals"] = {key: list(percentile_interval(values, spec.level)) for key, values in samples.items()}
    out["interval"] = {"method": INTERVAL_METHOD, "resamples": spec.resamples, "level": spec.level,
                       "seed": spec.seed, "n_real": n_real, "n_fake": n_fake, "notes": notes}
    return out


class BootstrapStopped(RuntimeError):
    """The caller's progress callback asked to stop."""
