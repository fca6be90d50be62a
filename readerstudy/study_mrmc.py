"""The verdict of a reader study by multi-reader multi-case (MRMC) analysis: can readers tell each
generator's images from real ones, are they equivalent to chance, and do generators differ?

Pure pandas/numpy (no Django), built on `readerstudy.mrmc.mrmc` (Obuchowski-Rockette model, random
readers and random images, Hillis degrees of freedom) and `readerstudy.planning`. It owns the study
design that the general MRMC code does not know about:

- the rating: each answer with its confidence is one ordinal score, "real" at the highest confidence
  lowest (1) to "synthetic" at the highest confidence highest (10 on a 1..5 scale); synthetic images
  are the positive class, so AUC 0.5 means the readers cannot tell the images apart;
- the partially paired design: every generator is one "test", and the real images are read under every
  test (they are the shared reference), while each synthetic image belongs to one test only;
- the fully crossed block that MRMC needs while a study is still running, by `mrmc.complete_ratings`'s
  rule (`mrmc.unfinished_rule()` in words, also in the `meta` table);
- the tables `mrmc`, `mrmc_difference`, `mrmc_components` and `verdict` of `stats.summarize`, and the
  `planning` table built from `mrmc_components` (separately: the equivalence power is an integral per
  evaluation, seconds per table, so it is not part of every summary).

Anything that cannot be estimated (no answers, one reader, one class) gives a row of NaN whose `method`
says why; nothing here raises on a study's data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from readerstudy import mrmc as mrmc_core
from readerstudy import planning

MEASURES = ("auc", "balanced_accuracy")
ALL = "all"
MRMC_COLUMNS = [
    "measure", "generator", "estimate", "ci_low", "ci_high", "se", "df", "p_value", "n_readers", "n_real",
    "n_synthetic", "equivalence_margin", "p_equivalence", "method",
]
DIFFERENCE_COLUMNS = ["measure", "generator_a", "generator_b", "difference", "ci_low", "ci_high", "se", "df", "p_value"]
COMPONENT_KEYS = ["var_error", "cov1", "cov2", "cov3", "var_tr", "var_r"]
COMPONENT_COLUMNS = ["measure", "analysis", "n_readers", "n_cases_per_test", *COMPONENT_KEYS]
PLANNING_COLUMNS = ["goal", "effect", "equivalence_margin", "alpha", "target_power", "n_readers", "n_images", "power",
                    "components_from", "note"]
VERDICT_COLUMNS = ["generator", "verdict", "auc", "auc_ci_low", "auc_ci_high", "balanced_accuracy",
                   "balanced_accuracy_ci_low", "balanced_accuracy_ci_high", "sentence"]
METHOD = "Obuchowski-Rockette MRMC, random readers and images, Hillis df, jackknife covariances"
RATINGS = {"auc": "rating: answer and confidence as one ordinal score", "balanced_accuracy": "rating: the answer"}
PLANNING_READERS = range(3, 26)
DEFAULT_PLANNING_EFFECT = 0.05


# --------------------------------------------------------------------------- ratings and design
def ratings_from_validated(df: pd.DataFrame) -> pd.DataFrame:
    """One MRMC rating per response of a frame from `stats.validate`.

    Columns `reader, case, generator, truth` (bool, synthetic), `rating` (ordinal: real at the highest
    confidence 1 .. real at the lowest, then synthetic at the lowest .. synthetic at the highest, 10 on a
    1..5 scale) and `said_synthetic` (0/1, the binary rating of balanced accuracy).
    """
    cols = ["reader", "case", "generator", "truth", "rating", "said_synthetic"]
    if len(df) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "rating" else object) for c in cols})
    conf = df["confidence"].to_numpy(float)
    lo, hi = conf.min(), conf.max()
    span = hi - lo + 1.0
    said = df["said_synthetic"].to_numpy(bool)
    rating = np.where(said, span + (conf - lo) + 1.0, hi - conf + 1.0)
    # Labels as categoricals of strings (as `validate` made them): grouping 10^5 rows by codes, not by text.
    return pd.DataFrame({
        "reader": _categorical_str(df["reader"]), "case": _categorical_str(df["image"]),
        "generator": _categorical_str(df["generator"]), "truth": df["synthetic"].to_numpy(bool),
        "rating": rating, "said_synthetic": said.astype(int),
    })


def _categorical_str(values: pd.Series) -> pd.Categorical:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Categorical(values).rename_categories([str(c) for c in values.cat.categories])
    return pd.Categorical(values.astype(str))


def complete_block(ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The fully crossed part of `ratings` by `mrmc.complete_ratings`'s rule at `WAITING_SHARE` (one
    test: the whole study). Returns (ratings, how many readers wait and images are left out)."""
    if len(ratings) == 0:
        return ratings, {"readers_waiting": 0, "images_left_out": 0}
    whole_study = ratings.assign(test=pd.Categorical.from_codes(np.zeros(len(ratings), dtype=np.int8), [ALL]))
    block, left_out = mrmc_core.complete_ratings(whole_study, min_share=mrmc_core.WAITING_SHARE)
    n_waiting = sum(1 for item in left_out if not isinstance(item, tuple))
    return block.drop(columns="test").reset_index(drop=True), {
        "readers_waiting": n_waiting, "images_left_out": int(ratings["case"].nunique() - block["case"].nunique())}


