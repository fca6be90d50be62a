"""Bootstrap intervals and FID-infinity against explicit resampled copies, brute force and simulation."""
import numpy as np
import pytest
from scipy import linalg

from evaluation import bootstrap as B
from evaluation import metrics as M


def _explicit_fid(x, y):
    """FD of two explicit feature arrays through scipy's general matrix square root."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = np.asarray(linalg.sqrtm(s1 @ s2)).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _gaussian_sets(rng, n_real, n_fake, d, shift=0.3, scale=1.4):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n_real, d)) @ mix, rng.normal(size=(n_fake, d)) @ mix * scale + shift


@pytest.mark.parametrize("n_real,n_fake,d", [(120, 90, 8), (30, 25, 40), (60, 20, 30)])
def test_weighted_frechet_distance_equals_the_fid_of_the_resampled_copies(n_real, n_fake, d):
    # Covers the full-covariance path (n > d), the r x r factor path (n < d) and a mix of both.
    rng = np.random.default_rng(n_real + d)
    x, y = _gaussian_sets(rng, n_real, n_fake, d)
    wx, wy = B.resample_counts(n_real, 3, rng), B.resample_counts(n_fake, 3, rng)
    r, f = B.WeightedMoments(x), B.WeightedMoments(y)
    for b in range(3):
        expected = _explicit_fid(np.repeat(x, wx[b], axis=0), np.repeat(y, wy[b], axis=0))
        assert B.weighted_frechet_distance(r, f, wx[b], wy[b]) == pytest.approx(expected, rel=1e-6, abs=1e-8)


def test_weighted_moments_of_float32_features_match_numpy_to_float32_precision():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(500, 16)) + 3.0).astype(np.float32)
    w = B.resample_counts(500, 1, rng)[0]
    mu, sigma = B.WeightedMoments(x).moments(w)
    copy = np.repeat(x.astype(np.float64), w, axis=0)
    np.testing.assert_allclose(mu, copy.mean(0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(copy, rowvar=False), atol=1e-5)


def _brute_manifold(x, y, wx, wy, rx3, ry3, rx5, k5):
    """Precision, recall, density, coverage of the explicit resample, radii fixed to the full sets'."""
    xs, ys = np.repeat(np.arange(len(x)), wx), np.repeat(np.arange(len(y)), wy)
    d = np.sqrt(((y[ys][:, None, :] - x[xs][None, :, :]) ** 2).sum(-1))
    precision = (d <= rx3[xs][None, :]).any(axis=1).mean()
    recall = (d <= ry3[ys][:, None]).any(axis=0).mean()
    inside = d < rx5[xs][None, :]
    return precision, recall, inside.sum() / (k5 * len(ys)), inside.any(axis=0).mean()


def test_manifold_metrics_equal_the_reference_functions_and_brute_force_on_resamples():
    rng = np.random.default_rng(7)
    x, y = _gaussian_sets(rng, 70, 50, 5)
    ball = B.balls(x, y, pr_k=3, dc_k=5, block=16)
    ones = B.manifold_metrics(ball, np.ones(70, int), np.ones(50, int))
    assert (ones["precision"][0], ones["recall"][0]) == pytest.approx(M.precision_recall(x, y, 3))
    assert (ones["density"][0], ones["coverage"][0]) == pytest.approx(M.density_coverage(x, y, 5))
    wx, wy = B.resample_counts(70, 4, rng), B.resample_counts(50, 4, rng)
    got = B.manifold_metrics(ball, wx, wy)
    rx3, ry3, rx5 = (M.kth_neighbour_distances(a, k) for a, k in ((x, 3), (y, 3), (x, 5)))
    for b in range(4):
        expected = _brute_manifold(x, y, wx[b], wy[b], rx3, ry3, rx5, 5)
        assert [got[k][b] for k in ("precision", "recall", "density", "coverage")] == pytest.approx(expected)


def test_kid_all_pairs_equals_the_unbiased_mmd_of_the_resampled_copies():
    rng = np.random.default_rng(8)
    x, y = _gaussian_sets(rng, 40, 30, 6)
    wx, wy = B.resample_counts(40, 3, rng), B.resample_counts(30, 3, rng)
    got = B.kid_all_pairs(x, y, wx, wy, block=7)
    for b in range(3):
        a, c = np.repeat(x, wx[b], axis=0), np.repeat(y, wy[b], axis=0)
        k = lambda p, q: (p @ q.T / 6 + 1) ** 3  # noqa: E731
        m, n = len(a), len(c)
        expected = ((k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1))
                    + (k(c, c).sum() - np.trace(k(c, c))) / (n * (n - 1)) - 2 * k(a, c).mean())
        assert got[b] == pytest.approx(expected, rel=1e-9)
    # All counts 1: the all-pairs estimate, which is the subset KID when one subset holds every image.
    full = B.kid_all_pairs(x[:30], y, np.ones(30, int), np.ones(30, int))[0]
    assert full == pytest.approx(M.kid(x[:30], y, subsets=1, subset_size=30)[0], rel=1e-9)


