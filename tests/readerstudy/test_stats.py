"""readerstudy.stats against independent computations: statsmodels, scipy, scikit-learn and hand-worked cases."""
import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, mannwhitneyu
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from readerstudy import stats
from readerstudy.stats import summarize


def make_responses(n_readers=6, n_images=30, seed=0, p_correct=0.65, missing=0.0) -> pd.DataFrame:
    """Random but reproducible responses: half real images, synthetic split over two generators, two labels."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n_images)
    truth = np.where(idx < n_images // 2, "real", "synthetic")
    generator = np.where(truth == "real", "real", np.where(idx % 2, "diffusion", "progan"))
    label = np.where(idx % 3 == 0, "A", "B")
    r = np.repeat(np.arange(n_readers), n_images)
    i = np.tile(idx, n_readers)
    correct = rng.random(len(r)) < p_correct
    answer = np.where(correct, truth[i], np.where(truth[i] == "real", "synthetic", "real"))
    df = pd.DataFrame({
        "reader": [f"R{x:02d}" for x in r], "image": [f"img{x:03d}" for x in i], "truth": truth[i],
        "generator": generator[i], "label": label[i], "answer": answer,
        "confidence": rng.integers(1, 6, len(r)), "seconds": rng.gamma(2.0, 3.0, len(r)),
    })
    if missing:
        df = df[rng.random(len(df)) >= missing].reset_index(drop=True)
    return df


def signed_score(df: pd.DataFrame) -> np.ndarray:
    """The ordinal score written independently: -confidence for 'real', +confidence for 'synthetic'."""
    return np.where(df["answer"] == "synthetic", df["confidence"], -df["confidence"]).astype(float)


@pytest.fixture(scope="module")
def data():
    return make_responses(missing=0.1)


@pytest.fixture(scope="module")
def out(data):
    return summarize(data, n_bootstrap=200, seed=3)


# ---------------------------------------------------------------- accuracy, intervals, binomial test
@pytest.mark.parametrize("interval,method", [("wilson", "wilson"), ("clopper-pearson", "beta")])
def test_per_reader_accuracy_interval_and_binomial_test(data, interval, method):
    table = summarize(data, interval=interval, n_bootstrap=0)["per_reader"].set_index("reader")
    for reader, rows in data.groupby("reader"):
        k = int((rows["truth"] == rows["answer"]).sum())
        n = len(rows)
        low, high = proportion_confint(k, n, alpha=0.05, method=method)
        got = table.loc[reader]
        assert got["n"] == n and got["correct"] == k
        assert got["accuracy"] == pytest.approx(k / n)
        assert got["accuracy_ci_low"] == pytest.approx(low) and got["accuracy_ci_high"] == pytest.approx(high)
        assert got["p_value"] == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_binomial_test_half_matches_scipy_on_a_grid():
    ks, ns = zip(*[(k, n) for n in (1, 2, 3, 10, 11, 50, 201) for k in range(n + 1)])
    got = stats.binomial_test_half(np.array(ks), np.array(ns))
    want = [binomtest(k, n, 0.5).pvalue for k, n in zip(ks, ns)]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.isnan(stats.binomial_test_half(0, 0))


def test_sensitivity_specificity_share_called_real(data, out):
    table = out["per_reader"].set_index("reader")
    for reader, rows in data.groupby("reader"):
        syn, real = rows[rows["truth"] == "synthetic"], rows[rows["truth"] == "real"]
        tp, tn = int((syn["answer"] == "synthetic").sum()), int((real["answer"] == "real").sum())
        got = table.loc[reader]
        assert got["sensitivity"] == pytest.approx(tp / len(syn))
        assert got["specificity"] == pytest.approx(tn / len(real))
        low, high = proportion_confint(tp, len(syn), method="wilson")
        assert (got["sensitivity_ci_low"], got["sensitivity_ci_high"]) == pytest.approx((low, high))
        low, high = proportion_confint(tn, len(real), method="wilson")
        assert (got["specificity_ci_low"], got["specificity_ci_high"]) == pytest.approx((low, high))
        assert got["share_called_real"] == pytest.approx((rows["answer"] == "real").mean())


def test_pooled_and_per_generator_and_per_label(data, out):
    pooled = out["pooled"].iloc[0]
    k = int((data["truth"] == data["answer"]).sum())
    assert pooled["n"] == len(data) and pooled["correct"] == k
    assert pooled["n_readers"] == data["reader"].nunique() and pooled["n_images"] == data["image"].nunique()
    assert pooled["p_value"] == pytest.approx(binomtest(k, len(data)).pvalue, rel=1e-9)
    gen = out["per_generator"].set_index("generator")
    for name, rows in data.groupby("generator"):
        called_real = int((rows["answer"] == "real").sum())
        assert gen.loc[name, "share_called_real"] == pytest.approx(called_real / len(rows))
        low, high = proportion_confint(called_real, len(rows), method="wilson")
        assert gen.loc[name, "share_called_real_ci_low"] == pytest.approx(low)
        assert gen.loc[name, "n_images"] == rows["image"].nunique()
    lab = out["per_label"].set_index("label")
    for name, rows in data.groupby("label"):
        assert lab.loc[name, "accuracy"] == pytest.approx((rows["truth"] == rows["answer"]).mean())


# ---------------------------------------------------------------- ROC AUC
def test_auc_per_reader_pooled_generator_label_match_sklearn(data, out):
    y = (data["truth"] == "synthetic").to_numpy()
    score = signed_score(data)
    assert out["pooled"]["auc"].iloc[0] == pytest.approx(roc_auc_score(y, score))
    table = out["per_reader"].set_index("reader")
    for reader, rows in data.groupby("reader"):
        want = roc_auc_score(rows["truth"] == "synthetic", signed_score(rows))
        assert table.loc[reader, "auc"] == pytest.approx(want)
        assert table.loc[reader, "auc_ci_low"] <= table.loc[reader, "auc"] <= table.loc[reader, "auc_ci_high"] or \
            np.isclose(table.loc[reader, "auc_ci_low"], table.loc[reader, "auc"])
    gen = out["per_generator"].set_index("generator")
    for name in ("diffusion", "progan"):
        rows = data[(data["generator"] == name) | (data["truth"] == "real")]
        assert gen.loc[name, "auc"] == pytest.approx(roc_auc_score(rows["truth"] == "synthetic", signed_score(rows)))
    assert np.isnan(gen.loc["real", "auc"])
    lab = out["per_label"].set_index("label")
    for name, rows in data.groupby("label"):
        assert lab.loc[name, "auc"] == pytest.approx(roc_auc_score(rows["truth"] == "synthetic", signed_score(rows)))


def test_roc_curve_points_give_the_auc(out):
    curve = out["roc"][out["roc"]["scope"] == "pooled"]
    assert curve["fpr"].iloc[0] == 0 and curve["tpr"].iloc[-1] == pytest.approx(1.0)
    assert (np.diff(curve["fpr"]) >= 0).all() and (np.diff(curve["tpr"]) >= 0).all()
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(out["pooled"]["auc"].iloc[0])


def test_bootstrap_counts_equal_the_explicitly_resampled_data(data):
    """The histogram bootstrap equals sklearn's AUC on the resampled responses (as sample weights)."""
    df = stats.validate(data)
    design = stats._Design(df)
    w_reader, w_image = design.draw_weights(5, seed=11)
    counts, pos, neg = design.bootstrap(w_reader, w_image, chunk=2)
    syn_groups = (design.groups["truth"] == "synthetic").to_numpy()
    y = df["synthetic"].to_numpy()
    score = signed_score(df)
    for b in range(5):
        weight = w_reader[b, design.r] * w_image[b, design.i]
        got = stats.auc_from_histograms(counts[b, syn_groups].sum(0), counts[b, ~syn_groups].sum(0))
        assert got == pytest.approx(roc_auc_score(y, score, sample_weight=weight))
        for k in (0, design.R - 1):
            mine = design.r == k
            want = roc_auc_score(y[mine], score[mine], sample_weight=w_image[b, design.i][mine])
            assert stats.auc_from_histograms(pos[b, k], neg[b, k]) == pytest.approx(want)
    # Images are resampled within their group: every group keeps its size.
    for g in range(design.G):
        members = design.g_of_image == g
        assert (w_image[:, members].sum(1) == members.sum()).all()
    assert (w_reader.sum(1) == design.R).all()


