"""The metrics themselves, on features already extracted: pure numpy and scipy, no torch, no Django.

- `frechet_distance`: FID (Heusel et al. 2017) on pool_3 statistics and sFID (Nash et al. 2021) on
  spatial statistics, as in guided-diffusion's evaluator (Dhariwal & Nichol 2021), float64.
- `inception_score`: IS (Salimans et al. 2016) from Inception logits, in splits.
- `precision_recall`: improved precision and recall (Kynkaanniemi et al. 2019), k = 3, as in
  guided-diffusion's `ManifoldEstimator`, with distances computed in blocks.
- `density_coverage`: density and coverage (Naeem et al. 2020), k = 5, as in the `prdc` package.
- `kid`: Kernel Inception Distance (Binkowski et al. 2018), unbiased polynomial-kernel MMD over subsets.
- `memorisation`: each generated image's nearest training image, the distance's ratio to that training
  image's own nearest-neighbour distance (Alaa et al. 2022's authenticity test at ratio 1), and the
  share of near-copies.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import linalg

# Rows of the first operand per block of pairwise distances: memory is block x len(other) x 8 bytes.
DISTANCE_BLOCK = 1024


def frechet_distance(mu1, sigma1, mu2, sigma2, *, factor1=None, factor2=None) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), in float64.

    The eigenvalues of S1 S2 are those of the symmetric positive semi-definite L^T S2 L for any
    S1 = L L^T, so tr((S1 S2)^1/2) is the sum of their square roots: exact for covariances of any rank,
    where `scipy.linalg.sqrtm` of the non-symmetric product (guided-diffusion's way) may be inaccurate.
    L is S1's Cholesky factor, or its eigen-decomposition when S1 is singular. `factor1` / `factor2`,
    an (r, d) array F with S = F^T F (centred features over sqrt(n - 1)), replace that d x d step
    with an r x r one: the fast path when a set has fewer images than features.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"covariances {sigma1.shape} and {sigma2.shape} do not match means of size {mu1.size}")
    if factor1 is None and factor2 is not None:
        sigma1, sigma2, factor1 = sigma2, sigma1, factor2
    sigma2 = (sigma2 + sigma2.T) / 2
    if factor1 is not None:
        f = np.asarray(factor1, np.float64)
        if f.ndim != 2 or f.shape[1] != mu1.size:
            raise ValueError(f"factor of shape {f.shape} does not match means of size {mu1.size}")
        middle = f @ sigma2 @ f.T
    else:
        try:
            lower = linalg.cholesky((sigma1 + sigma1.T) / 2, lower=True)
        except linalg.LinAlgError:
            eigenvalues, vectors = linalg.eigh((sigma1 + sigma1.T) / 2)
            keep = eigenvalues > 0
            lower = vectors[:, keep] * np.sqrt(eigenvalues[keep])
        middle = lower.T @ sigma2 @ lower
    eigenvalues = linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def inception_score(logits, splits: int | None = None, *, split_size: int = 5000) -> tuple[float, float]:
    """Mean and standard deviation over splits of exp(E_x KL(p(y|x) || p(y))).

    `splits=None` cuts the images into consecutive chunks of `split_size` (guided-diffusion's evaluator,
    5,000 per split); an integer cuts them into that many near-equal chunks (Salimans et al.'s code, 10).
    `logits` are pre-softmax scores, one row per image (1008 classes for the FID Inception).
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"logits must be a non-empty (images, classes) array, not shape {logits.shape}")
    n = len(logits)
    if splits is None:
        bounds = list(range(0, n, split_size)) + [n]
    else:
        if not 1 <= splits <= n:
            raise ValueError(f"splits={splits}: expected between 1 and the number of images ({n})")
        bounds = [round(i * n / splits) for i in range(splits + 1)]
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    scores = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = log_p[start:stop]
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        kl = (p * (part - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def pairwise_squared_distances(a: np.ndarray, b: np.ndarray, block: int = DISTANCE_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, squared distances of rows a[first:first+block] to every row of b), float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature arrays must be 2-D with the same width, not {a.shape} and {b.shape}")
    b_norms = _squared_norms(b)
    for start in range(0, len(a), block):
        rows = a[start : start + block]
        d = _squared_norms(rows)[:, None] - 2.0 * rows @ b.T + b_norms[None, :]
        yield start, np.maximum(d, 0.0)


def kth_neighbour_distances(features, k: int, block: int = DISTANCE_BLOCK) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (itself excluded)."""
    features = np.asarray(features, np.float64)
    if not 1 <= k < len(features):
        raise ValueError(f"k={k} nearest neighbours need more than {k} feature vectors, got {len(features)}")
    out = np.empty(len(features))
    for start, d in pairwise_squared_distances(features, features, block):
        # Position 0 after partitioning is the row itself (distance 0); position k is the k-th neighbour.
        out[start : start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return np.sqrt(out)


def precision_recall(real_features, fake_features, k: int = 3, *, block: int = DISTANCE_BLOCK) -> tuple[float, float]:
    """Improved precision (share of fakes inside the real manifold) and recall (share of reals inside
    the fake manifold); each manifold is the union of balls reaching each sample's k-th neighbour,
    boundary included (guided-diffusion's `ManifoldEstimator`). One pass over fake x real distances
    serves both."""
    real, fake = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
    real_r2 = kth_neighbour_distances(real, k, block) ** 2
    fake_r2 = kth_neighbour_distances(fake, k, block) ** 2
    fake_inside = np.zeros(len(fake), dtype=bool)
    real_inside = np.zeros(len(real), dtype=bool)
    for start, d in pairwise_squared_distances(fake, real, block):
        fake_inside[start : start + len(d)] = (d <= real_r2[None, :]).any(axis=1)
        real_inside |= (d <= fake_r2[start : start + len(d), None]).any(axis=0)
    return float(fake_inside.mean()), float(real_inside.mean())


def density_coverage(real_features, fake_features, k: int = 5, *, block: int = DISTANCE_BLOCK) -> tuple[float, float]:
    """Density (mean number of real k-NN balls holding each fake, over k) and coverage (share of real
    balls holding at least one fake), with the strict inequalities of Naeem et al.'s `prdc`."""
    real, fake = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
    real_r2 = kth_neighbour_distances(real, k, block) ** 2
    count = 0
    covered = np.zeros(len(real), dtype=bool)
    for _, d in pairwise_squared_distances(fake, real, block):
        inside = d < real_r2[None, :]
        count += int(inside.sum())
        covered |= inside.any(axis=0)
    return float(count / (k * len(fake))), float(covered.mean())


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    # Dot products in the features' own precision (float32 for Inception features: twice as fast,
    # 1e-7 relative error), the kernel and the sums in float64.
    return (gamma * (x @ y.T).astype(np.float64) + coef0) ** degree


def kid(
    real_features, fake_features, subsets: int = 100, subset_size: int = 1000, *, degree: int = 3,
    gamma: float | None = None, coef0: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard deviation over random subsets of the unbiased MMD^2 with the polynomial kernel
    (x.y / d + 1)^3, as torch-fidelity and Binkowski et al. compute it. `subset_size` is capped at the
    smaller set's size; the subsets are drawn without replacement from a generator seeded by `seed`."""
    real, fake = np.asarray(real_features), np.asarray(fake_features)
    if real.dtype != np.float32 or fake.dtype != np.float32:
        real, fake = real.astype(np.float64), fake.astype(np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images in each set, got {len(real)} real and {len(fake)} generated")
    gamma = 1.0 / real.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx = _polynomial_kernel(x, x, degree, gamma, coef0)
        k_yy = _polynomial_kernel(y, y, degree, gamma, coef0)
        k_xy = _polynomial_kernel(x, y, degree, gamma, coef0)
        sum_xx = k_xx.sum() - np.trace(k_xx)
        sum_yy = k_yy.sum() - np.trace(k_yy)
        mmds[i] = (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m)
    return float(mmds.mean()), float(mmds.std())


def memorisation(train_features, fake_features, *, near_copy_ratio: float = 0.5, block: int = DISTANCE_BLOCK) -> dict:
    """For each generated image: its nearest training image, the distance, and that distance divided by
    the training image's own distance to its nearest other training image.

    A ratio under 1 means the generated image sits closer to a training image than any other training
    image does (Alaa et al. 2022's "unauthentic"); a ratio under `near_copy_ratio` (default 0.5) counts
    as a near-copy. Returns arrays `nearest`, `distance`, `ratio` (one entry per generated image) and
    the floats `share` (near-copies), `share_closer_than_train` (ratio < 1) and `median_ratio`.
    """
    train, fake = np.asarray(train_features, np.float64), np.asarray(fake_features, np.float64)
    own = kth_neighbour_distances(train, 1, block)
    nearest = np.empty(len(fake), dtype=np.int64)
    distance = np.empty(len(fake))
    for start, d in pairwise_squared_distances(fake, train, block):
        idx = d.argmin(axis=1)
        nearest[start : start + len(d)] = idx
        distance[start : start + len(d)] = np.sqrt(d[np.arange(len(d)), idx])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(own[nearest] > 0, distance / own[nearest], np.where(distance > 0, np.inf, 0.0))
    return {
        "nearest": nearest,
        "distance": distance,
        "ratio": ratio,
        "share": float((ratio < near_copy_ratio).mean()),
        "share_closer_than_train": float((ratio < 1.0).mean()),
        "median_ratio": float(np.median(ratio)),
        "near_copy_ratio": float(near_copy_ratio),
    }
