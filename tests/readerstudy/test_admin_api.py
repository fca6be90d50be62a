"""The staff API: image sets, studies (build, upload, settings, state), items, readers, responses; 403 otherwise."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from readerstudy.models import Image, ImageSet, Response, Study, StudyItem, StudyReader
from tests.factories import make_image_set, make_study, make_user, png_bytes, study_archive


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(db):
    client = APIClient()
    client.force_authenticate(make_user("boss", staff=True))
    return client


def test_non_staff_and_anonymous_get_403_everywhere(db):
    study = make_study()
    image_set = ImageSet.objects.first()
    reader = make_user("reader")
    urls = [
        ("get", "/api/admin/image-sets/"), ("get", f"/api/admin/image-sets/{image_set.pk}/"),
        ("get", f"/api/admin/image-sets/{image_set.pk}/images/"), ("get", "/api/admin/studies/"),
        ("get", f"/api/admin/studies/{study.pk}/"), ("patch", f"/api/admin/studies/{study.pk}/"),
        ("post", "/api/admin/studies/build/"), ("post", "/api/admin/studies/upload/"),
        ("post", f"/api/admin/studies/{study.pk}/state/"), ("get", f"/api/admin/studies/{study.pk}/items/"),
        ("get", f"/api/admin/studies/{study.pk}/readers/"), ("post", f"/api/admin/studies/{study.pk}/readers/"),
        ("get", f"/api/admin/studies/{study.pk}/responses/"),
    ]
    as_reader = APIClient()
    as_reader.force_authenticate(reader)
    for client in (APIClient(), as_reader):
        for method, url in urls:
            assert getattr(client, method)(url, {}, format="json").status_code == 403, (method, url)
    assert Study.objects.count() == 1 and not StudyReader.objects.exists()


def test_image_sets_list_and_images(staff):
    real = make_image_set(n=3, kind="real", labels=("A", "B"))
    data = staff.get("/api/admin/image-sets/").json()
    assert data[0]["name"] == real.name and data[0]["n_images"] == 3 and data[0]["labels"] == {"A": 2, "B": 1}
    images = staff.get(f"/api/admin/image-sets/{real.pk}/images/").json()
    names = list(real.images.order_by("id").values_list("original_name", flat=True))
    assert [i["original_name"] for i in images] == names
    assert all(len(i["sha256"]) == 64 and i["width"] == 32 and i["format"] == "PNG" for i in images)


def test_build_assign_open_and_follow(staff):
    real = make_image_set(n=6, kind="real")
    diff = make_image_set(n=5, kind="synthetic", generator="diffusion")
    body = {"name": "API study", "real": {"image_set": real.pk, "count": 4},
            "synthetic": [{"image_set": diff.pk, "count": 4}], "seed": 5, "practice": 2, "repeats": 1,
            "allow_revision": True, "instructions": "Go."}
    created = staff.post("/api/admin/studies/build/", body, format="json")
    assert created.status_code == 201, created.json()
    study = created.json()
    assert (study["state"], study["n_items"], study["allow_revision"], study["seed"]) == ("draft", 11, True, 5)
    assert study["confidence_labels"] == ["Very unsure", "Unsure", "Neutral", "Sure", "Very sure"]
    sid = study["id"]
    # Problems come back as 400 with every problem, and nothing is made.
    bad = staff.post("/api/admin/studies/build/", {**body, "name": "x", "real": {"image_set": diff.pk, "count": 9}},
                     format="json")
    assert bad.status_code == 400 and any("is synthetic, not real" in p for p in bad.json()["problems"])
    assert Study.objects.count() == 1
    # Readers: unknown names are refused, known ones assigned with progress.
    make_user("ann"), make_user("ben")
    refused = staff.post(f"/api/admin/studies/{sid}/readers/", {"users": ["ann", "zed"]}, format="json")
    assert refused.status_code == 400 and "zed" in str(refused.json()) and not StudyReader.objects.exists()
    readers = staff.post(f"/api/admin/studies/{sid}/readers/", {"users": ["ann", "ben"]}, format="json").json()
    assert [(r["username"], r["pseudonym"], r["answered"], r["total"]) for r in readers] == [
        ("ann", "R01", 0, 11), ("ben", "R02", 0, 11)]
    # State.
    assert staff.post(f"/api/admin/studies/{sid}/state/", {"state": "open"}, format="json").json()["state"] == "open"
    assert staff.post(f"/api/admin/studies/{sid}/state/", {"state": "nope"}, format="json").status_code == 400
    # Items, with their truth, for staff.
    items = staff.get(f"/api/admin/studies/{sid}/items/").json()
    assert len(items) == 11 and {i["truth"] for i in items} == {"real", "synthetic"}
    assert sum(i["role"] == "repeat" for i in items) == 1 and sum(i["role"] == "practice" for i in items) == 2
    assert all(i["url"] == f"/i/{i['token']}.png" for i in items)
    # Responses and progress.
    assignment = StudyReader.objects.get(user__username="ann")
    item = StudyItem.objects.get(pk=items[0]["id"])
    Response.objects.create(assignment=assignment, item=item, answer="synthetic", confidence=2,
                            answered_at=timezone.now(), seconds=3.5)
    rows = staff.get(f"/api/admin/studies/{sid}/responses/").json()
    assert rows == [{**rows[0], "reader": "R01", "item_token": item.token, "truth": item.truth, "answer": "synthetic",
                     "confidence": 2, "seconds": 3.5}]
    assert staff.get(f"/api/admin/studies/{sid}/readers/").json()[0]["answered"] == 1
    assert staff.get(f"/api/admin/studies/{sid}/").json()["n_responses"] == 1
    # Settings: free text may change; the scale may not once answered.
    patched = staff.patch(f"/api/admin/studies/{sid}/", {"instructions": "New."}, format="json")
    assert patched.json()["instructions"] == "New."
    locked = staff.patch(f"/api/admin/studies/{sid}/", {"confidence_max": 3, "confidence_labels": ["a", "b", "c"]},
                         format="json")
    assert locked.status_code == 400 and "cannot change" in locked.json()["problems"][0]


def test_upload(staff, _media_root):
    files = {"a.png": png_bytes(1), "b.png": png_bytes(2)}
    bad = study_archive(files, "filename,truth,generator\na.png,real,real\n", name="api.zip")
    response = staff.post("/api/admin/studies/upload/", {"name": "Up", "archive": bad}, format="multipart")
    assert response.status_code == 400
    assert response.json()["problems"][0].startswith("manifest.csv: missing column(s) label")
    assert not ImageSet.objects.exists() and not Image.objects.exists()
    assert not [p for p in _media_root.rglob("*") if p.is_file()]
    good = study_archive(files, "filename,truth,generator,label\na.png,real,real,A\nb.png,synthetic,gan,A\n", name="api.zip")
    response = staff.post("/api/admin/studies/upload/", {"name": "Up", "archive": good, "allow_revision": "true"},
                          format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["n_items"] == 2 and response.json()["allow_revision"] is True
    assert response.json()["provenance"]["archive"] == "api.zip"