def generator_design(ratings: pd.DataFrame) -> pd.DataFrame:
    """The partially paired design: one test per generator, the real images read under every test."""
    synthetic = ratings[ratings["truth"]]
    real = ratings[~ratings["truth"]]
    parts = [synthetic.assign(test=synthetic["generator"])]
    parts += [real.assign(test=g) for g in sorted(synthetic["generator"].astype(str).unique())]
    design = pd.concat(parts, ignore_index=True)
    design["test"] = pd.Categorical(design["test"].astype(str))
    return design


def _fom_ratings(design: pd.DataFrame, measure: str) -> pd.DataFrame:
    rating = design["rating"] if measure == "auc" else design["said_synthetic"].astype(float)
    codes = {col: design[col].cat.codes.to_numpy() if isinstance(design[col].dtype, pd.CategoricalDtype)
             else design[col].to_numpy() for col in ("reader", "case")}
    return pd.DataFrame({**codes, "test": design["test"], "truth": design["truth"], "rating": rating})


# --------------------------------------------------------------------------- analysis
def _counts(design: pd.DataFrame) -> pd.DataFrame:
    """Readers, real and synthetic images per test of `design` (0 where none)."""
    g = design.groupby(["test", "truth"], observed=True)
    cases = g["case"].nunique().unstack(fill_value=0).reindex(columns=[False, True], fill_value=0)
    out = pd.DataFrame({"n_readers": design.groupby("test", observed=True)["reader"].nunique(), "n_real": cases[False],
                        "n_synthetic": cases[True]})
    return out.fillna(0).astype(int)


def _run(design: pd.DataFrame, measure: str, alpha: float) -> tuple[dict | None, str]:
    """mrmc() of `design`, or (None, why not) when the data cannot support it."""
    if len(design) == 0:
        return None, "no answers yet"
    if design["reader"].nunique() < 2:
        return None, "needs at least two readers who answered the same images"
    try:
        return mrmc_core.mrmc(_fom_ratings(design, measure), fom=measure, alpha=alpha), ""
    except ValueError as exc:
        return None, str(exc)


def _equivalence(row: dict, margin: float) -> float:
    if not np.isfinite([row["estimate"], row["se"], row["df"]]).all() or row["se"] <= 0:
        return np.nan
    return float(mrmc_core.equivalence_test(row["estimate"], row["se"], row["df"], null=0.5, margin=margin))


