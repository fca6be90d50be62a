"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette with Hillis degrees of freedom.

Pure numpy/pandas/scipy (no Django). Owns the question "is a test's reader-averaged figure of
merit (FOM) different from chance, from another test's, or equivalent to chance?" when readers and
cases are both random samples. `mrmc(ratings)` takes one row per rating (`reader, case, test,
truth, rating`) and returns the tables `tests`, `differences`, `global`, `variance_components` and
`readers`; its numbers equal those of R's MRMCaov
(`summary(mrmc(empirical_auc(truth, rating), test, reader, case))`, also with `cov = DeLong` and
with `binary_sens`) on the published VanDyke example (tests/readerstudy/test_mrmc_golden.py).
FOMs: "auc" (empirical, ties count half), "balanced_accuracy", "sensitivity", "specificity" (the
last three from a 0/1 rating). `single_test` (one test against a null value, e.g. AUC 0.5) makes
the rows of `tests`; `equivalence_test` is the two one-sided tests against null +/- margin.
Intervals of a single test are clipped to [0, 1], as MRMCaov does. Missing ratings are an error;
`complete_ratings` cuts an unfinished study down to what can be analysed and says what it dropped.

The method (Obuchowski & Rockette 1995; Hillis 2007, 2008; Hillis 2014's marginal-mean view):

1. one FOM per test and reader, `theta[t, r]`;
2. the error covariance of those FOMs over random cases, by the jackknife over *every* case in the
   study (a case absent from a test leaves that test's FOMs unchanged, which is how partially
   paired designs, e.g. generators sharing the real images, are handled) or, for the AUC of a
   design where every test was read on the same cases, by DeLong's method;
3. the OR error variance and covariances (`var_error`, `cov1` same reader/different test, `cov2`
   different reader/same test, `cov3` different reader and test) as averages of that matrix;
4. the mean squares of `theta`, the F test of equal tests with Hillis's denominator
   `MS(T:R) + r * max(cov2 - cov3, 0)` and its Satterthwaite-type df, pairwise differences with the
   same denominator, and each test alone: `se^2 = MS(R)/r + max(cov2, 0)`, df
   `(MS(R) + r * max(cov2, 0))^2 / (MS(R)^2 / (r - 1))`.

Speed: the AUC jackknife uses the structural-component (placement value) form. Leaving out
positive case i gives `(n1 * AUC - V10_i) / (n1 - 1)`, leaving out negative j gives
`(n0 * AUC - V01_j) / (n0 - 1)`, where the placement values come from mid-ranks: O(K log K) per
reader, vectorised over readers, instead of K refits.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.stats import rankdata

COLUMNS = ("reader", "case", "test", "truth", "rating")
FOMS = ("auc", "balanced_accuracy", "sensitivity", "specificity")
COVARIANCES = ("jackknife", "delong")
TEST_COLUMNS = ["test", "estimate", "se", "df", "ci_low", "ci_high", "null", "t", "p_value",
                "equivalence_margin", "p_equivalence", "n_readers", "n_cases", "n_positive", "n_negative",
                "ms_r", "cov2"]
DIFFERENCE_COLUMNS = ["test_a", "test_b", "difference", "se", "df", "ci_low", "ci_high", "t", "p_value"]
GLOBAL_COLUMNS = ["F", "df1", "df2", "p_value", "ms_t", "ms_tr", "denominator"]
COMPONENT_COLUMNS = ["var_error", "cov1", "cov2", "cov3", "var_tr", "var_r",
                     "ms_t", "ms_r", "ms_tr", "n_tests", "n_readers", "n_cases"]
READER_COLUMNS = ["test", "reader", "estimate", "se"]


# --------------------------------------------------------------------------- the design as arrays
@dataclass(frozen=True)
class Design:
    """Ratings as arrays: `ratings[t, r, k]` (NaN where case k is not in test t), `truth[k]`."""

    tests: list
    readers: list
    cases: list
    ratings: np.ndarray  # (T, R, K) float
    truth: np.ndarray  # (K,) bool
    in_test: np.ndarray  # (T, K) bool


def _levels(values: pd.Series) -> tuple[list, np.ndarray]:
    """Labels in sorted order where they sort (as R's factor levels), else first appearance; codes."""
    uniques = pd.unique(values)
    try:
        uniques = sorted(uniques)
    except TypeError:
        uniques = list(uniques)
    codes = pd.Index(uniques).get_indexer(values)
    return list(uniques), codes


def _as_bool_truth(truth: pd.Series) -> np.ndarray:
    if truth.dtype == bool:
        return truth.to_numpy()
    values = pd.unique(truth)
    if not set(values.tolist()) <= {0, 1, True, False}:
        raise ValueError(f"ratings: column 'truth' must be boolean (True = positive) or 0/1; "
                         f"found {sorted(map(repr, values.tolist()))[:5]}")
    return truth.to_numpy().astype(bool)


def design_from_ratings(ratings: pd.DataFrame) -> Design:
    """Check the long table and turn it into arrays; every problem is a ValueError that names it."""
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError("ratings must be a pandas DataFrame with columns " + ", ".join(COLUMNS))
    missing = [c for c in COLUMNS if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings: missing column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})")
    if ratings.empty:
        raise ValueError("ratings: no rows")
    for column in COLUMNS:
        bad = ratings[column].isna()
        if bad.any():
            raise ValueError(f"ratings: column '{column}' is empty in {int(bad.sum())} row(s), "
                             f"first at row {ratings.index[bad.to_numpy()][0]!r}")
    try:
        rating = pd.to_numeric(ratings["rating"]).to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ratings: column 'rating' must be numeric ({exc})") from None
    truth_rows = _as_bool_truth(ratings["truth"])
    tests, t_code = _levels(ratings["test"])
    readers, r_code = _levels(ratings["reader"])
    cases, k_code = _levels(ratings["case"])
    T, R, K = len(tests), len(readers), len(cases)

    cell = (t_code * R + r_code) * K + k_code
    counts = np.bincount(cell, minlength=T * R * K)
    if counts.max() > 1:
        first = int(np.flatnonzero(counts > 1)[0])
        t, rest = divmod(first, R * K)
        r, k = divmod(rest, K)
        raise ValueError(f"ratings: reader {readers[r]!r} rated case {cases[k]!r} under test {tests[t]!r} "
                         f"{int(counts[first])} times; each reader rates each case once per test")

    truth = np.zeros(K, dtype=bool)
    truth[k_code] = truth_rows
    conflict = truth[k_code] != truth_rows
    if conflict.any():
        row = int(np.flatnonzero(conflict)[0])
        raise ValueError(f"ratings: case {cases[k_code[row]]!r} has both truth values; truth is a property of the case")

    if R < 2:
        raise ValueError(f"MRMC analysis needs at least 2 readers; got 1 ({readers[0]!r}). "
                         "Reader variability cannot be estimated from one reader.")
    values = np.full(T * R * K, np.nan)
    values[cell] = rating
    values = values.reshape(T, R, K)
    present = ~np.isnan(values)
    in_test = present.any(axis=1)  # (T, K)
    for t, test in enumerate(tests):
        read = present[t].any(axis=1)
        if not read.all():
            absent = [readers[r] for r in np.flatnonzero(~read)]
            raise ValueError(f"test {test!r}: reader(s) {absent[:5]!r} rated no case under this test; "
                             "every reader must read every test")
        holes = in_test[t][None, :] & ~present[t]
        if holes.any():
            r, k = np.argwhere(holes)[0]
            raise ValueError(f"test {test!r}: {int(holes.sum())} reader x case rating(s) missing, e.g. reader "
                             f"{readers[r]!r} did not rate case {cases[k]!r}; within a test every reader must "
                             "rate every case of that test")
    return Design(tests=tests, readers=readers, cases=cases, ratings=values, truth=truth, in_test=in_test)


