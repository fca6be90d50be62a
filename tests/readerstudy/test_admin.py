"""The Django admin of the reader study: lists, build and upload pages, assigning readers, state actions."""

import pytest
from django.urls import reverse
from django.utils import timezone

from readerstudy.models import Image, ImageSet, Response, Study, StudyItem, StudyReader
from tests.factories import answer_items, make_image_set, make_study, make_user, png_bytes, study_archive


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
    assert f'href="/results/{study.pk}/"' in page
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
    assert page.status_code == 200 and "2 problems; nothing was created" in html
    assert "manifest.csv line 3: unknown truth &#x27;fake&#x27;" in html
    assert "manifest.csv line 4: &#x27;c.png&#x27; is not in the archive" in html
    assert not Study.objects.exists() and not ImageSet.objects.exists() and not Image.objects.exists()
    assert not [p for p in _media_root.rglob("*") if p.is_file()]
    good = study_archive(files, "filename,truth,generator,label\na.png,real,real,X\nb.png,synthetic,gan,X\n", name="upload.zip")
    post = {**SETTINGS_POST, "name": "Up", "archive": good}
    response = staff_client.post(reverse("admin:readerstudy_study_upload"), post)
    assert response.status_code == 302
    assert Study.objects.get(name="Up").items.count() == 2


def test_upload_errors_are_reported_once_by_file_name_and_ask_for_the_file_again(staff_client):
    """Defect 8: a bad truth value was also reported as "not listed in manifest.csv", an unreadable image
    as <_io.BytesIO object at 0x...>, and the chosen file vanished without a word."""
    files = {"a.png": png_bytes(1), "b.png": png_bytes(2), "notes.png": b"these are notes, not an image"}
    manifest = "filename,truth,generator,label\na.png,real,real,X\nb.png,fake,gan,X\nnotes.png,real,real,X\n"
    page = staff_client.post(reverse("admin:readerstudy_study_upload"),
                             {**SETTINGS_POST, "name": "Up", "archive": study_archive(files, manifest, name="mine.zip")})
    html = page.content.decode()
    assert "2 problems; nothing was created" in html
    assert html.count("manifest.csv line 3: unknown truth &#x27;fake&#x27;") == 1
    assert "b.png" not in html and "not listed in manifest.csv" not in html  # b.png is listed, on line 3
    assert "notes.png: not a readable image" in html and "BytesIO" not in html and "object at 0x" not in html
    assert "Choose mine.zip again" in html  # at the file field, by name
    # A form error elsewhere asks for the file again too.
    page = staff_client.post(reverse("admin:readerstudy_study_upload"),
                             {**SETTINGS_POST, "name": "", "archive": study_archive(files, manifest, name="mine.zip")})
    assert "Choose mine.zip again" in page.content.decode() and not Study.objects.exists()


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
            "confidence_labels": '["a", "b"]', "break_every": "40", "equivalence_margin": "0.05"}
    page = staff_client.post(url, post)
    assert page.status_code == 200 and "2 labels for the 3 levels 1..3" in page.content.decode()
    post["confidence_labels"] = '["a", "b", "c"]'
    assert staff_client.post(url, post).status_code == 302
    study.refresh_from_db()
    assert (study.confidence_max, study.confidence_labels) == (3, ["a", "b", "c"])


def test_admin_is_branded_with_links_to_results_and_api_docs(staff_client):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert "<title>Studies, image sets and jobs | HistoSynth admin</title>" in html
    assert "HistoSynth administration" in html and "Django administration" not in html
    assert 'href="/results/"' in html and 'href="/api/docs/"' in html