def test_bootstrap_is_reproducible_by_seed_and_labelled():
    rng = np.random.default_rng(9)
    x, y = _gaussian_sets(rng, 80, 60, 4)
    spec = B.BootstrapSpec(resamples=30, seed=5)
    first = B.bootstrap_metrics(x, y, real_spatial=x[:, :3], fake_spatial=y[:, :3], spec=spec)
    again = B.bootstrap_metrics(x, y, real_spatial=x[:, :3], fake_spatial=y[:, :3], spec=spec)
    other = B.bootstrap_metrics(x, y, spec=B.BootstrapSpec(resamples=30, seed=6))
    assert first["intervals"] == again["intervals"] and first["fid_inf"] == again["fid_inf"]
    assert first["intervals"]["fid"] != other["intervals"]["fid"]
    assert set(first["intervals"]) == {"fid", "sfid", "precision", "recall", "density", "coverage", "kid_mean"}
    assert "sfid" not in other["intervals"]  # no spatial features given
    fid = M.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    low, high = first["intervals"]["fid"]
    assert low < fid < high
    info = first["interval"]
    assert (info["n_real"], info["n_fake"], info["resamples"], info["seed"]) == (80, 60, 30, 5)
    assert info["method"].startswith("percentile bootstrap")


def test_bootstrap_stops_when_the_progress_callback_says_so():
    rng = np.random.default_rng(10)
    x, y = _gaussian_sets(rng, 30, 30, 3)
    seen = []
    with pytest.raises(B.BootstrapStopped):
        B.bootstrap_metrics(x, y, spec=B.BootstrapSpec(resamples=20),
                            on_resample=lambda done, total: seen.append((done, total)) or done < 5)
    assert seen[-1] == (5, 20)


def test_fid_interval_covers_the_true_frechet_distance_of_gaussians_about_95_percent():
    # Real ~ N(0, I), generated ~ N(delta, diag(s)): the true FD is |delta|^2 + sum (1 - sqrt(s))^2.
    d, n, reps, resamples = 3, 400, 80, 150
    delta, s = np.array([0.6, -0.4, 0.3]), np.array([1.5, 0.7, 1.2])
    true_fd = float(delta @ delta + ((1 - np.sqrt(s)) ** 2).sum())
    rng = np.random.default_rng(11)
    hits = 0
    for rep in range(reps):
        x = rng.normal(size=(n, d))
        y = rng.normal(size=(n, d)) * np.sqrt(s) + delta
        r, f = B.WeightedMoments(x), B.WeightedMoments(y)
        wx, wy = B.resample_counts(n, resamples, rng), B.resample_counts(n, resamples, rng)
        values = [B.weighted_frechet_distance(r, f, wx[b], wy[b]) for b in range(resamples)]
        low, high = B.percentile_interval(values, 0.95)
        hits += low <= true_fd <= high
    # Binomial(80, 0.95) lies in [70, 80] with probability > 0.99; a broken interval (too narrow,
    # or centred wrongly) covers far less.
    assert hits >= 70, f"{hits}/{reps} intervals cover the true FD"


def test_fid_infinity_removes_most_of_the_small_sample_bias():
    # Same distribution: the true FD is 0, the FID of a few hundred images is biased upward by ~1/N.
    rng = np.random.default_rng(12)
    d = 16
    r = B.WeightedMoments(rng.normal(size=(20000, d)))
    fid_ns, fid_infs = [], []
    for seed in range(6):
        f = B.WeightedMoments(rng.normal(size=(600, d)))
        fit = B.fid_infinity(r, f, points=10, seed=seed)
        fid_n = B.weighted_frechet_distance(r, f, np.ones(20000, int), np.ones(600, int))
        assert fit["sizes"][-1] == 600 and fit["fids"][-1] == pytest.approx(fid_n)
        fid_ns.append(fid_n)
        fid_infs.append(fit["fid_inf"])
    assert abs(np.mean(fid_infs)) < 0.35 * np.mean(fid_ns)


def test_float32_features_take_the_float32_path_within_its_precision():
    rng = np.random.default_rng(13)
    x, y = _gaussian_sets(rng, 400, 300, 24)
    wx, wy = B.resample_counts(400, 1, rng)[0], B.resample_counts(300, 1, rng)[0]
    exact = _explicit_fid(np.repeat(x, wx, axis=0), np.repeat(y, wy, axis=0))
    fast = B.weighted_frechet_distance(B.WeightedMoments(x.astype(np.float32)), B.WeightedMoments(y.astype(np.float32)), wx, wy)
    assert fast == pytest.approx(exact, rel=1e-4)
    # A subset keeping most images corrects the full Gram instead: the same covariance.
    keep = np.ones(400, int)
    keep[::7] = 0
    mu, sigma = B.WeightedMoments(x).moments(keep)
    np.testing.assert_allclose(sigma, np.cov(x[keep == 1], rowvar=False), atol=1e-10)


