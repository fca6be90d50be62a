"""The comparison of generators a paper prints: one row per generator, the automatic metrics of every
feature space (with bootstrap intervals and FID-infinity where computed), the memorisation share, and
the readers' AUC and fooled rate with their intervals. Pure pandas/numpy/matplotlib, no Django: the
inputs are plain records (`AutomaticResult`) and the reader-study tables of
`readerstudy.results_selectors.study_summary`.

- `comparison_table`: the wide table (CSV: every number at full precision, intervals as columns);
- `formatted_table`: the same for reading, each number rounded to its interval and the best per column
  marked (lowest FID, highest precision, human AUC closest to chance, ...);
- `human_columns`: the readers' numbers per generator: the MRMC AUC (`mrmc` table, measure "auc")
  when the results have it, else the readers-pooled AUC of `per_generator`, said so in a note; the
  fooled rate is the share of a generator's images called real (`per_generator`, or per label from
  `per_image` counts with Wilson intervals);
- `scatter_figure`: human AUC against FID, one point per generator and feature space, error bars.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# (metric key, heading, better): "low", "high" or "half" (closest to 0.5: readers at chance).
AUTOMATIC = (
    ("is_mean", "IS", "high"), ("fid", "FID", "low"), ("fid_inf", "FID∞", "low"), ("sfid", "sFID", "low"),
    ("precision", "precision", "high"), ("recall", "recall", "high"), ("kid_mean", "KID", "low"),
    ("density", "density", "high"), ("coverage", "coverage", "high"),
)
HUMAN = (("human_auc", "human AUC", "half"), ("fooled_rate", "fooled rate", "high"))
MEMORISATION = ("memorisation_share", "memorisation share", "low")
INCEPTION_SPACES = ("inception-v3-tf-2015-12-05", "random-inception")
SEP = " | "  # between a feature space and a metric in column names: "timm:vit_small... | fid"


@dataclass
class AutomaticResult:
    """One stored metric result: a generator's image set against the real set, in one feature space."""

    generator: str
    image_set: str
    space: str
    metrics: dict
    label: str = ""
    weights_sha256: str = ""
    calibrated: bool = True
    n_real: int = 0
    n_fake: int = 0


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per generator
    spaces: list[str]
    notes: list[str] = field(default_factory=list)
    per_label: dict[str, pd.DataFrame] = field(default_factory=dict)


def _space_order(spaces) -> list[str]:
    return sorted(set(spaces), key=lambda s: (s not in INCEPTION_SPACES, INCEPTION_SPACES.index(s) if s in INCEPTION_SPACES else 0, s))