def test_bootstrap_is_seeded_and_golden(data):
    a = summarize(data, n_bootstrap=100, seed=5)["pooled"]
    b = summarize(data, n_bootstrap=100, seed=5)["pooled"]
    c = summarize(data, n_bootstrap=100, seed=6)["pooled"]
    pd.testing.assert_frame_equal(a, b)
    assert (a["auc_ci_low"].iloc[0], a["auc_ci_high"].iloc[0]) != (c["auc_ci_low"].iloc[0], c["auc_ci_high"].iloc[0])
    # Golden values (seed 5, 100 resamples): a change here means the bootstrap draws changed.
    assert a["auc"].iloc[0] == pytest.approx(GOLDEN_AUC, abs=1e-12)
    assert (a["auc_ci_low"].iloc[0], a["auc_ci_high"].iloc[0]) == pytest.approx(GOLDEN_CI, abs=1e-12)


GOLDEN_AUC = 0.6207023214810461
GOLDEN_CI = (0.492914565346786, 0.7479637367302346)


def test_strong_readers_have_a_narrow_interval_above_one_half():
    df = make_responses(n_readers=8, n_images=80, p_correct=0.95, seed=2)
    pooled = summarize(df, n_bootstrap=300)["pooled"].iloc[0]
    assert 0.5 < pooled["auc_ci_low"] <= pooled["auc"] <= pooled["auc_ci_high"] <= 1.0


