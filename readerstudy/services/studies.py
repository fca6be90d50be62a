"""Creating studies from images and assigning readers, each with an own fixed random order."""
import random
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from readerstudy.models import Image, Study, StudyItem, StudyReader
from readerstudy.services.blinding import blind_image_bytes


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
    **settings_fields,
) -> Study:
    """Create a draft study whose items are blinded copies of `items`' images.

    All images are re-encoded to one size (`blinded_size`, default the most common image size), so
    that nothing but the pixels tells them apart. Atomic: on error no row and no file is left.
    """
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"a study named {name!r} exists already")
    if not any(spec.role == StudyItem.Role.MAIN for spec in items):
        raise StudyError("a study needs at least one main item")
    if blinded_size is None:
        sizes = [(spec.image.width, spec.image.height) for spec in items]
        blinded_size = max(set(sizes), key=sizes.count)
    created: list[StudyItem] = []
    try:
        with transaction.atomic():
            study = Study.objects.create(name=name, seed=seed, provenance=provenance or {}, **settings_fields)
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
                    data = blind_image_bytes(data=fh.read(), size=blinded_size)
                # The file name is the unguessable token: nothing about the source survives.
                item.blinded_file.save(f"{item.token}.png", ContentFile(data), save=False)
                item.save()
                created.append(item)
    except Exception:
        for item in created:
            item.blinded_file.delete(save=False)
        raise
    return study


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
    """Assign `users` to `study`, each with an own random order; already-assigned users keep theirs."""
    assignments = []
    for user in users:
        existing = StudyReader.objects.filter(study=study, user=user).first()
        if existing:
            assignments.append(existing)
            continue
        for _ in range(5):
            try:
                with transaction.atomic():
                    n = StudyReader.objects.filter(study=study).count() + 1
                    assignment = StudyReader.objects.create(
                        study=study,
                        user=user,
                        pseudonym=f"R{n:02d}",
                        item_order=study_reader_order(study=study, seed=hash((study.seed, user.pk)) & 0xFFFFFFFF),
                    )
                break
            except IntegrityError:  # a concurrent assignment took the pseudonym; take the next
                continue
        else:
            raise StudyError(f"could not assign {user} to {study}")
        assignments.append(assignment)
    return assignments


def study_set_state(*, study: Study, state: str) -> Study:
    if state not in Study.State.values:
        raise StudyError(f"state {state!r}: expected one of {', '.join(Study.State.values)}")
    study.state = state
    study.save(update_fields=["state"])
    return study
