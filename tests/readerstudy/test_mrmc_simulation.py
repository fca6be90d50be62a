"""readerstudy.mrmc on simulated reader studies with random readers and random cases.

Each check repeats a seeded simulation N times; the band around the nominal rate is 3 Monte Carlo
standard errors, sqrt(p (1 - p) / N), computed from N (so a failure is a real miss, not bad luck:
about 1 run in 700 would fail by chance if the method were exactly right).
"""
import math

import numpy as np
import pytest

from readerstudy.mrmc import Design, analysis_numbers
from readerstudy.planning import RoeMetz, simulate_study


def mc_band(p: float, n: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("design", [
    {"n_readers": 5, "n_negative": 75, "n_positive": 75, "paired": True},  # balanced
    {"n_readers": 6, "n_negative": 40, "n_positive": 110, "paired": False},  # unbalanced, two generators
])
def test_interval_of_the_reader_averaged_auc_covers_the_population_auc_95_percent(design):
    rng = np.random.default_rng(20261203)
    n = 600
    separation = (1.0, 1.6)
    truths = [RoeMetz().population_auc(s) for s in separation]  # 0.76 and 0.87
    covered = np.zeros((n, 2), bool)
    for i in range(n):
        tests = analysis_numbers(simulate_study(rng, separation=separation, **design))["tests"]
        covered[i] = [row["ci_low"] <= truth <= row["ci_high"] for row, truth in zip(tests, truths)]
    coverage = covered.mean(axis=0)
    # the two tests of one study share readers (and, unpaired, the real images): count studies, not intervals
    assert np.all(np.abs(coverage - 0.95) <= mc_band(0.95, n)), coverage


def leaning_readers(rng, *, n_readers=5, n_real=40, n_synthetic=110) -> tuple[Design, Design]:
    """Readers who cannot tell real from synthetic but say "synthetic" about 90% of the time.

    Ordinal rating: -3..-1 for "real" (surely .. maybe), +1..+3 for "synthetic"; binary: 1 = synthetic.
    Each reader has their own lean (around 0.9) and confidence habits; nothing depends on the truth.
    """
    K = n_real + n_synthetic
    lean = rng.uniform(0.82, 0.97, (n_readers, 1))
    says_synthetic = rng.random((n_readers, K)) < lean
    confidence = 1 + (rng.random((n_readers, K))[..., None] < rng.uniform(0.2, 0.8, (n_readers, 1, 2))).sum(-1)
    score = np.where(says_synthetic, confidence, -confidence).astype(float)
    truth = np.r_[np.zeros(n_real, bool), np.ones(n_synthetic, bool)]
    common = dict(tests=["all"], readers=list(range(n_readers)), cases=list(range(K)), truth=truth,
                  in_test=np.ones((1, K), bool))
    return (Design(ratings=score[None], **common), Design(ratings=says_synthetic[None].astype(float), **common))


def test_chance_test_keeps_its_size_when_readers_lean_towards_synthetic():
    rng = np.random.default_rng(7)
    n = 800
    rejections = {"auc": 0, "balanced_accuracy": 0}
    shares = []
    for _ in range(n):
        ordinal, binary = leaning_readers(rng)
        shares.append(binary.ratings.mean())
        for fom, design in (("auc", ordinal), ("balanced_accuracy", binary)):
            rejections[fom] += analysis_numbers(design, fom=fom)["tests"][0]["p_value"] < 0.05
    assert 0.85 < np.mean(shares) < 0.92  # the readers did lean
    for fom, count in rejections.items():
        assert count / n <= 0.07, (fom, count / n)  # issue 12: size <= 0.07 at alpha 0.05


def difference_rejection_rate(separation, n, seed) -> float:
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(n):
        design = simulate_study(rng, n_readers=6, n_negative=40, n_positive=60, separation=separation, paired=False)
        rejected += analysis_numbers(design)["differences"][0]["p_value"] < 0.05
    return rejected / n


def test_generator_difference_keeps_its_size_under_no_difference():
    n = 800
    rate = difference_rejection_rate((1.0, 1.0), n, seed=11)
    assert rate <= 0.05 + mc_band(0.05, n), rate


def test_generator_difference_has_power_under_a_large_difference():
    assert RoeMetz().population_auc(0.5) < 0.64 and RoeMetz().population_auc(1.8) > 0.88
    rate = difference_rejection_rate((0.5, 1.8), 300, seed=12)
    assert rate >= 0.9, rate
