"""Blinding over HTTP: for every item of a study, nothing a reader receives (image bytes, headers,
URLs, page HTML, API JSON) carries its truth, generator, label, original file name or database id.

The study mixes real JPEG patches carrying EXIF and a comment with synthetic PNGs carrying text
chunks, all with tell-tale names and labels, so that any leak would show up as one of those strings.
"""
import io
import re
import struct
import uuid

import numpy as np
import pytest
from django.test import Client
from PIL import Image as PILImage
from PIL import PngImagePlugin

from readerstudy.models import Study, StudyItem
from readerstudy.services.imagesets import ImageSpec, image_set_create
from readerstudy.services.studies import ItemSpec, study_assign_readers, study_create, study_set_state
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

TOKEN_URL = re.compile(r"^/i/[A-Za-z0-9_-]{32}\.png$")
NEXT_KEYS = {"done", "item", "image_url", "position", "total", "practice", "preload_url", "answered", "total_all"}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _pixels(seed: int) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8))


def _real_jpeg(seed: int) -> bytes:
    exif = PILImage.Exif()
    exif[0x0131] = "RealScannerSoftwareXQ"  # Software
    exif[0x010E] = "slide-TCGA-REALXQ"  # ImageDescription
    out = io.BytesIO()
    _pixels(seed).save(out, format="JPEG", quality=80, exif=exif.tobytes(), comment=b"realcommentXQ")
    return out.getvalue()


def _synthetic_png(seed: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("generator", "diffusionSecretXQ")
    info.add_itxt("label", "labelSecretXQ")
    out = io.BytesIO()
    _pixels(seed).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _leaky_study(readers) -> Study:
    real = image_set_create(
        name="RealSetNameXQ", kind="real", generator="real",
        images=[ImageSpec(name=f"real_patch_IDHwtXQ_{i}.jpg", data=_real_jpeg(i), label="IDHwtXQ") for i in range(5)],
    )
    fake = image_set_create(
        name="FakeSetNameXQ", kind="synthetic", generator="progan_genXQ",
        images=[
            ImageSpec(name=f"fake_sample_IDHmutXQ_{i}.png", data=_synthetic_png(100 + i), label="IDHmutXQ")
            for i in range(4)
        ],
    )
    reals, fakes = list(real.images.all()), list(fake.images.all())
    specs = [ItemSpec(image=img) for img in reals[:4] + fakes]
    specs.append(ItemSpec(image=reals[0], role=StudyItem.Role.REPEAT, repeat_of=0))
    specs.append(ItemSpec(image=reals[4], role=StudyItem.Role.PRACTICE))
    study = study_create(name="Blinding study", items=specs, seed=3)
    study_assign_readers(study=study, users=readers)
    study_set_state(study=study, state=Study.State.OPEN)
    return study


def _secrets(study: Study) -> set[str]:
    words = {"RealSetNameXQ", "FakeSetNameXQ", "progan_genXQ", "IDHwtXQ", "IDHmutXQ", "RealScannerSoftwareXQ",
             "REALXQ", "realcommentXQ", "diffusionSecretXQ", "labelSecretXQ", "progan", "diffusion", "JPEG", "jpg"}
    for item in study.items.select_related("image"):
        words.add(item.image.original_name)
        words.add(item.image.original_name.rsplit(".", 1)[0])
        words.add(item.image.sha256)
        words.add(item.image.file.name)
    return words


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + length]))
        i += 12 + length
    return chunks


def _assert_clean(text: str, secrets: set[str], where: str) -> None:
    for word in secrets:
        assert word not in text, f"{where} reveals {word!r}"


