"""Streamed statistics and their npz cache (our layout and guided-diffusion's reference batches)."""
import numpy as np
import pytest

from evaluation.reference import (
    RunningMoments, compute_statistics, load_statistics, save_statistics, statistics_for,
)
from evaluation.images import FolderSource
from PIL import Image


def test_running_moments_match_numpy_in_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 6)) * 50 + 1000  # large mean, small spread: the naive formula loses digits
    moments = RunningMoments(6, flush_rows=15)
    for start in range(0, 103, 10):
        moments.update(x[start : start + 10])
    np.testing.assert_allclose(moments.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.cov, np.cov(x, rowvar=False), rtol=1e-9)
    assert moments.factor is None  # more images than features: rows not kept
    few = RunningMoments(6)
    few.update(x[:4])
    np.testing.assert_allclose(few.factor.T @ few.factor, np.cov(x[:4], rowvar=False), rtol=1e-5, atol=1e-3)


@pytest.fixture
def extractor(random_extractor):
    return random_extractor


def _folder(root, n, seed, labels=("A", "B")):
    rng = np.random.default_rng(seed)
    for i in range(n):
        (root / labels[i % len(labels)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / labels[i % len(labels)] / f"{i}.png")
    return root


def test_statistics_round_trip_and_cache_invalidation(tmp_path, extractor):
    folder = _folder(tmp_path / "set", 4, 0)
    source = FolderSource(folder)
    stats = compute_statistics(source, extractor, batch_size=4, per_label=True)
    assert stats.pool.shape == (4, 2048) and stats.logits.shape == (4, 1008)
    assert set(stats.per_label) == {"A", "B"} and stats.per_label["A"].n == 2
    np.testing.assert_allclose(stats.overall.mu, stats.pool.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    path = save_statistics(tmp_path / "cache.npz", stats)
    loaded = load_statistics(path)
    np.testing.assert_allclose(loaded.overall.sigma, stats.overall.sigma, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(loaded.pool, stats.pool)
    assert loaded.meta["fingerprint"] == source.fingerprint()
    assert list(loaded.labels) == ["A", "A", "B", "B"]
    # The cache is used while the images are the same, recomputed when one changes.
    cached = statistics_for(FolderSource(folder), extractor, cache_path=path)
    np.testing.assert_array_equal(cached.pool, stats.pool)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "A" / "0.png")
    changed = statistics_for(FolderSource(folder), extractor, cache_path=path)
    assert not np.allclose(changed.pool[0], stats.pool[0])
    assert load_statistics(path).meta["fingerprint"] != loaded.meta["fingerprint"]


def test_reads_guided_diffusion_reference_batches(tmp_path, extractor):
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=2048), np.eye(2048)
    path = tmp_path / "VIRTUAL_ref.npz"
    np.savez(path, arr_0=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), mu=mu, sigma=sigma,
             mu_s=rng.normal(size=2023), sigma_s=np.eye(2023))
    stats = load_statistics(path)
    np.testing.assert_array_equal(stats.overall.mu, mu)
    assert stats.pool is None and stats.meta == {}
    # Without an extractor record the statistics are the TensorFlow Inception's: never mixed with random weights.
    with pytest.raises(ValueError, match="cannot be compared"):
        statistics_for(path, extractor)


def test_a_file_without_statistics_is_refused(tmp_path):
    path = tmp_path / "images.npz"
    np.savez(path, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no reference statistics"):
        load_statistics(path)


def test_evaluate_reads_a_statistics_file_as_the_real_side(tmp_path, extractor):
    from evaluation.evaluate import evaluate
    from evaluation.metrics import frechet_distance

    real = FolderSource(_folder(tmp_path / "real", 4, 2))
    fake = _folder(tmp_path / "fake", 4, 3)
    real_stats = compute_statistics(real, extractor, batch_size=4)
    path = save_statistics(tmp_path / "real_ref.npz", real_stats)
    result = evaluate(path, fake, "fid,pr,mem", False, extractor, batch_size=4, grid_path=tmp_path / "grid.png")
    fake_stats = compute_statistics(FolderSource(fake), extractor, batch_size=4)
    expected = frechet_distance(real_stats.overall.mu, real_stats.overall.sigma, fake_stats.overall.mu,
                                fake_stats.overall.sigma)
    assert result["overall"]["metrics"]["fid"] == pytest.approx(expected, rel=1e-6)
    assert result["overall"]["metrics"]["precision"] is not None
    # Statistics carry no images: the closest pairs are listed by index, no grid is drawn.
    assert result["memorisation"]["grid"] is None
    assert any("no memorisation grid" in w for w in result["warnings"])
