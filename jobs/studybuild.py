"""Building a balanced study from image-set names, for the `build_study` job and the demo.

Resolves the names, picks default counts, and calls the reader-study builder
(`readerstudy.services.building.study_build`: stratified by label, seeded, blinded); then assigns the
readers and opens the study when asked.
"""
from collections.abc import Callable, Sequence

from django.contrib.auth import get_user_model

from readerstudy.models import ImageSet, Study, Truth
from readerstudy.services.building import SetCount, study_build
from readerstudy.services.studies import StudyError, study_assign_readers, study_set_state


def _image_set(name: str, kind: str) -> ImageSet:
    try:
        image_set = ImageSet.objects.get(name=name)
    except ImageSet.DoesNotExist:
        raise StudyError(f"image set {name!r} does not exist") from None
    if image_set.kind != kind:
        raise StudyError(f"image set {name!r} is {image_set.kind}, expected {kind}")
    return image_set


def study_build_from_sets(
    *,
    name: str,
    real_set: str,
    synthetic_sets: Sequence[str],
    n_real: int | None = None,
    n_per_synthetic: int | None = None,
    readers: Sequence[str] = (),
    practice: int = 0,
    repeats: int = 0,
    harmonisation: str = Study.Harmonisation.NONE,
    open: bool = False,  # noqa: A002 - the parameter's name in the job form
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Study:
    """A blinded study: `n_real` real images and `n_per_synthetic` from each synthetic set.

    Defaults: every synthetic set gives as many images as the smallest of them has, and the real
    set as many as the synthetic sets together (half the study real), capped by what exists.
    """
    if not synthetic_sets:
        raise StudyError("a study needs at least one synthetic image set")
    real = _image_set(real_set, Truth.REAL)
    fakes = [_image_set(s, Truth.SYNTHETIC) for s in synthetic_sets]
    if n_per_synthetic is None:
        n_per_synthetic = min(f.images.count() for f in fakes)
    if n_real is None:
        n_real = min(real.images.count(), n_per_synthetic * len(fakes))
    users = list(get_user_model().objects.filter(username__in=list(readers)))
    unknown = sorted(set(readers) - {u.username for u in users})
    if unknown:
        raise StudyError(f"unknown reader(s): {', '.join(unknown)}")
    log(f"study {name!r}: {n_real} real + {n_per_synthetic} from each of {', '.join(synthetic_sets)}")
    study = study_build(
        name=name, real=SetCount(real, n_real), synthetic=[SetCount(f, n_per_synthetic) for f in fakes], seed=seed,
        practice=practice, repeats=repeats, harmonisation=harmonisation,
    )
    study_assign_readers(study=study, users=users)
    if open:
        study_set_state(study=study, state=Study.State.OPEN)
    return study