def test_every_served_byte_header_page_and_json_is_blind():
    reader = make_user()
    study = _leaky_study([reader])
    secrets = _secrets(study)
    client = Client()
    assert client.login(username=reader.username, password=PASSWORD)
    pages = {"home": client.get("/"), "intro": client.get(f"/studies/{study.pk}/")}
    rate_pages = []
    json_bodies = [client.get("/api/reader/studies/").content.decode()]
    truths = dict(study.items.values_list("token", "truth"))
    practice_tokens = set(study.items.filter(role="practice").values_list("token", flat=True))
    served = []
    while True:
        rate = client.get(f"/studies/{study.pk}/rate/")
        if rate.status_code == 302:
            break
        rate_pages.append(rate.content.decode())
        nxt = client.get(f"/api/reader/studies/{study.pk}/next/")
        body = nxt.json()
        assert set(body) == NEXT_KEYS
        assert TOKEN_URL.match(body["image_url"]) and body["image_url"] == f"/i/{body['item']}.png"
        assert body["preload_url"] is None or TOKEN_URL.match(body["preload_url"])
        json_bodies.append(nxt.content.decode())
        answer = client.post(
            f"/api/reader/studies/{study.pk}/responses/",
            {"item": body["item"], "answer": "real", "confidence": 3, "client_id": str(uuid.uuid4())},
            content_type="application/json",
        )
        answer_json = answer.json()
        if body["item"] in practice_tokens:
            # The one place a truth is told: feedback on a practice item just answered.
            assert answer_json.pop("feedback") == {"truth": truths[body["item"]], "correct": truths[body["item"]] == "real"}
        else:
            assert "feedback" not in answer_json
        assert set(answer_json) == {"item", "answer", "confidence", "client_id", "answered_at", "revised"}
        json_bodies.append(str(answer_json))
        served.append(body["item"])
    pages["finish"] = client.get(f"/studies/{study.pk}/done/")
    assert len(served) == study.items.count()

    # Every JSON body: no secret, no truth word (the reader only ever answered "real"), no item id.
    for text in json_bodies:
        _assert_clean(text, secrets, "reader API JSON")
        assert "synthetic" not in text and "truth" not in text and "generator" not in text and "label" not in text
        assert '"id"' not in text or text.startswith("[")  # only the study list names ids (of studies)
    # The rating page is one shell for every item: identical apart from the CSRF token.
    shells = {re.sub(r'value="[^"]+"', "", page) for page in rate_pages}
    assert len(shells) == 1
    for name, page in list(pages.items()) + [("rate", rate_pages[0])]:
        html = page if isinstance(page, str) else page.content.decode()
        _assert_clean(html, secrets, f"{name} page")
        for token in served:
            assert token not in html, f"{name} page names an item"

    # The images: the same headers for every item, nothing derived from the source, bare PNGs.
    header_sets, ihdrs = set(), set()
    for token in served:
        resp = client.get(f"/i/{token}.png")
        assert resp.status_code == 200
        data = resp.content
        headers = {k.lower(): v for k, v in resp.headers.items()}
        assert headers["content-type"] == "image/png"
        assert "private" in headers["cache-control"]
        for banned in ("content-disposition", "last-modified", "etag", "expires"):
            assert banned not in headers
        header_sets.add(tuple(sorted((k, v) for k, v in headers.items() if k != "content-length")))
        _assert_clean(" ".join(f"{k}: {v}" for k, v in headers.items()), secrets, "image headers")
        chunks = _png_chunks(data)
        assert {kind for kind, _ in chunks} == {b"IHDR", b"IDAT", b"IEND"}, "metadata chunk in a served image"
        ihdrs.add(chunks[0][1])
        for word in secrets:
            assert word.encode() not in data
        with PILImage.open(io.BytesIO(data)) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (32, 32))
            assert not img.info
    assert len(header_sets) == 1, "image headers differ between items"
    assert len(ihdrs) == 1, "images differ in size, mode or bit depth"


def test_the_order_is_each_readers_own_and_not_grouped_by_source():
    readers = [make_user() for _ in range(3)]
    study = _leaky_study(readers)
    role_of = dict(study.items.values_list("pk", "role"))
    truth_of = dict(study.items.values_list("pk", "truth"))
    orders, grouped = set(), []
    for assignment in study.assignments.all():
        rated = [pk for pk in assignment.item_order if role_of[pk] != "practice"]
        orders.add(tuple(rated))
        truths = [truth_of[pk] for pk in rated]
        grouped.append(truths in (sorted(truths), sorted(truths, reverse=True)))
    assert len(orders) == 3
    assert not all(grouped)


def test_item_tokens_are_unguessable_and_unrelated_to_ids():
    reader = make_user()
    study = _leaky_study([reader])
    tokens = list(study.items.values_list("pk", "token"))
    for pk, token in tokens:
        assert len(token) == 32 and str(pk) != token
    client = Client()
    client.login(username=reader.username, password=PASSWORD)
    for pk, _ in tokens:
        assert client.get(f"/i/{pk}.png").status_code == 404
