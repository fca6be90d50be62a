"""The Django admin of the reader study: lists, build and upload pages, assigning readers, state actions."""

import pytest
from django.urls import reverse
from django.utils import timezone

from readerstudy.models import Image, ImageSet, Response, Study, StudyItem, StudyReader
from tests.factories import make_image_set, make_study, make_user, png_bytes, study_archive


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, db):
    client.force_login(make_user("admin", staff=True))
    return client


SETTINGS_POST = {
    "seed": "3", "repeats": "0", "instructions": "Be quick.", "confidence_min": "1", "confidence_max": "5",
    "confidence_labels": "Very unsure, Unsure, Neutral, Sure, Very sure", "blinded_size": "",
}


def test_every_list_and_change_page_renders(staff_client):
    reader = make_user("reader1")
    study = make_study(readers=[reader], practice=1, repeats=1)
    assignment = StudyReader.objects.get(study=study)
    item = study.items.filter(role=StudyItem.Role.MAIN).first()
    Response.objects.create(assignment=assignment, item=item, answer="real", confidence=4, answered_at=timezone.now())
    for model in ("imageset", "image", "study", "studyitem", "studyreader", "response"):
        response = staff_client.get(reverse(f"admin:readerstudy_{model}_changelist"))
        assert response.status_code == 200, model
    page = staff_client.get(reverse("admin:readerstudy_study_changelist")).content.decode()
    n_items = study.items.count()
    assert f"1 / {n_items}" in page  # answers given over readers x items
    assert "Build study from image sets" in page and "Upload study archive" in page
    change = staff_client.get(reverse("admin:readerstudy_study_change", args=[study.pk])).content.decode()
    assert "R01" in change and f"1 / {n_items}" in change and "Assign readers" in change
    readers = staff_client.get(reverse("admin:readerstudy_studyreader_changelist")).content.decode()
    assert f"1 / {n_items}" in readers
    for model, obj in (("imageset", study.items.first().image.image_set), ("studyitem", item)):
        assert staff_client.get(reverse(f"admin:readerstudy_{model}_change", args=[obj.pk])).status_code == 200
    # Source files are served to staff by the admin (media are not public in production).
    file_url = reverse("admin:readerstudy_image_file", args=[item.image_id])
    assert file_url in staff_client.get(reverse("admin:readerstudy_image_changelist")).content.decode()
    served = staff_client.get(file_url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    with item.image.file.open("rb") as fh:
        assert b"".join(served.streaming_content) == fh.read()
    assert f"/i/{item.token}.png" in staff_client.get(reverse("admin:readerstudy_studyitem_changelist")).content.decode()


def test_non_staff_cannot_reach_the_admin_pages(client, db):
    study = make_study()
    client.force_login(make_user("reader"))
    for url in (
        reverse("admin:readerstudy_image_file", args=[study.items.first().image_id]),
        reverse("admin:readerstudy_study_changelist"), reverse("admin:readerstudy_study_build"),
        reverse("admin:readerstudy_study_upload"), reverse("admin:readerstudy_study_assign", args=[study.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    assert client.post(reverse("admin:readerstudy_study_upload"), {"name": "x"}).status_code == 302
    assert Study.objects.count() == 1


def test_build_page_creates_a_balanced_study(staff_client):
    real = make_image_set(n=8, kind="real")
    diff = make_image_set(n=4, kind="synthetic", generator="diffusion")
    gan = make_image_set(n=4, kind="synthetic", generator="progan")
    assert staff_client.get(reverse("admin:readerstudy_study_build")).status_code == 200
    post = {**SETTINGS_POST, "name": "Built", "real_set": real.pk, "real_count": "4", "synthetic_set_1": diff.pk,
            "synthetic_count_1": "2", "synthetic_set_2": gan.pk, "synthetic_count_2": "2", "practice": "2",
            "allow_revision": "on"}
    response = staff_client.post(reverse("admin:readerstudy_study_build"), post)
    study = Study.objects.get(name="Built")
    assert response.status_code == 302 and response["Location"].endswith(f"/study/{study.pk}/change/")
    assert study.allow_revision and study.instructions == "Be quick." and study.seed == 3
    main = study.items.filter(role=StudyItem.Role.MAIN)
    assert sorted(main.values_list("generator", flat=True)) == ["diffusion"] * 2 + ["progan"] * 2 + ["real"] * 4
    assert study.items.filter(role=StudyItem.Role.PRACTICE).count() == 2
    # Too many asked for: the page shows the problem and nothing is made.
    post.update(name="Too many", real_count="50")
    page = staff_client.post(reverse("admin:readerstudy_study_build"), post).content.decode()
    assert "50 images asked for, only 8 in the set" in page and not Study.objects.filter(name="Too many").exists()
    # The add button leads to the build page.
    add = staff_client.get(reverse("admin:readerstudy_study_add"))
    assert add["Location"] == reverse("admin:readerstudy_study_build")


def test_upload_page_imports_or_lists_every_problem(staff_client, _media_root):
    files = {"a.png": png_bytes(1), "b.png": png_bytes(2)}
    bad = study_archive(files, "filename,truth,generator,label\na.png,real,real,X\nb.png,fake,gan,X\nc.png,real,real,X\n", name="upload.zip")
    page = staff_client.post(reverse("admin:readerstudy_study_upload"), {**SETTINGS_POST, "name": "Up", "archive": bad})
    html = page.content.decode()
    assert page.status_code == 200 and "3 problems; nothing was created" in html
    assert "manifest.csv line 3: unknown truth &#x27;fake&#x27;" in html
    assert "manifest.csv line 4: &#x27;c.png&#x27; is not in the archive" in html
    assert "b.png: in the archive but not listed in manifest.csv" in html
    assert not Study.objects.exists() and not ImageSet.objects.exists() and not Image.objects.exists()
    assert not [p for p in _media_root.rglob("*") if p.is_file()]
    good = study_archive(files, "filename,truth,generator,label\na.png,real,real,X\nb.png,synthetic,gan,X\n", name="upload.zip")
    post = {**SETTINGS_POST, "name": "Up", "archive": good}
    response = staff_client.post(reverse("admin:readerstudy_study_upload"), post)
    assert response.status_code == 302
    assert Study.objects.get(name="Up").items.count() == 2


def test_assign_page_and_state_actions(staff_client):
    study = make_study(state=Study.State.DRAFT)
    alice, bob = make_user("alice"), make_user("bob")
    url = reverse("admin:readerstudy_study_assign", args=[study.pk])
    assert staff_client.get(url).status_code == 200
    response = staff_client.post(url, {"users": [alice.pk, bob.pk]})
    assert response.status_code == 302
    assert sorted(study.assignments.values_list("user__username", "pseudonym")) == [("alice", "R01"), ("bob", "R02")]
    changelist = reverse("admin:readerstudy_study_changelist")
    staff_client.post(changelist, {"action": "open_studies", "_selected_action": [study.pk]})
    study.refresh_from_db()
    assert study.state == Study.State.OPEN
    staff_client.post(changelist, {"action": "close_studies", "_selected_action": [study.pk]})
    study.refresh_from_db()
    assert study.state == Study.State.CLOSED
    response = staff_client.post(changelist, {"action": "assign_readers", "_selected_action": [study.pk]})
    assert response["Location"] == url


def test_change_form_refuses_labels_that_do_not_fit_the_scale(staff_client):
    study = make_study()
    url = reverse("admin:readerstudy_study_change", args=[study.pk])
    post = {"name": study.name, "instructions": "x", "confidence_min": "1", "confidence_max": "3",
            "confidence_labels": '["a", "b"]', "studyreader_set-TOTAL_FORMS": "0",
            "assignments-TOTAL_FORMS": "0", "assignments-INITIAL_FORMS": "0"}
    page = staff_client.post(url, post)
    assert page.status_code == 200 and "2 labels for the 3 levels 1..3" in page.content.decode()
    post["confidence_labels"] = '["a", "b", "c"]'
    assert staff_client.post(url, post).status_code == 302
    study.refresh_from_db()
    assert (study.confidence_max, study.confidence_labels) == (3, ["a", "b", "c"])
