"""How the results page shows the tables of `readerstudy.stats.summarize`: which columns, their
headers in words, titles, and the cell formatting (NaN as a dash, p-values that underflow).

Presentation only (no statistics); the CSV downloads and the API keep every column under its field name.
"""
from __future__ import annotations

import math

import pandas as pd

# Columns shown on the page for each table (all columns are in the CSV downloads).
PAGE_COLUMNS = {
    "mrmc": ["measure", "generator", "estimate", "ci_low", "ci_high", "se", "df", "p_value", "p_equivalence",
             "equivalence_margin", "n_readers", "n_real", "n_synthetic", "method"],
    "mrmc_difference": ["measure", "generator_a", "generator_b", "difference", "ci_low", "ci_high", "se", "df",
                        "p_value"],
    "quick_answers": ["reader", "n", "n_quick", "share_quick"],
    "pooled": ["n_readers", "n_images", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value",
               "sensitivity", "specificity", "share_called_real", "auc", "auc_ci_low", "auc_ci_high", "note"],
    "per_reader": ["reader", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value", "sensitivity",
                   "specificity", "share_called_real", "auc", "auc_ci_low", "auc_ci_high", "mean_confidence",
                   "median_seconds", "note"],
    "generators": ["generator", "image_set", "n_images", "mrmc_auc", "mrmc_auc_ci_low", "mrmc_auc_ci_high",
                   "share_called_real", "share_called_real_ci_low", "share_called_real_ci_high", "fid", "sfid",
                   "is_mean", "precision", "recall", "kid_mean", "status"],
    "per_generator": ["generator", "truth", "n_images", "n", "share_called_real", "share_called_real_ci_low",
                      "share_called_real_ci_high", "auc", "note"],
    "per_label": ["label", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value", "sensitivity",
                  "specificity", "auc", "auc_ci_low", "auc_ci_high", "note"],
    "confidence": ["grouping", "group", "n", "mean", "median"],
    "tests": ["test", "n_a", "n_b", "u_statistic", "p_value", "effect_auc", "note"],
    "calibration": ["confidence", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high"],
    "reading_time": ["grouping", "group", "n", "median_seconds"],
    "agreement": ["measure", "value", "n_items", "n_readers", "note"],
    "consistency": ["reader", "n_pairs", "agreement", "agreement_ci_low", "agreement_ci_high",
                    "mean_abs_confidence_change"],
    "per_image": ["item", "image_id", "truth", "generator", "label", "n_readers", "share_called_real",
                  "share_called_real_ci_low", "share_called_real_ci_high", "mean_confidence"],
    "planning": ["n_readers", "n_images", "power"],
}
# The descriptive tables, in page order, with their titles.
DESCRIPTIVE_TITLES = {
    "generators": "Per generator: readers beside the automatic metrics",
    "pooled": "All readers together", "per_reader": "Per reader", "per_generator": "Per image source: fooled rate",
    "per_label": "Per class label", "confidence": "Confidence", "tests": "Mann-Whitney U tests",
    "calibration": "Calibration: accuracy per confidence level", "reading_time": "Reading time (seconds)",
    "agreement": "Agreement between readers", "consistency": "Consistency on repeated items",
}
COLUMN_WORDS = {
    "measure": "Measure", "generator": "Generator", "estimate": "Estimate", "ci_low": "95% CI from",
    "ci_high": "95% CI to", "se": "Standard error", "df": "Degrees of freedom", "p_value": "p (vs chance)",
    "p_equivalence": "p (equivalence)", "equivalence_margin": "Equivalence margin (±)", "n_readers": "Readers",
    "n_real": "Real images", "n_synthetic": "Synthetic images", "method": "Method",
    "generator_a": "Generator A", "generator_b": "Generator B", "difference": "Difference (A − B)",
    "reader": "Reader", "n": "Answers", "n_quick": "Answers under 0.5 s", "share_quick": "Share under 0.5 s",
    "n_images": "Images", "accuracy": "Accuracy", "accuracy_ci_low": "Accuracy 95% CI from",
    "accuracy_ci_high": "Accuracy 95% CI to", "sensitivity": "Synthetic called synthetic",
    "specificity": "Real called real", "share_called_real": "Share called real",
    "share_called_real_ci_low": "Share called real 95% CI from", "share_called_real_ci_high": "Share called real 95% CI to",
    "auc": "AUC (descriptive)", "auc_ci_low": "AUC 95% CI from", "auc_ci_high": "AUC 95% CI to",
    "mean_confidence": "Mean confidence", "median_seconds": "Median seconds", "note": "Note",
    "image_set": "Image set", "mrmc_auc": "MRMC AUC", "mrmc_auc_ci_low": "MRMC AUC 95% CI from",
    "mrmc_auc_ci_high": "MRMC AUC 95% CI to", "fid": "FID", "sfid": "sFID", "is_mean": "Inception score", "precision": "Precision",
    "recall": "Recall", "kid_mean": "KID", "status": "Metrics", "truth": "Truth", "label": "Class label",
    "grouping": "Grouped by", "group": "Group", "mean": "Mean", "median": "Median", "test": "Test",
    "n_a": "Answers in A", "n_b": "Answers in B", "u_statistic": "U", "effect_auc": "Effect (AUC)",
    "confidence": "Confidence", "value": "Value", "n_items": "Items", "n_pairs": "Repeated pairs",
    "agreement": "Same answer", "agreement_ci_low": "95% CI from", "agreement_ci_high": "95% CI to",
    "mean_abs_confidence_change": "Mean confidence change", "item": "Item", "image_id": "Image id",
    "n_cases": "Images", "power": "Power",
}
MEASURE_WORDS = {"auc": "AUC", "balanced_accuracy": "Balanced accuracy"}


def cell(value, column: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column == "measure" and value in MEASURE_WORDS:
        return MEASURE_WORDS[value]
    if isinstance(value, float):
        if value == 0.0 and column.startswith("p_"):
            return "< 1e-300"
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def display_table(df: pd.DataFrame, columns: list[str]) -> dict:
    """Headers in words and formatted cells of `df`'s `columns` that exist."""
    cols = [c for c in columns if c in df.columns]
    records = df[cols].astype(object).itertuples(index=False, name=None)
    return {
        "columns": [COLUMN_WORDS.get(c, c.replace("_", " ").capitalize()) for c in cols],
        "rows": [[cell(v, c) for v, c in zip(row, cols)] for row in records],
    }