# ---------------------------------------------------------------- confidence, calibration, time
def test_confidence_tables_and_mann_whitney(data, out):
    conf = out["confidence"].set_index(["grouping", "group"])
    for truth, rows in data.groupby("truth"):
        assert conf.loc[("truth", truth), "mean"] == pytest.approx(rows["confidence"].mean())
        assert conf.loc[("truth", truth), "median"] == pytest.approx(rows["confidence"].median())
    correct = data["truth"] == data["answer"]
    assert conf.loc[("correctness", "incorrect"), "mean"] == pytest.approx(data.loc[~correct, "confidence"].mean())
    for (t, a), rows in data.groupby(["truth", "answer"]):
        assert conf.loc[("truth_answer", f"{t}/{a}"), "n"] == len(rows)
    tests = out["tests"].set_index("group_a")
    want = mannwhitneyu(data.loc[data["truth"] == "synthetic", "confidence"], data.loc[data["truth"] == "real", "confidence"])
    assert tests.loc["synthetic", "u_statistic"] == pytest.approx(want.statistic)
    assert tests.loc["synthetic", "p_value"] == pytest.approx(want.pvalue)
    want = mannwhitneyu(data.loc[correct, "confidence"], data.loc[~correct, "confidence"])
    assert tests.loc["correct", "p_value"] == pytest.approx(want.pvalue)


def test_calibration_and_reading_time(data, out):
    cal = out["calibration"].set_index("confidence")
    for level, rows in data.groupby("confidence"):
        k = int((rows["truth"] == rows["answer"]).sum())
        assert cal.loc[level, "n"] == len(rows) and cal.loc[level, "accuracy"] == pytest.approx(k / len(rows))
        assert cal.loc[level, "accuracy_ci_high"] == pytest.approx(proportion_confint(k, len(rows), method="wilson")[1])
    rt = out["reading_time"].set_index(["grouping", "group"])
    for truth, rows in data.groupby("truth"):
        assert rt.loc[("truth", truth), "median_seconds"] == pytest.approx(rows["seconds"].median())
    correct = data["truth"] == data["answer"]
    assert rt.loc[("correctness", "correct"), "median_seconds"] == pytest.approx(data.loc[correct, "seconds"].median())


def test_per_image_share_called_real(data, out):
    table = out["per_image"].set_index("image")
    for image, rows in data.groupby("image"):
        assert table.loc[image, "n_readers"] == len(rows)
        assert table.loc[image, "share_called_real"] == pytest.approx((rows["answer"] == "real").mean())
    # Sorted so that the synthetic images that fooled most readers come first among the synthetic ones.
    syn = out["per_image"][out["per_image"]["truth"] == "synthetic"]["share_called_real"].to_numpy()
    assert (np.diff(syn) <= 0).all()


# ---------------------------------------------------------------- agreement
def test_pairwise_cohen_kappa_matches_sklearn_with_missing(data, out):
    pairs = out["pairwise_kappa"]
    assert len(pairs) == 6 * 5 // 2
    wide = data.pivot(index="image", columns="reader", values="answer")
    for row in pairs.itertuples():
        both = wide[[row.reader_a, row.reader_b]].dropna()
        assert row.n_items == len(both)
        assert row.kappa == pytest.approx(cohen_kappa_score(both[row.reader_a], both[row.reader_b]))
    agreement = out["agreement"].set_index("measure")
    assert agreement.loc["cohen_kappa_mean", "value"] == pytest.approx(pairs["kappa"].mean())


