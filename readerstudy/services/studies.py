"""Creating studies from images and assigning readers, each with an own fixed random order.

Building a balanced study from image sets is in `building`, importing an archive in `imports`;
both end here, in `study_create`.
"""
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from readerstudy.models import Image, Study, StudyItem, StudyReader
from readerstudy.services.blinding import BLINDED_SUFFIX, BlindingError, blind_image_bytes, blinding_record

# The per-study settings a researcher may choose (besides name, items and seed).
SETTINGS_FIELDS = ("instructions", "confidence_min", "confidence_max", "confidence_labels", "allow_revision")


class StudyError(ValueError):
    """A study could not be made or changed; the message says why."""


@dataclass(frozen=True)
class ItemSpec:
    image: Image
    role: str = StudyItem.Role.MAIN
    # For a repeat: the index, in the same list, of the main item it repeats.
    repeat_of: int | None = None


def study_create(
    *,
    name: str,
    items: Sequence[ItemSpec],
    seed: int = 0,
    blinded_size: tuple[int, int] | None = None,
    provenance: dict | None = None,
    harmonisation: str = Study.Harmonisation.NONE,
    **settings_fields,
) -> Study:
    """Create a draft study whose items are blinded copies of `items`' images.

    All images are re-encoded to one size (`blinded_size`, default the most common image size), so
    that nothing but the pixels tells them apart. Atomic: on error no row and no file is left.
    """
    study_settings_validate(**settings_fields)
    scale = (settings_fields.get("confidence_min", 1), settings_fields.get("confidence_max", 5))
    if "confidence_labels" not in settings_fields and scale != (1, 5):
        settings_fields["confidence_labels"] = []  # the default labels are for the default 1..5 scale
    if not name or not name.strip():
        raise StudyError("a study needs a name")
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"a study named {name!r} exists already")
    if not any(spec.role == StudyItem.Role.MAIN for spec in items):
        raise StudyError("a study needs at least one main item")
    for n, spec in enumerate(items):
        if spec.role not in StudyItem.Role.values:
            raise StudyError(f"item {n}: role {spec.role!r}: expected one of {', '.join(StudyItem.Role.values)}")
        if (spec.role == StudyItem.Role.REPEAT) != (spec.repeat_of is not None):
            raise StudyError(f"item {n}: a repeat item, and only a repeat item, names the item it repeats")
        if spec.repeat_of is not None and not (
            0 <= spec.repeat_of < n and items[spec.repeat_of].role == StudyItem.Role.MAIN
        ):
            raise StudyError(f"item {n}: repeat_of={spec.repeat_of} is not an earlier main item")
    if blinded_size is None:
        sizes = [(spec.image.width, spec.image.height) for spec in items]
        blinded_size = max(sorted(set(sizes)), key=sizes.count)
    blinded_size = (int(blinded_size[0]), int(blinded_size[1]))
    if min(blinded_size) < 1:
        raise StudyError(f"blinded size {blinded_size}: both sides must be positive")
    provenance = {**(provenance or {}), "blinded_size": list(blinded_size), **blinding_record(items, blinded_size)}
    created: list[StudyItem] = []
    try:
        with transaction.atomic():
            study = Study.objects.create(
                name=name, seed=seed, provenance=provenance, harmonisation=harmonisation, **settings_fields
            )
            for spec in items:
                repeat_of = created[spec.repeat_of] if spec.repeat_of is not None else None
                item = StudyItem(
                    study=study,
                    image=spec.image,
                    role=spec.role,
                    repeat_of=repeat_of,
                    truth=spec.image.image_set.kind,
                    generator=spec.image.image_set.generator,
                    label=spec.image.label,
                )
                with spec.image.file.open("rb") as fh:
                    try:
                        data = blind_image_bytes(data=fh.read(), size=blinded_size, harmonisation=harmonisation)
                    except BlindingError as exc:
                        raise StudyError(f"image {spec.image}: {exc}") from exc
                # The file name is the unguessable token: nothing about the source survives.
                item.blinded_file.save(f"{item.token}{BLINDED_SUFFIX}", ContentFile(data), save=False)
                created.append(item)
                item.save()
    except Exception:
        for item in created:
            item.blinded_file.delete(save=False)
        raise
    return study


