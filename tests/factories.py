"""Shared test factories: users, image sets of small generated PNGs, studies with readers."""
import io
import itertools
import zipfile

import numpy as np
from django.contrib.auth import get_user_model
from PIL import Image as PILImage

from readerstudy.models import ImageSet, Study, StudyItem
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import ItemSpec, study_assign_readers, study_create, study_set_state

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(username: str | None = None, *, staff: bool = False, password: str = PASSWORD):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(
        username=username, password=password, is_staff=staff, is_superuser=staff
    )


def png_bytes(seed: int, size: int = 32, fmt: str = "PNG", **save_kwargs) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format=fmt, **save_kwargs)
    return out.getvalue()


def make_image_set(
    *, n: int = 4, kind: str = "real", generator: str | None = None, labels=("A", "B"), size: int = 32,
    fmt: str = "PNG", name: str | None = None,
) -> ImageSet:
    generator = generator or ("real" if kind == "real" else "diffusion")
    k = next(_counter)
    ext = "jpg" if fmt == "JPEG" else fmt.lower()
    specs = [
        ImageSpec(
            name=f"{generator}_{labels[i % len(labels)]}_{i:03d}.{ext}",
            data=png_bytes(1000 * k + i, size=size, fmt=fmt),
            label=labels[i % len(labels)],
            origin={"index": i},
        )
        for i in range(n)
    ]
    return image_set_create(name=name or f"{generator}-{kind}-{k}", kind=kind, generator=generator, images=specs)


def make_study(
    *, n_real: int = 4, n_synthetic: int = 4, readers=(), state: str = Study.State.OPEN, practice: int = 0,
    repeats: int = 0, name: str | None = None, image_size: int = 32, **settings_fields,
) -> Study:
    real = make_image_set(n=n_real + practice, kind="real", size=image_size)
    fake = make_image_set(n=n_synthetic, kind="synthetic", generator="diffusion", size=image_size)
    real_images = list(real.images.all())
    specs = [ItemSpec(image=img) for img in real_images[:n_real]]
    specs += [ItemSpec(image=img) for img in fake.images.all()]
    for r in range(repeats):
        specs.append(ItemSpec(image=specs[r].image, role=StudyItem.Role.REPEAT, repeat_of=r))
    specs += [ItemSpec(image=img, role=StudyItem.Role.PRACTICE) for img in real_images[n_real:]]
    study = study_create(name=name or f"study-{next(_counter)}", items=specs, seed=7, **settings_fields)
    study_assign_readers(study=study, users=list(readers))
    study_set_state(study=study, state=state)
    return study


def study_archive(entries: dict[str, bytes | str], manifest: str | None = None, *, name: str = "study.zip") -> io.BytesIO:
    """A study-upload zip in memory: `manifest.csv` (when given) and the `entries`, named `name`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        if manifest is not None:
            zf.writestr("manifest.csv", manifest)
        for entry, data in entries.items():
            zf.writestr(entry, data)
    out.seek(0)
    out.name = name
    return out


def logged_in_client(user, password: str = PASSWORD):
    """A Django test client logged in as `user`."""
    from django.test import Client

    client = Client()
    assert client.login(username=user.username, password=password)
    return client


def answer_items(assignment, *, answer: str = "real", confidence: int = 3, share: float = 1.0) -> None:
    """The reader answers the first `share` of their order, item by item as the page does (shown, then answered)."""
    import uuid

    from readerstudy.services.responses import presentation_record, response_submit

    items = StudyItem.objects.in_bulk(assignment.item_order)
    for pk in assignment.item_order[: round(share * len(assignment.item_order))]:
        presentation_record(assignment=assignment, item=items[pk])
        response_submit(assignment=assignment, item_token=items[pk].token, answer=answer, confidence=confidence,
                        client_id=uuid.uuid4())
