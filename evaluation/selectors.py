"""Reads of the evaluation app: stored metric results, filtered, the latest per label of a set, and the
inputs of the generator comparison (`evaluation.compare`) for a study or named image sets."""
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


def automatic_results(*, image_sets, real_set_id: int | None = None) -> list:
    """The newest stored result per (image set, feature space, label) of `image_sets`, as
    `compare.AutomaticResult` records (the generator is the set's generator, else its name)."""
    from evaluation.compare import AutomaticResult

    out, seen = [], set()
    for image_set in image_sets:
        for result in metric_result_list(fake_set_id=image_set.pk, real_set_id=real_set_id):
            key = (image_set.pk, result.extractor, result.label)
            if key in seen:
                continue
            seen.add(key)
            out.append(AutomaticResult(
                generator=image_set.generator or image_set.name, image_set=image_set.name, space=result.extractor,
                metrics=result.metrics or {}, label=result.label, weights_sha256=result.weights_sha256,
                calibrated=result.calibrated, n_real=result.n_real, n_fake=result.n_fake,
            ))
    return out


def study_comparison(*, study):
    """`compare.compare` of a study's generators: the stored metrics of its synthetic image sets and
    the readers' numbers of `readerstudy.results_selectors.study_summary`."""
    from evaluation.compare import compare
    from readerstudy import results_selectors
    from readerstudy.models import ImageSet, StudyItem

    set_ids = (StudyItem.objects.filter(study=study, role=StudyItem.Role.MAIN, truth="synthetic")
               .values_list("image__image_set_id", flat=True).distinct())
    sets = list(ImageSet.objects.filter(pk__in=list(set_ids)).order_by("generator", "name"))
    # A study without readers has no results (and study_summary's raw query cannot be built for it).
    tables = results_selectors.study_summary(study=study) if study.assignments.exists() else None
    return compare(automatic_results(image_sets=sets), tables, generators=[s.generator or s.name for s in sets])


def image_sets_comparison(*, names: list[str], real: str | None = None):
    """`compare.compare` of named image sets (no reader study: human columns empty, with a note)."""
    from evaluation.compare import compare
    from readerstudy.models import ImageSet

    sets = []
    for name in names:
        found = ImageSet.objects.filter(name=name).first()
        if found is None:
            raise ValueError(f"image set {name!r} does not exist")
        sets.append(found)
    real_id = None
    if real:
        real_set = ImageSet.objects.filter(name=real).first()
        if real_set is None:
            raise ValueError(f"real image set {real!r} does not exist")
        real_id = real_set.pk
    return compare(automatic_results(image_sets=sets, real_set_id=real_id), None,
                   generators=[s.generator or s.name for s in sets])
