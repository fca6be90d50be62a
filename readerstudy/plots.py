"""Server-side figures of a reader study (matplotlib, Agg backend, no pyplot state): PNG or SVG bytes.

- `forest_plot`: per-reader AUC with intervals beside the MRMC AUC of each generator and its interval;
- `confidence_plot`: how real and synthetic images were answered, from "surely real" to "surely AI";
- `roc_plot`: the confidence-weighted ROC curves, pooled and per reader, with the diagonal of chance;
- `calibration_plot`: accuracy at each confidence level with intervals.

Each takes tables of `readerstudy.stats.summarize`; empty tables give a figure that says so.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
PLOTS = ("forest", "confidence", "roc", "calibration")
REAL, SYNTHETIC, POOLED = "#1f77b4", "#d62728", "#5b2a86"


def render(fig: Figure, fmt: str = "png") -> bytes:
    """`fig` as PNG or SVG bytes, reproducible (no dates, fixed SVG ids)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "histosynth", "svg.fonttype": "none"}):
        fig.savefig(out, format=fmt, dpi=110, bbox_inches="tight", metadata=metadata)
    return out.getvalue()


def _empty(fig: Figure, ax, text: str) -> Figure:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#666")
    return fig


def forest_plot(per_reader: pd.DataFrame, mrmc: pd.DataFrame | None = None) -> Figure:
    """Each reader's AUC (points, bootstrap intervals over images) and, below them, the MRMC AUC of all
    synthetic images and of each generator with its interval (diamonds, random readers and images);
    the MRMC interval of all synthetic images is also a band behind the readers, chance a dashed line."""
    auc = mrmc[mrmc["measure"] == "auc"] if mrmc is not None and len(mrmc) else pd.DataFrame()
    n, k = len(per_reader), len(auc)
    fig = Figure(figsize=(7, max(2.5, min(0.22 * (n + k), 14.0) + 1.4)))
    ax = fig.add_subplot()
    if n == 0:
        return _empty(fig, ax, "No answers yet")
    y = np.arange(n)[::-1] + k + 1
    est = per_reader["auc"].to_numpy(float)
    low, high = per_reader["auc_ci_low"].to_numpy(float), per_reader["auc_ci_high"].to_numpy(float)
    low, high = np.where(np.isnan(low), est, low), np.where(np.isnan(high), est, high)
    ax.errorbar(est, y, xerr=[est - low, high - est], fmt="o", color="#333", ecolor="#888", capsize=2, ms=4,
                label="reader AUC (interval over images)")
    labels = list(per_reader["reader"].astype(str))
    ticks = list(y)
    overall = auc[auc["generator"] == "all"] if k else auc
    if len(overall) and np.isfinite(overall["ci_low"].iloc[0]):
        ax.axvspan(overall["ci_low"].iloc[0], overall["ci_high"].iloc[0], color=POOLED, alpha=0.12,
                   label="MRMC 95% interval, all synthetic")
    for j, row in enumerate(auc.itertuples()):
        yy = k - j
        ticks.append(yy)
        if np.isfinite(row.estimate):
            ax.errorbar([row.estimate], [yy], xerr=[[row.estimate - row.ci_low], [row.ci_high - row.estimate]],
                        fmt="D", color=POOLED, ecolor=POOLED, capsize=3, ms=6, label="MRMC AUC (95% interval)" if j == 0
                        else None)
            labels.append(f"MRMC: {row.generator}")
        else:
            labels.append(f"MRMC: {row.generator} (not estimable)")
    ax.axvline(0.5, color="#999", ls="--", lw=1, label="chance (0.5)")
    ax.set_yticks(ticks, labels, fontsize=8 if n <= 60 else 6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUC: synthetic told from real (0.5 = chance)")
    ax.set_title("Reader AUCs and the multi-reader multi-case AUC")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def confidence_plot(score_distribution: pd.DataFrame) -> Figure:
    """Share of real and of synthetic images at each answer and confidence, "surely real" on the left."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    if len(score_distribution) == 0:
        return _empty(fig, ax, "No answers yet")
    d = score_distribution.astype({"truth": str, "answer": str})
    conf = d["confidence"].to_numpy(float)
    key = np.where(d["answer"] == "synthetic", 1e6 + conf, -conf)  # the ordinal score of readerstudy.stats
    levels = np.unique(key)
    labels = [f"AI {lv - 1e6:g}" if lv >= 1e6 else f"real {-lv:g}" for lv in levels]
    x = np.arange(len(levels))
    for offset, truth, color in ((-0.2, "real", REAL), (0.2, "synthetic", SYNTHETIC)):
        share = pd.Series(d["share_of_truth"].to_numpy(float)[d["truth"] == truth], index=key[d["truth"] == truth])
        ax.bar(x + offset, share.reindex(levels).fillna(0).to_numpy(), width=0.4, color=color,
               label=f"{truth} images")
    ax.set_xticks(x, labels, rotation=0, fontsize=8)
    ax.set_xlabel('Answer and confidence, from "surely real" to "surely AI-generated"')
    ax.set_ylabel("Share of the images' answers")
    ax.set_title("Confidence distributions")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return fig


def roc_plot(roc: pd.DataFrame, pooled: pd.DataFrame | None = None, max_readers: int = 200) -> Figure:
    """Confidence-weighted ROC: pooled curve in bold, each reader's curve thin."""
    fig = Figure(figsize=(4.8, 4.8))
    ax = fig.add_subplot()
    if len(roc) == 0:
        return _empty(fig, ax, "ROC needs answers on real and synthetic images")
    scopes = roc["scope"].astype(str)
    for k, scope in enumerate(s for s in scopes.unique() if s != "pooled"):
        if k >= max_readers:
            break
        part = roc[scopes == scope]
        ax.plot(part["fpr"], part["tpr"], color="#999", lw=0.6, alpha=0.6, label="readers" if k == 0 else None)
    part = roc[scopes == "pooled"]
    label = "pooled"
    if pooled is not None and len(pooled) and not np.isnan(pooled["auc"].iloc[0]):
        p = pooled.iloc[0]
        label = f"pooled, AUC {p['auc']:.3f}"
        if not np.isnan(p["auc_ci_low"]):
            label += f" ({p['auc_ci_low']:.3f}-{p['auc_ci_high']:.3f})"
    ax.plot(part["fpr"], part["tpr"], color=POOLED, lw=2, marker="o", ms=3, label=label)
    ax.plot([0, 1], [0, 1], color="#bbb", ls="--", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("Real images called AI-generated (1 - specificity)")
    ax.set_ylabel("Synthetic images called AI-generated (sensitivity)")
    ax.set_title("Confidence-weighted ROC")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def calibration_plot(calibration: pd.DataFrame) -> Figure:
    """Accuracy at each confidence level with 95% intervals; the size of each point is its count."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    if len(calibration) == 0:
        return _empty(fig, ax, "No answers yet")
    x = calibration["confidence"].to_numpy(float)
    acc = calibration["accuracy"].to_numpy(float)
    low, high = calibration["accuracy_ci_low"].to_numpy(float), calibration["accuracy_ci_high"].to_numpy(float)
    ax.errorbar(x, acc, yerr=[acc - low, high - acc], fmt="-o", color=POOLED, capsize=3)
    for xi, yi, n in zip(x, acc, calibration["n"]):
        ax.annotate(f"n={int(n)}", (xi, yi), textcoords="offset points", xytext=(4, 6), fontsize=7, color="#555")
    ax.axhline(0.5, color="#999", ls="--", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Accuracy")
    ax.set_title("Calibration: accuracy per confidence level")
    return fig


def study_plot(name: str, tables: dict[str, pd.DataFrame]) -> Figure:
    """The figure `name` (one of PLOTS) from summarize's tables."""
    if name == "forest":
        return forest_plot(tables["per_reader"], tables.get("mrmc"))
    if name == "confidence":
        return confidence_plot(tables["score_distribution"])
    if name == "roc":
        return roc_plot(tables["roc"], tables.get("pooled"))
    if name == "calibration":
        return calibration_plot(tables["calibration"])
    raise ValueError(f"plot {name!r}: expected one of {', '.join(PLOTS)}")
