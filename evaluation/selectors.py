"""Reads of the evaluation app: stored metric results, filtered, and the latest per label of a set."""
from __future__ import annotations

from django.db.models import QuerySet

from evaluation.models import MetricResult


def metric_result_list(
    *, real_set_id: int | None = None, fake_set_id: int | None = None, label: str | None = None,
    extractor: str | None = None,
) -> QuerySet[MetricResult]:
    """Stored results, newest first, optionally for one real set, one generated set, label or extractor."""
    qs = MetricResult.objects.select_related("real_set", "fake_set")
    if real_set_id is not None:
        qs = qs.filter(real_set_id=real_set_id)
    if fake_set_id is not None:
        qs = qs.filter(fake_set_id=fake_set_id)
    if label is not None:
        qs = qs.filter(label=label)
    if extractor is not None:
        qs = qs.filter(extractor=extractor)
    return qs.order_by("-created_at", "-id")


def metric_result_latest_by_label(*, fake_set_id: int, real_set_id: int | None = None) -> dict[str, MetricResult]:
    """The newest result per label ("" = the whole set) of a generated set, calibrated results first."""
    latest: dict[str, MetricResult] = {}
    for result in metric_result_list(fake_set_id=fake_set_id, real_set_id=real_set_id).order_by(
        "-calibrated", "-created_at", "-id"
    ):
        latest.setdefault(result.label, result)
    return latest
