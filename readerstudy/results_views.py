"""Staff-only results pages: the statistics of a study (available while it runs), its plots and CSV downloads.

Thin: parse the request, call `results_selectors`, `plots` or `exports`, respond. Anonymous users
are sent to the login page; logged-in non-staff users get 403.
"""
from __future__ import annotations

import math
from functools import wraps

import pandas as pd
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from readerstudy import exports, plots, results_selectors
from readerstudy.models import Study, StudyItem
from readerstudy.stats import INTERVALS

# Columns shown on the page for each table (all columns are in the CSV downloads).
PAGE_COLUMNS = {
    "pooled": ["n_readers", "n_images", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value",
               "sensitivity", "specificity", "share_called_real", "auc", "auc_ci_low", "auc_ci_high", "note"],
    "per_reader": ["reader", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "p_value", "sensitivity",
                   "specificity", "share_called_real", "auc", "auc_ci_low", "auc_ci_high", "mean_confidence",
                   "median_seconds", "note"],
    "generators": ["generator", "image_set", "n_images", "accuracy", "share_called_real", "share_called_real_ci_low",
                   "share_called_real_ci_high", "auc", "auc_ci_low", "auc_ci_high", "fid", "sfid", "is_mean",
                   "precision", "recall", "kid_mean", "status"],
    "per_generator": ["generator", "truth", "n_images", "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                      "p_value", "share_called_real", "share_called_real_ci_low", "share_called_real_ci_high", "auc",
                      "note"],
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
}
TITLES = {
    "pooled": "All readers together", "per_reader": "Per reader",
    "generators": "Per generator: readers beside the automatic metrics", "per_generator": "Per image source",
    "per_label": "Per class label", "confidence": "Confidence", "tests": "Mann-Whitney U tests",
    "calibration": "Calibration: accuracy per confidence level", "reading_time": "Reading time (seconds)",
    "agreement": "Agreement between readers", "consistency": "Consistency on repeated items",
    "per_image": "Per image: share of readers who called it real",
}
PER_IMAGE_ROWS = 15


def staff_required(view):
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("Results are for staff only.")
        return view(request, *args, **kwargs)

    return wrapper


def _interval(request: HttpRequest) -> str:
    interval = request.GET.get("interval", "wilson")
    if interval not in INTERVALS:
        raise Http404(f"interval {interval!r}: expected one of {', '.join(INTERVALS)}")
    return interval


def _cell(value, column: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0.0 and column == "p_value":
            return "< 1e-300"
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def display_table(df: pd.DataFrame, columns: list[str]) -> dict:
    cols = [c for c in columns if c in df.columns]
    records = df[cols].astype(object).itertuples(index=False, name=None)
    return {
        "columns": [c.replace("_", " ") for c in cols],
        "rows": [[_cell(v, c) for v, c in zip(row, cols)] for row in records],
    }


@require_GET
@staff_required
def results_index(request: HttpRequest) -> HttpResponse:
    studies = results_selectors.studies_with_results().to_dict("records")
    return render(request, "readerstudy/results_index.html", {"studies": studies})


@require_GET
@staff_required
def results_study(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    interval = _interval(request)
    tables = results_selectors.study_summary(study=study, interval=interval)
    per_image = tables["per_image"]
    shown = {name: tables[name] for name in PAGE_COLUMNS if name != "per_image"}
    fooling = per_image[per_image["truth"] == "synthetic"].head(PER_IMAGE_ROWS)
    looks_fake = per_image[per_image["truth"] == "real"].sort_values("share_called_real").head(PER_IMAGE_ROWS)
    sections = [
        {"name": name, "title": TITLES[name], "table": display_table(df, PAGE_COLUMNS[name])}
        for name, df in shown.items()
    ]
    context = {
        "study": study,
        "interval": interval,
        "intervals": list(INTERVALS),
        "sections": sections,
        "fooling": display_table(fooling, PAGE_COLUMNS["per_image"]),
        "looks_fake": display_table(looks_fake, PAGE_COLUMNS["per_image"]),
        "plots": plots.PLOTS,
        "exports": exports.EXPORT_NAMES,
        "uncalibrated": bool((tables["metrics"]["status"] == "uncalibrated").any()),
        "n_practice_excluded": study.items.filter(role=StudyItem.Role.PRACTICE).count(),
    }
    return render(request, "readerstudy/results.html", context)


@require_GET
@staff_required
def results_plot(request: HttpRequest, study_id: int, name: str, fmt: str) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if name not in plots.PLOTS or fmt not in plots.FORMATS:
        raise Http404("no such plot")
    interval = _interval(request)
    key = f"readerstudy:plot:{study.pk}:{results_selectors.summary_fingerprint(study=study)}:{interval}:{name}:{fmt}"
    data = cache.get(key)
    if data is None:
        tables = results_selectors.study_summary(study=study, interval=interval)
        data = plots.render(plots.study_plot(name, tables), fmt)
        cache.set(key, data, results_selectors.SUMMARY_CACHE_SECONDS)
    response = HttpResponse(data, content_type=plots.FORMATS[fmt])
    response["Cache-Control"] = "private, no-store"
    return response


def csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@staff_required
def results_export(request: HttpRequest, study_id: int, name: str) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if name not in exports.EXPORT_NAMES:
        raise Http404("no such export")
    real_names = request.GET.get("real_names") == "1"
    text, filename = results_selectors.study_export_csv(
        study=study, name=name, interval=_interval(request), real_names=real_names
    )
    return csv_response(text, filename)
