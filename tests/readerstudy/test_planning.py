"""readerstudy.planning: published sample sizes for the VanDyke data, and power checked by simulation.

Published numbers: RJafroc's sample-size vignette (dpc10ster/RJafroc, "Illustration of
SsPowerGivenJK() / SsPowerTable() / SsSampleSizeKGivenJ()" on dataset02 = the VanDyke data,
FOM "Wilcoxon", RRRC, effect size = the observed difference -0.0438003, pilot of 114 cases). RJafroc
computes them from DBM (jackknife pseudovalue) variance components, which equal the OR jackknife
components of `mrmc()` (Hillis 2005), so the same numbers must come out. R printed 7 digits.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from readerstudy.mrmc import analysis_numbers, equivalence_test, mrmc
from readerstudy.planning import RoeMetz, power, sample_size_table, simulate_study

DATA = Path(__file__).parent / "data" / "VanDyke.csv"
EFFECT = 0.04380032  # |AUC(CINE) - AUC(SE)| in the VanDyke data


@pytest.fixture(scope="module")
def vandyke_components() -> dict:
    df = pd.read_csv(DATA, comment="#").rename(columns={"treatment": "test"})
    df["truth"] = df["truth"].astype(bool)
    return mrmc(df)["variance_components"].iloc[0].to_dict()


def test_power_matches_rjafroc(vandyke_components):
    def at(readers, cases):
        return power(components=vandyke_components, n_readers=readers, n_cases=cases, n_cases_pilot=114,
                     effect=EFFECT)

    assert at(6, 112) == pytest.approx(0.5555789, abs=1e-6)  # SsPowerGivenJK(J = 6, K = 112)
    assert at(10, 163) == pytest.approx(0.8015625, abs=1e-6)  # SsSampleSizeKGivenJ(J = 10)
    assert at(10, 236) == pytest.approx(0.9003501, abs=1e-6)  # the same with desiredPower = 0.9


def test_sample_size_table_matches_rjafroc(vandyke_components):
    table = sample_size_table(components=vandyke_components, n_cases_pilot=114, effect=EFFECT,
                              readers=range(3, 13), max_cases=2000)
    assert list(table.columns) == ["n_readers", "n_cases", "power"]
    assert table["n_readers"].tolist() == list(range(3, 13))
    # SsPowerTable: 3 readers need > 2000 cases, then 1089, 344, 251, 211, 188, 173, 163, 155, 149
    assert np.isnan(table["n_cases"].iloc[0]) and table["power"].iloc[0] < 0.8
    assert table["n_cases"].iloc[1:].tolist() == [1089, 344, 251, 211, 188, 173, 163, 155, 149]
    assert (table["power"].iloc[1:] >= 0.8).all()
    fewer = [power(components=vandyke_components, n_readers=r, n_cases=int(n) - 1, n_cases_pilot=114, effect=EFFECT)
             for r, n in zip(table["n_readers"].iloc[1:], table["n_cases"].iloc[1:])]
    assert max(fewer) < 0.8  # the least number of cases, not just enough


def test_ninety_percent_target(vandyke_components):
    table = sample_size_table(components=vandyke_components, n_cases_pilot=114, effect=EFFECT,
                              target_power=0.9, readers=[10])
    assert table["n_cases"].tolist() == [236]


def test_equivalence_table_needs_more_cases_for_a_tighter_margin_and_none_can_beat_the_margin():
    one_test = {"var_error": 1.0e-3, "cov2": 4e-4, "var_r": 1e-3}
    base = dict(components=one_test, n_cases_pilot=150, effect=0.0, readers=[5, 10], max_cases=5000)
    wide, tight = sample_size_table(**base, goal="equivalence", margin=0.1), sample_size_table(
        **base, goal="equivalence", margin=0.07)
    assert (tight["n_cases"] > wide["n_cases"]).all()
    assert (wide["power"] >= 0.8).all()
    # a true distance from 0.5 as large as the margin can never be shown inside it
    hopeless = sample_size_table(components=one_test, n_cases_pilot=150, effect=0.1, goal="equivalence",
                                 margin=0.1, readers=[5, 10], max_cases=5000)
    assert hopeless["n_cases"].isna().all() and (hopeless["power"] <= 0.5).all()


def test_power_grows_with_readers_cases_and_effect(vandyke_components):
    base = dict(components=vandyke_components, n_cases_pilot=114)
    assert power(**base, n_readers=5, n_cases=200, effect=0.05) < power(**base, n_readers=8, n_cases=200, effect=0.05)
    assert power(**base, n_readers=5, n_cases=200, effect=0.05) < power(**base, n_readers=5, n_cases=400, effect=0.05)
    assert power(**base, n_readers=5, n_cases=200, effect=0.03) < power(**base, n_readers=5, n_cases=200, effect=0.05)
    assert power(**base, n_readers=5, n_cases=200, effect=0.0) == pytest.approx(0.05)  # no effect: the size


def test_bad_planning_input_is_a_clear_error(vandyke_components):
    with pytest.raises(ValueError, match="unknown goal"):
        power(components=vandyke_components, n_readers=5, n_cases=100, n_cases_pilot=114, effect=0.05, goal="x")
    with pytest.raises(ValueError, match="missing cov1"):
        power(components={"var_error": 1e-3, "cov2": 1e-4, "cov3": 1e-4, "var_tr": 0, "var_r": 0},
              n_readers=5, n_cases=100, n_cases_pilot=114, effect=0.05)
    one_test = {"var_error": 1e-3, "cov1": math.nan, "cov2": 4e-4, "cov3": math.nan, "var_tr": math.nan,
                "var_r": 2e-3}
    with pytest.raises(ValueError, match="cov1 is nan"):  # one test's components cannot plan a difference
        power(components=one_test, n_readers=5, n_cases=100, n_cases_pilot=114, effect=0.05)
    assert 0 < power(components=one_test, n_readers=5, n_cases=100, n_cases_pilot=114, effect=0.0,
                     goal="equivalence", margin=0.1) < 1
    with pytest.raises(ValueError, match="at least 2"):
        power(components=vandyke_components, n_readers=1, n_cases=100, n_cases_pilot=114, effect=0.05)


# --------------------------------------------------------------------------- cross-check by simulation
KEYS = ("var_error", "cov1", "cov2", "cov3", "var_tr", "var_r")


def simulated(n, seed, decide, **design):
    """Empirical rejection rate of `decide` over n simulated studies, and the mean OR components."""
    rng = np.random.default_rng(seed)
    rejected, components = 0, []
    for _ in range(n):
        numbers = analysis_numbers(simulate_study(rng, **design))
        rejected += decide(numbers)
        components.append([numbers["components"][k] for k in KEYS])
    return rejected / n, dict(zip(KEYS, np.mean(components, axis=0)))


def test_difference_power_agrees_with_simulated_studies():
    n, design = 800, dict(n_readers=6, n_negative=40, n_positive=60, separation=(1.0, 1.4), paired=False)
    empirical, components = simulated(n, 3, lambda x: x["differences"][0]["p_value"] < 0.05, **design)
    model = RoeMetz()
    effect = model.population_auc(1.4) - model.population_auc(1.0)
    predicted = power(components=components, n_readers=6, n_cases=160, n_cases_pilot=160, effect=effect)
    assert 0.4 < predicted < 0.8  # a power the check can see both ways
    assert abs(empirical - predicted) <= 3 * math.sqrt(predicted * (1 - predicted) / n), (empirical, predicted)


def test_equivalence_power_agrees_with_simulated_studies():
    # readers who cannot tell (population AUC 0.5), 40 real and 110 synthetic images, margin 0.1
    def shown_equivalent(x):
        row = x["tests"][0]
        return equivalence_test(row["estimate"], row["se"], row["df"], margin=0.1) < 0.05

    n, design = 800, dict(n_readers=6, n_negative=40, n_positive=110, separation=(0.0,))
    empirical, components = simulated(n, 4, shown_equivalent, **design)
    predicted = power(components=components, n_readers=6, n_cases=150, n_cases_pilot=150, effect=0.0,
                      goal="equivalence", margin=0.1)
    assert 0.1 < predicted < 0.9
    # measured offline with 1,500 studies: 0.249 simulated vs 0.269 predicted; the AUC's case variance
    # shrinks as a reader's AUC moves away from 0.5, which the normal OR model leaves out
    assert abs(empirical - predicted) <= 3 * math.sqrt(predicted * (1 - predicted) / n), (empirical, predicted)


@pytest.mark.parametrize("n_readers, var_r, margin, effect", [(2, 5e-3, 0.1, 0.0), (5, 1e-3, 0.1, 0.02),
                                                              (10, 5e-3, 0.05, 0.01), (25, 1e-4, 0.05, 0.0)])
def test_equivalence_power_is_exact_under_the_or_model(n_readers, var_r, margin, effect):
    """Draw the reader-averaged AUC and the reader mean square straight from the one-test OR model and
    apply the two one-sided tests: the formula's numerical integration must agree."""
    from scipy import stats as sps

    c = {"var_error": 1e-3, "cov2": 4e-4, "var_r": var_r}
    r, n = n_readers, 200_000
    rng = np.random.default_rng(n_readers)
    sd_mean = math.sqrt((var_r + c["var_error"] + (r - 1) * c["cov2"]) / r)
    ms_r = (var_r + c["var_error"] - c["cov2"]) * rng.chisquare(r - 1, n) / (r - 1)
    estimate = 0.5 + effect + sd_mean * rng.standard_normal(n)
    se = np.sqrt(ms_r / r + c["cov2"])
    df = (ms_r + r * c["cov2"]) ** 2 / (ms_r**2 / (r - 1))
    p_lower, p_upper = sps.t.sf((estimate - 0.5 + margin) / se, df), sps.t.cdf((estimate - 0.5 - margin) / se, df)
    shown = np.maximum(p_lower, p_upper) < 0.05
    predicted = power(components=c, n_readers=r, n_cases=100, n_cases_pilot=100, effect=effect,
                      goal="equivalence", margin=margin)
    assert abs(shown.mean() - predicted) <= 3 * math.sqrt(predicted * (1 - predicted) / n) + 1e-4
