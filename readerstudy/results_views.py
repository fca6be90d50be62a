"""Staff-only results pages: the verdict of a study (available while it runs), its plots, CSV downloads
and the gallery thumbnails.

Thin: parse the request, call `results_selectors`, `plots` or `exports`, respond. Anonymous users
are sent to the login page; logged-in non-staff users get 403. Every view takes `?interval=` and
`?exclude_quick=1` (leave out answers faster than 0.5 s; recorded in the `meta` table).
"""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

import pandas as pd
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from readerstudy import exports, plots, results_selectors
from readerstudy.models import Study, StudyItem
from readerstudy.results_display import DESCRIPTIVE_TITLES, PAGE_COLUMNS, display_table
from readerstudy.services.blinding import BLINDED_CONTENT_TYPE
from readerstudy.stats import INTERVALS, QUICK_SECONDS

PER_IMAGE_ROWS = 15
GALLERY_SIZE = 8


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


def _exclude_quick(request: HttpRequest) -> bool:
    return request.GET.get("exclude_quick") in ("1", "true")


def _gallery(per_image: pd.DataFrame) -> list[dict]:
    """The synthetic images most and least often called real (the top and bottom halves when there are
    few), and the real images most often called synthetic (never-doubted ones left out)."""
    synthetic = per_image[per_image["truth"] == "synthetic"].sort_values(["share_called_real", "item"],
                                                                         ascending=[False, True])
    real = per_image[(per_image["truth"] == "real") & (per_image["share_called_real"] < 1)]
    real = real.sort_values(["share_called_real", "item"])
    n_top = min(GALLERY_SIZE, (len(synthetic) + 1) // 2)
    n_bottom = min(GALLERY_SIZE, len(synthetic) - n_top)
    groups = [
        ("Most convincing synthetic images (most often called real)", synthetic.head(n_top), True),
        ("Least convincing synthetic images (least often called real)",
         synthetic.iloc[::-1].head(n_bottom), True),
        ("Real images most often called synthetic", real.head(GALLERY_SIZE), False),
    ]
    return [{"title": title, "images": [
        {"item": int(r.item), "generator": r.generator, "n_readers": int(r.n_readers),
         "caption": (f"called real {r.share_called_real:.0%}" if synthetic_set
                     else f"called synthetic {1 - r.share_called_real:.0%}")}
        for r in frame.itertuples()]} for title, frame, synthetic_set in groups]


def _planning(planning: pd.DataFrame) -> list[dict]:
    out = []
    for goal, title in (("difference", "detect an AUC difference between two generators"),
                        ("equivalence", "show equivalence to chance within the margin")):
        part = planning[planning["goal"] == goal]
        if part.empty:
            continue
        first = part.iloc[0]
        shown = part.dropna(subset=["n_readers"])
        out.append({
            "goal": goal, "title": title, "effect": first["effect"], "margin": first["equivalence_margin"],
            "power": f"{first['target_power']:.0%}", "source": first["components_from"],
            "note": first["note"] if shown.empty else "",
            "table": display_table(shown, PAGE_COLUMNS["planning"]) if len(shown) else None,
        })
    return out


@require_GET
@staff_required
def results_index(request: HttpRequest) -> HttpResponse:
    studies = results_selectors.studies_with_results().to_dict("records")
    return render(request, "readerstudy/results_index.html", {"studies": studies})


@require_GET
@staff_required
def results_study(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    interval, exclude_quick = _interval(request), _exclude_quick(request)
    tables = results_selectors.study_summary(study=study, interval=interval, exclude_quick=exclude_quick)
    per_image = tables["per_image"]
    fooling = per_image[per_image["truth"] == "synthetic"].head(PER_IMAGE_ROWS)
    looks_fake = per_image[per_image["truth"] == "real"].sort_values("share_called_real").head(PER_IMAGE_ROWS)
    meta = dict(zip(tables["meta"]["key"], tables["meta"]["value"]))
    query = {"interval": interval, **({"exclude_quick": "1"} if exclude_quick else {})}
    context = {
        "study": study,
        "interval": interval,
        "intervals": list(INTERVALS),
        "exclude_quick": exclude_quick,
        "query": urlencode(query),
        "verdicts": tables["verdict"].to_dict("records"),
        "mrmc": display_table(tables["mrmc"], PAGE_COLUMNS["mrmc"]),
        "mrmc_difference": display_table(tables["mrmc_difference"], PAGE_COLUMNS["mrmc_difference"]),
        "quick": display_table(tables["quick_answers"], PAGE_COLUMNS["quick_answers"]),
        "n_quick": int(tables["quick_answers"]["n_quick"].sum()) if len(tables["quick_answers"]) else 0,
        "quick_seconds": QUICK_SECONDS,
        "meta": meta,
        "gallery": _gallery(per_image),
        "sections": [{"name": name, "title": title, "table": display_table(tables[name], PAGE_COLUMNS[name])}
                     for name, title in DESCRIPTIVE_TITLES.items()],
        "fooling": display_table(fooling, PAGE_COLUMNS["per_image"]),
        "looks_fake": display_table(looks_fake, PAGE_COLUMNS["per_image"]),
        "plots": [p for p in plots.PLOTS if p != "forest"],
        "exports": exports.EXPORT_NAMES,
        "uncalibrated": bool((tables["metrics"]["status"] == "uncalibrated").any()),
        "n_practice_excluded": study.items.filter(role=StudyItem.Role.PRACTICE).count(),
    }
    return render(request, "readerstudy/results.html", context)


@require_GET
@staff_required
def results_planning(request: HttpRequest, study_id: int) -> HttpResponse:
    """The planning section, framed into the results page: seconds to compute, so the page does not wait."""
    study = get_object_or_404(Study, pk=study_id)
    planning = results_selectors.study_planning(study=study, exclude_quick=_exclude_quick(request))
    response = render(request, "readerstudy/results_planning.html", {"study": study, "planning": _planning(planning)})
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


@require_GET
@staff_required
def results_plot(request: HttpRequest, study_id: int, name: str, fmt: str) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    if name not in plots.PLOTS or fmt not in plots.FORMATS:
        raise Http404("no such plot")
    interval, exclude_quick = _interval(request), _exclude_quick(request)
    key = results_selectors.summary_cache_key(study=study, what="plot", interval=interval, exclude_quick=exclude_quick,
                                              margin=float(study.equivalence_margin), name=name, fmt=fmt)
    data = cache.get(key)
    if data is None:
        tables = results_selectors.study_summary(study=study, interval=interval, exclude_quick=exclude_quick)
        data = plots.render(plots.study_plot(name, tables), fmt)
        cache.set(key, data, results_selectors.SUMMARY_CACHE_SECONDS)
    response = HttpResponse(data, content_type=plots.FORMATS[fmt])
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@staff_required
def results_item_image(request: HttpRequest, study_id: int, item_id: int) -> HttpResponse:
    """A study image for the staff gallery, by item id: never reachable by readers (they have tokens only)."""
    item = get_object_or_404(StudyItem.objects.only("id", "study_id", "blinded_file"), pk=item_id, study_id=study_id)
    with item.blinded_file.open("rb") as fh:
        response = HttpResponse(fh.read(), content_type=BLINDED_CONTENT_TYPE)
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
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
        study=study, name=name, interval=_interval(request), real_names=real_names,
        exclude_quick=_exclude_quick(request),
    )
    return csv_response(text, filename)
