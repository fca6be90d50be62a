"""Building a balanced study from image sets: a real set and one or more synthetic sets.

The researcher says how many images to take from each set (for example 50 real, 25 diffusion,
25 ProGAN). Within each set the images are drawn stratified by class label (equal numbers per
label as far as the set allows, the remainder spread at random), with a seed, so that the same
call gives the same study.
Optional practice items (shown first, with feedback, left out of the results) are drawn from the
images not used as main items; optional repeated items show some main images a second time to
measure each reader's consistency; they are blinded from the same source on the same path, so
their files are byte-identical to their originals' (readers are told that repeats exist).
The confound audit (`services.audit`) runs on the new study before it is returned.
"""
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from readerstudy.models import Image, ImageSet, Study, StudyItem, Truth
from readerstudy.services.audit import study_confound_audit
from readerstudy.services.blinding import REPEATS_NOTE
from readerstudy.services.studies import ItemSpec, StudyError, study_create
from readerstudy.staging import staged_writes


@dataclass(frozen=True)
class SetCount:
    """How many images to draw from one image set."""

    image_set: ImageSet
    count: int


def study_build(
    *,
    name: str,
    real: SetCount,
    synthetic: Sequence[SetCount],
    seed: int = 0,
    practice: int = 0,
    repeats: int = 0,
    blinded_size: tuple[int, int] | None = None,
    harmonisation: str = Study.Harmonisation.NONE,
    **settings_fields,
) -> Study:
    """Create a draft study from `real` and `synthetic` sets, with its confound audit; `StudyError`
    lists every problem found. `harmonisation` (see `blinding`) is applied to every source image."""
    sources = [real, *synthetic]
    problems = _check_sources(real=real, synthetic=synthetic, practice=practice, repeats=repeats)
    if harmonisation not in Study.Harmonisation.values:
        problems.append(f"harmonisation {harmonisation!r}: expected one of {', '.join(Study.Harmonisation.values)}")
    if problems:
        raise StudyError("; ".join(problems))
    rng = random.Random(seed)
    main: list[ItemSpec] = []
    leftovers: dict[int, list[Image]] = {}
    counts: list[dict] = []
    for source in sources:
        images = list(source.image_set.images.order_by("id"))
        try:
            chosen, per_label = stratified_sample(images=images, count=source.count, rng=rng)
        except StudyError as exc:
            problems.append(f"image set {source.image_set.name!r}: {exc}")
            continue
        chosen_ids = {img.pk for img in chosen}
        leftovers[source.image_set.pk] = [img for img in images if img.pk not in chosen_ids]
        main += [ItemSpec(image=img) for img in chosen]
        counts.append(
            {"image_set": source.image_set.pk, "name": source.image_set.name, "kind": source.image_set.kind,
             "generator": source.image_set.generator, "count": source.count, "per_label": per_label}
        )
    if problems:
        raise StudyError("; ".join(problems))
    practice_specs = _practice_items(sources=sources, leftovers=leftovers, practice=practice, rng=rng)
    rng.shuffle(main)  # item ids must not be grouped by source either
    items = main + repeat_items(main=main, repeats=repeats, rng=rng) + practice_specs
    provenance = {
        "built_from": counts,
        "seed": seed,
        "practice": practice,
        "repeats": repeats,
        **({"repeats_note": REPEATS_NOTE} if repeats else {}),
    }
    with staged_writes(), transaction.atomic():  # blinded files move into place on commit
        study = study_create(
            name=name, items=items, seed=seed, blinded_size=blinded_size, provenance=provenance,
            harmonisation=harmonisation, **settings_fields,
        )
        study_confound_audit(study=study)
    return study


def stratified_sample(*, images: Sequence[Image], count: int, rng: random.Random) -> tuple[list[Image], dict]:
    """`count` of `images`, as evenly spread over the class labels as the set allows.

    Every label gets the same share; a label with fewer images gives all it has and the rest is
    shared among the others; what cannot be split evenly goes to labels drawn at random.
    """
    by_label: dict[str, list[Image]] = defaultdict(list)
    for img in images:
        by_label[img.label].append(img)
    if count > len(images):
        raise StudyError(f"{count} images asked for, only {len(images)} in the set")
    wanted = {label: 0 for label in sorted(by_label)}
    remaining = count
    while remaining:
        open_labels = [label for label in wanted if wanted[label] < len(by_label[label])]
        share, extra = divmod(remaining, len(open_labels))
        if share == 0:
            for label in rng.sample(open_labels, extra):
                wanted[label] += 1
            break
        for label in open_labels:
            give = min(share, len(by_label[label]) - wanted[label])
            wanted[label] += give
            remaining -= give
    chosen: list[Image] = []
    for label, n in wanted.items():
        chosen += rng.sample(by_label[label], n)
    return chosen, wanted


def repeat_items(*, main: Sequence[ItemSpec], repeats: int, rng: random.Random) -> list[ItemSpec]:
    """`repeats` items showing main items (indices into `main`) a second time."""
    if repeats > len(main):
        raise StudyError(f"{repeats} repeated items asked for, but the study has only {len(main)} main items")
    return [
        ItemSpec(image=main[i].image, role=StudyItem.Role.REPEAT, repeat_of=i)
        for i in sorted(rng.sample(range(len(main)), repeats))
    ]


def _check_sources(*, real: SetCount, synthetic: Sequence[SetCount], practice: int, repeats: int) -> list[str]:
    problems = []
    if real.image_set.kind != Truth.REAL:
        problems.append(f"image set {real.image_set.name!r} is {real.image_set.kind}, not real")
    if not synthetic:
        problems.append("at least one synthetic image set is needed")
    for source in synthetic:
        if source.image_set.kind != Truth.SYNTHETIC:
            problems.append(f"image set {source.image_set.name!r} is {source.image_set.kind}, not synthetic")
    seen = set()
    for source in [real, *synthetic]:
        if source.image_set.pk in seen:
            problems.append(f"image set {source.image_set.name!r} is listed twice")
        seen.add(source.image_set.pk)
        if not isinstance(source.count, int) or source.count < 1:
            problems.append(f"image set {source.image_set.name!r}: count {source.count!r} must be at least 1")
    if practice < 0:
        problems.append(f"practice {practice}: must be 0 or more")
    if repeats < 0:
        problems.append(f"repeats {repeats}: must be 0 or more")
    return problems


def _practice_items(
    *, sources: Sequence[SetCount], leftovers: dict[int, list[Image]], practice: int, rng: random.Random
) -> list[ItemSpec]:
    """Practice images from the sets' unused images, alternating real and each synthetic set."""
    pools = {s.image_set.pk: rng.sample(leftovers[s.image_set.pk], len(leftovers[s.image_set.pk])) for s in sources}
    # Half real (rounded up), the rest round-robin over the synthetic sets.
    n_real = (practice + 1) // 2
    plan = [sources[0].image_set.pk] * n_real
    plan += [sources[1 + k % (len(sources) - 1)].image_set.pk for k in range(practice - n_real)]
    need = defaultdict(int)
    for pk in plan:
        need[pk] += 1
    short = [
        f"image set {s.image_set.name!r} has {len(pools[s.image_set.pk])} unused images, {need[s.image_set.pk]} needed"
        for s in sources
        if need[s.image_set.pk] > len(pools[s.image_set.pk])
    ]
    if short:
        raise StudyError(f"not enough images for {practice} practice items: {'; '.join(short)}")
    specs = [ItemSpec(image=pools[pk].pop(), role=StudyItem.Role.PRACTICE) for pk in plan]
    rng.shuffle(specs)
    return specs