def _value(metrics: dict, key: str) -> float:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def comparison_table(automatic: list[AutomaticResult], human: pd.DataFrame | None, *, label: str = "",
                     generators: list[str] | None = None, spaces: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The wide table for one label ("" = whole sets) and its feature spaces (default: those it holds)."""
    results = [r for r in automatic if r.label == label]
    spaces = _space_order(r.space for r in results) if spaces is None else spaces
    names = sorted(set(generators or []) | {r.generator for r in results}
                   | (set(human["generator"].astype(str)) if human is not None and len(human) else set()))
    rows = []
    for generator in names:
        row: dict = {"generator": generator}
        mine = [r for r in results if r.generator == generator]
        row["image_set"] = ", ".join(sorted({r.image_set for r in mine}))
        for space in spaces:
            found = next((r for r in mine if r.space == space), None)
            metrics = found.metrics if found else {}
            for key, _, _ in AUTOMATIC:
                row[f"{space}{SEP}{key}"] = _value(metrics, key)
                for end in ("_ci_low", "_ci_high"):
                    if f"{key}{end}" in metrics:
                        row[f"{space}{SEP}{key}{end}"] = _value(metrics, f"{key}{end}")
            row[f"{space}{SEP}n_fake"] = found.n_fake if found else math.nan
        # Memorisation: nearest training images in the first space that has it (Inception first).
        row["memorisation_share"] = next(
            (v for v in (_value(r.metrics, "memorisation_share") for s in spaces for r in mine if r.space == s)
             if not math.isnan(v)), math.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=["generator", "image_set", "memorisation_share"])
    human_cols = ["human_auc", "human_auc_ci_low", "human_auc_ci_high", "human_auc_source",
                  "fooled_rate", "fooled_rate_ci_low", "fooled_rate_ci_high"]
    if human is not None and len(human):
        table = table.merge(human[["generator", *[c for c in human_cols if c in human]]].astype({"generator": str}),
                            on="generator", how="left")
    for col in human_cols:
        if col not in table:
            table[col] = "" if col == "human_auc_source" else math.nan
    # Intervals only exist where a bootstrap ran: add the missing interval columns as empty.
    for space in spaces:
        for key, _, _ in AUTOMATIC:
            for end in ("_ci_low", "_ci_high"):
                if f"{space}{SEP}{key}{end}" not in table:
                    table[f"{space}{SEP}{key}{end}"] = math.nan
    return table.reset_index(drop=True), spaces


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def human_columns(tables: dict[str, pd.DataFrame] | None) -> tuple[pd.DataFrame | None, dict[str, pd.DataFrame], list[str]]:
    """(overall human columns per generator, the same per label, notes) from `study_summary`'s tables."""
    notes: list[str] = []
    if not tables:
        return None, {}, ["no reader-study results: the human columns are empty"]
    per_generator = tables.get("per_generator")
    out = pd.DataFrame(columns=["generator"])
    if per_generator is not None and len(per_generator):
        synthetic = per_generator[per_generator["truth"] == "synthetic"]
        out = pd.DataFrame({
            "generator": synthetic["generator"].astype(str),
            "fooled_rate": synthetic["share_called_real"].astype(float),
            "fooled_rate_ci_low": synthetic["share_called_real_ci_low"].astype(float),
            "fooled_rate_ci_high": synthetic["share_called_real_ci_high"].astype(float),
            "pooled_auc": synthetic["auc"].astype(float), "pooled_auc_ci_low": synthetic["auc_ci_low"].astype(float),
            "pooled_auc_ci_high": synthetic["auc_ci_high"].astype(float),
        })
        notes.append("fooled rate: share of a generator's images the readers called real (per_generator table)")
    else:
        notes.append("no per-generator reader results: fooled rate empty")
    mrmc = tables.get("mrmc")
    if mrmc is not None and len(mrmc) and {"measure", "generator", "estimate", "ci_low", "ci_high"} <= set(mrmc.columns):
        auc = mrmc[mrmc["measure"].astype(str).str.lower() == "auc"].drop_duplicates("generator")
        auc = pd.DataFrame({"generator": auc["generator"].astype(str), "human_auc": auc["estimate"].astype(float),
                            "human_auc_ci_low": auc["ci_low"].astype(float), "human_auc_ci_high": auc["ci_high"].astype(float)})
        # The MRMC table also has a row for all synthetic images together: only the generators' rows here.
        out = out.merge(auc, on="generator", how="left") if len(out) else auc
        out["human_auc_source"] = np.where(out["human_auc"].notna(), "MRMC", "")
        notes.append("human AUC: multi-reader multi-case (MRMC) estimate and interval from the study's results")
        # MRMC needs two readers or more: with fewer, the readers-pooled AUC stands in, marked as such.
        missing = out["human_auc"].isna() & out["pooled_auc"].notna() if "pooled_auc" in out else None
        if missing is not None and missing.any():
            for column in ("human_auc", "human_auc_ci_low", "human_auc_ci_high"):
                out.loc[missing, column] = out.loc[missing, column.replace("human_auc", "pooled_auc")]
            out.loc[missing, "human_auc_source"] = "pooled readers"
            notes.append("human AUC marked 'pooled readers': no MRMC estimate (fewer than two readers); the "
                         "readers-pooled AUC with its bootstrap interval ignores reader variability")
    elif "pooled_auc" in out:
        out["human_auc"], out["human_auc_ci_low"], out["human_auc_ci_high"] = (
            out["pooled_auc"], out["pooled_auc_ci_low"], out["pooled_auc_ci_high"])
        out["human_auc_source"] = "pooled readers"
        notes.append("human AUC: no MRMC table in the study's results; shown is the readers-pooled AUC with its "
                     "bootstrap interval (ignores reader variability), marked 'pooled readers'")
    else:
        notes.append("no MRMC table in the study's results: human AUC empty")
    out = out.drop(columns=[c for c in out if c.startswith("pooled_auc")])
    per_label: dict[str, pd.DataFrame] = {}
    per_image = tables.get("per_image")
    if per_image is not None and len(per_image) and {"label", "called_real", "n_readers"} <= set(per_image.columns):
        synthetic = per_image[per_image["truth"] == "synthetic"]
        counts = synthetic.groupby(["label", "generator"])[["called_real", "n_readers"]].sum().reset_index()
        low, high = _wilson(counts["called_real"], counts["n_readers"])
        counts["fooled_rate"] = counts["called_real"] / counts["n_readers"]
        counts["fooled_rate_ci_low"], counts["fooled_rate_ci_high"] = low, high
        for label, part in counts.groupby("label"):
            per_label[str(label)] = part[["generator", "fooled_rate", "fooled_rate_ci_low", "fooled_rate_ci_high"]].astype({"generator": str})
        notes.append("per label: fooled rate from the per-image answers (Wilson 95% intervals); "
                     "human AUC per label and generator is not in the study's results")
    return out, per_label, notes


def compare(automatic: list[AutomaticResult], tables: dict[str, pd.DataFrame] | None = None,
            generators: list[str] | None = None) -> Comparison:
    """The whole comparison: overall table, per-label tables, notes."""
    human, human_by_label, notes = human_columns(tables)
    table, spaces = comparison_table(automatic, human, generators=generators)
    labels = sorted({r.label for r in automatic if r.label} | set(human_by_label))
    per_label = {label: comparison_table(automatic, human_by_label.get(label), label=label, generators=generators,
                                         spaces=spaces)[0]
                 for label in labels}
    for result in automatic:
        if not result.calibrated and f"{result.space}: uncalibrated" not in " ".join(notes):
            notes.append(f"{result.space}: uncalibrated, not comparable with published values")
    if any(s not in INCEPTION_SPACES for s in spaces):
        notes.append("sFID and IS are Inception-only: empty in the other feature spaces, whose Frechet distances "
                     "are not comparable with Inception FID")
    if not automatic:
        notes.append("no automatic metrics stored for these image sets yet (run evaluate_metrics)")
    return Comparison(table=table, spaces=spaces, notes=notes, per_label=per_label)


# --- for reading ---------------------------------------------------------------------------------

def round_to_interval(value: float, low: float | None = None, high: float | None = None) -> str:
    """`value` with as many decimals as its interval supports (one significant digit of the half-width,
    two when that digit is 1), the interval likewise; 4 significant digits without an interval."""
    if value is None or not np.isfinite(value):
        return "—"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return f"{value:.4g}"
    half = (high - low) / 2
    exponent = math.floor(math.log10(half))
    digits = 2 if f"{half:e}"[0] == "1" else 1
    decimals = max(0, digits - 1 - exponent)
    return f"{value:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _best(values: pd.Series, better: str) -> pd.Series:
    finite = values.astype(float)
    if finite.notna().sum() < 2:
        return pd.Series(False, index=values.index)
    score = {"low": finite, "high": -finite, "half": (finite - 0.5).abs()}[better]
    return score == score.min()


def display_columns(spaces: list[str]) -> list[tuple[str, str, str, str]]:
    """(column key in the wide table, space shown, heading, better) in the order a paper prints them."""
    cols = []
    for space in spaces:
        for key, heading, better in AUTOMATIC:
            if key in ("is_mean", "sfid") and space not in INCEPTION_SPACES:
                continue
            cols.append((f"{space}{SEP}{key}", space, heading, better))
    cols.append((MEMORISATION[0], "", MEMORISATION[1], MEMORISATION[2]))
    cols += [(key, "readers", heading, better) for key, heading, better in HUMAN]
    return cols


def formatted_table(table: pd.DataFrame, spaces: list[str]) -> tuple[list[dict], list[list[dict]]]:
    """(header cells, rows of cells) for a page or a text table: each cell {"text", "best"}; values
    rounded to their interval; the best of each column (with at least two values) marked."""
    columns = [c for c in display_columns(spaces) if c[0] in table.columns]
    header = [{"key": "generator", "space": "", "heading": "generator"}] + [
        {"key": key, "space": space, "heading": heading, "better": better} for key, space, heading, better in columns]
    best = {key: _best(table[key], better) for key, _, _, better in columns}
    rows = []
    for i, record in table.iterrows():
        cells = [{"text": str(record["generator"]), "best": False}]
        for key, _, _, _ in columns:
            low, high = record.get(f"{key}_ci_low"), record.get(f"{key}_ci_high")
            text = round_to_interval(record[key], low, high)
            if key == "human_auc" and record.get("human_auc_source") == "pooled readers" and text != "—":
                text += " (pooled)"
            cells.append({"text": text, "best": bool(best[key].iloc[i]) and text != "—"})
        rows.append(cells)
    return header, rows


def format_text(comparison: Comparison) -> str:
    """The comparison as plain text: the overall table, then one per label, best marked with *."""
    def block(title: str, table: pd.DataFrame) -> list[str]:
        header, rows = formatted_table(table, comparison.spaces)
        heads = [h["heading"] + (f" ({_short(h['space'])})" if h["space"] else "") for h in header]
        cells = [heads] + [[c["text"] + ("*" if c["best"] else "") for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(heads))]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(len(heads))) for r in cells]
        return [title, lines[0], "  ".join("-" * w for w in widths), *lines[1:], ""]

    out = block("All images (best per column marked *)", comparison.table)
    for label, table in comparison.per_label.items():
        out += block(f"Label {label}", table)
    out += [f"note: {n}" for n in comparison.notes]
    return "\n".join(out)


