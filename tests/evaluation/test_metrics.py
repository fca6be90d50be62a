"""The metric formulas against closed forms, independent scipy computations and brute force."""
import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group

from evaluation import metrics as M


def _scipy_fid(mu1, s1, mu2, s2):
    """guided-diffusion's evaluator's formula: scipy's general matrix square root of S1 S2."""
    covmean = np.asarray(linalg.sqrtm(s1.dot(s2))).real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    a, b = rng.uniform(0.1, 3, size=16), rng.uniform(0.1, 3, size=16)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_rotated_commuting_covariances_has_the_closed_form():
    rng = np.random.default_rng(1)
    q = ortho_group.rvs(12, random_state=2)
    a, b = rng.uniform(0.5, 2, size=12), rng.uniform(0.5, 2, size=12)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = rng.normal(size=12)
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + 4.0 * 12
    assert M.frechet_distance(mu, s1, mu + 2.0, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_a_distribution_with_itself_is_zero():
    x = np.random.default_rng(3).normal(size=(300, 32))
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert abs(M.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


@pytest.mark.parametrize("n1,n2", [(400, 300), (40, 300), (40, 25)])
def test_frechet_distance_matches_scipy_sqrtm_on_features(n1, n2):
    rng = np.random.default_rng(n1 + n2)
    mix = rng.normal(size=(64, 64))
    x = rng.normal(size=(n1, 64)) @ mix
    y = rng.normal(size=(n2, 64)) @ mix * 1.3 + 0.5
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    reference = _scipy_fid(mu1, s1, mu2, s2)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)
    # The low-rank path (factors F with S = F^T F) gives the same number.
    f1 = (x - mu1) / np.sqrt(n1 - 1)
    f2 = (y - mu2) / np.sqrt(n2 - 1)
    assert M.frechet_distance(mu1, s1, mu2, s2, factor1=f1) == pytest.approx(reference, rel=1e-6)
    assert M.frechet_distance(mu1, s1, mu2, s2, factor2=f2) == pytest.approx(reference, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_on_known_logits():
    # Identical predictions for every image: p(y|x) = p(y), KL = 0, IS = 1.
    flat = np.tile(np.random.default_rng(0).normal(size=10), (50, 1))
    assert M.inception_score(flat)[0] == pytest.approx(1.0, abs=1e-12)
    # Confident, evenly spread over C classes: IS = C.
    c = 8
    peaked = np.full((c * 5, c), -1e4)
    peaked[np.arange(c * 5), np.arange(c * 5) % c] = 0.0
    mean, std = M.inception_score(peaked)
    assert mean == pytest.approx(c, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    # Two classes, p = (0.9, 0.1) for half and (0.1, 0.9) for the other half: exp(KL to (0.5, 0.5)).
    two = np.log(np.array([[0.9, 0.1], [0.1, 0.9]] * 10))
    kl = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert M.inception_score(two)[0] == pytest.approx(np.exp(kl), rel=1e-12)


def test_inception_score_splits_like_the_reference_code():
    logits = np.random.default_rng(5).normal(size=(100, 20)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, 4):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    mean, std = M.inception_score(logits, 4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)
    # guided-diffusion's way: chunks of split_size.
    assert M.inception_score(logits, split_size=25)[0] == pytest.approx(mean, rel=1e-10)


def _brute_radii(x, k):
    d = cdist(x, x)
    return np.sort(d, axis=1)[:, k]


def _brute_pr(real, fake, k):
    rr, fr = _brute_radii(real, k), _brute_radii(fake, k)
    d = cdist(fake, real)
    precision = np.mean([(d[i] <= rr).any() for i in range(len(fake))])
    recall = np.mean([(d[:, j] <= fr).any() for j in range(len(real))])
    return precision, recall


def _brute_dc(real, fake, k):
    rr = _brute_radii(real, k)
    d = cdist(real, fake)
    density = sum((d[i, j] < rr[i]) for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([(d[i] < rr[i]).any() for i in range(len(real))])
    return density, coverage


@pytest.mark.parametrize("block", [7, 1024])
def test_precision_recall_and_density_coverage_match_brute_force(block):
    rng = np.random.default_rng(11)
    real = rng.normal(size=(60, 8))
    fake = rng.normal(size=(45, 8)) * 1.4 + 0.3
    p, r = M.precision_recall(real, fake, k=3, block=block)
    bp, br = _brute_pr(real, fake, 3)
    assert (p, r) == (pytest.approx(bp), pytest.approx(br))
    assert 0 < p < 1 and 0 < r < 1
    d, c = M.density_coverage(real, fake, k=5, block=block)
    bd, bc = _brute_dc(real, fake, 5)
    assert (d, c) == (pytest.approx(bd), pytest.approx(bc))


def test_precision_recall_of_a_set_with_itself_is_one():
    x = np.random.default_rng(2).normal(size=(30, 5))
    assert M.precision_recall(x, x) == (1.0, 1.0)


def test_kid_is_near_zero_on_identical_sets_and_positive_on_shifted_ones():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    # Two samples of one distribution: the unbiased estimate is zero up to its standard error.
    mean, std = M.kid(x, y, subsets=30, subset_size=100)
    assert abs(mean) < 4 * std / np.sqrt(30)
    shifted, _ = M.kid(x, y + 0.5, subsets=30, subset_size=100)
    assert shifted > 20 * (abs(mean) + std / np.sqrt(30))
    # The very same images: near zero next to a real shift (slightly negative: the diagonal terms
    # the unbiased estimator leaves out are the largest), and shrinking as the sets grow.
    same_small, _ = M.kid(x[:100], x[:100], subsets=1, subset_size=100)
    same, _ = M.kid(x, x, subsets=1, subset_size=300)
    assert abs(same) < shifted / 20
    assert abs(same) < abs(same_small) / 3


def test_kid_matches_torch_fidelity():
    import torch
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(80, 16)), rng.normal(size=(70, 16)) + 0.3
    ours, _ = M.kid(x, y, subsets=1, subset_size=70)
    # One subset of the whole sets (after a permutation, which the kernel sums ignore).
    theirs = kid_features_to_metric(torch.from_numpy(x[:70]), torch.from_numpy(y), kid_subsets=1,
                                    kid_subset_size=70, verbose=False)["kernel_inception_distance_mean"]
    ours_same, _ = M.kid(x[:70], y, subsets=1, subset_size=70)
    assert ours_same == pytest.approx(theirs, rel=1e-6)
    assert np.isfinite(ours)


def test_memorisation_finds_copies_and_matches_brute_force():
    rng = np.random.default_rng(8)
    train = rng.normal(size=(40, 6))
    fake = rng.normal(size=(10, 6))
    fake[:3] = train[[5, 17, 30]] + 1e-4  # near-copies
    out = M.memorisation(train, fake, block=7)
    d = cdist(fake, train)
    own = np.sort(cdist(train, train), axis=1)[:, 1]
    assert (out["nearest"] == d.argmin(1)).all()
    np.testing.assert_allclose(out["ratio"], d.min(1) / own[d.argmin(1)], rtol=1e-7, atol=1e-5)
    assert list(out["nearest"][:3]) == [5, 17, 30]
    assert out["share"] == pytest.approx(np.mean(out["ratio"] < 0.5))
    assert out["share"] >= 0.3