def study_settings_validate(**settings_fields) -> None:
    """Check per-study settings before anything is written; the message names the field at fault."""
    unknown = sorted(set(settings_fields) - set(SETTINGS_FIELDS))
    if unknown:
        raise StudyError(f"unknown study setting(s): {', '.join(unknown)}; expected {', '.join(SETTINGS_FIELDS)}")
    low = settings_fields.get("confidence_min", 1)
    high = settings_fields.get("confidence_max", 5)
    if not isinstance(low, int) or not isinstance(high, int) or low < 0 or high <= low:
        raise StudyError(f"confidence scale {low}..{high}: expected whole numbers with 0 <= min < max")
    labels = settings_fields.get("confidence_labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
            raise StudyError("confidence_labels: expected a list of non-empty texts")
        if labels and len(labels) != high - low + 1:
            raise StudyError(
                f"confidence_labels: {len(labels)} labels for the {high - low + 1} levels {low}..{high}"
            )


def study_reader_order(*, study: Study, seed: int) -> list[int]:
    """A reader's presentation order: practice items first, then main and repeat items shuffled.

    Repeats are kept at least a few places away from the item they repeat, where possible.
    """
    rng = random.Random(seed)
    items = list(study.items.order_by("id").values_list("id", "role", "repeat_of_id"))
    practice = [i for i, role, _ in items if role == StudyItem.Role.PRACTICE]
    rest = [(i, rep) for i, role, rep in items if role != StudyItem.Role.PRACTICE]
    rng.shuffle(practice)
    for _ in range(50):
        rng.shuffle(rest)
        position = {i: n for n, (i, _) in enumerate(rest)}
        if all(rep is None or abs(position[i] - position[rep]) >= min(5, len(rest) // 2) for i, rep in rest):
            break
    return practice + [i for i, _ in rest]


def study_assign_readers(*, study: Study, users: Sequence[AbstractBaseUser]) -> list[StudyReader]:
    """Assign `users` to `study`, each with an own random order; already-assigned users keep theirs.

    All or nothing: when one user cannot be assigned, none of this call's assignments is kept (a
    list of readers given in the admin or a job is either done or to be given again as it was)."""
    assignments = []
    with transaction.atomic():
        for user in users:
            existing = StudyReader.objects.filter(study=study, user=user).first()
            if existing:
                assignments.append(existing)
                continue
            assignments.append(_reader_assignment_create(study=study, user=user))
    return assignments


def _reader_assignment_create(*, study: Study, user: AbstractBaseUser) -> StudyReader:
    for _ in range(5):
        try:
            with transaction.atomic():  # a savepoint: a taken pseudonym undoes this insert only
                n = _next_pseudonym_number(study=study)
                return StudyReader.objects.create(
                    study=study,
                    user=user,
                    pseudonym=f"R{n:02d}",
                    item_order=study_reader_order(study=study, seed=hash((study.seed, user.pk)) & 0xFFFFFFFF),
                )
        except IntegrityError:  # a concurrent assignment took the pseudonym; take the next
            continue
    raise StudyError(f"could not assign {user} to {study}")


def _next_pseudonym_number(*, study: Study) -> int:
    numbers = [
        int(m.group(1))
        for p in StudyReader.objects.filter(study=study).values_list("pseudonym", flat=True)
        if (m := re.fullmatch(r"R(\d+)", p))
    ]
    return max(numbers, default=0) + 1


def study_update_settings(*, study: Study, **settings_fields) -> Study:
    """Change a study's settings; its confidence scale is fixed once an answer has been given on it."""
    merged = {key: getattr(study, key) for key in SETTINGS_FIELDS}
    merged.update(settings_fields)
    study_settings_validate(**merged)
    scale = ("confidence_min", "confidence_max", "confidence_labels")
    changed = [k for k in scale if k in settings_fields and settings_fields[k] != getattr(study, k)]
    if changed and study.items.filter(responses__isnull=False).exists():
        raise StudyError(f"{', '.join(changed)}: readers have answered on the present scale; it cannot change")
    for key, value in settings_fields.items():
        setattr(study, key, value)
    if settings_fields:
        study.save(update_fields=list(settings_fields))
    return study


def study_set_state(*, study: Study, state: str) -> Study:
    if state not in Study.State.values:
        raise StudyError(f"state {state!r}: expected one of {', '.join(Study.State.values)}")
    study.state = state
    study.save(update_fields=["state"])
    return study