def _short(space: str) -> str:
    return {"inception-v3-tf-2015-12-05": "Inception", "random-inception": "random Inception"}.get(space, space)


def scatter_points(comparison: Comparison) -> pd.DataFrame:
    """One point per generator and feature space with both a FID and a human AUC."""
    rows = []
    for _, record in comparison.table.iterrows():
        for space in comparison.spaces:
            fid, auc = record.get(f"{space}{SEP}fid"), record.get("human_auc")
            if fid is None or auc is None or not (np.isfinite(fid) and np.isfinite(auc)):
                continue
            rows.append({"generator": record["generator"], "space": space, "fid": fid,
                         "fid_ci_low": record.get(f"{space}{SEP}fid_ci_low"), "fid_ci_high": record.get(f"{space}{SEP}fid_ci_high"),
                         "human_auc": auc, "human_auc_ci_low": record.get("human_auc_ci_low"),
                         "human_auc_ci_high": record.get("human_auc_ci_high")})
    return pd.DataFrame(rows, columns=["generator", "space", "fid", "fid_ci_low", "fid_ci_high", "human_auc",
                                       "human_auc_ci_low", "human_auc_ci_high"])


def scatter_figure(points: pd.DataFrame):
    """Human AUC against FID: one panel per feature space (their FIDs are not on one scale)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    spaces = list(dict.fromkeys(points["space"])) or [""]
    fig = Figure(figsize=(4.2 * len(spaces), 3.4))
    for i, space in enumerate(spaces):
        ax = fig.add_subplot(1, len(spaces), i + 1)
        part = points[points["space"] == space]
        if part.empty:
            ax.text(0.5, 0.5, "no generator has both a FID and a human AUC yet", ha="center", va="center", wrap=True)
            ax.set_axis_off()
            continue
        for _, p in part.iterrows():
            xerr = _err(p["fid"], p["fid_ci_low"], p["fid_ci_high"])
            yerr = _err(p["human_auc"], p["human_auc_ci_low"], p["human_auc_ci_high"])
            ax.errorbar([p["fid"]], [p["human_auc"]], xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=p["generator"])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(f"FID ({_short(space)})")
        ax.set_ylabel("human AUC (0.5 = chance)")
        ax.legend(fontsize=7)
    return fig


def _err(value, low, high):
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return None
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]
