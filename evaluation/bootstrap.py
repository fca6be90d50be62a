"""Uncertainty of the metrics: seeded bootstrap intervals that resample images, and FID-infinity.

Pure numpy and scipy, no Django (torch only inside `frechet_resamples_torch`, when a device is asked
for). Every interval comes from the same resamples: each resample draws, for each set, how many
times each image is taken (multinomial counts, `resample_counts`), and every metric is recomputed
from the feature matrices already extracted, weighted by those counts.
Nothing is re-extracted, and no resample builds a resampled copy of the features:

- Frechet distances (FID, sFID): the resampled mean and covariance come from the counts: the Gram
  of the centred features is one symmetric rank-k update (BLAS syrk, one triangle) over the ~63% of
  images drawn, each weighted by sqrt(count) (or, when fewer rows, the full Gram, computed once,
  corrected by the dropped and repeated rows). The trace term tr((S1 S2)^1/2) is then the sum of
  the square roots of the eigenvalues of the symmetric L^T S2 L, L the Cholesky factor of S1 (LAPACK
  potrf, then sygst, which forms L^T S2 L in half the flops of two matrix products, then eigvalsh;
  all on one triangle, in place, in the features' precision: float32 for Inception's, relative
  error up to ~1e-4 against float64, measured 5e-6 to 8e-5 on the benchmark's FID at 4,000 and
  10,000 images, far inside any interval; float64 features give float64 to 1e-13);
  while a resample has at most as many distinct images as features, the r x r product of its
  weighted-row factors instead. Never a general matrix square root, never a resampled copy.
- FID-infinity: the real set is the same at every subset size, so its Cholesky factor is computed
  once, and the nested subsets' Grams grow by the rows added; float64 (the small subsets have fewer
  images than features, and float32 rounding of their null space adds sqrt-amplified noise).
- Precision/recall, density/coverage and KID share one float64 pass over each of real x real,
  generated x generated and generated x real dot products, in blocks (`pairwise_resample_metrics`):
  each block gives both the squared distances and the kernel. The k-NN radii are those of the full
  sets (a resampled duplicate would otherwise be its own nearest neighbour at distance 0 and shrink
  every ball), and which fake lies in which ball is recorded once as sparse matrices; each resample
  is then two sparse products: "is it in a ball of an image drawn at least once" and "how many such
  balls". KID is the unbiased all-pairs MMD^2 with the polynomial kernel, written with counts as
  (w'Kw - w.diag K) / (m(m-1)) per set and w_x'K_xy w_y / (mn) across, each kernel block multiplied
  by all resamples' counts together. (The reported KID is the mean over random subsets, which
  estimates the same MMD^2; its interval is that of the all-pairs estimator.)

Intervals are percentile intervals (Efron's) at `level`. `fid_infinity` is Chong and Forsyth's
(2020) FID-infinity: FID of nested random subsets of the generated images at several sizes N,
a least-squares line in 1/N, its value at 1/N = 0.

Lower bound of the exact FID and sFID bootstrap, and why issue 16's target (10,000 vs 10,000, 200
resamples, under 3 minutes) is blocked on the 2-core dev machine. Per resample and per metric:

- Grams: each set's resampled covariance depends on every image drawn at least once, on average
  r = n (1 - (1 - 1/n)^n) = 6,321 of 10,000. Corrections of any fixed precomputed Gram must touch
  every row whose count differs from the fixed weight, and no count value is taken by more than
  e^-1 = 37% of rows, so at least 63% of the rows enter a symmetric rank-k update: r d (d + 1) flops
  per set (syrk counts one triangle). Both sets: 5.31e10 flops (FID, d = 2048), 5.18e10 (sFID,
  d = 2023). (Sharing a partial Gram between two resamples, over the rows where both draw the same
  non-zero count, saves at most 14%.)
- Eigenvalues: Cholesky d^3/3, sygst d^3, reduction to tridiagonal form 4d^3/3 (the O(d^2)
  tridiagonal eigenvalues aside): 8d^3/3 = 2.29e10 flops (FID), 2.21e10 (sFID). LAPACK has no
  cheaper direct method; an iterative square root (Newton-Schulz) costs several 2d^3 products.

That is 1.50e11 flops per resample, 3.0e13 for 200, of which the Grams 2.1e13. The machine's float32
peak, measured as sgemm: 66 GFLOP/s on one core (2,048^3 in 0.26 s, `OPENBLAS_NUM_THREADS=1`), at
most 132 GFLOP/s on both (115 GFLOP/s measured quiet with 2 threads). At 132 GFLOP/s the Grams
alone take 159 s and the eigenvalue work 68 s: 227 s > 180 s before any other metric, at a peak
that the memory-bound half of the tridiagonal reduction never reaches. Measured (single-threaded
process CPU, 10,000 images, d = 2048, per resample and metric): about 1.8 s (Grams 0.9 s,
eigenvalues 0.5 s, sygst 0.23 s, Cholesky 0.06 s; before these changes 2.9 s); from the quiet
2-thread parts (Gram of 10,000 rows 0.34 s, float32 eigenvalues 0.30 s) about 0.9 s, ~6 minutes
for FID and sFID. The target is met on a GPU, or with more cores; on 2 cores only by changing what
is resampled (holding the real statistics fixed would halve the Gram work and share the Cholesky
factor) or resampling less: the issue owner's choice.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import blas

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
    float32 throughout: half the time of float64, relative error ~1e-7 on the Gram; traces and means
    are summed in float64). Covariances are kept as the lower triangle of a Fortran-order matrix, the
    form the BLAS and LAPACK routines below read and write without copies. `moments(counts)` gives the
    full symmetric float64 covariance; with fewer distinct images than features, `factor(counts)`
    gives the weighted-row factor F (S = F^T F) instead.
    """

    def __init__(self, features):
        x = np.asarray(features)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"expected a (images, features) matrix of at least 2 images, got shape {x.shape}")
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        self.mean = x.mean(axis=0, dtype=np.float64)
        self.centred = np.ascontiguousarray((x - self.mean).astype(dtype, copy=False))
        self.n, self.dim = x.shape
        self._syrk = blas.get_blas_funcs("syrk", dtype=dtype)
        self._gram_lower: np.ndarray | None = None

    @property
    def gram_lower(self) -> np.ndarray:
        """Lower triangle of the centred features' Gram matrix (all images once), computed once."""
        if self._gram_lower is None:
            self._gram_lower = self._syrk(1.0, self.centred.T, lower=1)
        return self._gram_lower

    def _offset(self, counts: np.ndarray) -> tuple[int, np.ndarray]:
        total = int(counts.sum())
        if total < 2:
            raise ValueError("a covariance needs at least 2 images")
        # In the features' precision: a float32 gemv, not a float64 copy of the whole matrix.
        return total, (counts.astype(self.centred.dtype) @ self.centred).astype(np.float64) / total

    def covariance_lower(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance as a lower triangle, Fortran order, in the features' precision) of
        the multiset that takes image i counts[i] times. The Gram is one symmetric rank-k update (syrk,
        half a matrix product) over the rows that need one: every drawn row sqrt(count)-weighted, or,
        when fewer, the full Gram's corrections (dropped rows subtracted, repeats added)."""
        counts = np.asarray(counts)
        total, offset = self._offset(counts)
        dropped = np.flatnonzero(counts == 0)
        repeated = np.flatnonzero(counts >= 2)
        dtype = self.centred.dtype
        scale = 1.0 / (total - 1)
        if len(dropped) + len(repeated) < np.count_nonzero(counts):
            gram = np.empty_like(self.gram_lower, order="F")
            np.multiply(self.gram_lower, dtype.type(scale), out=gram)
            if len(dropped):
                gram = self._syrk(-scale, self.centred[dropped].T, beta=1.0, c=gram, lower=1, overwrite_c=1)
            if len(repeated):
                rows = self.centred[repeated]
                rows *= np.sqrt(counts[repeated] - 1).astype(dtype)[:, None]
                gram = self._syrk(scale, rows.T, beta=1.0, c=gram, lower=1, overwrite_c=1)
        else:
            drawn = np.flatnonzero(counts)
            rows = self.centred[drawn]
            rows *= np.sqrt(counts[drawn]).astype(dtype)[:, None]
            gram = self._syrk(scale, rows.T, lower=1)
        return self.mean + offset, _subtract_mean(gram, offset, total)

    def moments(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance, full and symmetric, float64) of the count-weighted multiset."""
        mean, lower = self.covariance_lower(counts)
        return mean, _symmetric(lower)

    def factor(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, F) with covariance F^T F: one row per distinct drawn image, sqrt(count) weighted."""
        counts = np.asarray(counts)
        total, offset = self._offset(counts)
        drawn = np.flatnonzero(counts)
        rows = (self.centred[drawn].astype(np.float64) - offset) * np.sqrt(counts[drawn] / (total - 1))[:, None]
        return self.mean + offset, rows


def _subtract_mean(scaled_gram: np.ndarray, offset: np.ndarray, total: int) -> np.ndarray:
    """The unbiased covariance from Gram / (total - 1) (lower triangle, in place): minus
    total / (total - 1) offset offset^T, one BLAS syr on the triangle (the features are centred at
    their full-set mean, so the offset is small and the subtraction loses little in float32)."""
    syr = blas.get_blas_funcs("syr", dtype=scaled_gram.dtype)
    return syr(-total / (total - 1), offset.astype(scaled_gram.dtype), a=scaled_gram, lower=1, overwrite_a=1)


def _symmetric(lower: np.ndarray) -> np.ndarray:
    full = np.tril(lower).astype(np.float64)
    full += np.tril(full, -1).T
    return full


def cholesky_lower(covariance_lower: np.ndarray, *, overwrite: bool = False) -> np.ndarray | None:
    """The lower Cholesky factor (LAPACK potrf, the upper triangle left as it was), or None when the
    covariance is not positive definite (fewer images than features, constant features)."""
    potrf = linalg.get_lapack_funcs("potrf", (covariance_lower,))
    factor, info = potrf(covariance_lower, lower=1, clean=0, overwrite_a=int(overwrite))
    return factor if info == 0 else None


def frechet_from_factor(mu1, factor1: np.ndarray, trace1: float, mu2, sigma2_lower: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2) from S1's lower Cholesky factor L and the
    lower triangle of S2 (overwritten): tr((S1 S2)^1/2) is the sum of the square roots of the
    eigenvalues of the symmetric L^T S2 L (as in `metrics.frechet_distance`), formed by LAPACK sygst
    (itype 2: half the flops of two matrix products) and reduced by eigvalsh, both reading and writing
    one triangle. Any rank of S2 is exact; only S1 must be positive definite."""
    sygst = linalg.get_lapack_funcs("sygst", (sigma2_lower,))
    trace2 = float(np.trace(sigma2_lower, dtype=np.float64))
    if factor1.dtype != sigma2_lower.dtype:
        factor1 = factor1.astype(sigma2_lower.dtype, order="F")
    middle, info = sygst(sigma2_lower, factor1, itype=2, lower=1, overwrite_a=1)
    if info != 0:
        raise linalg.LinAlgError(f"sygst failed (info={info})")
    eigenvalues = linalg.eigvalsh(middle, lower=True, overwrite_a=True, check_finite=False).astype(np.float64)
    tr_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + trace1 + trace2 - 2.0 * tr_covmean)


def weighted_frechet_distance(real: WeightedMoments, fake: WeightedMoments, real_counts, fake_counts) -> float:
    """FD between the count-weighted real and generated features, exactly (see the module docstring)."""
    if np.count_nonzero(real_counts) > real.dim and np.count_nonzero(fake_counts) > fake.dim:
        mu1, s1 = real.covariance_lower(real_counts)
        mu2, s2 = fake.covariance_lower(fake_counts)
        if s1.dtype != s2.dtype:
            s1, s2 = np.asfortranarray(s1, np.float64), np.asfortranarray(s2, np.float64)
        trace1 = float(np.trace(s1, dtype=np.float64))
        factor = cholesky_lower(s1, overwrite=True)
        if factor is not None:
            return frechet_from_factor(mu1, factor, trace1, mu2, s2)
        # Not positive definite (in float32, or at all): float64, with metrics' eigen-decomposition fallback.
        return M.frechet_distance(*real.moments(real_counts), *fake.moments(fake_counts))
    stats = []
    for moments, counts in ((real, real_counts), (fake, fake_counts)):
        if np.count_nonzero(counts) <= moments.dim:  # r images: a covariance of rank r - 1 at most
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
    return M.frechet_distance(mu1, s1, mu2, s2, factor1=f1, factor2=f2)


def frechet_resamples_torch(real, fake, real_counts, fake_counts, *, device: str,
                            on_resample: Callable[[int], bool | None] | None = None) -> np.ndarray:
    """The FD of every resample (rows of the count matrices) with torch on `device` (a CUDA GPU), float64
    throughout: the drawn rows' Gram, the Cholesky factor L of S1, the eigenvalues of L^T S2 L (where
    S1 has no Cholesky factor, L = V sqrt(max(lambda, 0)) from its eigen-decomposition, as in
    `metrics.frechet_distance`; exact for any rank of either side). torch is imported only here: the
    rest of the module, and the default CPU path, stay numpy and scipy. `on_resample(b)` after each;
    False stops (raises `BootstrapStopped`)."""
    import torch

    dev = torch.device(device)
    sets = []
    for features, counts in ((real, real_counts), (fake, fake_counts)):
        x = torch.as_tensor(np.asarray(features), device=dev).to(torch.float64)
        mean = x.mean(dim=0)
        sets.append((x - mean, mean, torch.as_tensor(np.atleast_2d(counts), device=dev).to(torch.float64)))

    def moments(centred, mean, w):
        total = w.sum()
        offset = (w @ centred) / total
        drawn = torch.nonzero(w).squeeze(1)
        rows = centred[drawn] * w[drawn].sqrt()[:, None]
        sigma = (rows.T @ rows - total * torch.outer(offset, offset)) / (total - 1)
        return mean + offset, (sigma + sigma.T) / 2

    values = np.empty(len(sets[0][2]))
    for b in range(len(values)):
        mu1, s1 = moments(sets[0][0], sets[0][1], sets[0][2][b])
        mu2, s2 = moments(sets[1][0], sets[1][1], sets[1][2][b])
        lower, info = torch.linalg.cholesky_ex(s1)
        if int(info) != 0:
            eigenvalues, vectors = torch.linalg.eigh(s1)
            lower = vectors * eigenvalues.clamp(min=0).sqrt()
        middle = lower.T @ s2 @ lower
        tr_covmean = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
        diff = mu1 - mu2
        values[b] = float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_covmean)
        if on_resample is not None and on_resample(b) is False:
            raise BootstrapStopped(f"stopped after {b + 1} resamples")
    return values


def fid_infinity(
    real: WeightedMoments, fake: WeightedMoments, *, points: int = 15, smallest: int | None = None, seed: int = 0,
) -> dict:
    """FID-infinity (Chong and Forsyth 2020): FID of the full real set against nested random subsets of
    the generated set of `points` sizes from `smallest` (default a fifth of the set, at least 2) to all,
    a least-squares line FID = a + b / N, and a (its intercept). Chong and Forsyth use N from 5,000 to
    50,000; with fewer images the extrapolation is longer and less certain.

    The real set is the same at every size: its covariance is factored once (Cholesky), and as the
    subsets are nested each subset's Gram is the previous one plus the rows added (one pass over the
    generated features in all); each size then costs one sygst and one eigvalsh. Those are float64
    up to 2 x dim images (a subset with fewer images than features has a singular covariance, and
    float32 rounding of its null space would add sqrt-amplified noise to the trace), in the features'
    precision above (float32 for Inception's: 2.5 times faster, as in the resamples)."""
    n = fake.n
    smallest = max(2, n // 5) if smallest is None else smallest
    sizes = np.unique(np.linspace(smallest, n, points).round().astype(int))
    if len(sizes) < 2:
        raise ValueError(f"FID-infinity needs at least 2 subset sizes: {n} generated images are too few")
    order = np.random.default_rng(seed).permutation(n)
    ones = np.ones(real.n, dtype=np.int64)
    real_total, real_offset = real._offset(ones)
    s1 = blas.dsyrk(1.0 / (real_total - 1), real.centred.T.astype(np.float64), lower=1)
    s1 = _subtract_mean(s1, real_offset, real_total)
    trace1 = float(np.trace(s1))
    factor = cholesky_lower(s1, overwrite=True) if real.n > real.dim else None
    fids = []
    if factor is None:  # not positive definite (fewer real images than features): a full FD per size
        for size in sizes:
            counts = np.zeros(n, dtype=np.int64)
            counts[order[:size]] = 1
            fids.append(weighted_frechet_distance(real, fake, ones, counts))
    else:
        factors = {np.dtype(np.float64): factor}
        gram = np.zeros((fake.dim, fake.dim), order="F")
        row_sum = np.zeros(fake.dim)
        done = 0
        for size in sizes:
            rows = fake.centred[order[done:size]].astype(np.float64)
            gram = blas.dsyrk(1.0, rows.T, beta=1.0, c=gram, lower=1, overwrite_c=1)
            row_sum += rows.sum(axis=0)
            done = size
            dtype = np.dtype(np.float64) if size <= 2 * fake.dim else np.result_type(real.centred, fake.centred)
            if dtype not in factors:
                factors[dtype] = np.asfortranarray(factor, dtype)
            sigma2 = np.empty((fake.dim, fake.dim), dtype, order="F")
            np.multiply(gram, 1.0 / (size - 1), out=sigma2, casting="same_kind")
            offset = row_sum / size
            sigma2 = _subtract_mean(sigma2, offset, size)
            fids.append(frechet_from_factor(real.mean + real_offset, factors[dtype], trace1,
                                            fake.mean + offset, sigma2))
    slope, intercept = np.polyfit(1.0 / sizes, np.asarray(fids), 1)
    return {"fid_inf": float(intercept), "slope": float(slope), "sizes": sizes.tolist(), "fids": fids}


@dataclass
class Ball:
    """Which fakes lie in which real images' k-NN balls (and reals in fakes' balls), as sparse matrices
    of shape (n_fake, n_real), from the full sets' radii."""

    fake_in_real_3: sparse.csr_matrix  # precision: d <= real radius (k = pr_k)
    real_in_fake_3: sparse.csr_matrix  # recall: d <= fake radius (k = pr_k)
    fake_in_real_5: sparse.csr_matrix  # density/coverage: d < real radius (k = dc_k), strict as in prdc


@dataclass
class _Kernel:
    """The polynomial kernel (gamma x.y + coef0)^degree and the resamples' counts it is summed with."""

    degree: int
    gamma: float
    coef0: float
    real_counts: np.ndarray  # (B, n_real) float64
    fake_counts: np.ndarray  # (B, n_fake) float64

    def of(self, products: np.ndarray) -> np.ndarray:
        """The kernel of a block of dot products, in place (repeated products: numpy's integer power
        is four times slower)."""
        products *= self.gamma
        products += self.coef0
        if self.degree == 1:
            return products
        base = products.copy()
        for _ in range(self.degree - 1):
            products *= base
        return products


def _products(a: np.ndarray, b: np.ndarray, block: int):
    """Yield (first row, float64 dot products of rows a[first:first+block] with every row of b)."""
    for start in range(0, len(a), block):
        yield start, a[start : start + block] @ b.T


def _distances(products: np.ndarray, a_norms: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    # The same operations in the same order as metrics.pairwise_squared_distances: the same radii and balls.
    return np.maximum(a_norms[:, None] - 2.0 * products + b_norms[None, :], 0.0)


def _smallest(values: np.ndarray, count: int) -> np.ndarray:
    """The `count` smallest entries of each row (unordered), or all of them when a row has fewer."""
    return values if values.shape[1] <= count else np.partition(values, count - 1, axis=1)[:, :count]


def _self_pass(x: np.ndarray, ks: tuple[int, ...], counts: np.ndarray | None, kernel: _Kernel | None, block: int):
    """One pass over the upper block triangle of x x^T (x x^T is symmetric: half the products): the
    distance of each row to its k-th nearest other row for each k in `ks` (as
    `metrics.kth_neighbour_distances`: position 0 is the row itself), and for each resample the kernel
    sum w'Kw - w.diag K. Each block row [start, stop) x [start, n) serves its own rows and, transposed,
    the rows after it; each row keeps its max(ks) + 1 smallest distances seen so far."""
    n = len(x)
    norms = np.einsum("ij,ij->i", x, x)
    keep = max(ks) + 1 if ks else 0
    nearest = np.full((n, keep), np.inf)
    sums = np.zeros(len(counts)) if kernel is not None else None
    for start in range(0, n, block):
        stop = min(start + block, n)
        p = x[start:stop] @ x[start:].T
        if ks:
            d = _distances(p, norms[start:stop], norms[start:])
            for rows, values in ((slice(start, stop), d), (slice(stop, n), d[:, stop - start :].T)):
                if values.size:
                    nearest[rows] = _smallest(np.concatenate([nearest[rows], _smallest(values, keep)], axis=1), keep)
            del d
        if kernel is not None:
            k = kernel.of(p)
            w = counts[:, start:stop]
            diagonal = k[:, : stop - start]
            sums += np.einsum("bi,ib->b", w, diagonal @ w.T) - w @ np.diagonal(diagonal)
            sums += 2.0 * np.einsum("bi,ib->b", w, k[:, stop - start :] @ counts[:, stop:].T)
    kth = np.sort(nearest, axis=1)[:, list(ks)].T if ks else np.empty((0, n))
    return np.sqrt(kth), sums


def _one_pass(x, y, wx, wy, *, manifold: bool, kernel: "_Kernel | None", pr_k: int, dc_k: int, block: int):
    """(Ball or None, kernel sums real x real, generated x generated, generated x real, or None)."""
    real_ks = tuple(sorted({pr_k, dc_k})) if manifold else ()
    real_kth, xx = _self_pass(x, real_ks, wx, kernel, block)
    fake_kth, yy = _self_pass(y, (pr_k,) if manifold else (), wy, kernel, block)
    x_norms, y_norms = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    if manifold:
        real_r3, real_r5 = real_kth[real_ks.index(pr_k)] ** 2, real_kth[real_ks.index(dc_k)] ** 2
        fake_r3 = fake_kth[0] ** 2
        parts: dict[str, list] = {"p": [], "r": [], "d": []}
    xy = np.zeros(len(wx)) if kernel is not None else None
    for start, p in _products(y, x, block):
        if manifold:
            d = _distances(p, y_norms[start : start + len(p)], x_norms)
            parts["p"].append(sparse.csr_matrix(d <= real_r3[None, :]))
            parts["r"].append(sparse.csr_matrix(d <= fake_r3[start : start + len(d), None]))
            parts["d"].append(sparse.csr_matrix(d < real_r5[None, :]))
            del d
        if kernel is not None:
            xy += np.einsum("bj,jb->b", wy[:, start : start + len(p)], kernel.of(p) @ wx.T)
    ball = None
    if manifold:
        stack = lambda key: sparse.vstack(parts[key], format="csr").astype(np.float64)  # noqa: E731
        ball = Ball(stack("p"), stack("r"), stack("d"))
    return ball, xx, yy, xy


def pairwise_resample_metrics(
    real, fake, real_counts, fake_counts, *, manifold: bool = True, kid: bool = True, pr_k: int = 3, dc_k: int = 5,
    degree: int = 3, gamma: float | None = None, coef0: float = 1.0, block: int = M.DISTANCE_BLOCK,
    timings: dict | None = None,
) -> dict[str, np.ndarray]:
    """Precision, recall, density, coverage (`manifold`) and the all-pairs KID (`kid`, key "kid_mean")
    for each resample (rows of the count matrices), from one float64 pass over each of real x real,
    generated x generated and generated x real: each block of dot products gives both the squared
    distances (k-NN radii, balls) and the kernel. (Separately, the distances were 4 such passes and the
    kernels 3 more.)"""
    t0 = _clock()
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature arrays must be 2-D with the same width, not {x.shape} and {y.shape}")
    wx, wy = np.atleast_2d(real_counts).astype(np.float64), np.atleast_2d(fake_counts).astype(np.float64)
    kernel = None
    if kid:
        gamma = 1.0 / x.shape[1] if gamma is None else gamma
        kernel = _Kernel(degree, gamma, coef0, wx, wy)
    ball, xx, yy, xy = _one_pass(x, y, wx, wy, manifold=manifold, kernel=kernel, pr_k=pr_k, dc_k=dc_k, block=block)
    t1 = _clock()
    out: dict[str, np.ndarray] = {}
    if manifold:
        out.update(manifold_metrics(ball, wx, wy, dc_k=dc_k))
    if kid:
        m, n = wx.sum(axis=1), wy.sum(axis=1)
        out["kid_mean"] = xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)
    if timings is not None:
        timings["k-NN radii, balls and kernels (one pass per pair of sets)"] = _since(t0, t1)
        timings["precision/recall, density/coverage resamples (sparse products)"] = _since(t1)
    return out


def balls(real, fake, *, pr_k: int = 3, dc_k: int = 5, block: int = M.DISTANCE_BLOCK) -> Ball:
    """The k-NN balls of the full sets (see `Ball`), drawn as `metrics.precision_recall` and
    `density_coverage` draw them."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    return _one_pass(x, y, None, None, manifold=True, kernel=None, pr_k=pr_k, dc_k=dc_k, block=block)[0]


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
    return pairwise_resample_metrics(real, fake, real_counts, fake_counts, manifold=False, degree=degree,
                                     gamma=gamma, coef0=coef0, block=block)["kid_mean"]


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
    on_resample: Callable[[int, int], bool | None] | None = None, timings: dict | None = None,
    device: str | None = None,
) -> dict:
    """Percentile intervals of FID, sFID, precision, recall, density, coverage and KID, and FID-infinity.

    Returns {"intervals": {metric key: [low, high]}, "fid_inf": float | None, "fid_inf_fit": {...},
    "interval": {"method", "resamples", "level", "seed", "n_real", "n_fake", "notes"}}. The keys of
    `intervals` are those of `evaluate.METRIC_KEYS` (`kid_mean` for KID). `on_resample(done, total)`
    is called after each Frechet resample; returning False stops (raises `BootstrapStopped`). A
    `timings` dict receives (wall, process CPU) seconds of each part (the benchmark's breakdown).
    `device` (a torch device, "cuda"): the FID and sFID resamples run there (`frechet_resamples_torch`);
    the default, None, is the numpy and scipy path.
    """
    timings = {} if timings is None else timings
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
        t0 = _clock()
        r, f = WeightedMoments(real), WeightedMoments(fake)
        offset = done

        def step(b: int) -> bool | None:
            return None if on_resample is None else on_resample(offset + b + 1, total)

        if device is not None:
            values = frechet_resamples_torch(real, fake, real_counts, fake_counts, device=device, on_resample=step)
        else:
            values = np.empty(spec.resamples)
            for b in range(spec.resamples):
                values[b] = weighted_frechet_distance(r, f, real_counts[b], fake_counts[b])
                if step(b) is False:
                    raise BootstrapStopped(f"stopped after {offset + b + 1} of {total} resamples")
        done += spec.resamples
        samples[key] = values
        timings[f"{key} resamples"] = _since(t0)
        if key == "fid" and n_fake >= 10:
            t0 = _clock()
            fit = fid_infinity(r, f, points=spec.fid_inf_points, seed=spec.seed)
            out["fid_inf"], out["fid_inf_fit"] = fit["fid_inf"], fit
            notes.append(NOTES["fid_inf"])
            timings["FID-infinity"] = _since(t0)
    manifold = bool({"pr", "dc"} & set(metrics)) and min(n_real, n_fake) > max(spec.pr_k, spec.dc_k)
    kid = "kid" in metrics and min(n_real, n_fake) >= 2
    if manifold or kid:
        values = pairwise_resample_metrics(real_pool, fake_pool, real_counts, fake_counts, manifold=manifold,
                                           kid=kid, pr_k=spec.pr_k, dc_k=spec.dc_k, block=block, timings=timings)
        for metric, keys in (("pr", ("precision", "recall")), ("dc", ("density", "coverage")), ("kid", ("kid_mean",))):
            if metric in metrics and keys[0] in values:
                samples.update({k: values[k] for k in keys})
        notes += [NOTES["pr"]] * manifold + [NOTES["kid"]] * kid
    out["intervals"] = {key: list(percentile_interval(values, spec.level)) for key, values in samples.items()}
    out["interval"] = {"method": INTERVAL_METHOD, "resamples": spec.resamples, "level": spec.level,
                       "seed": spec.seed, "n_real": n_real, "n_fake": n_fake, "notes": notes}
    return out


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float], stop: tuple[float, float] | None = None) -> tuple[float, float]:
    """(wall, process CPU) seconds from `start` to `stop` (default now)."""
    stop = _clock() if stop is None else stop
    return stop[0] - start[0], stop[1] - start[1]


class BootstrapStopped(RuntimeError):
    """The caller's progress callback asked to stop."""
