"""Staff page of the generator comparison under Results: the table, one per label, the scatter of
human AUC against FID, and the CSV. Thin: `selectors.study_comparison`, then render."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from evaluation.compare import _short, formatted_table, scatter_figure, scatter_points
from evaluation.selectors import study_comparison
from readerstudy.models import Study
from readerstudy.plots import render as render_figure
from readerstudy.results_views import staff_required


def _block(title: str, table, spaces) -> dict:
    header, rows = formatted_table(table, spaces)
    for cell in header:
        cell["space_short"] = _short(cell["space"]) if cell["space"] not in ("", "readers") else cell["space"]
    return {"title": title, "header": header, "rows": rows}


@require_GET
@staff_required
def compare_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    comparison = study_comparison(study=study)
    blocks = [_block("All images", comparison.table, comparison.spaces)]
    blocks += [_block(f"Label {label}", table, comparison.spaces) for label, table in comparison.per_label.items()]
    return render(request, "evaluation/compare.html", {
        "study": study, "overall": blocks[0], "per_label": blocks[1:], "notes": comparison.notes,
        "has_points": not scatter_points(comparison).empty,
    })


@require_GET
@staff_required
def compare_csv(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    comparison = study_comparison(study=study)
    response = HttpResponse(comparison.table.to_csv(index=False), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slugify(study.name)}-generators.csv"'
    return response


@require_GET
@staff_required
def compare_scatter(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    figure = scatter_figure(scatter_points(study_comparison(study=study)))
    return HttpResponse(render_figure(figure, "svg"), content_type="image/svg+xml")
