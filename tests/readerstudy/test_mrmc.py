"""readerstudy.mrmc: closed forms against brute force, partially paired designs, bad input, equivalence.

The published-output (golden) checks are in test_mrmc_golden.py, the simulations in
test_mrmc_simulation.py.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from readerstudy.mrmc import complete_ratings, design_from_ratings, equivalence_test, mrmc, reader_foms


def partially_paired(seed=0, n_readers=4, n_real=12, n_synthetic=(10, 8)) -> pd.DataFrame:
    """Two generators sharing the real images (negatives); each has its own synthetic images."""
    rng = np.random.default_rng(seed)
    real = [f"real{k}" for k in range(n_real)]
    rows = []
    for r in range(n_readers):
        real_ratings = rng.integers(1, 7, n_real)  # a reader rates each real image once, for every generator
        for g, n in zip(("diffusion", "progan"), n_synthetic):
            ratings = list(real_ratings) + list(rng.integers(1, 7, n) + 1)
            for case, rating in zip(real + [f"{g}{k}" for k in range(n)], ratings):
                rows.append({"reader": f"R{r}", "case": case, "test": g, "truth": not case.startswith("real"),
                             "rating": int(rating)})
    return pd.DataFrame(rows)


def fom_brute(df: pd.DataFrame, fom: str) -> float:
    truth, rating = df["truth"].to_numpy(), df["rating"].to_numpy()
    if fom == "auc":
        return roc_auc_score(truth, rating)
    sens = rating[truth].mean()
    spec = 1 - rating[~truth].mean()
    return (sens + spec) / 2


def brute_jackknife(df: pd.DataFrame, fom: str) -> tuple[np.ndarray, np.ndarray]:
    """K refits, leaving out one case of the whole study at a time (the textbook jackknife)."""
    tests, readers, cases = sorted(df.test.unique()), sorted(df.reader.unique()), sorted(df.case.unique())
    theta = np.array([[fom_brute(df[(df.test == t) & (df.reader == r)], fom) for r in readers] for t in tests])
    loo = np.empty((len(cases), len(tests) * len(readers)))
    for k, case in enumerate(cases):
        rest = df[df.case != case]
        loo[k] = [fom_brute(rest[(rest.test == t) & (rest.reader == r)], fom) for t in tests for r in readers]
    dev = loo - loo.mean(axis=0)
    K = len(cases)
    return theta, (K - 1) / K * dev.T @ dev


@pytest.mark.parametrize("fom", ["auc", "balanced_accuracy"])
def test_closed_form_jackknife_equals_refitting_in_a_partially_paired_design(fom):
    df = partially_paired(seed=1)
    if fom == "balanced_accuracy":
        df["rating"] = (df["rating"] >= 4).astype(int)
    theta, cov = reader_foms(design_from_ratings(df), fom=fom)
    theta_brute, cov_brute = brute_jackknife(df, fom)
    np.testing.assert_allclose(theta, theta_brute, atol=1e-12)
    np.testing.assert_allclose(cov.reshape(cov_brute.shape), cov_brute, atol=1e-12)


def test_shared_real_images_make_the_generators_covary():
    design = design_from_ratings(partially_paired(seed=2, n_readers=6, n_real=30, n_synthetic=(20, 20)))
    cov = reader_foms(design)[1]
    same_reader_other_test = np.array([cov[0, r, 1, r] for r in range(6)])
    assert (same_reader_other_test > 0).all()  # cov1 comes only from the shared real images
    result = mrmc(partially_paired(seed=2, n_readers=6, n_real=30, n_synthetic=(20, 20)))
    tests = result["tests"].set_index("test")
    assert tests.loc["diffusion", ["n_positive", "n_negative"]].tolist() == [20, 30]
    assert result["variance_components"].iloc[0]["n_cases"] == 70


def test_tests_row_is_the_single_test_analysis_against_the_null():
    df = partially_paired(seed=3, n_readers=5)
    result = mrmc(df, null=0.5)
    row = result["tests"].set_index("test").loc["progan"]
    alone = mrmc(df[df.test == "progan"], null=0.5)
    # analysed alone the jackknife runs over that test's cases only, hence a different (K-1)/K factor
    theta = result["readers"].query("test == 'progan'")["estimate"].to_numpy()
    assert row["estimate"] == pytest.approx(theta.mean())
    assert row["ms_r"] == pytest.approx(np.var(theta, ddof=1))
    se = np.sqrt(row["ms_r"] / 5 + max(row["cov2"], 0))
    df_h = (row["ms_r"] + 5 * max(row["cov2"], 0)) ** 2 / (row["ms_r"] ** 2 / 4)
    assert row["se"] == pytest.approx(se)
    assert row["df"] == pytest.approx(df_h)
    assert row["t"] == pytest.approx((row["estimate"] - 0.5) / se)
    assert row["p_value"] == pytest.approx(2 * sps.t.sf(abs(row["t"]), df_h))
    assert alone["tests"].iloc[0]["estimate"] == pytest.approx(row["estimate"])
    assert alone["differences"].empty and alone["global"].empty
    assert np.isnan(alone["variance_components"].iloc[0]["var_tr"])


def test_delong_and_sklearn_agree_on_reader_aucs():
    df = partially_paired(seed=4, n_synthetic=(10, 10))
    df["case"] = df["case"].str.replace("progan", "diffusion")  # both tests read on the same cases
    theta, _ = reader_foms(design_from_ratings(df), covariance="delong")
    for t, test in enumerate(sorted(df.test.unique())):
        for r, reader in enumerate(sorted(df.reader.unique())):
            sub = df[(df.test == test) & (df.reader == reader)]
            assert theta[t, r] == pytest.approx(roc_auc_score(sub.truth, sub.rating))


def test_three_tests_give_every_pair_and_a_global_test():
    df = partially_paired(seed=5)
    third = df[df.test == "diffusion"].assign(test="stylegan", case=lambda d: d.case.str.replace("diffusion", "sg"))
    result = mrmc(pd.concat([df, third]))
    pairs = result["differences"][["test_a", "test_b"]].apply(tuple, axis=1).tolist()
    assert pairs == [("diffusion", "progan"), ("diffusion", "stylegan"), ("progan", "stylegan")]
    assert result["global"].iloc[0]["df1"] == 2


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[d.reader == "R0"], "at least 2 readers"),
    (lambda d: d[~((d.test == "progan") & d.truth)], "no positive cases"),
    (lambda d: d[~((d.test == "progan") & ~d.truth)], "no negative cases"),
    (lambda d: d.drop(index=d.index[(d.reader == "R1") & (d.case == "real3") & (d.test == "diffusion")]),
     "missing, e.g. reader 'R1' did not rate case 'real3'"),
    (lambda d: d[~((d.reader == "R2") & (d.test == "progan"))], "rated no case under this test"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "times; each reader rates each case once"),
    (lambda d: d.assign(truth=np.where(d.index == 0, ~d.truth, d.truth)), "has both truth values"),
    (lambda d: d.drop(columns="truth"), "missing column(s) truth"),
    (lambda d: d.assign(rating=np.where(d.index == 4, np.nan, d.rating)), "column 'rating' is empty in 1 row"),
    (lambda d: d.iloc[:0], "no rows"),
])
def test_bad_input_is_a_clear_error(mutate, message):
    with pytest.raises(ValueError, match=pytest.importorskip("re").escape(message)):
        mrmc(mutate(partially_paired(seed=6)))


def test_bad_options_are_clear_errors():
    df = partially_paired(seed=7)
    with pytest.raises(ValueError, match="unknown fom 'accuracy'"):
        mrmc(df, fom="accuracy")
    with pytest.raises(ValueError, match="unknown covariance"):
        mrmc(df, covariance="bootstrap")
    with pytest.raises(ValueError, match="same cases"):
        mrmc(df, covariance="delong")
    with pytest.raises(ValueError, match="AUC only"):
        mrmc(df.assign(rating=(df.rating > 3).astype(int)), fom="balanced_accuracy", covariance="delong")
    with pytest.raises(ValueError, match="binary rating"):
        mrmc(df, fom="balanced_accuracy")


def test_equivalence_test_is_the_larger_one_sided_p():
    est, se, df = 0.52, 0.02, 12.0
    lower = sps.t.sf((est - 0.45) / se, df)  # H0: AUC <= 0.45
    upper = sps.t.cdf((est - 0.55) / se, df)  # H0: AUC >= 0.55
    assert equivalence_test(est, se, df, null=0.5, margin=0.05) == pytest.approx(max(lower, upper))
    df_ = partially_paired(seed=8)
    row = mrmc(df_, margin=0.1)["tests"].iloc[0]
    assert row["equivalence_margin"] == 0.1
    assert row["p_equivalence"] == equivalence_test(row["estimate"], row["se"], row["df"], margin=0.1)
    assert np.isnan(mrmc(df_)["tests"].iloc[0]["p_equivalence"])  # not asked for
    assert equivalence_test(0.5, 0.005, 30, margin=0.05) < 1e-6  # tight interval at chance: equivalent
    assert equivalence_test(0.5, 0.2, 5, margin=0.05) > 0.3  # wide interval: not shown
    assert equivalence_test(0.7, 0.01, 30, margin=0.05) > 0.99  # clearly distinguishable
    with pytest.raises(ValueError, match="margin"):
        equivalence_test(0.5, 0.1, 10, margin=0)


def test_complete_ratings_keeps_what_mrmc_can_analyse():
    df = partially_paired(seed=9, n_readers=4)
    unfinished = df.drop(index=df.index[(df.reader == "R3") & (df.case.isin(["real1", "progan2"]))])
    with pytest.raises(ValueError, match="missing"):
        mrmc(unfinished)
    by_reader, dropped_readers = complete_ratings(unfinished, drop="readers")
    assert dropped_readers == ["R3"] and set(by_reader.reader) == {"R0", "R1", "R2"}
    assert len(mrmc(by_reader)["readers"]) == 6
    by_case, dropped_cases = complete_ratings(unfinished, drop="cases")
    assert sorted(dropped_cases) == [("diffusion", "real1"), ("progan", "progan2"), ("progan", "real1")]
    assert mrmc(by_case)["tests"]["n_readers"].tolist() == [4, 4]
    assert complete_ratings(df)[1] == [] and len(complete_ratings(df)[0]) == len(df)


def test_complete_ratings_lets_readers_under_a_share_of_the_busiest_wait_then_drops_cases():
    df = partially_paired(seed=9, n_readers=4)
    r3 = df.index[df.reader == "R3"]
    started = df.drop(index=r3[len(r3) // 4:])  # R3 has a quarter of the others' ratings
    started = started.drop(index=started.index[(started.reader == "R0") & (started.case == "real1")])
    kept, left_out = complete_ratings(started, min_share=0.5)
    assert left_out == ["R3", ("diffusion", "real1"), ("progan", "real1")]
    assert set(kept.reader) == {"R0", "R1", "R2"} and "real1" not in set(kept.case)
    assert mrmc(kept)["tests"]["n_readers"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="min_share"):
        complete_ratings(df, min_share=1.5)
