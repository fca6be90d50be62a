"""Reader-study planning: power and sample size for the Obuchowski-Rockette (OR) MRMC analysis.

Pure numpy/pandas/scipy (no Django). Owns "how many readers and images does the next study need?",
from the OR variance components of a pilot or finished study (`readerstudy.mrmc.mrmc(...)
["variance_components"]`) or from stated assumptions. The components are those of the analysis
`readerstudy.mrmc` runs, so a plan and the later analysis agree.

- goal "difference" (two tests, e.g. diffusion vs ProGAN; `effect` = the AUC difference to detect):
  Hillis, Obuchowski & Berbaum (2011, Acad Radiol 18:129) for the OR model: the F statistic of the
  analysis has, approximately, a non-central F(1, ddf_H, lambda) distribution with
  lambda = r * effect^2 / (2 * D), D = var_tr + var_error - cov1 + (r - 1) * max(cov2 - cov3, 0), and
  ddf_H = D^2 / (E[MS(T:R)]^2 / (r - 1)), E[MS(T:R)] = var_tr + var_error - cov1 - max(cov2 - cov3, 0).
- goal "equivalence" (one test; true FOM = 0.5 + effect; shown equivalent to 0.5 within +/- margin by
  the two one-sided tests of `readerstudy.mrmc.equivalence_test`): the same OR model for one test,
  the reader-averaged FOM ~ N(0.5 + effect, (s2_R + var_error + (r - 1) cov2) / r) with
  s2_R = var_r (+ var_tr when given); its standard error and Hillis df use MS(R), which is
  independent of the mean and distributed as E[MS(R)] chi2_{r-1} / (r - 1); the power is integrated
  exactly over that distribution (cov2 taken as known).

The case-level parts (var_error, cov1, cov2, cov3) scale as n_cases_pilot / n_cases; the reader
parts (var_r, var_tr) do not. Negative reader variance estimates count as 0, as Hillis et al.
advise. The difference power reproduces RJafroc's published VanDyke sample sizes; both formulas are
checked against studies simulated here (`simulate_study`, a Roe & Metz model) and analysed with
`mrmc()` (tests/readerstudy/test_planning.py). Measured there: the equivalence power is about 0.02
optimistic at 150 cases (the AUC's case variance shrinks away from 0.5, which the OR model ignores).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

GOALS = ("difference", "equivalence")
COMPONENT_KEYS = ("var_error", "cov1", "cov2", "cov3", "var_tr", "var_r")
GAUSS_LEGENDRE = np.polynomial.legendre.leggauss(96)  # over the reader mean square's quantiles
NEEDED = {"difference": ("var_error", "cov1", "cov2", "cov3", "var_tr"), "equivalence": ("var_error", "cov2", "var_r")}


def _components(components: dict, goal: str) -> dict[str, float]:
    needed = NEEDED[goal]
    missing = [k for k in needed if k not in components]
    if missing:
        raise ValueError(f"components: missing {', '.join(missing)} (expected keys {', '.join(COMPONENT_KEYS)})")
    out = {}
    for key in COMPONENT_KEYS:
        value = components.get(key, np.nan)
        value = float(value) if value is not None else np.nan
        if key in needed and not math.isfinite(value):
            raise ValueError(f"components: {key} is {value}; goal {goal!r} needs it "
                             + ("(the components of a two-test analysis)" if goal == "difference" else ""))
        out[key] = value
    return out


def _check(n_readers: int, n_cases: int, n_cases_pilot: int, alpha: float, goal: str, margin: float) -> None:
    if goal not in GOALS:
        raise ValueError(f"unknown goal {goal!r}; choose one of {', '.join(GOALS)}")
    if n_readers < 2:
        raise ValueError(f"n_readers must be at least 2; got {n_readers}")
    if n_cases < 1 or n_cases_pilot < 1:
        raise ValueError(f"n_cases and n_cases_pilot must be positive; got {n_cases} and {n_cases_pilot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}")
    if goal == "equivalence" and not margin > 0:
        raise ValueError(f"equivalence margin must be positive; got {margin}")


def _difference_power(c: dict, r: int, effect: float, alpha: float) -> float:
    case_excess = max(c["cov2"] - c["cov3"], 0.0)
    var_tr = max(c["var_tr"], 0.0)
    expected_ms_tr = var_tr + c["var_error"] - c["cov1"] - case_excess
    denominator = expected_ms_tr + r * case_excess
    if denominator <= 0:
        return 1.0 if effect != 0 else alpha
    noncentrality = r * effect**2 / (2 * denominator)
    if noncentrality == 0:  # scipy's non-central distributions misbehave at exactly 0
        return alpha
    if expected_ms_tr <= 0:
        critical = sps.chi2.ppf(1 - alpha, 1)
        return float(sps.ncx2.sf(critical, 1, noncentrality))
    ddf = denominator**2 / (expected_ms_tr**2 / (r - 1))
    critical = sps.f.ppf(1 - alpha, 1, ddf)
    return float(sps.ncf.sf(critical, 1, ddf, noncentrality))


def _equivalence_power(c: dict, r: int, effect: float, alpha: float, margin: float) -> float:
    reader_var = max(c["var_r"] + (c["var_tr"] if math.isfinite(c["var_tr"]) else 0.0), 0.0)
    cov2 = max(c["cov2"], 0.0)
    expected_ms_r = max(reader_var + c["var_error"] - cov2, 0.0)
    sd_mean = math.sqrt(max(reader_var + c["var_error"] + (r - 1) * cov2, 0.0) / r)
    k = r - 1  # the reader mean square is expected_ms_r * W / k, W ~ chi2(k)

    def reach(w):
        """How far the estimate may fall from 0.5 and still be shown equivalent, given W = w."""
        ms_r = expected_ms_r * np.asarray(w, dtype=float) / k
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(ms_r > 0, (ms_r + r * cov2) ** 2 / (ms_r**2 / k), np.inf)
        return margin - sps.t.ppf(1 - alpha, df) * np.sqrt(ms_r / r + cov2)

    if reach(0.0) <= 0:
        return 0.0
    # reach falls as W grows (wider interval, fewer df): integrate over the quantiles u of W up to its
    # root, located on a grid of quantiles and refined by linear interpolation
    grid = np.linspace(0.0, 1 - 1e-9, 257)
    on_grid = reach(sps.chi2.ppf(grid, k))
    if on_grid[-1] > 0:
        u_top = 1.0
    else:
        j = int(np.argmax(on_grid <= 0))
        u_top = grid[j - 1] + (grid[j] - grid[j - 1]) * on_grid[j - 1] / (on_grid[j - 1] - on_grid[j])
    nodes, weights = GAUSS_LEGENDRE
    u = (nodes + 1) * u_top / 2
    distance = np.clip(reach(sps.chi2.ppf(u, k)), 0, None)
    if sd_mean == 0:
        inside = (abs(effect) < distance).astype(float)
    else:
        inside = sps.norm.cdf((distance - effect) / sd_mean) - sps.norm.cdf((-distance - effect) / sd_mean)
    return float(min(max(np.dot(weights, inside) * u_top / 2, 0.0), 1.0))


def power(*, components: dict, n_readers: int, n_cases: int, n_cases_pilot: int, effect: float,
          alpha: float = 0.05, goal: str = "difference", margin: float = 0.05) -> float:
    """Power of the OR analysis for a study of n_readers x n_cases (see the module docstring).

    components: var_error, cov1, cov2, cov3, var_tr, var_r as in `mrmc()["variance_components"]`
    (two tests for "difference"; one test for "equivalence") estimated on n_cases_pilot cases.
    effect: the AUC difference to detect ("difference"), or the true distance of the FOM from 0.5
    ("equivalence", shown within +/- margin).
    """
    _check(n_readers, n_cases, n_cases_pilot, alpha, goal, margin)
    c = _components(components, goal)
    scale = n_cases_pilot / n_cases
    for key in ("var_error", "cov1", "cov2", "cov3"):
        c[key] *= scale
    if goal == "difference":
        return _difference_power(c, n_readers, effect, alpha)
    return _equivalence_power(c, n_readers, effect, alpha, margin)


def sample_size_table(*, components: dict, n_cases_pilot: int, effect: float, alpha: float = 0.05,
                      target_power: float = 0.8, goal: str = "difference", margin: float = 0.05,
                      readers=range(3, 26), max_cases: int = 20000) -> pd.DataFrame:
    """For each number of readers, the fewest cases whose power reaches target_power.

    Columns n_readers, n_cases (NaN where even max_cases falls short: more readers are needed, since
    reader variability does not shrink with cases) and power (at n_cases, or at max_cases where
    n_cases is NaN). Power grows with cases, so a bisection finds the least n_cases.
    """
    if not 0 < target_power < 1:
        raise ValueError(f"target_power must be between 0 and 1; got {target_power}")

    def at(r: int, n: int) -> float:
        return power(components=components, n_readers=r, n_cases=n, n_cases_pilot=n_cases_pilot,
                     effect=effect, alpha=alpha, goal=goal, margin=margin)

    rows = []
    for r in readers:
        r = int(r)
        top = at(r, max_cases)
        if top < target_power:
            rows.append({"n_readers": r, "n_cases": np.nan, "power": top})
            continue
        lo, hi = 1, max_cases  # at(hi) reaches the target; find the least such n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if at(r, mid) >= target_power:
                hi = mid
            else:
                lo = mid
        n = lo if at(r, lo) >= target_power else hi
        rows.append({"n_readers": r, "n_cases": float(n), "power": at(r, n)})
    return pd.DataFrame(rows, columns=["n_readers", "n_cases", "power"])


# --------------------------------------------------------------------------- simulated studies
@dataclass(frozen=True)
class RoeMetz:
    """Standard deviations of a Roe & Metz (1997) style rating model with random reader skill.

    rating[t, r, k] = positive_k * (separation[t] + skill_r + skill_tr) + c_k + tc_tk + rc_rk + e_trk,
    all terms independent normals. The case-level defaults are Roe & Metz's "HL" structure
    (variances 0.3, 0.3, 0.2, 0.2: case, test x case, reader x case, error).
    """

    reader: float = 0.2
    test_reader: float = 0.1
    case: float = math.sqrt(0.3)
    test_case: float = math.sqrt(0.3)
    reader_case: float = math.sqrt(0.2)
    error: float = math.sqrt(0.2)

    def population_auc(self, separation: float) -> float:
        """Reader r's AUC is Phi((separation + skill) / sqrt(2 s^2)), s^2 the case-level variance;
        averaged over the reader population it is Phi(separation / sqrt(2 s^2 + reader skill variance))."""
        case_var = self.case**2 + self.test_case**2 + self.reader_case**2 + self.error**2
        return float(sps.norm.cdf(separation / math.sqrt(2 * case_var + self.reader**2 + self.test_reader**2)))


def simulate_study(rng: np.random.Generator, *, n_readers: int, n_negative: int, n_positive: int,
                   separation=(1.0,), model: RoeMetz = RoeMetz(), paired: bool = True):
    """One simulated reader study from `model` as a `readerstudy.mrmc.Design`.

    paired=True: every test is read on the same cases (factorial). paired=False: the design of a
    real-vs-synthetic study with several generators: the negatives (real images) are shared and
    rated once per reader for every test, each test has its own n_positive positives.
    """
    from readerstudy.mrmc import Design

    separation = np.atleast_1d(np.asarray(separation, dtype=float))
    T, R = separation.size, n_readers
    n_pos_total = n_positive if paired else T * n_positive
    K = n_negative + n_pos_total
    truth = np.r_[np.zeros(n_negative, bool), np.ones(n_pos_total, bool)]
    skill = rng.normal(0, model.reader, R)[None, :] + rng.normal(0, model.test_reader, (T, R))
    case = rng.normal(0, model.case, K)[None, None, :] + rng.normal(0, model.test_case, (T, 1, K))
    noise = rng.normal(0, model.reader_case, (1, R, K)) + rng.normal(0, model.error, (T, R, K))
    ratings = truth * (separation[:, None, None] + skill[:, :, None]) + case + noise
    in_test = np.ones((T, K), bool)
    if not paired:
        ratings[:, :, :n_negative] = ratings[:1, :, :n_negative]  # one rating per real image and reader
        for t in range(T):
            in_test[t, n_negative:] = np.arange(n_pos_total) // n_positive == t
        ratings = np.where(in_test[:, None, :], ratings, np.nan)
    return Design(tests=list(range(T)), readers=list(range(R)), cases=list(range(K)), ratings=ratings,
                  truth=truth, in_test=in_test)