WAITING_SHARE = 0.5  # a running study: readers under half the answers of the busiest reader wait


def complete_ratings(
    ratings: pd.DataFrame, *, min_share: float = 1.0, drop: str | None = None,
) -> tuple[pd.DataFrame, list]:
    """The part of an unfinished study that `mrmc()` can analyse: every reader rated every case of a test.

    One rule, in two steps: (1) a reader who has fewer ratings than `min_share` times those of the
    busiest reader is left out (waits); (2) test by test, a case that some remaining reader of that test
    left unrated is left out. `min_share=1` keeps only the readers who rated as much as the busiest one
    (every case is kept when one reader finished); `min_share=0` keeps every reader, so a reader who
    stopped early costs many cases; a running study uses `WAITING_SHARE` (`unfinished_rule` says it in
    words). `drop="readers"` and `drop="cases"` name the two ends (min_share 1 and 0).

    Returns the kept rows and what was left out: the readers, then the (test, case) pairs, so that a
    results page can say what was left out and why.
    """
    if drop is not None:
        if drop not in ("readers", "cases"):
            raise ValueError(f"drop must be 'readers' or 'cases'; got {drop!r}")
        min_share = 1.0 if drop == "readers" else 0.0
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be between 0 and 1; got {min_share!r}")
    if len(ratings) == 0:
        return ratings, []
    # Integer codes throughout: a running study's 10^5 ratings are trimmed on every results page.
    reader, readers = pd.factorize(ratings["reader"], sort=True)
    per_reader = np.bincount(reader, minlength=len(readers))
    waiting = per_reader < min_share * per_reader.max()
    kept = ratings[~waiting[reader]]
    test, tests = pd.factorize(kept["test"], sort=True)
    case, cases = pd.factorize(kept["case"], sort=True)
    reader = reader[~waiting[reader]]
    n_c = len(cases)
    test_case = test.astype(np.int64) * n_c + case
    rated = np.zeros((len(tests) * n_c, len(readers)), dtype=bool)  # who rated what (a rating twice: once)
    rated[test_case, reader] = True
    read_test = np.zeros((len(tests), len(readers)), dtype=bool)
    read_test[test, reader] = True
    readers_per_test_case = rated.sum(axis=1)
    short = (readers_per_test_case > 0) & (readers_per_test_case < np.repeat(read_test.sum(axis=1), n_c))
    if short.any():
        kept = kept[~short[test_case]]
    t, c = np.divmod(np.flatnonzero(short), n_c)
    left_out = list(zip(np.asarray(tests, dtype=object)[t].tolist(), np.asarray(cases, dtype=object)[c].tolist()))
    return kept, np.asarray(readers, dtype=object)[waiting].tolist() + left_out


