"""Staff API for results under /api/admin/: a study's statistics as JSON, and its CSV exports.

- `GET studies/<id>/results/` -> {"study": ..., "tables": {name: [row, ...]}} (NaN as null);
- `GET studies/<id>/results/<name>.csv` -> the CSV of `name` ("responses" or a summary table);
  `?real_names=1` puts user names instead of pseudonyms into the responses.
Both take `?interval=wilson|clopper-pearson` and `?exclude_quick=1` (leave out answers faster than 0.5 s;
recorded in the `meta` table). The tables include the verdict (`verdict`, `mrmc`, `mrmc_difference`,
`mrmc_components`, `planning`) beside the descriptive ones.
"""
import json

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes, renderer_classes
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from readerstudy import exports, results_selectors
from readerstudy.models import Study
from readerstudy.results_views import csv_response
from readerstudy.stats import INTERVALS

INTERVAL_PARAM = OpenApiParameter("interval", str, enum=list(INTERVALS), description="95% interval method")
QUICK_PARAM = OpenApiParameter("exclude_quick", bool, description="leave out answers faster than 0.5 s")


class CSVRenderer(BaseRenderer):
    """Lets clients ask for text/csv; the view returns the CSV itself, errors come as JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, (str, bytes)) else json.dumps(data)


def _exclude_quick(request: Request) -> bool:
    return request.query_params.get("exclude_quick") in ("1", "true")


def _interval(request: Request) -> str:
    interval = request.query_params.get("interval", "wilson")
    if interval not in INTERVALS:
        raise ValidationError({"interval": f"{interval!r}: expected one of {', '.join(INTERVALS)}"})
    return interval


@extend_schema(parameters=[INTERVAL_PARAM, QUICK_PARAM], responses={200: OpenApiTypes.OBJECT}, tags=["results"],
               operation_id="admin_study_results")
@api_view(["GET"])
@permission_classes([IsAdminUser])
def study_results(request: Request, study_id: int) -> Response:
    study = get_object_or_404(Study, pk=study_id)
    tables = results_selectors.study_summary(study=study, interval=_interval(request),
                                             exclude_quick=_exclude_quick(request))
    tables["planning"] = results_selectors.study_planning(study=study, exclude_quick=_exclude_quick(request))
    body = {name: json.loads(df.to_json(orient="records", double_precision=15)) for name, df in tables.items()}
    return Response({"study": {"id": study.pk, "name": study.name, "state": study.state}, "tables": body})


@extend_schema(
    parameters=[
        INTERVAL_PARAM, QUICK_PARAM, OpenApiParameter("real_names", bool, description="user names instead of pseudonyms"),
        OpenApiParameter("name", str, OpenApiParameter.PATH, enum=list(exports.EXPORT_NAMES)),
    ],
    responses={(200, "text/csv"): OpenApiTypes.STR}, tags=["results"], operation_id="admin_study_results_csv",
)
@api_view(["GET"])
@renderer_classes([CSVRenderer, JSONRenderer])
@permission_classes([IsAdminUser])
def study_results_csv(request: Request, study_id: int, name: str):
    study = get_object_or_404(Study, pk=study_id)
    if name not in exports.EXPORT_NAMES:
        raise NotFound(f"export {name!r}: expected one of {', '.join(exports.EXPORT_NAMES)}")
    text, filename = results_selectors.study_export_csv(
        study=study, name=name, interval=_interval(request),
        real_names=request.query_params.get("real_names") in ("1", "true"), exclude_quick=_exclude_quick(request),
    )
    return csv_response(text, filename)


urlpatterns = [
    path("studies/<int:study_id>/results/", study_results, name="api-study-results"),
    path("studies/<int:study_id>/results/<str:name>.csv", study_results_csv, name="api-study-results-csv"),
]