def mrmc_tables(
    ratings: pd.DataFrame, *, equivalence_margin: float = 0.05, alpha: float = 0.05,
) -> dict[str, pd.DataFrame]:
    """`mrmc`, `mrmc_difference`, `mrmc_components` and `verdict` for `ratings` (from
    `ratings_from_validated`), plus `mrmc_meta` (what was left out of the analysis)."""
    block, left = complete_block(ratings)
    everything = block.assign(test=pd.Categorical([ALL] * len(block)))
    by_generator = generator_design(block) if len(block) else everything.iloc[:0]
    generators = sorted(block.loc[block["truth"], "generator"].astype(str).unique()) if len(block) else []
    analyses = [(everything, [ALL], ALL, _counts(everything)),
                (by_generator, generators, "generators", _counts(by_generator))]
    rows, diffs, components = [], [], []
    for measure in MEASURES:
        method = f"{METHOD}; {RATINGS[measure]}"
        for design, tests, analysis, counts in analyses:
            result, why = _run(design, measure, alpha)
            if result is not None:
                by_test = result["tests"].set_index(result["tests"]["test"].astype(str))
                vc = result["variance_components"].iloc[0]
                n_cases = (counts["n_real"] + counts["n_synthetic"]).mean()
                components.append({"measure": measure, "analysis": analysis,
                                   "n_readers": design["reader"].nunique(), "n_cases_per_test": float(n_cases),
                                   **{k: float(vc.get(k, np.nan)) for k in COMPONENT_KEYS}})
                for _, d in result["differences"].iterrows():
                    diffs.append({"measure": measure, "generator_a": str(d["test_a"]), "generator_b": str(d["test_b"]),
                                  **{k: float(d[k]) for k in DIFFERENCE_COLUMNS[3:]}})
            for test in tests:
                n = counts.loc[test] if test in counts.index else {"n_readers": 0, "n_real": 0, "n_synthetic": 0}
                row = {"measure": measure, "generator": test, **{k: int(n[k]) for k in ("n_readers", "n_real",
                                                                                         "n_synthetic")},
                       "equivalence_margin": equivalence_margin, "method": method}
                if result is not None and test in by_test.index:
                    t = by_test.loc[test]
                    row.update({k: float(t[k]) for k in ("estimate", "ci_low", "ci_high", "se", "df", "p_value")})
                    row["p_equivalence"] = _equivalence(row, equivalence_margin)
                else:
                    row.update({k: np.nan for k in ("estimate", "ci_low", "ci_high", "se", "df", "p_value",
                                                    "p_equivalence")})
                    row["method"] = f"not estimable: {why or 'no answers for this generator'}"
                rows.append(row)
    table = pd.DataFrame(rows, columns=MRMC_COLUMNS)
    components = pd.DataFrame(components, columns=COMPONENT_COLUMNS)
    return {
        "mrmc": table,
        "mrmc_difference": pd.DataFrame(diffs, columns=DIFFERENCE_COLUMNS),
        "mrmc_components": components,
        "verdict": verdict_table(table, alpha=alpha),
        "mrmc_meta": pd.DataFrame({
            "key": ["mrmc_unfinished_rule", "mrmc_readers_waiting", "mrmc_images_left_out", "equivalence_margin",
                    "mrmc_alpha"],
            "value": pd.Series([mrmc_core.unfinished_rule(), left["readers_waiting"], left["images_left_out"],
                                equivalence_margin, alpha], dtype=object)}),
    }


# --------------------------------------------------------------------------- planning
def plan_sizes(
    *, components: dict, n_cases_pilot: int, goal: str, effect: float, equivalence_margin: float = 0.05,
    alpha: float = 0.05, target_power: float = 0.8, readers=PLANNING_READERS, max_images: int = 20000,
    source: str = "",
) -> pd.DataFrame:
    """Readers x images reaching `target_power` for one `goal` ("difference": an AUC difference of
    `effect` between two generators; "equivalence": equivalence to chance within the margin when the true
    AUC is 0.5 + `effect`), from OR variance `components` estimated on `n_cases_pilot` images.
    ValueError (from `planning`) on impossible components or settings."""
    sizes = planning.sample_size_table(
        components={k: float(components[k]) for k in COMPONENT_KEYS if k in components},
        n_cases_pilot=int(n_cases_pilot), effect=effect, alpha=alpha, target_power=target_power, goal=goal,
        margin=equivalence_margin, readers=readers, max_cases=max_images,
    ).rename(columns={"n_cases": "n_images"})
    base = {"goal": goal, "effect": effect, "equivalence_margin": equivalence_margin, "alpha": alpha,
            "target_power": target_power, "components_from": source}
    for key, value in base.items():
        sizes[key] = value
    sizes["note"] = np.where(sizes["n_images"].isna(), f"target power not reached within {max_images} images", "")
    return sizes.reindex(columns=PLANNING_COLUMNS)