def unfinished_rule(min_share: float = WAITING_SHARE) -> str:
    """`complete_ratings`'s rule in words, for results pages and exports."""
    share = "every answer" if min_share >= 1 else f"{min_share:.0%} of the answers"
    return (f"readers with under {share} of the busiest reader wait until they have answered more; "
            "images not yet answered by every remaining reader are left out")


# --------------------------------------------------------------------------- reader FOMs and their jackknife
def _check_classes(test, n_pos: int, n_neg: int, need_pos: bool = True, need_neg: bool = True) -> None:
    for needed, n, name in ((need_pos, n_pos, "positive"), (need_neg, n_neg, "negative")):
        if needed and n == 0:
            raise ValueError(f"test {test!r} has no {name} cases; its figure of merit is undefined")
        if needed and n == 1:
            raise ValueError(f"test {test!r} has only 1 {name} case; at least 2 are needed to estimate "
                             "the variance over cases")


def placement_values(x: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical AUC per row of x (readers x cases) and DeLong's placement values, via mid-ranks.

    V10[r, i] = P(positive i rated above a negative) (ties count half), V01[r, j] = P(a positive rated
    above negative j); AUC = mean V10 = mean V01.
    """
    n1, n0 = int(positive.sum()), int((~positive).sum())
    rank_all = rankdata(x, axis=1)
    rank_pos = rankdata(x[:, positive], axis=1)
    rank_neg = rankdata(x[:, ~positive], axis=1)
    v10 = (rank_all[:, positive] - rank_pos) / n0
    v01 = (n1 - (rank_all[:, ~positive] - rank_neg)) / n1
    return v10.mean(axis=1), v10, v01


def _binary(x: np.ndarray, test) -> np.ndarray:
    ok = (x == 0) | (x == 1)
    if not ok.all():
        raise ValueError(f"test {test!r}: balanced accuracy, sensitivity and specificity need a binary rating "
                         f"(1 = called positive, 0 = called negative); found {np.unique(x[~ok])[:5].tolist()}")
    return x.astype(float)


def _fom_and_leave_one_out(x: np.ndarray, positive: np.ndarray, fom: str, test) -> tuple[np.ndarray, np.ndarray]:
    """FOM per reader (R,) and its value with each case left out (R, K_t), in closed form."""
    n1, n0 = int(positive.sum()), int((~positive).sum())
    loo = np.empty_like(x, dtype=float)
    if fom == "auc":
        theta, v10, v01 = placement_values(x, positive)
        loo[:, positive] = (n1 * theta[:, None] - v10) / (n1 - 1)
        loo[:, ~positive] = (n0 * theta[:, None] - v01) / (n0 - 1)
        return theta, loo
    b = _binary(x, test)
    hits = b[:, positive].sum(axis=1)  # positives called positive
    rejections = (1 - b[:, ~positive]).sum(axis=1)  # negatives called negative
    if fom == "sensitivity":
        theta = hits / n1
        loo[:, positive] = (hits[:, None] - b[:, positive]) / (n1 - 1)
        return theta, loo[:, positive]
    if fom == "specificity":
        theta = rejections / n0
        loo[:, ~positive] = (rejections[:, None] - (1 - b[:, ~positive])) / (n0 - 1)
        return theta, loo[:, ~positive]
    sens, spec = hits / n1, rejections / n0
    theta = (sens + spec) / 2
    loo[:, positive] = ((hits[:, None] - b[:, positive]) / (n1 - 1) + spec[:, None]) / 2
    loo[:, ~positive] = (sens[:, None] + (rejections[:, None] - (1 - b[:, ~positive])) / (n0 - 1)) / 2
    return theta, loo


def _relevant(design: Design, fom: str) -> np.ndarray:
    """Cases the FOM depends on: sensitivity looks at positives only, specificity at negatives only
    (as MRMCaov's binary_sens/binary_spec, whose jackknife runs over those cases alone)."""
    if fom == "sensitivity":
        return design.truth
    if fom == "specificity":
        return ~design.truth
    return np.ones(len(design.cases), dtype=bool)


def reader_foms(design: Design, *, fom: str = "auc", covariance: str = "jackknife") -> tuple[np.ndarray, np.ndarray]:
    """`theta[t, r]` and the covariance of the FOMs over cases, shaped (T, R, T, R)."""
    if fom not in FOMS:
        raise ValueError(f"unknown fom {fom!r}; choose one of {', '.join(FOMS)}")
    if covariance not in COVARIANCES:
        raise ValueError(f"unknown covariance {covariance!r}; choose one of {', '.join(COVARIANCES)}")
    if covariance == "delong":
        return _delong(design, fom)
    T, R = len(design.tests), len(design.readers)
    relevant = _relevant(design, fom)
    K = int(relevant.sum())
    theta = np.empty((T, R))
    loo = np.empty((T, R, K))
    for t, test in enumerate(design.tests):
        cols = design.in_test[t]
        positive = design.truth[cols]
        _check_classes(test, int(positive.sum()), int((~positive).sum()),
                       need_pos=fom != "specificity", need_neg=fom != "sensitivity")
        theta[t], values = _fom_and_leave_one_out(design.ratings[t][:, cols], positive, fom, test)
        loo[t] = theta[t][:, None]  # a case this test never saw leaves its FOMs unchanged
        loo[t][:, (cols & relevant)[relevant]] = values
    deviations = (loo - loo.mean(axis=2, keepdims=True)).reshape(T * R, K)
    cov = (K - 1) / K * (deviations @ deviations.T)
    return theta, cov.reshape(T, R, T, R)


def _delong(design: Design, fom: str) -> tuple[np.ndarray, np.ndarray]:
    if fom != "auc":
        raise ValueError(f"covariance 'delong' is for the AUC only (fom {fom!r}); use 'jackknife'")
    if not design.in_test.all():
        raise ValueError("covariance 'delong' needs every test read on the same cases (a factorial design); "
                         "use 'jackknife' for partially paired designs")
    T, R = len(design.tests), len(design.readers)
    positive = design.truth
    n1, n0 = int(positive.sum()), int((~positive).sum())
    for test in design.tests:
        _check_classes(test, n1, n0)
    theta, v10, v01 = placement_values(design.ratings.reshape(T * R, -1), positive)
    c10 = v10 - v10.mean(axis=1, keepdims=True)
    c01 = v01 - v01.mean(axis=1, keepdims=True)
    cov = (c10 @ c10.T) / ((n1 - 1) * n1) + (c01 @ c01.T) / ((n0 - 1) * n0)
    return theta.reshape(T, R), cov.reshape(T, R, T, R)


# --------------------------------------------------------------------------- the OR / Hillis analysis
def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else np.inf


def _t_statistic(difference: float, se: float) -> float:
    """difference / se; with no variance at all, infinite unless the difference is 0 too."""
    if se > 0:
        return float(difference / se)
    return float(np.sign(difference) * np.inf) if difference != 0 else 0.0


def single_test(theta: np.ndarray, cov: np.ndarray, *, alpha: float = 0.05, null: float = 0.5) -> dict:
    """One test analysed alone (random readers and cases), tested against `null`.

    theta: the readers' FOMs (R,); cov: their error covariance over cases (R, R).
    Returns estimate, se, df, ci_low, ci_high (clipped to [0, 1] as MRMCaov does, the FOMs being
    proportions), t and the two-sided p_value against `null`, and the ingredients ms_r and cov2.
    """
    theta = np.asarray(theta, dtype=float)
    R = theta.size
    if R < 2:
        raise ValueError(f"MRMC analysis needs at least 2 readers; got {R}")
    ms_r = float(np.var(theta, ddof=1))
    off = ~np.eye(R, dtype=bool)
    cov2 = float(np.asarray(cov)[off].mean())
    case_part = R * max(cov2, 0.0)
    se = float(np.sqrt(ms_r / R + max(cov2, 0.0)))
    df = _ratio((ms_r + case_part) ** 2, ms_r**2 / (R - 1))
    estimate = float(theta.mean())
    half = sps.t.ppf(1 - alpha / 2, df) * se
    t = _t_statistic(estimate - null, se)
    p = float(2 * sps.t.sf(abs(t), df))
    return {"estimate": estimate, "se": se, "df": df, "ci_low": max(estimate - half, 0.0),
            "ci_high": min(estimate + half, 1.0), "null": null, "t": float(t), "p_value": p,
            "ms_r": ms_r, "cov2": cov2}


def equivalence_test(estimate: float, se: float, df: float, *, null: float = 0.5, margin: float) -> float:
    """Two one-sided tests (TOST) of |FOM - null| < margin: p = the larger of the two one-sided p's.

    A small p shows equivalence within the margin (e.g. "readers could not tell real from synthetic
    better than AUC 0.5 +/- 0.05"); a non-significant test against `null` does not.
    """
    if margin <= 0:
        raise ValueError(f"equivalence margin must be positive; got {margin}")
    if not se > 0:
        return 0.0 if abs(estimate - null) < margin else 1.0
    p_above_lower = sps.t.sf((estimate - (null - margin)) / se, df)
    p_below_upper = sps.t.cdf((estimate - (null + margin)) / se, df)
    return float(max(p_above_lower, p_below_upper))


def or_components(theta: np.ndarray, cov: np.ndarray) -> dict:
    """OR error variance/covariances, mean squares and variance components of theta (T, R)."""
    T, R = theta.shape
    same_test = np.eye(T, dtype=bool)[:, None, :, None]
    same_reader = np.eye(R, dtype=bool)[None, :, None, :]
    var_error = float(np.einsum("ijij->", cov) / (T * R))
    cov1 = float(cov[~same_test & same_reader].mean()) if T > 1 else np.nan
    mask2 = np.broadcast_to(same_test & ~same_reader, cov.shape)
    cov2 = float(cov[mask2].mean())
    cov3 = float(cov[np.broadcast_to(~same_test & ~same_reader, cov.shape)].mean()) if T > 1 else np.nan
    grand = theta.mean()
    test_means, reader_means = theta.mean(axis=1), theta.mean(axis=0)
    ms_t = float(R * ((test_means - grand) ** 2).sum() / (T - 1)) if T > 1 else np.nan
    ms_r = float(T * ((reader_means - grand) ** 2).sum() / (R - 1))
    resid = theta - test_means[:, None] - reader_means[None, :] + grand
    ms_tr = float((resid**2).sum() / ((T - 1) * (R - 1))) if T > 1 else np.nan
    if T > 1:
        var_tr = ms_tr - var_error + cov1 + (cov2 - cov3)
        var_r = (ms_r - ms_tr) / T - cov1 + cov3
    else:  # one test: reader and test-by-reader variance cannot be told apart; var_r holds both
        var_tr = np.nan
        var_r = ms_r - var_error + cov2
    return {"var_error": var_error, "cov1": cov1, "cov2": cov2, "cov3": cov3, "var_tr": var_tr,
            "var_r": var_r, "ms_t": ms_t, "ms_r": ms_r, "ms_tr": ms_tr, "n_tests": T, "n_readers": R}


def _global_and_differences(theta: np.ndarray, comps: dict, tests: list, alpha: float):
    """The F test of equal tests and every pairwise difference (one shared Hillis denominator, as MRMCaov)."""
    T, R = theta.shape
    if T < 2:
        return None, []
    ms_t, ms_tr = comps["ms_t"], comps["ms_tr"]
    denominator = ms_tr + R * max(comps["cov2"] - comps["cov3"], 0.0)
    df1 = T - 1
    df2 = _ratio(denominator**2, ms_tr**2 / ((T - 1) * (R - 1)))
    F = ms_t / denominator if denominator > 0 else np.inf
    glob = {"F": F, "df1": df1, "df2": df2, "p_value": float(sps.f.sf(F, df1, df2)),
            "ms_t": ms_t, "ms_tr": ms_tr, "denominator": denominator}
    means = theta.mean(axis=1)
    se = float(np.sqrt(2 / R * denominator))
    q = sps.t.ppf(1 - alpha / 2, df2)
    rows = []
    for a, b in combinations(range(T), 2):
        diff = float(means[a] - means[b])
        t = _t_statistic(diff, se)
        rows.append({"test_a": tests[a], "test_b": tests[b], "difference": diff, "se": se, "df": df2,
                     "ci_low": diff - q * se, "ci_high": diff + q * se, "t": t,
                     "p_value": float(2 * sps.t.sf(abs(t), df2))})
    return glob, rows


def mrmc(ratings: pd.DataFrame, *, fom: str = "auc", alpha: float = 0.05, covariance: str = "jackknife",
         null: float = 0.5, margin: float | None = None) -> dict[str, pd.DataFrame]:
    """Obuchowski-Rockette MRMC analysis with random readers and cases and Hillis's df.

    ratings: one row per rating with columns reader, case, test, truth (bool, True = positive) and
    rating (numeric, higher = more positive; 0/1 for the binary FOMs). A case may be read under some
    tests only. fom: "auc" (empirical), "balanced_accuracy", "sensitivity" or "specificity".
    covariance: "jackknife" or "delong" (AUC, factorial designs). null: the value each test alone is
    tested against (`tests.t`, `tests.p_value`). margin: when given, `tests.p_equivalence` is the
    two one-sided tests' p of |FOM - null| < margin (see `equivalence_test`); NaN otherwise.

    Returns tables: `tests` (each test analysed alone), `differences` (every pair, a - b), `global`
    (F test of equal tests), `variance_components` (one row) and `readers` (each reader's FOM per
    test with its standard error over cases). With one test, `differences` and `global` are empty.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}")
    if fom not in FOMS:
        raise ValueError(f"unknown fom {fom!r}; choose one of {', '.join(FOMS)}")
    design = design_from_ratings(ratings)
    return analyse(design, fom=fom, alpha=alpha, covariance=covariance, null=null, margin=margin)


def analysis_numbers(design: Design, *, fom: str = "auc", alpha: float = 0.05, covariance: str = "jackknife",
                     null: float = 0.5, margin: float | None = None) -> dict:
    """The numbers of `mrmc()` as plain dicts and arrays (simulations call this: no DataFrames to build).

    Keys: theta (T, R), cov (T, R, T, R), tests (list of dicts), components (dict), global (dict or
    None with one test), differences (list of dicts).
    """
    theta, cov = reader_foms(design, fom=fom, covariance=covariance)
    T, R = theta.shape
    relevant = _relevant(design, fom)
    tests = []
    for t, test in enumerate(design.tests):
        row = single_test(theta[t], cov[t, :, t, :], alpha=alpha, null=null)
        row["equivalence_margin"] = np.nan if margin is None else float(margin)
        row["p_equivalence"] = (np.nan if margin is None else
                                equivalence_test(row["estimate"], row["se"], row["df"], null=null, margin=margin))
        cases = design.in_test[t] & relevant
        tests.append({"test": test, **row, "n_readers": R, "n_cases": int(cases.sum()),
                      "n_positive": int((cases & design.truth).sum()),
                      "n_negative": int((cases & ~design.truth).sum())})
    comps = or_components(theta, cov)
    comps["n_cases"] = int(relevant.sum())
    glob, diffs = _global_and_differences(theta, comps, design.tests, alpha)
    return {"theta": theta, "cov": cov, "tests": tests, "components": comps, "global": glob, "differences": diffs}


def analyse(design: Design, *, fom: str = "auc", alpha: float = 0.05, covariance: str = "jackknife",
            null: float = 0.5, margin: float | None = None) -> dict[str, pd.DataFrame]:
    """`mrmc()` on an already checked Design."""
    numbers = analysis_numbers(design, fom=fom, alpha=alpha, covariance=covariance, null=null, margin=margin)
    theta, cov = numbers["theta"], numbers["cov"]
    T, R = theta.shape
    var_each = np.einsum("ijij->ij", cov)
    readers = pd.DataFrame({
        "test": np.repeat(np.array(design.tests, dtype=object), R),
        "reader": np.tile(np.array(design.readers, dtype=object), T),
        "estimate": theta.ravel(), "se": np.sqrt(np.clip(var_each, 0, None)).ravel(),
    }, columns=READER_COLUMNS)
    glob = [numbers["global"]] if numbers["global"] is not None else []
    return {
        "tests": pd.DataFrame(numbers["tests"], columns=TEST_COLUMNS),
        "differences": pd.DataFrame(numbers["differences"], columns=DIFFERENCE_COLUMNS),
        "global": pd.DataFrame(glob, columns=GLOBAL_COLUMNS),
        "variance_components": pd.DataFrame([numbers["components"]], columns=COMPONENT_COLUMNS),
        "readers": readers,
    }