def test_responses_filter_by_study_reader_and_answer_and_show_pseudonyms_with_the_study(staff_client):
    """Defect 10: no study or reader filter; "R01" meant different people in different studies; rows wrapped."""
    alice, bob = make_user("alice"), make_user("bob")
    first = make_study(name="Alpha", readers=[alice])
    second = make_study(name="Beta", readers=[bob])  # bob is R01 too, in Beta
    answer_items(first.assignments.get(), answer="real")
    answer_items(second.assignments.get(), answer="synthetic")
    url = reverse("admin:readerstudy_response_changelist")
    html = staff_client.get(url).content.decode()
    assert "Alpha · R01" in html and "Beta · R01" in html
    assert "white-space: nowrap" in html
    answered = Response.objects.filter(assignment__study=first).earliest("answered_at").answered_at
    assert timezone.localtime(answered).strftime("%Y-%m-%d %H:%M:%S") in html
    by_study = staff_client.get(url, {"assignment__study__id__exact": second.pk}).content.decode()
    assert "Beta · R01" in by_study and "Alpha · R01" not in by_study
    bob_assignment = second.assignments.get()
    by_reader = staff_client.get(url, {"reader": bob_assignment.pk})
    assert {r.assignment_id for r in by_reader.context["cl"].result_list} == {bob_assignment.pk}
    by_answer = staff_client.get(url, {"answer__exact": "real"})
    assert {r.assignment.study.name for r in by_answer.context["cl"].result_list} == {"Alpha"}
    # The reader filter offers each reader with the study's name.
    assert "Alpha · R01" in by_answer.content.decode().split('id="changelist-filter"')[1]


def test_study_page_shows_each_readers_progress_and_the_new_settings(staff_client):
    alice, bob = make_user("alice"), make_user("bob")
    study = make_study(name="Gamma", readers=[alice, bob])
    Study.objects.filter(pk=study.pk).update(harmonisation=Study.Harmonisation.JPEG90)  # chosen at build
    answer_items(study.assignments.get(user=alice))
    total = len(study.assignments.get(user=alice).item_order)
    response = staff_client.get(reverse("admin:readerstudy_study_change", args=[study.pk]))
    html = response.content.decode()
    rows = {row.assignment.user.username: row for row in response.context["reader_progress"]}
    assert (rows["alice"].answered, rows["alice"].total, rows["bob"].answered) == (total, total, 0)
    assert rows["alice"].last_activity is not None and rows["bob"].last_activity is None
    assert f"{total} / {total}" in html and f"0 / {total}" in html and 'title="Gamma · R01">R01<' in html
    assert reverse("admin:readerstudy_study_remove_answers", args=[study.pk, rows["alice"].assignment.pk]) in html
    for name in ("break_every", "microns_per_pixel", "equivalence_margin"):
        assert f'name="{name}"' in html
    assert 'name="harmonisation"' not in html and "Every image through JPEG quality 90" in html  # read-only


def test_study_settings_are_checked_on_the_change_form(staff_client):
    study = make_study()
    url = reverse("admin:readerstudy_study_change", args=[study.pk])
    post = {"name": study.name, "instructions": "x", "confidence_min": "1", "confidence_max": "5",
            "confidence_labels": "[]", "break_every": "10", "equivalence_margin": "0.7", "microns_per_pixel": "-1"}
    html = staff_client.post(url, post).content.decode()
    assert "must lie between 0 and 0.5" in html and "must be positive" in html
    post.update(equivalence_margin="0.1", microns_per_pixel="0.5")
    assert staff_client.post(url, post).status_code == 302
    study.refresh_from_db()
    assert (study.break_every, study.equivalence_margin, study.microns_per_pixel) == (10, 0.1, 0.5)


