"""The MRMC verdict of a reader study (readerstudy.study_mrmc through stats.summarize): ratings, design,
tables, verdict words, planning and what a study with too few answers still says."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from readerstudy import mrmc as mrmc_core
from readerstudy import planning, stats, study_mrmc
from readerstudy.stats import summarize
from tests.readerstudy.test_stats import make_responses, signed_score


def discriminating(n_readers=6, n_images=60, seed=0, skill=2.0) -> pd.DataFrame:
    """Readers whose confidence follows a latent score: synthetic images score `skill` higher."""
    rng = np.random.default_rng(seed)
    frame = make_responses(n_readers=n_readers, n_images=n_images, seed=seed)
    syn = (frame["truth"] == "synthetic").to_numpy()
    latent = rng.normal(size=len(frame)) + skill * syn
    frame["answer"] = np.where(latent > skill / 2, "synthetic", "real")
    frame["confidence"] = np.clip(np.abs(latent - skill / 2) * 2 + 1, 1, 5).astype(int)
    return frame


def test_ratings_map_answer_and_confidence_to_one_to_ten():
    rows = pd.DataFrame({
        "reader": "R1", "image": [f"i{k}" for k in range(10)], "truth": ["real"] * 5 + ["synthetic"] * 5,
        "generator": ["real"] * 5 + ["diffusion"] * 5, "label": "A",
        "answer": ["real"] * 5 + ["synthetic"] * 5, "confidence": [5, 4, 3, 2, 1, 1, 2, 3, 4, 5], "seconds": 1.0,
    })
    ratings = stats.mrmc_ratings(rows)
    assert ratings["rating"].tolist() == list(range(1, 11))  # real/5 .. real/1, synthetic/1 .. synthetic/5
    assert ratings["said_synthetic"].tolist() == [0] * 5 + [1] * 5
    assert ratings["truth"].tolist() == [False] * 5 + [True] * 5
    # The same order as the descriptive ROC score, on random data.
    data = make_responses(seed=4)
    got = stats.mrmc_ratings(data)["rating"].to_numpy()
    want = signed_score(data)
    assert (np.sign(np.subtract.outer(got, got)) == np.sign(np.subtract.outer(want, want))).all()


def test_partially_paired_design_shares_the_real_images():
    ratings = stats.mrmc_ratings(make_responses(n_readers=2, n_images=20))
    design = study_mrmc.generator_design(ratings)
    for test in ("diffusion", "progan"):
        part = design[design["test"] == test]
        assert set(part.loc[~part["truth"], "case"]) == set(ratings.loc[~ratings["truth"], "case"])
        assert set(part.loc[part["truth"], "generator"]) == {test}
    assert len(design) == len(ratings) + (~ratings["truth"]).sum()  # real rows once more per extra generator


@pytest.fixture(scope="module")
def strong():
    data = discriminating()
    return data, summarize(data, n_bootstrap=0, equivalence_margin=0.07)


def test_mrmc_table_columns_and_reader_averaged_estimates(strong):
    data, out = strong
    table = out["mrmc"]
    assert list(table.columns) == [
        "measure", "generator", "estimate", "ci_low", "ci_high", "se", "df", "p_value", "n_readers", "n_real",
        "n_synthetic", "equivalence_margin", "p_equivalence", "method"]
    assert list(zip(table["measure"], table["generator"])) == [
        (m, g) for m in ("auc", "balanced_accuracy") for g in ("all", "diffusion", "progan")]
    assert (table["equivalence_margin"] == 0.07).all()
    t = table.set_index(["measure", "generator"])
    y = data["truth"] == "synthetic"
    for gen, rows in (("all", data), ("diffusion", data[(data["generator"] == "diffusion") | ~y]),
                      ("progan", data[(data["generator"] == "progan") | ~y])):
        per_reader = [roc_auc_score(r["truth"] == "synthetic", signed_score(r)) for _, r in rows.groupby("reader")]
        assert t.loc[("auc", gen), "estimate"] == pytest.approx(np.mean(per_reader))
        ba = [((r["answer"] == r["truth"])[r["truth"] == "synthetic"].mean()
               + (r["answer"] == r["truth"])[r["truth"] == "real"].mean()) / 2 for _, r in rows.groupby("reader")]
        assert t.loc[("balanced_accuracy", gen), "estimate"] == pytest.approx(np.mean(ba))
        assert t.loc[("auc", gen), "n_readers"] == 6 and t.loc[("auc", gen), "n_real"] == 30
    assert t.loc[("auc", "diffusion"), "n_synthetic"] == 15 and t.loc[("auc", "all"), "n_synthetic"] == 30
    row = t.loc[("auc", "all")]
    assert row["ci_low"] < row["estimate"] < row["ci_high"] and row["p_value"] < 1e-3


def test_difference_table_is_a_minus_b(strong):
    _, out = strong
    diff = out["mrmc_difference"]
    assert list(diff.columns) == ["measure", "generator_a", "generator_b", "difference", "ci_low", "ci_high", "se",
                                  "df", "p_value"]
    est = out["mrmc"].set_index(["measure", "generator"])["estimate"]
    for _, d in diff.iterrows():
        assert d["difference"] == pytest.approx(est[(d["measure"], d["generator_a"])]
                                                - est[(d["measure"], d["generator_b"])])
        assert d["ci_low"] < d["difference"] < d["ci_high"]
    assert set(diff["measure"]) == {"auc", "balanced_accuracy"}


def test_verdict_of_readers_who_tell_the_images_apart(strong):
    _, out = strong
    verdict = out["verdict"].set_index("generator")
    assert list(verdict.index) == ["all", "diffusion", "progan"]
    assert verdict.loc["all", "verdict"] == "distinguishable from real"
    assert verdict.loc["all", "sentence"].startswith("Readers could tell all synthetic images from real ones: MRMC AUC")
    assert verdict.loc["all", "auc"] == out["mrmc"]["estimate"].iloc[0]


def _row(estimate, p, p_eq, margin=0.05, **extra):
    return {"measure": "auc", "generator": "g", "estimate": estimate, "ci_low": estimate - 0.1,
            "ci_high": estimate + 0.1, "se": 0.05, "df": 10.0, "p_value": p, "n_readers": 5, "n_real": 20,
            "n_synthetic": 20, "equivalence_margin": margin, "p_equivalence": p_eq, "method": "m", **extra}


@pytest.mark.parametrize("estimate,p,p_eq,want", [
    (0.70, 0.001, 0.9, "distinguishable from real"),
    (0.30, 0.001, 0.9, "distinguishable from real: rated more real than the real images"),
    (0.52, 0.01, 0.01, "distinguishable from real (by less than the margin ±0.05)"),
    (0.50, 0.9, 0.01, "equivalent to chance within ±0.05"),
    (0.53, 0.3, 0.2, "inconclusive"),
])
def test_verdict_words(estimate, p, p_eq, want):
    table = pd.DataFrame([_row(estimate, p, p_eq)])
    assert study_mrmc.verdict_table(table)["verdict"].iloc[0] == want


def test_equivalence_with_many_readers_who_guess():
    rng = np.random.default_rng(1)
    data = make_responses(n_readers=12, n_images=300, seed=2, p_correct=0.5)
    data["confidence"] = rng.integers(1, 6, len(data))
    out = summarize(data, n_bootstrap=0, equivalence_margin=0.1)
    row = out["mrmc"].set_index(["measure", "generator"]).loc[("auc", "all")]
    assert abs(row["estimate"] - 0.5) < 0.05 and row["p_equivalence"] < 0.05
    assert out["verdict"]["verdict"].iloc[0] == "equivalent to chance within ±0.1"
    meta = dict(zip(out["meta"]["key"], out["meta"]["value"]))
    assert meta["equivalence_margin"] == 0.1


def test_no_answers_and_one_reader_say_what_can_be_said():
    empty = summarize(make_responses().iloc[:0], n_bootstrap=0)
    assert empty["mrmc"]["method"].str.startswith("not estimable: no answers yet").all()
    assert empty["verdict"]["sentence"].iloc[0].startswith("Nothing can be said yet")
    assert study_mrmc.planning_table(empty["mrmc_components"])["note"].str.startswith("not planned").all()
    assert empty["mrmc_difference"].empty and empty["quick_answers"].empty
    data = make_responses(n_readers=1)
    one = summarize(data, n_bootstrap=0)
    assert one["mrmc"]["estimate"].isna().all()
    assert one["mrmc"]["method"].str.contains("at least two readers").all()
    assert (one["mrmc"]["n_readers"] == 1).all()


def test_a_reader_who_has_just_started_waits_and_unanswered_images_are_left_out():
    data = discriminating(n_readers=4, n_images=40)
    late = data[data["reader"] == "R03"].head(5)
    early = data[data["reader"] != "R03"]
    early = early[~((early["reader"] == "R00") & (early["image"] == "img039"))]  # one image not yet answered
    out = summarize(pd.concat([early, late]), n_bootstrap=0)
    meta = dict(zip(out["meta"]["key"], out["meta"]["value"]))
    assert meta["mrmc_readers_waiting"] == 1 and meta["mrmc_images_left_out"] == 1
    row = out["mrmc"].iloc[0]
    assert row["n_readers"] == 3 and row["n_real"] + row["n_synthetic"] == 39 and np.isfinite(row["estimate"])


def test_the_study_trims_by_the_one_rule_of_the_mrmc_core_and_says_it_in_meta():
    data = discriminating(n_readers=4, n_images=40)
    data = data[~((data["reader"] == "R03") & data["image"].isin([f"img{k:03d}" for k in range(25)]))]
    ratings = stats.mrmc_ratings(data)
    block, left = study_mrmc.complete_block(ratings)
    whole = ratings.assign(test="all")
    core, dropped = mrmc_core.complete_ratings(whole, min_share=mrmc_core.WAITING_SHARE)
    assert dropped == ["R03"] and left == {"readers_waiting": 1, "images_left_out": 0}
    assert sorted(block["reader"].astype(str).unique()) == sorted(core["reader"].astype(str).unique())
    meta = dict(zip(*summarize(data, n_bootstrap=0)["meta"][["key", "value"]].T.to_numpy()))
    assert meta["mrmc_unfinished_rule"] == mrmc_core.unfinished_rule() and "half" not in meta["mrmc_unfinished_rule"]
    assert "50% of the answers of the busiest reader" in meta["mrmc_unfinished_rule"]


def test_planning_from_the_study(strong):
    _, out = strong
    readers = [4, 8, 16]
    plan = study_mrmc.planning_table(out["mrmc_components"], equivalence_margin=0.1, readers=readers)
    assert list(plan.columns) == study_mrmc.PLANNING_COLUMNS
    assert set(plan["goal"]) == {"difference", "equivalence"}
    diff = plan[plan["goal"] == "difference"]
    assert diff["n_readers"].tolist() == readers
    components = out["mrmc_components"].set_index(["measure", "analysis"]).loc[("auc", "generators")]
    want = planning.sample_size_table(components=components[study_mrmc.COMPONENT_KEYS].to_dict(),
                                      n_cases_pilot=int(components["n_cases_per_test"]), effect=0.05, readers=readers)
    np.testing.assert_array_equal(diff["n_images"].to_numpy(), want["n_cases"].to_numpy())
    reached = diff.dropna(subset=["n_images"])
    assert (reached["power"] >= 0.8).all()
    assert reached["n_images"].is_monotonic_decreasing  # more readers never need more images
    assert (diff["components_from"].str.contains("6 readers")).all()


def test_quick_answers_counted_per_reader_and_excluded_on_request():
    data = make_responses(n_readers=3, n_images=20, seed=5).assign(seconds=2.0)
    data.loc[data.index[:4], "seconds"] = 0.2  # four quick answers of R00
    data.loc[data.index[25], "seconds"] = np.nan  # a missing time is not quick
    out = summarize(data, n_bootstrap=0)
    quick = out["quick_answers"].set_index("reader")
    assert quick.loc["R00", "n_quick"] == 4 and quick.loc["R01", "n_quick"] == 0
    assert quick.loc["R00", "share_quick"] == pytest.approx(4 / 20)
    assert out["pooled"]["n"].iloc[0] == 60
    dropped = summarize(data, n_bootstrap=0, exclude_quick=True)
    assert dropped["pooled"]["n"].iloc[0] == 56
    meta = dict(zip(dropped["meta"]["key"], dropped["meta"]["value"]))
    assert meta["exclude_quick_answers"] is True and meta["n_quick_excluded"] == 4
    assert dropped["quick_answers"]["excluded"].all()


def test_descriptive_tables_are_labelled_honestly(strong):
    _, out = strong
    gen = out["per_generator"]
    assert "p_value" not in gen.columns  # one class per row: no test against 0.5
    synthetic = gen[gen["truth"] == "synthetic"]
    assert synthetic["note"].str.contains("fooled rate").all()
    assert gen["note"].str.contains("ignores reader and image clustering").all()
    assert "ignoring reader and image clustering" in out["pooled"]["note"].iloc[0]
    assert out["per_reader"]["note"].str.contains("ignores image clustering").all()
    mrmc_auc = out["mrmc"][out["mrmc"]["measure"] == "auc"].set_index("generator")
    for row in synthetic.itertuples():
        assert (row.mrmc_auc, row.mrmc_auc_ci_low, row.mrmc_auc_ci_high) == tuple(
            mrmc_auc.loc[row.generator, ["estimate", "ci_low", "ci_high"]])
    assert gen.loc[gen["truth"] == "real", "mrmc_auc"].isna().all()


def test_bad_margin_is_refused():
    with pytest.raises(ValueError, match="equivalence_margin"):
        summarize(make_responses(n_readers=2), equivalence_margin=0.7)


def test_readers_who_lean_towards_synthetic_without_telling_apart_are_not_called_distinguishing():
    """The issue's example: 40 real and 110 synthetic images, readers who say "synthetic" 90% of the time
    whatever the image. Pooled accuracy looks significant; the MRMC verdict does not fall for it."""
    rng = np.random.default_rng(12)
    n_readers, n_real, n_synthetic = 8, 40, 110
    truth = np.array(["real"] * n_real + ["synthetic"] * n_synthetic)
    r, i = np.repeat(np.arange(n_readers), len(truth)), np.tile(np.arange(len(truth)), n_readers)
    data = pd.DataFrame({
        "reader": [f"R{x}" for x in r], "image": i, "truth": truth[i], "generator": np.where(truth[i] == "real", "real",
                                                                                            "diffusion"),
        "label": "A", "answer": np.where(rng.random(len(r)) < 0.9, "synthetic", "real"),
        "confidence": rng.integers(1, 6, len(r)), "seconds": 3.0,
    })
    out = summarize(data, n_bootstrap=0)
    assert out["pooled"]["p_value"].iloc[0] < 1e-6  # the descriptive test, fooled by the lean
    auc = out["mrmc"].set_index(["measure", "generator"]).loc[("auc", "all")]
    assert abs(auc["estimate"] - 0.5) < 0.05 and auc["p_value"] > 0.05
    assert out["verdict"]["verdict"].iloc[0] in ("inconclusive", "equivalent to chance within ±0.05")
