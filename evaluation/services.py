"""Writes of the evaluation app: running the metrics on two image sets (or folders) and storing the
results per pair of sets, one row overall and one per class label, with the extractor, the weights'
hash, the calibrated flag and the warnings.

`metric_evaluation_run` is the plain function behind `manage.py evaluate_metrics` and the
"Evaluate metrics" job (its keyword arguments are JSON-serialisable).
"""
from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction

from evaluation.bootstrap import BootstrapStopped
from evaluation.evaluate import ALL_METRICS, evaluate, parse_metrics
from evaluation.features import EXTRACTORS, load_extractor
from evaluation.images import FileListSource, ImageSource
from evaluation.models import MetricResult
from readerstudy.models import ImageSet


class EvaluationInputError(ValueError):
    """A set or folder given to the metrics cannot be used; the message names it."""


def image_set_source(*, image_set: ImageSet) -> FileListSource:
    """The images of an image set as a metric source: stored files, labels, and the known hashes."""
    images = list(image_set.images.order_by("id"))
    if not images:
        raise EvaluationInputError(f"image set {image_set.name!r} has no images")
    return FileListSource(
        [image.file.path for image in images], [image.label for image in images],
        names=[image.original_name for image in images], sha256s=[image.sha256 for image in images],
        description=f"image set {image_set.name!r}",
    )


def resolve_images(spec: str) -> ImageSet | Path:
    """SET_OR_DIR: an existing folder or npz file, else an image set's name (or `id:<pk>`)."""
    path = Path(spec)
    if path.exists():
        return path
    if spec.startswith("id:") and spec[3:].isdigit():
        found = ImageSet.objects.filter(pk=int(spec[3:])).first()
    else:
        found = ImageSet.objects.filter(name=spec).first()
    if found is None:
        raise EvaluationInputError(f"{spec!r}: neither an existing folder or npz file nor the name of an image set")
    return found


def _cache_path(image_set: ImageSet, extractor_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", extractor_name)
    return Path(settings.MEDIA_ROOT) / "evaluation" / "cache" / f"imageset-{image_set.pk}-{safe}.npz"


class EvaluationStopped(RuntimeError):
    """`on_progress` returned False: nothing was stored."""


def weights_file_in_root(name: str) -> Path:
    """A weights file named relative to HISTOSYNTH_WEIGHTS_ROOT (what a job may choose): no absolute
    path, no way out of the folder."""
    root = Path(settings.HISTOSYNTH_WEIGHTS_ROOT).resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or root not in path.parents:
        raise EvaluationInputError(f"weights {name!r}: expected a file name inside the weights folder {root}")
    return path


def weights_choices() -> list[str]:
    """The weights files a job may choose: every file in HISTOSYNTH_WEIGHTS_ROOT but the .sha256 records."""
    root = Path(settings.HISTOSYNTH_WEIGHTS_ROOT)
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.suffix not in {".sha256", ".part"})