def test_staff_remove_one_readers_answers_after_confirming_with_an_audit_entry(staff_client):
    from django.contrib.admin.models import LogEntry

    from readerstudy.models import ItemFlag, Presentation, ResponseEvent

    alice, bob = make_user("alice"), make_user("bob")
    study = make_study(readers=[alice, bob])
    a_alice, a_bob = study.assignments.get(user=alice), study.assignments.get(user=bob)
    answer_items(a_alice)
    answer_items(a_bob)
    ItemFlag.objects.create(assignment=a_alice, item_id=a_alice.item_order[0], comment="blurry")
    n = len(a_alice.item_order)
    url = reverse("admin:readerstudy_study_remove_answers", args=[study.pk, a_alice.pk])
    confirm = staff_client.get(url).content.decode()
    assert f"<b>{n}</b> answers of <b>{study.name} · R01 (alice)</b>" in confirm
    assert Response.objects.filter(assignment=a_alice).count() == n  # asking changes nothing
    assert staff_client.post(url, {}).status_code == 200 and Response.objects.filter(assignment=a_alice).count() == n
    done = staff_client.post(url, {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == reverse("admin:readerstudy_study_change", args=[study.pk])
    assert not Response.objects.filter(assignment=a_alice).exists()
    assert not ResponseEvent.objects.filter(response__assignment=a_alice).exists()
    assert not Presentation.objects.filter(assignment=a_alice).exists()
    a_alice.refresh_from_db()
    assert a_alice.finished_at is None and a_alice.pseudonym == "R01" and len(a_alice.item_order) == n
    assert ItemFlag.objects.filter(assignment=a_alice).count() == 1  # remarks about images stay
    assert Response.objects.filter(assignment=a_bob).count() == n  # the other reader is untouched
    entry = LogEntry.objects.get(object_id=str(study.pk))
    assert entry.user.username == "admin" and f"Removed the answers of {study.name} · R01 (alice)" in \
        entry.get_change_message() and f"{n} answer(s)" in entry.get_change_message()
    # An assignment of another study is not reachable under this study.
    other = make_study(readers=[alice])
    wrong = reverse("admin:readerstudy_study_remove_answers", args=[study.pk, other.assignments.get().pk])
    assert staff_client.post(wrong, {"confirm": "yes"}).status_code == 404


def test_readers_cannot_remove_answers(client, db):
    reader = make_user("reader1")
    study = make_study(readers=[reader])
    answer_items(study.assignments.get())
    client.force_login(reader)
    url = reverse("admin:readerstudy_study_remove_answers", args=[study.pk, study.assignments.get().pk])
    assert client.post(url, {"confirm": "yes"}).status_code == 302  # to the admin login
    assert Response.objects.filter(assignment__study=study).count() == len(study.assignments.get().item_order)


def test_flags_are_listed_for_staff_by_study_and_reader(staff_client):
    from readerstudy.models import ItemFlag

    alice = make_user("alice")
    study = make_study(name="Delta", readers=[alice])
    assignment = study.assignments.get()
    ItemFlag.objects.create(assignment=assignment, item_id=assignment.item_order[0], comment="out of focus")
    url = reverse("admin:readerstudy_itemflag_changelist")
    html = staff_client.get(url, {"assignment__study__id__exact": study.pk}).content.decode()
    assert "Delta · R01" in html and "out of focus" in html
    other = make_study(name="Epsilon", readers=[alice])
    html = staff_client.get(url, {"reader": other.assignments.get().pk}).content.decode()
    assert "out of focus" not in html
def _png_with_script() -> bytes:
    import io

    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(document.cookie)</script>")
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_file_view_sniffs_the_type_and_never_serves_a_stored_html_name_inline(staff_client):
    # A row stored before the import refused such names: a valid PNG kept as `.html`, and an HTML page.
    from django.core.files.base import ContentFile

    image_set = make_image_set(n=1)
    png_as_html = Image.objects.create(
        image_set=image_set, original_name="x.html", sha256="0" * 64, width=8, height=8, format="PNG",
        file=ContentFile(_png_with_script(), name="legacy.html"),
    )
    page = Image.objects.create(
        image_set=image_set, original_name="y.html", sha256="1" * 64, width=8, height=8, format="PNG",
        file=ContentFile(b"<html><script>alert(1)</script></html>", name="page.html"),
    )
    served = staff_client.get(reverse("admin:readerstudy_image_file", args=[png_as_html.pk]))
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert b"".join(served.streaming_content) == _png_with_script()
    served = staff_client.get(reverse("admin:readerstudy_image_file", args=[page.pk]))
    assert served.status_code == 200
    assert served["Content-Type"] == "application/octet-stream" and "html" not in served["Content-Type"]
    assert served["Content-Disposition"].startswith("attachment")
    assert served["X-Content-Type-Options"] == "nosniff"


def test_a_large_upload_in_the_admin_goes_to_its_import_job(staff_client, monkeypatch, django_capture_on_commit_callbacks):
    import readerstudy.services.imports as imports
    from jobs.models import Job

    monkeypatch.setattr(imports, "BACKGROUND_ABOVE_ENTRIES", 2)
    files = {"a.png": png_bytes(1), "b.png": png_bytes(2)}
    archive = study_archive(files, "filename,truth,generator,label\na.png,real,real,X\nb.png,synthetic,gan,X\n",
                            name="upload.zip")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:readerstudy_study_upload"), {**SETTINGS_POST, "name": "Bg", "archive": archive})
    job = Job.objects.get(kind=Job.Kind.IMPORT_STUDY)
    assert response.status_code == 302 and response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and Study.objects.get(name="Bg").items.count() == 2
