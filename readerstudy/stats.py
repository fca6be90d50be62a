"""Reader-study statistics: can pathologists tell real histopathology patches from synthetic ones?

Pure pandas/numpy/scipy/statsmodels (no Django), so the same numbers come out of the results page,
the exports, a notebook or a paper script. Implements the human evaluation of Moghadam et al.,
WACV 2023 ("A Morphology Focused Diffusion Probabilistic Model for Synthesis of Histopathology
Images"): readers answer "real" or "AI-generated" with a confidence for each image.

`summarize(responses)` takes one row per response with the columns
`reader, image, truth, generator, label, answer, confidence, seconds` and returns named tables:

- `mrmc`, `mrmc_difference`, `mrmc_components`, `verdict`: the study's answer, by multi-reader
  multi-case analysis (random readers and random images; `readerstudy.study_mrmc`): AUC and balanced
  accuracy per generator with intervals, tests against chance and for equivalence within the study's
  margin, generator-vs-generator differences, and the variance components a next study is planned from
  (`study_mrmc.planning_table`);
- `pooled`, `per_reader`, `per_generator`, `per_label`, `per_image`: descriptive statistics. Accuracy
  with a 95% Wilson (or Clopper-Pearson) interval and an exact two-sided binomial test against 0.5
  (these treat every response as independent, ignoring reader and image clustering; the `note`
  columns say so), sensitivity, specificity, the share called real (per generator: the *fooled
  rate*, with no test against 0.5), and the confidence-weighted ROC AUC with a bootstrap interval;
- `confidence`, `tests`, `calibration`, `score_distribution`, `reading_time`: confidence by truth,
  answer and correctness, Mann-Whitney U tests, accuracy per confidence level, the answers and
  confidences given to real and to synthetic images, median reading times;
- `roc`: the ROC curve points (pooled and per reader);
- `agreement`, `pairwise_kappa`: Fleiss' kappa, Krippendorff's alpha and pairwise Cohen's kappa;
- `quick_answers`: answers faster than `QUICK_SECONDS` per reader (`exclude_quick=True` leaves them out);
- `meta`: how the numbers were made (interval, bootstrap, seed, score, margin, quick answers).

The ROC score is ordinal: each answer with its confidence becomes one level from "surely real"
(answer real, highest confidence) to "surely AI-generated" (answer synthetic, highest confidence);
synthetic is the positive class, so AUC 0.5 means readers cannot tell the images apart.
The AUC interval resamples readers and images together (two-way bootstrap, images stratified by
truth, generator and label); per-reader intervals resample images only.

Degenerate input (no responses, one class, one reader, a reader always right) never raises: the
value is defined or NaN, and the `note` column says why.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from readerstudy import study_mrmc

try:  # comes with scikit-learn; without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

COLUMNS = ["reader", "image", "truth", "generator", "label", "answer", "confidence", "seconds"]
QUICK_SECONDS = 0.5  # an answer faster than this is flagged: too fast to have looked at the image
CLASSES = ("real", "synthetic")
INTERVALS = {"wilson": "wilson", "clopper-pearson": "beta"}
ALPHA = 0.05


# --------------------------------------------------------------------------- small vectorised pieces
def proportion_ci(k, n, interval: str = "wilson") -> tuple[np.ndarray, np.ndarray]:
    """95% interval of k successes in n trials, vectorised; NaN where n == 0."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    ok = n > 0
    low = np.full(np.broadcast(k, n).shape, np.nan)
    high = low.copy()
    if np.any(ok):
        kk, nn = np.broadcast_arrays(k, n)
        lo, hi = proportion_confint(kk[ok], nn[ok], alpha=ALPHA, method=INTERVALS[interval])
        low[ok], high[ok] = lo, hi
    return low, high


def binomial_test_half(k, n) -> np.ndarray:
    """Exact two-sided binomial test of k successes in n against p = 0.5, vectorised.

    The binomial(n, 1/2) distribution is symmetric, so the two-sided p-value (the probability of
    outcomes no more likely than k) is 2 * P(X <= min(k, n - k)), capped at 1. NaN where n == 0.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(k, n - k), n, 0.5))
    return np.where(n > 0, p, np.nan)


def _ratio(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC = P(score_pos > score_neg) + P(tie) / 2 from (weighted) counts per ordinal level.

    `pos`, `neg`: arrays (..., L), level 0 the most "real". NaN where a class is empty.
    """
    pos = np.asarray(pos, dtype=float)
    neg = np.asarray(neg, dtype=float)
    below = np.cumsum(neg, axis=-1) - neg
    wins = np.sum(pos * (below + 0.5 * neg), axis=-1)
    return _ratio(wins, pos.sum(-1) * neg.sum(-1))