def planning_table(
    components: pd.DataFrame, *, effect: float = DEFAULT_PLANNING_EFFECT, equivalence_margin: float = 0.05,
    alpha: float = 0.05, target_power: float = 0.8, readers=PLANNING_READERS,
) -> pd.DataFrame:
    """Readers x images for `target_power`: to detect an AUC difference of `effect` between two
    generators (needs the components of a study with two generators or more), and to show equivalence
    to chance within the margin when the true AUC is 0.5 (components of the `all` analysis).

    `n_images` counts the images of one comparison (the real images plus one generator's synthetic
    ones), in the pilot's proportion of real to synthetic.
    """
    parts = []
    for goal, analysis, size in (("difference", "generators", effect), ("equivalence", ALL, 0.0)):
        row = components_for(components, goal)
        base = {"goal": goal, "effect": size, "equivalence_margin": equivalence_margin, "alpha": alpha,
                "target_power": target_power, "components_from": ""}
        if row is None:
            why = ("needs a finished MRMC analysis of two generators or more" if goal == "difference"
                   else "needs a finished MRMC analysis (two readers or more, both classes)")
            parts.append(pd.DataFrame([{**base, "note": f"not planned: {why}"}]))
            continue
        try:
            parts.append(plan_sizes(
                components=row, n_cases_pilot=int(round(row["n_cases_per_test"])), goal=goal, effect=size,
                equivalence_margin=equivalence_margin, alpha=alpha, target_power=target_power, readers=readers,
                source=f"this study ({int(row['n_readers'])} readers, {analysis} analysis of AUC)"))
        except ValueError as exc:
            parts.append(pd.DataFrame([{**base, "note": f"not planned: {exc}"}]))
    return pd.concat(parts, ignore_index=True).reindex(columns=PLANNING_COLUMNS)


def components_for(components: pd.DataFrame, goal: str) -> dict | None:
    """The AUC variance components (with `n_readers`, `n_cases_per_test`) that `goal` plans from: the
    generators analysis for a difference, the `all` analysis for equivalence; None when not estimated."""
    analysis = "generators" if goal == "difference" else ALL
    part = components[(components["measure"] == "auc") & (components["analysis"] == analysis)]
    if part.empty:
        return None
    row = part.iloc[0].to_dict()
    needed = ["var_error", "cov2", "var_r"] + (["cov1", "cov3", "var_tr"] if goal == "difference" else [])
    return row if np.isfinite([row[k] for k in needed]).all() else None


# --------------------------------------------------------------------------- verdict
def _verdict(auc: pd.Series, alpha: float) -> str:
    if not np.isfinite(auc["estimate"]):
        return "not estimable"
    margin = auc["equivalence_margin"]
    equivalent = np.isfinite(auc["p_equivalence"]) and auc["p_equivalence"] < alpha
    if auc["p_value"] < alpha:
        side = "distinguishable from real" if auc["estimate"] > 0.5 else \
            "distinguishable from real: rated more real than the real images"
        return f"{side} (by less than the margin ±{margin:g})" if equivalent else side
    if equivalent:
        return f"equivalent to chance within ±{margin:g}"
    return "inconclusive"


def _sentence(generator: str, verdict: str, auc: pd.Series, alpha: float) -> str:
    who = "all synthetic images" if generator == ALL else f"images from {generator}"
    if verdict == "not estimable":
        return f"Nothing can be said yet about {who}: {auc['method'].removeprefix('not estimable: ')}."
    numbers = (f"MRMC AUC {auc['estimate']:.2f}, {100 * (1 - alpha):g}% CI {auc['ci_low']:.2f} to "
               f"{auc['ci_high']:.2f} ({int(auc['n_readers'])} readers, {int(auc['n_real'])} real and "
               f"{int(auc['n_synthetic'])} synthetic images)")
    if verdict.startswith("distinguishable"):
        return f"Readers could tell {who} from real ones: {numbers}, p = {auc['p_value']:.2g} against chance."
    if verdict.startswith("equivalent"):
        return (f"Readers could not tell {who} from real ones: {numbers}, equivalent to chance within "
                f"±{auc['equivalence_margin']:g} (p = {auc['p_equivalence']:.2g}).")
    return (f"Inconclusive for {who}: {numbers}; neither different from chance nor shown equivalent within "
            f"±{auc['equivalence_margin']:g}. More readers or images are needed (see planning).")


def verdict_table(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per generator (`all` first): the verdict in words, on the MRMC AUC, and both measures."""
    rows = []
    for generator in dict.fromkeys(table["generator"]):
        part = table[table["generator"] == generator].set_index("measure")
        if "auc" not in part.index:
            continue
        auc = part.loc["auc"]
        verdict = _verdict(auc, alpha)
        row = {"generator": generator, "verdict": verdict, "sentence": _sentence(generator, verdict, auc, alpha)}
        for measure in MEASURES:
            for key, col in (("", "estimate"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
                row[measure + key] = part.loc[measure, col] if measure in part.index else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
