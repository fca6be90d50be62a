"""Metrics between two stored image sets, for the `evaluate_metrics` job and the demo.

Calls the evaluation app's own service when this installation has one (`evaluation.services`);
otherwise reads the two sets' files from the database, computes the metrics with the pure
`evaluation.evaluate.evaluate` and stores one `MetricResult` row for the whole sets and one per
class label, with the extractor, its weights' hash, the warnings and, for random-inception features,
`calibrated=False` (uncalibrated: not comparable with published values).
"""
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

from evaluation.models import MetricResult
from readerstudy.models import ImageSet


def _source(image_set: ImageSet):
    from evaluation.images import FileListSource

    images = list(image_set.images.order_by("id"))
    return FileListSource(
        [i.file.path for i in images], [i.label for i in images], names=[i.original_name for i in images],
        sha256s=[i.sha256 for i in images], description=f"image set {image_set.name!r}",
    )


def metric_results_for_sets(
    *, real: str, fake: str, features: str = "inception", per_label: bool = False, metrics=None,
    progress: Callable | None = None,
) -> list[MetricResult]:
    """Compute and store the metrics of synthetic set `fake` against real set `real` (names)."""
    try:
        from evaluation import services as evaluation_services
    except ImportError:
        evaluation_services = None
    own = getattr(evaluation_services, "metric_results_compute", None)
    if own is not None:
        return own(real=real, fake=fake, features=features, per_label=per_label)

    from evaluation.evaluate import ALL_METRICS, evaluate
    from evaluation.features import load_extractor

    real_set, fake_set = ImageSet.objects.get(name=real), ImageSet.objects.get(name=fake)
    extractor = load_extractor(features, weights_path=settings.INCEPTION_WEIGHTS)

    def report(stage, done, total):
        if progress is not None:
            progress(0.9 * done / max(1, total), f"{stage}: {done}/{total} images")

    result = evaluate(_source(real_set), _source(fake_set), metrics or ALL_METRICS, per_label, extractor,
                      progress=report if progress is not None else None)
    rows = [result["overall"], *result["per_label"]]
    labelled = [] if result["calibrated"] else [
        result.get("note") or "uncalibrated (random-inception features): not comparable with published values"
    ]
    with transaction.atomic():
        stored = [
            MetricResult.objects.create(
                real_set=real_set, fake_set=fake_set, label=row["label"], extractor=result["extractor"],
                weights_sha256=result["weights_sha256"] or "", calibrated=result["calibrated"],
                n_real=row["n_real"], n_fake=row["n_fake"], metrics=row["metrics"],
                warnings=list(dict.fromkeys(
                    labelled + row["warnings"] + (result["warnings"] if not row["label"] else []))),
            )
            for row in rows
        ]
    return stored