def hand_fleiss(table: np.ndarray) -> float:
    """Fleiss (1971) written out: table is items x categories counts, equal raters per item."""
    n = table.sum(1)[0]
    p_j = table.sum(0) / table.sum()
    p_i = ((table ** 2).sum(1) - n) / (n * (n - 1))
    return (p_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum())


def hand_krippendorff_nominal(values: np.ndarray) -> float:
    """Krippendorff's alpha, nominal, from the coincidence matrix (raters x units, NaN missing)."""
    cats = np.unique(values[~np.isnan(values)])
    o = np.zeros((len(cats), len(cats)))
    for unit in values.T:
        v = unit[~np.isnan(unit)]
        if len(v) < 2:
            continue
        for a in range(len(v)):
            for b in range(len(v)):
                if a != b:
                    o[np.searchsorted(cats, v[a]), np.searchsorted(cats, v[b])] += 1 / (len(v) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    d_o = o.sum() - np.trace(o)
    d_e = (n * n - (n_c ** 2).sum()) / (n - 1)
    return 1 - d_o / d_e


def test_fleiss_over_items_all_rated_and_krippendorff_with_missing():
    # 3 readers, 5 images; reader C skipped img4, so Fleiss uses img0..img3 only.
    answers = {
        "A": ["synthetic", "real", "real", "synthetic", "real"],
        "B": ["synthetic", "real", "synthetic", "synthetic", "synthetic"],
        "C": ["real", "real", "synthetic", "synthetic", None],
    }
    rows = []
    for reader, ans in answers.items():
        for k, a in enumerate(ans):
            if a:
                rows.append({"reader": reader, "image": f"img{k}", "truth": "synthetic" if k % 2 == 0 else "real",
                             "generator": "g" if k % 2 == 0 else "real", "label": "", "answer": a,
                             "confidence": 3, "seconds": 1.0})
    df = pd.DataFrame(rows)
    agreement = summarize(df, n_bootstrap=0)["agreement"].set_index("measure")
    # Counts (real, synthetic) over img0..img3: (1,2), (3,0), (1,2), (0,3).
    table = np.array([[1, 2], [3, 0], [1, 2], [0, 3]])
    assert agreement.loc["fleiss_kappa", "n_items"] == 4
    assert agreement.loc["fleiss_kappa", "value"] == pytest.approx(hand_fleiss(table))
    # By hand: P_i = (1/3, 1, 1/3, 1), mean 2/3; p = (5/12, 7/12), Pe = 74/144; kappa = (2/3 - 74/144) / (70/144).
    assert agreement.loc["fleiss_kappa", "value"] == pytest.approx((2 / 3 - 74 / 144) / (70 / 144))
    values = np.array([[1, 0, 0, 1, 0], [1, 0, 1, 1, 1], [0, 0, 1, 1, np.nan]], dtype=float)
    assert agreement.loc["krippendorff_alpha", "value"] == pytest.approx(hand_krippendorff_nominal(values))
    assert agreement.loc["krippendorff_alpha", "value"] == pytest.approx(
        krippendorff.alpha(reliability_data=values, level_of_measurement="nominal"))


def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing(data, out):
    wide = data.assign(v=(data["answer"] == "synthetic").astype(float)).pivot(index="reader", columns="image", values="v")
    want = krippendorff.alpha(reliability_data=wide.to_numpy(), level_of_measurement="nominal")
    got = out["agreement"].set_index("measure").loc["krippendorff_alpha", "value"]
    assert got == pytest.approx(want)


# ---------------------------------------------------------------- degenerate input
def test_empty_study_gives_tables_with_reasons():
    for empty in (pd.DataFrame(), make_responses().iloc[:0]):
        out = summarize(empty)
        pooled = out["pooled"].iloc[0]
        assert pooled["n"] == 0 and np.isnan(pooled["accuracy"]) and "no responses yet" in pooled["note"]
        assert len(out["per_reader"]) == 0 and len(out["per_image"]) == 0
        assert out["agreement"]["value"].isna().all()


def test_single_reader_single_class_and_perfect_reader():
    df = make_responses(n_readers=1, n_images=12, p_correct=1.0)
    out = summarize(df, n_bootstrap=50)
    reader = out["per_reader"].iloc[0]
    assert reader["accuracy"] == 1.0 and reader["auc"] == 1.0 and "every answer right" in reader["note"]
    assert reader["accuracy_ci_high"] == pytest.approx(1.0)
    assert reader["p_value"] == pytest.approx(binomtest(12, 12).pvalue)
    agreement = out["agreement"].set_index("measure")
    assert agreement["value"].isna().all() and (agreement["note"] == "needs at least two readers").all()
    assert len(out["pairwise_kappa"]) == 0

    real_only = make_responses(n_readers=3, n_images=12)
    real_only = real_only[real_only["truth"] == "real"]
    out = summarize(real_only, n_bootstrap=50)
    pooled = out["pooled"].iloc[0]
    assert np.isnan(pooled["sensitivity"]) and np.isnan(pooled["auc"]) and np.isnan(pooled["auc_ci_low"])
    assert "no synthetic images" in pooled["note"] and "AUC needs both" in pooled["note"]
    assert out["tests"]["note"].str.contains("no synthetic responses").any()
    assert len(out["roc"]) == 0


def test_unanimous_answers_and_running_study():
    df = make_responses(n_readers=3, n_images=10)
    df["answer"] = "real"
    out = summarize(df, n_bootstrap=20)
    agreement = out["agreement"].set_index("measure")
    assert np.isnan(agreement.loc["fleiss_kappa", "value"]) and "one category" in agreement.loc["fleiss_kappa", "note"]
    assert np.isnan(agreement.loc["krippendorff_alpha", "value"])
    assert out["pairwise_kappa"]["kappa"].isna().all()
    # Still defined: with one answer only the confidence orders the responses.
    assert out["pooled"]["auc"].iloc[0] == pytest.approx(roc_auc_score(df["truth"] == "synthetic", signed_score(df)))
    # A study still running: readers at different places, one image rated by nobody yet.
    running = make_responses(n_readers=4, n_images=20).groupby("reader").head(7)
    running = running.iloc[: len(running) - 3]
    out = summarize(running, n_bootstrap=20)
    assert out["agreement"].set_index("measure").loc["fleiss_kappa", "n_items"] == 4


def test_bad_input_names_the_problem():
    df = make_responses(n_readers=2, n_images=4)
    with pytest.raises(ValueError, match="missing column.*confidence"):
        summarize(df.drop(columns=["confidence"]))
    bad = df.copy()
    bad.loc[3, "answer"] = "maybe"
    with pytest.raises(ValueError, match="row 3: answer='maybe'"):
        summarize(bad)
    with pytest.raises(ValueError, match="twice"):
        summarize(pd.concat([df, df.iloc[[0]]]))
    with pytest.raises(ValueError, match="interval"):
        summarize(df, interval="agresti")
    mixed = df.copy()
    mixed.loc[(mixed["image"] == "img000") & (mixed["reader"] == "R01"), "truth"] = "synthetic"
    with pytest.raises(ValueError, match="image 'img000' has more than one truth"):
        summarize(mixed)


def test_repeat_consistency():
    pairs = pd.DataFrame({
        "reader": ["R1", "R1", "R1", "R2"], "answer_first": ["real", "synthetic", "real", "real"],
        "answer_repeat": ["real", "real", "real", "real"], "confidence_first": [3, 4, 5, 1],
        "confidence_repeat": [3, 2, 4, 1],
    })
    table = stats.repeat_consistency(pairs).set_index("reader")
    assert table.loc["R1", "n_pairs"] == 3 and table.loc["R1", "agreement"] == pytest.approx(2 / 3)
    assert table.loc["R1", "mean_abs_confidence_change"] == pytest.approx(1.0)
    assert table.loc["R1", "agreement_ci_low"] == pytest.approx(proportion_confint(2, 3, method="wilson")[0])
    assert table.loc["R2", "agreement"] == 1.0
    assert len(stats.repeat_consistency(pairs.iloc[:0])) == 0


def test_stats_exports_and_plots_import_without_django():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, readerstudy.stats, readerstudy.exports, readerstudy.plots\n"
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')]\n"
        "assert not bad, bad[:5]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