def _nanpercentile(x: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(x, q, axis=axis)


def _join_notes(*parts) -> np.ndarray:
    """Join per-row note arrays (empty strings dropped) with "; "."""
    out = pd.Series(np.asarray(parts[0], dtype=object)).fillna("").astype(str)
    for part in parts[1:]:
        part = pd.Series(np.asarray(part, dtype=object)).fillna("").astype(str)
        sep = np.where((out != "") & (part != ""), "; ", "")
        out = out + sep + part
    return out.to_numpy(dtype=object)


def _note(condition, text: str) -> np.ndarray:
    return np.where(np.asarray(condition, dtype=bool), text, "")


# --------------------------------------------------------------------------- input
def _string_categorical(values: pd.Series) -> pd.Series:
    """`values` as a categorical of strings (sorted categories, all used): fast grouping, integer codes."""
    values = values.fillna("")
    try:
        cat = pd.Categorical(values)
        cat = cat.rename_categories([str(c) for c in cat.categories])  # fails if 1 and "1" both occur
    except (TypeError, ValueError):
        cat = pd.Categorical(values.astype(str))
    return pd.Series(cat, index=values.index)


def validate(responses: pd.DataFrame) -> pd.DataFrame:
    """A clean copy of `responses` with derived columns; ValueError naming the row on bad values."""
    if responses is None or (len(responses) == 0 and not set(COLUMNS) <= set(getattr(responses, "columns", []))):
        responses = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    missing = [c for c in COLUMNS if c not in responses.columns]
    if missing:
        raise ValueError(f"responses: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    df = responses[COLUMNS].copy().reset_index(drop=True)
    for col in ("truth", "answer"):
        df[col] = df[col].map({v: str(v).strip().lower() for v in pd.unique(df[col])})
        bad = ~df[col].isin(CLASSES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"responses row {row}: {col}={responses[col].iloc[row]!r}, expected 'real' or 'synthetic'")
    conf = pd.to_numeric(df["confidence"], errors="coerce")
    if conf.isna().any():
        row = int(np.flatnonzero(conf.isna().to_numpy())[0])
        raise ValueError(f"responses row {row}: confidence={responses['confidence'].iloc[row]!r} is not a number")
    df["confidence"] = conf.astype(float)
    df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce").astype(float)
    for col in ("reader", "image", "generator", "label"):
        df[col] = _string_categorical(df[col])
    per_image = df.groupby("image", observed=True)[["truth", "generator", "label"]].nunique()
    mixed = per_image[(per_image > 1).any(axis=1)]
    if len(mixed):
        raise ValueError(f"responses: image {mixed.index[0]!r} has more than one truth, generator or label")
    dup = df.duplicated(["reader", "image"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"responses row {row}: reader {df['reader'].iloc[row]!r} answered image "
                         f"{df['image'].iloc[row]!r} twice (analyse repeats with repeat_consistency)")
    df["synthetic"] = (df["truth"] == "synthetic").to_numpy()
    df["said_synthetic"] = (df["answer"] == "synthetic").to_numpy()
    df["correct"] = df["synthetic"] == df["said_synthetic"]
    df["tp"] = df["synthetic"] & df["said_synthetic"]
    df["tn"] = ~df["synthetic"] & ~df["said_synthetic"]
    df["called_real"] = ~df["said_synthetic"]
    for col in ("truth", "answer"):
        df[col] = pd.Categorical(df[col], categories=list(CLASSES))
    # Ordinal score: answer real with the highest confidence is the lowest level.
    key = np.where(df["said_synthetic"], 1e6 + df["confidence"], -df["confidence"])
    levels, df["level"] = (np.unique(key, return_inverse=True) if len(df) else (np.array([]), np.array([], dtype=int)))
    df.attrs["level_keys"] = tuple(float(x) for x in levels)
    return df


# --------------------------------------------------------------------------- grouped accuracy tables
def _group_counts(df: pd.DataFrame, by: list[str], observed: bool = True) -> pd.DataFrame:
    g = df.groupby(by, sort=True, observed=observed)  # one grouper, reused by every aggregation
    out = g[["correct", "synthetic", "tp", "tn", "called_real"]].sum().rename(columns={"synthetic": "n_synthetic"})
    out.insert(0, "n", g.size())
    out["mean_confidence"] = g["confidence"].mean()
    out["median_seconds"] = g["seconds"].median()
    out["n_real"] = out["n"] - out["n_synthetic"]
    return out


def _rate_columns(out: pd.DataFrame, name: str, k, n, interval: str, test: bool = False) -> None:
    out[name] = _ratio(k, n)
    out[f"{name}_ci_low"], out[f"{name}_ci_high"] = proportion_ci(k, n, interval)
    if test:
        out["p_value"] = binomial_test_half(k, n)


def _accuracy_table(df: pd.DataFrame, by: list[str], interval: str, observed: bool = True) -> pd.DataFrame:
    counts = ("n", "correct", "n_synthetic", "tp", "tn", "called_real")
    out = _group_counts(df, by, observed).astype({c: int for c in counts})
    _rate_columns(out, "accuracy", out["correct"], out["n"], interval, test=True)
    _rate_columns(out, "sensitivity", out["tp"], out["n_synthetic"], interval)
    _rate_columns(out, "specificity", out["tn"], out["n_real"], interval)
    _rate_columns(out, "share_called_real", out["called_real"], out["n"], interval)
    out["note"] = _join_notes(
        _note(out["n_synthetic"] == 0, "no synthetic images: sensitivity undefined"),
        _note(out["n_real"] == 0, "no real images: specificity undefined"),
    )
    return out


RATE_COLUMNS = [
    "n", "correct", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value",
    "n_synthetic", "tp", "sensitivity", "sensitivity_ci_low", "sensitivity_ci_high",
    "n_real", "tn", "specificity", "specificity_ci_low", "specificity_ci_high",
    "called_real", "share_called_real", "share_called_real_ci_low", "share_called_real_ci_high",
    "auc", "auc_ci_low", "auc_ci_high", "mean_confidence", "median_seconds", "note",
]


def _ordered(out: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return out[keys + [c for c in RATE_COLUMNS if c in out.columns]].reset_index(drop=True)


# --------------------------------------------------------------------------- ROC and bootstrap
def _draw_counts(rng: np.random.Generator, n_rows: int, n: int) -> np.ndarray:
    """(n_rows, n) counts of n draws with replacement from n things, one row per replicate."""
    draws = rng.integers(0, n, size=(n_rows, n)) + n * np.arange(n_rows)[:, None]
    return np.bincount(draws.ravel(), minlength=n_rows * n).reshape(n_rows, n)


class _Design:
    """Index arrays of the responses for the histogram AUC and the bootstrap."""

    def __init__(self, df: pd.DataFrame):
        self.readers = np.asarray(df["reader"].cat.categories)
        self.r = df["reader"].cat.codes.to_numpy().astype(np.int64)
        self.i = df["image"].cat.codes.to_numpy().astype(np.int64)
        first = np.full(len(df["image"].cat.categories), -1)
        first[self.i[::-1]] = np.arange(len(df))[::-1]
        self.images = df.iloc[first][["image", "truth", "generator", "label"]].astype(str).reset_index(drop=True)
        # Image groups: (truth, generator, label); the bootstrap keeps each group's size.
        groups = self.images[["truth", "generator", "label"]].drop_duplicates().reset_index(drop=True)
        self.groups = groups
        self.g_of_image = pd.MultiIndex.from_frame(groups).get_indexer(
            pd.MultiIndex.from_frame(self.images[["truth", "generator", "label"]]))
        self.level = df["level"].to_numpy()
        self.L = int(self.level.max()) + 1 if len(df) else 0
        self.R, self.I, self.G = len(self.readers), len(self.images), len(groups)
        self.image_synthetic = (self.images["truth"] == "synthetic").to_numpy()

    def group_hist(self) -> np.ndarray:
        """Unweighted counts (G, L)."""
        idx = self.g_of_image[self.i] * self.L + self.level
        return np.bincount(idx, minlength=self.G * self.L).reshape(self.G, self.L).astype(float)

    def reader_hist(self) -> tuple[np.ndarray, np.ndarray]:
        """Unweighted counts per reader (R, L) for synthetic and real images."""
        syn = self.image_synthetic[self.i]
        idx = self.r * self.L + self.level
        pos = np.bincount(idx[syn], minlength=self.R * self.L).reshape(self.R, self.L)
        neg = np.bincount(idx[~syn], minlength=self.R * self.L).reshape(self.R, self.L)
        return pos.astype(float), neg.astype(float)

    def draw_weights(self, n_bootstrap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap weights: how often each reader (B, R) and each image (B, I) is drawn.

        Readers are drawn with replacement; images with replacement within their group
        (truth, generator, label), so every replicate keeps both classes.
        """
        rng = np.random.default_rng(seed)
        B, R, I = n_bootstrap, self.R, self.I
        # float32 holds these integer counts exactly (sums stay far below 2**24) at twice the speed.
        w_reader = _draw_counts(rng, B, R).astype(np.float32)
        w_image = np.zeros((B, I), dtype=np.float32)
        for g in range(self.G):
            members = np.flatnonzero(self.g_of_image == g)
            w_image[:, members] = _draw_counts(rng, B, len(members))
        return w_reader, w_image

    def bootstrap(
        self, w_reader: np.ndarray, w_image: np.ndarray, chunk: int = 50
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted counts per replicate: two-way (B, G, L); per reader, images resampled only, (B, R, L) x 2.

        A response of reader r to image i counts w_reader[b, r] * w_image[b, i] times in replicate b
        (two-way) or w_image[b, i] times (per reader): exactly the counts of the resampled data.
        """
        B, R, I, L, G = len(w_reader), self.R, self.I, self.L, self.G
        # A[r, i * L + l] = 1 when reader r gave image i the level l.
        A = np.zeros((R, I * L), dtype=np.float32)
        A[self.r, self.i * L + self.level] = 1.0
        # Images sorted by group, so that each group's sum is one np.add.reduceat.
        order = np.argsort(self.g_of_image, kind="stable")
        starts = np.searchsorted(self.g_of_image[order], np.arange(G))
        A_sorted = A.reshape(R, I, L)[:, order, :].reshape(R, I * L)
        w_sorted = w_image[:, order]
        group_counts = np.empty((B, G, L), dtype=np.float64)
        for start in range(0, B, chunk):
            stop = min(B, start + chunk)
            per_image = (w_reader[start:stop] @ A_sorted).reshape(stop - start, I, L)
            per_image *= w_sorted[start:stop, :, None]
            group_counts[start:stop] = np.add.reduceat(per_image, starts, axis=1)
        # Per reader: images resampled, the reader kept.
        A3 = A.reshape(R, I, L)
        syn = self.image_synthetic
        pos = (w_image[:, syn] @ A3[:, syn, :].transpose(1, 0, 2).reshape(int(syn.sum()), R * L)).reshape(B, R, L)
        neg = (w_image[:, ~syn] @ A3[:, ~syn, :].transpose(1, 0, 2).reshape(int((~syn).sum()), R * L)).reshape(B, R, L)
        return group_counts, pos, neg


def _group_masks(design: _Design) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Which image groups are the positives and the negatives of each AUC: pooled, per generator, per label."""
    g = design.groups
    syn = (g["truth"] == "synthetic").to_numpy()
    masks = {("pooled", ""): (syn, ~syn)}
    for gen in sorted(g.loc[syn, "generator"].unique()):
        masks[("generator", gen)] = (syn & (g["generator"] == gen).to_numpy(), ~syn)
    for label in sorted(g["label"].unique()):
        in_label = (g["label"] == label).to_numpy()
        masks[("label", label)] = (syn & in_label, ~syn & in_label)
    return masks


def _auc_tables(df: pd.DataFrame, n_bootstrap: int, seed: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """AUC with intervals for every scope in `_group_masks`, and per reader."""
    design = _Design(df)
    masks = _group_masks(design)
    hist = design.group_hist()
    boot = design.bootstrap(*design.draw_weights(n_bootstrap, seed)) if n_bootstrap > 0 and len(df) else None
    scopes = {}
    for key, (pm, nm) in masks.items():
        auc = float(auc_from_histograms(hist[pm].sum(0), hist[nm].sum(0)))
        low = high = np.nan
        if boot is not None and not np.isnan(auc):
            reps = auc_from_histograms(boot[0][:, pm].sum(1), boot[0][:, nm].sum(1))
            low, high = _nanpercentile(reps, 2.5), _nanpercentile(reps, 97.5)
        scopes[key] = (auc, float(low), float(high))
    pos, neg = design.reader_hist()
    reader_auc = auc_from_histograms(pos, neg)
    low = high = np.full(design.R, np.nan)
    if boot is not None:
        reps = auc_from_histograms(boot[1], boot[2])
        low, high = _nanpercentile(reps, 2.5), _nanpercentile(reps, 97.5)
        low, high = np.where(np.isnan(reader_auc), np.nan, low), np.where(np.isnan(reader_auc), np.nan, high)
    per_reader = pd.DataFrame({"reader": design.readers, "auc": reader_auc, "auc_ci_low": low, "auc_ci_high": high})
    level_keys = np.asarray(df.attrs.get("level_keys", ()), dtype=float)
    roc = _roc_points(design, hist, masks[("pooled", "")], pos, neg, level_keys)
    return scopes, per_reader, roc


def _roc_points(design, hist, pooled_mask, pos, neg, level_keys) -> pd.DataFrame:
    """ROC curve points, pooled then per reader: call 'synthetic' every response at or above each level."""
    names = np.concatenate([["pooled"], design.readers.astype(str)])
    p = np.vstack([hist[pooled_mask[0]].sum(0), pos])  # (1 + R, L)
    n = np.vstack([hist[pooled_mask[1]].sum(0), neg])
    keep = (p.sum(1) > 0) & (n.sum(1) > 0)
    names, p, n = names[keep], p[keep], n[keep]
    zeros = np.zeros((len(names), 1))
    tpr = np.hstack([zeros, np.cumsum(p[:, ::-1], axis=1) / p.sum(1, keepdims=True)])
    fpr = np.hstack([zeros, np.cumsum(n[:, ::-1], axis=1) / n.sum(1, keepdims=True)])
    answer = np.concatenate([["none"], np.where(level_keys >= 1e6, "synthetic", "real")[::-1]])
    conf = np.concatenate([[np.nan], np.where(level_keys >= 1e6, level_keys - 1e6, -level_keys)[::-1]])
    k = tpr.shape[1]
    return pd.DataFrame({
        "scope": np.repeat(names, k), "threshold_answer": np.tile(answer, len(names)),
        "threshold_confidence": np.tile(conf, len(names)), "fpr": fpr.ravel(), "tpr": tpr.ravel(),
    })


# --------------------------------------------------------------------------- agreement
def krippendorff_alpha_binary(*, seen: np.ndarray, synthetic: np.ndarray) -> float:
    """Krippendorff's alpha for two nominal categories, raters x units, missing ratings allowed.

    `seen[r, u]` is 1 where rater r rated unit u, `synthetic[r, u]` 1 where that rating was
    "synthetic". From the coincidence matrix (Krippendorff 2011): units with m_u >= 2 ratings count;
    o_01 = sum_u n_u0 n_u1 / (m_u - 1); alpha = 1 - (n - 1) o_01 / (n_0 n_1).
    """
    m = seen.sum(0)
    n1 = synthetic.sum(0)
    n0 = m - n1
    ok = m >= 2
    o01 = np.sum(n0[ok] * n1[ok] / (m[ok] - 1))
    tot0, tot1 = n0[ok].sum(), n1[ok].sum()
    n = tot0 + tot1
    if tot0 == 0 or tot1 == 0:
        return float("nan")
    return float(1.0 - (n - 1) * o01 / (tot0 * tot1))


def _agreement(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    readers, r = np.asarray(df["reader"].cat.categories), df["reader"].cat.codes.to_numpy().astype(np.int64)
    images, i = np.asarray(df["image"].cat.categories), df["image"].cat.codes.to_numpy().astype(np.int64)
    R, I = len(readers), len(images)
    rows = []
    pair_cols = ["reader_a", "reader_b", "n_items", "agreement", "kappa", "note"]
    if R < 2:
        why = "needs at least two readers" if R == 1 else "no responses yet"
        for measure in ("fleiss_kappa", "krippendorff_alpha", "cohen_kappa_mean", "cohen_kappa_median"):
            rows.append({"measure": measure, "value": np.nan, "n_items": 0, "n_readers": R, "note": why})
        return pd.DataFrame(rows), pd.DataFrame(columns=pair_cols)
    seen = np.zeros((R, I))
    syn = np.zeros((R, I))
    seen[r, i] = 1.0
    syn[r, i] = df["said_synthetic"].to_numpy(dtype=float)
    real = seen - syn
    # Fleiss' kappa over the items every reader rated.
    full = seen.sum(0) == R
    table = np.stack([real.sum(0)[full], syn.sum(0)[full]], axis=1)
    note, value = "", np.nan
    if full.sum() == 0:
        note = "no item was rated by every reader"
    elif (table.sum(0) == 0).any():
        note = "every rating in one category: chance agreement is 1, kappa undefined"
    else:
        value = float(fleiss_kappa(table, method="fleiss"))
    rows.append({"measure": "fleiss_kappa", "value": value, "n_items": int(full.sum()), "n_readers": R, "note": note})
    # Krippendorff's alpha (nominal), all items, missing ratings allowed.
    pairable = (seen.sum(0) >= 2).sum()
    note, value = "", np.nan
    values_in_pairable = syn[:, seen.sum(0) >= 2][seen[:, seen.sum(0) >= 2] > 0]
    if pairable == 0:
        note = "no item was rated by two readers"
    elif np.unique(values_in_pairable).size < 2:
        note = "every rating in one category: expected disagreement is 0, alpha undefined"
    else:
        value = krippendorff_alpha_binary(seen=seen, synthetic=syn)
    rows.append({"measure": "krippendorff_alpha", "value": value, "n_items": int(pairable), "n_readers": R,
                 "note": note})
    # Pairwise Cohen's kappa over each pair's common items, all pairs at once.
    n = seen @ seen.T
    agree = syn @ syn.T + real @ real.T
    a_syn, b_syn = syn @ seen.T, seen @ syn.T
    a_real, b_real = real @ seen.T, seen @ real.T
    po = _ratio(agree, n)
    pe = _ratio(a_syn * b_syn + a_real * b_real, n * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(np.isclose(pe, 1.0) | np.isnan(pe), np.nan, (po - pe) / (1.0 - pe))
    ia, ib = np.triu_indices(R, k=1)
    pairs = pd.DataFrame({
        "reader_a": readers[ia], "reader_b": readers[ib], "n_items": n[ia, ib].astype(int),
        "agreement": po[ia, ib], "kappa": kappa[ia, ib],
    })
    pairs["note"] = _join_notes(
        _note(pairs["n_items"] == 0, "no common items"),
        _note((pairs["n_items"] > 0) & pairs["kappa"].isna(),
              "both readers gave one answer throughout: kappa undefined"),
    )
    valid = pairs["kappa"].dropna()
    why = "" if len(valid) else "no pair of readers has a defined kappa"
    for measure, value in (("cohen_kappa_mean", valid.mean()), ("cohen_kappa_median", valid.median())):
        rows.append({"measure": measure, "value": float(value) if len(valid) else np.nan,
                     "n_items": int(n[ia, ib].sum()), "n_readers": R, "note": why})
    return pd.DataFrame(rows), pairs


# --------------------------------------------------------------------------- confidence and time
def _describe(df: pd.DataFrame, value: str, groupings: dict[str, pd.Series], stats: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for name, key in groupings.items():
        g = df[value].groupby(key, sort=True, observed=True).agg(["size", *stats])
        g = g.rename(columns={"size": "n"}).reset_index(names="group")
        g["group"] = g["group"].astype(str)
        g.insert(0, "grouping", name)
        parts.append(g)
    cols = ["grouping", "group", "n", *stats]
    return pd.concat(parts, ignore_index=True)[cols] if parts and len(df) else pd.DataFrame(columns=cols)


def _groupings(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Group keys as categoricals built from codes (no per-row strings)."""
    syn = df["synthetic"].to_numpy(dtype=np.int8)
    said = df["said_synthetic"].to_numpy(dtype=np.int8)

    def cat(codes, names):
        return pd.Series(pd.Categorical.from_codes(codes, categories=names), index=df.index)

    return {
        "truth": cat(syn, list(CLASSES)), "answer": cat(said, list(CLASSES)),
        "truth_answer": cat(2 * syn + said, [f"{t}/{a}" for t in CLASSES for a in CLASSES]),
        "correctness": cat(1 - df["correct"].to_numpy(dtype=np.int8), ["correct", "incorrect"]),
    }


def _mann_whitney(a: pd.Series, b: pd.Series, test: str, name_a: str, name_b: str) -> dict:
    row = {"test": test, "group_a": name_a, "group_b": name_b, "n_a": len(a), "n_b": len(b),
           "u_statistic": np.nan, "p_value": np.nan, "effect_auc": np.nan,
           "note": "responses of one reader are not independent; read the p-value as descriptive"}
    if len(a) == 0 or len(b) == 0:
        row["note"] = f"no {name_a if len(a) == 0 else name_b} responses: test undefined"
        return row
    if np.unique(np.concatenate([a.to_numpy(), b.to_numpy()])).size < 2:
        row["note"] = "all confidences equal: test undefined"
        return row
    res = sps.mannwhitneyu(a, b, alternative="two-sided")
    row.update(u_statistic=float(res.statistic), p_value=float(res.pvalue),
               effect_auc=float(res.statistic) / (len(a) * len(b)))
    return row


# --------------------------------------------------------------------------- public
def mrmc_ratings(responses: pd.DataFrame) -> pd.DataFrame:
    """The MRMC ratings of `responses` (see `study_mrmc.ratings_from_validated`): one ordinal rating per
    answer and confidence, synthetic positive. Shared by `summarize`, `plan_study` and the results page."""
    return study_mrmc.ratings_from_validated(validate(responses))


def quick_answers(df: pd.DataFrame, *, excluded: bool = False) -> pd.DataFrame:
    """Per reader of a validated frame: answers given faster than `QUICK_SECONDS` (missing times never count)."""
    quick = (df["seconds"] < QUICK_SECONDS).to_numpy()
    out = pd.DataFrame({"reader": df["reader"], "quick": quick}).groupby("reader", observed=True, sort=True).agg(
        n=("quick", "size"), n_quick=("quick", "sum")).reset_index()
    out["reader"] = out["reader"].astype(str)
    out["share_quick"] = _ratio(out["n_quick"], out["n"])
    out["threshold_seconds"] = QUICK_SECONDS
    out["excluded"] = excluded
    return out[["reader", "n", "n_quick", "share_quick", "threshold_seconds", "excluded"]]


def summarize(
    responses: pd.DataFrame, *, interval: str = "wilson", n_bootstrap: int = 1000, seed: int = 0,
    equivalence_margin: float = 0.05, exclude_quick: bool = False,
) -> dict[str, pd.DataFrame]:
    """All reader-study tables for `responses` (one row per response; see the module docstring).

    `equivalence_margin`: half-width around AUC 0.5 of the equivalence test; `exclude_quick`: leave out
    answers faster than `QUICK_SECONDS` (they are counted per reader in `quick_answers` either way).
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval={interval!r}: expected one of {', '.join(INTERVALS)}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap={n_bootstrap}: expected 0 (no intervals) or more")
    if not 0 < equivalence_margin < 0.5:
        raise ValueError(f"equivalence_margin={equivalence_margin}: expected a number between 0 and 0.5")
    df = validate(responses)
    quick = quick_answers(df, excluded=exclude_quick)
    n_quick = int(quick["n_quick"].sum())
    if exclude_quick and n_quick:
        kept = pd.to_numeric(responses["seconds"], errors="coerce").to_numpy(float)
        df = validate(responses[~(kept < QUICK_SECONDS)])  # a fresh frame: no trace of the excluded answers
    # One BLAS thread: these matrices are small enough that extra threads only contend with the other
    # requests and workers of the server (measured 2-3x faster under load on a 2-core machine).
    limit = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext()
    with limit:
        tables = _summarize(df, interval=interval, n_bootstrap=n_bootstrap, seed=seed)
        verdict = study_mrmc.mrmc_tables(study_mrmc.ratings_from_validated(df), equivalence_margin=equivalence_margin)
    meta = pd.DataFrame({
        "key": ["quick_threshold_seconds", "exclude_quick_answers", "n_quick_answers", "n_quick_excluded"],
        "value": pd.Series([QUICK_SECONDS, exclude_quick, n_quick, n_quick if exclude_quick else 0], dtype=object)})
    tables["meta"] = pd.concat([tables["meta"], verdict.pop("mrmc_meta"), meta], ignore_index=True)
    tables.update(verdict, quick_answers=quick)
    # Each generator's verdict numbers beside its fooled rate (real rows: the reference, no MRMC figure).
    auc = verdict["mrmc"][verdict["mrmc"]["measure"] == "auc"].set_index("generator")
    per_generator = tables["per_generator"]
    synthetic = (per_generator["truth"] == "synthetic").to_numpy()
    for column, source in (("mrmc_auc", "estimate"), ("mrmc_auc_ci_low", "ci_low"), ("mrmc_auc_ci_high", "ci_high")):
        values = per_generator["generator"].map(auc[source]).to_numpy(float)
        per_generator[column] = np.where(synthetic, values, np.nan)
    return tables


def _summarize(df: pd.DataFrame, *, interval: str, n_bootstrap: int, seed: int) -> dict[str, pd.DataFrame]:
    empty = len(df) == 0
    scopes, reader_auc, roc = _auc_tables(df, n_bootstrap, seed) if not empty else ({}, None, _roc_points_empty())

    def auc_cols(out: pd.DataFrame, keys: list) -> None:
        vals = np.array([scopes.get(k, (np.nan, np.nan, np.nan)) for k in keys], dtype=float).reshape(-1, 3)
        out["auc"], out["auc_ci_low"], out["auc_ci_high"] = vals[:, 0], vals[:, 1], vals[:, 2]

    # Pooled.
    scope = pd.Categorical(["all"] * len(df), categories=["all"])
    pooled = _accuracy_table(df.assign(scope=scope), ["scope"], interval, observed=False).reset_index()
    pooled["scope"] = pooled["scope"].astype(str)
    auc_cols(pooled, [("pooled", "")])
    pooled.insert(1, "n_readers", df["reader"].nunique())
    pooled.insert(2, "n_images", df["image"].nunique())
    pooled["note"] = _join_notes(
        np.where(empty, "no responses yet", pooled["note"].fillna("")),
        _note(~empty & pooled["auc"].isna(), "AUC needs both real and synthetic images"),
        _note(~empty, "descriptive: the interval and test treat every response as independent, ignoring "
                      "reader and image clustering; the verdict is the MRMC analysis"),
    )
    # Per reader.
    per_reader = _accuracy_table(df, ["reader"], interval).reset_index()
    if reader_auc is not None:
        per_reader = per_reader.merge(reader_auc, how="left", on="reader")
    else:
        per_reader[["auc", "auc_ci_low", "auc_ci_high"]] = np.nan
    per_reader["note"] = _join_notes(per_reader["note"], _note(per_reader["auc"].isna(), "AUC needs both classes"),
                                     _note(per_reader["accuracy"] == 1.0, "every answer right"),
                                     _note(per_reader["n"] > 0, "descriptive: this reader on these images; the "
                                           "interval ignores image clustering and says nothing of other readers"))
    # Per generator: the share of each generator's images called real; AUC against all real images.
    per_generator = _accuracy_table(df, ["generator", "truth"], interval)
    n_images = df.groupby(["generator", "truth"], observed=True)["image"].nunique()
    per_generator.insert(0, "n_images", n_images.reindex(per_generator.index).to_numpy())
    per_generator = per_generator.reset_index()
    auc_cols(per_generator, [("generator", g) if t == "synthetic" else None
                             for g, t in zip(per_generator["generator"], per_generator["truth"])])
    # One class per row: "accuracy" is sensitivity or specificity, and a test of it against 0.5 would
    # reward readers who merely lean towards one answer. The figure is the fooled rate, untested.
    per_generator = per_generator.drop(columns="p_value")
    per_generator["note"] = _join_notes(
        _note(per_generator["truth"] == "synthetic", "fooled rate: share of these synthetic images called real; "
              "descriptive, no test against 0.5 (see mrmc for the verdict)"),
        _note(per_generator["truth"] == "real", "real images: share called real is specificity; the AUC reference"),
        _note((per_generator["truth"] == "synthetic") & per_generator["auc"].isna(), "AUC needs real images too"),
        _note(np.ones(len(per_generator), dtype=bool), "interval ignores reader and image clustering"),
    )
    # Per label.
    per_label = _accuracy_table(df, ["label"], interval).reset_index()
    auc_cols(per_label, [("label", lab) for lab in per_label["label"]])
    per_label["note"] = _join_notes(per_label["note"],
                                    _note(per_label["auc"].isna(), "AUC needs both classes in this label"),
                                    _note(per_label["n"] > 0, "descriptive: interval and test ignore reader and "
                                          "image clustering"))
    # Per image.
    per_image = _group_counts(df, ["image", "truth", "generator", "label"]).reset_index()
    per_image = per_image.rename(columns={"n": "n_readers"})
    _rate_columns(per_image, "share_called_real", per_image["called_real"], per_image["n_readers"], interval)
    per_image["accuracy"] = _ratio(per_image["correct"], per_image["n_readers"])
    per_image = per_image[[
        "image", "truth", "generator", "label", "n_readers", "called_real", "share_called_real",
        "share_called_real_ci_low", "share_called_real_ci_high", "accuracy", "mean_confidence", "median_seconds",
    ]].sort_values(["truth", "share_called_real", "image"], ascending=[True, False, True])
    # Confidence, tests, calibration, reading time.
    groupings = _groupings(df)
    confidence = _describe(df, "confidence", groupings, ("mean", "median"))
    time_groups = {k: groupings[k] for k in ("truth", "correctness", "truth_answer")}
    reading_time = _describe(df, "seconds", time_groups, ("median",)).rename(columns={"median": "median_seconds"})
    tests = pd.DataFrame([
        _mann_whitney(df.loc[df["synthetic"], "confidence"], df.loc[~df["synthetic"], "confidence"],
                      "confidence: synthetic vs real images", "synthetic", "real"),
        _mann_whitney(df.loc[df["correct"], "confidence"], df.loc[~df["correct"], "confidence"],
                      "confidence: correct vs incorrect answers", "correct", "incorrect"),
    ])
    distribution = df.groupby(["truth", "answer", "confidence"], observed=True).size().rename("n").reset_index()
    distribution["share_of_truth"] = _ratio(distribution["n"], distribution.groupby("truth")["n"].transform("sum"))
    calibration = _group_counts(df, ["confidence"]).reset_index()[["confidence", "n", "correct"]]
    _rate_columns(calibration, "accuracy", calibration["correct"], calibration["n"], interval)
    agreement, pairwise = _agreement(df) if not empty else _agreement(df.iloc[:0])
    meta = pd.DataFrame({"key": ["interval", "n_bootstrap", "seed", "score", "positive_class", "n_responses"],
                         "value": [interval, n_bootstrap, seed,
                                   "answer real at highest confidence (lowest) .. "
                                   "answer synthetic at highest confidence (highest)",
                                   "synthetic", len(df)]})
    tables = {
        "pooled": _ordered(pooled, ["scope", "n_readers", "n_images"]),
        "per_reader": _ordered(per_reader, ["reader"]),
        "per_generator": _ordered(per_generator, ["generator", "truth", "n_images"]),
        "per_label": _ordered(per_label, ["label"]),
        "per_image": per_image.reset_index(drop=True), "confidence": confidence, "tests": tests,
        "calibration": calibration, "score_distribution": distribution, "reading_time": reading_time,
        "roc": roc, "agreement": agreement, "pairwise_kappa": pairwise, "meta": meta,
    }
    for table in tables.values():  # plain text columns out, whatever was used for speed inside
        for col in table.columns:
            if isinstance(table[col].dtype, pd.CategoricalDtype):
                table[col] = table[col].astype(str)
    for name in ("calibration", "score_distribution"):  # a 1..5 scale reads as 1..5, not 1.0..5.0
        conf = tables[name]["confidence"]
        if len(conf) and np.all(np.mod(conf.to_numpy(float), 1) == 0):
            tables[name]["confidence"] = conf.astype("int64")
    return tables


def _roc_points_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=["scope", "threshold_answer", "threshold_confidence", "fpr", "tpr"])


def repeat_consistency(pairs: pd.DataFrame, *, interval: str = "wilson") -> pd.DataFrame:
    """Per reader: how often the answer on a repeated item matched the first answer.

    `pairs`: one row per repeated item answered twice, columns `reader, answer_first, answer_repeat,
    confidence_first, confidence_repeat`.
    """
    cols = ["reader", "n_pairs", "n_same", "agreement", "agreement_ci_low", "agreement_ci_high",
            "mean_abs_confidence_change", "note"]
    if len(pairs) == 0:
        return pd.DataFrame(columns=cols)
    same = pairs["answer_first"].astype(str) == pairs["answer_repeat"].astype(str)
    diff = (pd.to_numeric(pairs["confidence_first"]) - pd.to_numeric(pairs["confidence_repeat"])).abs()
    out = pd.DataFrame({"reader": pairs["reader"], "same": same, "diff": diff}).groupby("reader", sort=True).agg(
        n_pairs=("same", "size"), n_same=("same", "sum"), mean_abs_confidence_change=("diff", "mean")).reset_index()
    _rate_columns(out, "agreement", out["n_same"], out["n_pairs"], interval)
    out["note"] = ""
    return out[cols]