def _progress_adapter(on_progress, progress, bootstrap: int):
    """The evaluation's ("real"|"generated"|"bootstrap", done, total) callback as the jobs' protocol
    `on_progress(step, total, metrics) -> bool | None`: steps are images (real, then generated) and
    bootstrap resamples; False stops."""
    if on_progress is None:
        return progress
    seen = {"real": 0, "generated": 0}

    def report(stage: str, done: int, total: int):
        if progress is not None:
            progress(stage, done, total)
        if stage in seen:
            seen[stage] = max(seen[stage], total)
            step = done + (seen["real"] if stage == "generated" else 0)
            total_steps = seen["real"] + seen["generated"] + bootstrap
            answer = on_progress(step, max(total_steps, step), {})
        else:
            images = seen["real"] + seen["generated"]
            answer = on_progress(images + done * bootstrap // max(total, 1), images + bootstrap, {})
        if answer is False:
            raise EvaluationStopped(f"stopped at {stage} {done}/{total}")
        return answer

    return report


def metric_evaluation_run(
    *, real: str, fake: str, metrics: str | list[str] = "all", per_label: bool = False, features: str = "inception",
    weights: str | None = None, weights_sha256: str | None = None, batch_size: int = 32, seed: int = 0,
    kid_subsets: int = 100, kid_subset_size: int = 1000, is_split_size: int = 5000, bootstrap: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    on_progress: Callable[[int, int, dict], bool | None] | None = None,
) -> dict:
    """Evaluate `fake` against `real` (image set names or folders). When both are image sets the
    results are stored (`metric_result_ids` in the answer); the evaluation dict is under `result`.
    `on_progress(step, total, metrics)` may return False to stop: nothing is stored then."""
    report = _progress_adapter(on_progress, progress, bootstrap)
    real_target, fake_target = resolve_images(real), resolve_images(fake)
    try:
        if isinstance(real_target, ImageSet) and isinstance(fake_target, ImageSet):
            rows = metric_result_create(
                real_set=real_target, fake_set=fake_target, metrics=metrics, per_label=per_label, features=features,
                weights_path=weights, weights_sha256=weights_sha256, batch_size=batch_size, seed=seed,
                kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_split_size=is_split_size,
                bootstrap=bootstrap, progress=report,
            )
            answer = {"result": rows[0].details["evaluation"], "metric_result_ids": [row.pk for row in rows]}
        else:
            extractor = _extractor(features=features, weights_path=weights, weights_sha256=weights_sha256)
            sources = [image_set_source(image_set=t) if isinstance(t, ImageSet) else t for t in (real_target, fake_target)]
            result = evaluate(
                sources[0], sources[1], parse_metrics(metrics), per_label, extractor, batch_size=batch_size, seed=seed,
                kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_split_size=is_split_size,
                progress=report, bootstrap=bootstrap,
            )
            answer = {"result": _json_safe(result), "metric_result_ids": []}
    except BootstrapStopped as exc:
        raise EvaluationStopped(str(exc)) from exc
    if on_progress is not None:
        on_progress(1, 1, answer["result"]["overall"]["metrics"])
    return answer


def _extractor(*, features: str, weights_path, weights_sha256: str | None = None):
    if features.startswith("timm:"):
        return load_extractor(features, weights_path=weights_path, weights_sha256=weights_sha256)
    if features not in EXTRACTORS:
        raise EvaluationInputError(f"features {features!r}: expected inception, random-inception or timm:<model_name>")
    return load_extractor(features, weights_path=weights_path or settings.INCEPTION_WEIGHTS)


def _json_safe(value):
    """Infinite or NaN floats (a ratio to a zero distance, a covariance of one image) become None:
    PostgreSQL's JSON refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def metric_result_create(
    *, real_set: ImageSet, fake_set: ImageSet, metrics: str | list[str] = ALL_METRICS, per_label: bool = False,
    features: str = "inception", weights_path=None, weights_sha256: str | None = None, batch_size: int = 32,
    seed: int = 0, kid_subsets: int = 100, kid_subset_size: int = 1000, is_split_size: int = 5000, bootstrap: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[MetricResult]:
    """Compute the metrics of `fake_set` against `real_set` and store one row overall (first) and one
    per shared class label. Each set's statistics are cached under MEDIA_ROOT/evaluation/cache and
    recomputed when its images, the extractor or the weights change."""
    if real_set.pk == fake_set.pk:
        raise EvaluationInputError(f"image set {real_set.name!r} given as both the real and the generated set")
    extractor = _extractor(features=features, weights_path=weights_path, weights_sha256=weights_sha256)
    real_source: ImageSource = image_set_source(image_set=real_set)
    fake_source: ImageSource = image_set_source(image_set=fake_set)
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "memorisation.png"
        result = evaluate(
            real_source, fake_source, parse_metrics(metrics), per_label, extractor, batch_size=batch_size, seed=seed,
            kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, is_split_size=is_split_size,
            grid_path=grid, real_cache=_cache_path(real_set, extractor.name),
            fake_cache=_cache_path(fake_set, extractor.name), progress=progress, bootstrap=bootstrap,
        )
        result = _json_safe(result)
        with transaction.atomic():
            rows = []
            for scope in [result["overall"], *result["per_label"]]:
                details = {"settings": result["settings"], "note": result["note"]}
                if scope.get("interval"):
                    details.update(interval=scope["interval"], fid_inf_fit=scope.get("fid_inf_fit"))
                if not scope["label"]:
                    details.update(memorisation=result["memorisation"], evaluation=result)
                rows.append(MetricResult.objects.create(
                    real_set=real_set, fake_set=fake_set, label=scope["label"], extractor=result["extractor"],
                    weights_sha256=result["weights_sha256"], calibrated=result["calibrated"],
                    n_real=scope["n_real"], n_fake=scope["n_fake"], metrics=scope["metrics"],
                    warnings=list(dict.fromkeys(result["warnings"] + scope["warnings"])), details=details,
                ))
            if grid.is_file():
                overall = rows[0]
                with open(grid, "rb") as f:
                    overall.memorisation_grid.save(f"pair-{real_set.pk}-{fake_set.pk}-{overall.pk}.png", File(f), save=False)
                overall.details["memorisation"]["grid"] = overall.memorisation_grid.name
                overall.save(update_fields=["memorisation_grid", "details"])
    return rows


def generator_comparison_export(*, study: str) -> dict:
    """The "Compare generators" job: `selectors.study_comparison` of the study named `study` (or
    `id:<pk>`), written as CSV under MEDIA_ROOT/evaluation/compare/; returns the file and the table."""
    from django.utils.text import slugify

    from evaluation.selectors import study_comparison
    from readerstudy.models import Study

    query = {"pk": int(study[3:])} if study.startswith("id:") and study[3:].isdigit() else {"name": study}
    found = Study.objects.filter(**query).first()
    if found is None:
        raise EvaluationInputError(f"study {study!r} does not exist")
    comparison = study_comparison(study=found)
    path = Path(settings.MEDIA_ROOT) / "evaluation" / "compare" / f"{slugify(found.name)}-{found.pk}-generators.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.part")
    tmp.write_text(comparison.table.to_csv(index=False), encoding="utf-8")
    tmp.replace(path)
    return {"study_id": found.pk, "csv": str(path), "generators": comparison.table["generator"].tolist(),
            "feature_spaces": comparison.spaces, "notes": comparison.notes}