@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-8), (np.float32, 1e-4)])  # float32: as the resamples
def test_fid_infinity_fids_equal_the_fid_of_each_nested_subset(dtype, rel):
    # The real set is factored once and the nested subsets' Grams grow by the rows added; the first
    # sizes have fewer images than features (a singular subset covariance), the last all of them.
    rng = np.random.default_rng(14)
    x, y = _gaussian_sets(rng, 200, 100, 30)
    r, f = B.WeightedMoments(x.astype(dtype)), B.WeightedMoments(y.astype(dtype))
    fit = B.fid_infinity(r, f, points=6, smallest=20, seed=3)
    order = np.random.default_rng(3).permutation(100)  # the documented nested subsets: a seeded permutation
    assert fit["sizes"][0] < 30 < fit["sizes"][-1] == 100
    for size, fid in zip(fit["sizes"], fit["fids"]):
        sub = y[order[:size]]
        expected = M.frechet_distance(x.mean(0), np.cov(x, rowvar=False), sub.mean(0), np.cov(sub, rowvar=False))
        assert fid == pytest.approx(expected, rel=rel)


def test_fid_infinity_with_fewer_real_images_than_features_falls_back_to_one_fd_per_size():
    rng = np.random.default_rng(15)
    x, y = _gaussian_sets(rng, 20, 60, 30)
    fit = B.fid_infinity(B.WeightedMoments(x), B.WeightedMoments(y), points=3, seed=1)
    order = np.random.default_rng(1).permutation(60)
    for size, fid in zip(fit["sizes"], fit["fids"]):
        assert fid == pytest.approx(_explicit_fid(x, y[order[:size]]), rel=1e-6)


def test_a_constant_feature_falls_back_to_the_eigen_decomposition_and_stays_exact():
    # A dead (constant) feature makes both covariances singular: no Cholesky factor exists.
    rng = np.random.default_rng(16)
    x, y = _gaussian_sets(rng, 150, 120, 6)
    x[:, 2], y[:, 2] = 1.0, 1.0
    wx, wy = B.resample_counts(150, 2, rng), B.resample_counts(120, 2, rng)
    r, f = B.WeightedMoments(x), B.WeightedMoments(y)
    for b in range(2):
        a, c = np.repeat(x, wx[b], axis=0), np.repeat(y, wy[b], axis=0)
        expected = M.frechet_distance(a.mean(0), np.cov(a, rowvar=False), c.mean(0), np.cov(c, rowvar=False))
        assert B.weighted_frechet_distance(r, f, wx[b], wy[b]) == pytest.approx(expected, rel=1e-9)


def test_one_shared_pass_gives_the_same_manifold_metrics_and_kid_as_separate_passes():
    # The kernel is taken in place from the same dot products the distances come from.
    rng = np.random.default_rng(17)
    x, y = _gaussian_sets(rng, 45, 35, 5)
    wx, wy = B.resample_counts(45, 3, rng), B.resample_counts(35, 3, rng)
    both = B.pairwise_resample_metrics(x, y, wx, wy, block=8)
    manifold = B.manifold_metrics(B.balls(x, y, block=16), wx, wy)
    for key in ("precision", "recall", "density", "coverage"):
        np.testing.assert_array_equal(both[key], manifold[key])
    np.testing.assert_allclose(both["kid_mean"], B.kid_all_pairs(x, y, wx, wy, block=13), rtol=1e-12)


@pytest.mark.parametrize("n_real,n_fake,d,dead", [(120, 90, 8, False), (60, 20, 30, False), (150, 120, 6, True)])
def test_the_torch_path_gives_the_numpy_path_s_frechet_distances(n_real, n_fake, d, dead):
    # On the CPU here; on a GPU with device="cuda". Full covariances, fewer images than features, a dead feature.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n_real + d)
    x, y = _gaussian_sets(rng, n_real, n_fake, d)
    if dead:
        x[:, 1], y[:, 1] = 2.0, 2.0
    wx, wy = B.resample_counts(n_real, 3, rng), B.resample_counts(n_fake, 3, rng)
    seen = []
    got = B.frechet_resamples_torch(x, y, wx, wy, device="cpu", on_resample=seen.append)
    r, f = B.WeightedMoments(x), B.WeightedMoments(y)
    expected = [B.weighted_frechet_distance(r, f, wx[b], wy[b]) for b in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)
    assert seen == [0, 1, 2] and torch.get_default_dtype() == torch.float32  # no global state changed


def test_bootstrap_with_a_device_gives_the_same_intervals():
    pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    x, y = _gaussian_sets(rng, 80, 60, 4)
    spec = B.BootstrapSpec(resamples=20, seed=2)
    numpy_path = B.bootstrap_metrics(x, y, real_spatial=x[:, :3], fake_spatial=y[:, :3], spec=spec)
    torch_path = B.bootstrap_metrics(x, y, real_spatial=x[:, :3], fake_spatial=y[:, :3], spec=spec, device="cpu")
    for key, (low, high) in numpy_path["intervals"].items():
        assert torch_path["intervals"][key] == pytest.approx([low, high], rel=1e-9)
