"""Importing a study archive: a valid zip makes image sets and a study; every hostile one, nothing."""
import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from readerstudy.models import Image, ImageSet, Study, StudyItem
from readerstudy.services.imports import ImportLimits, StudyImportError, study_import
from tests.factories import png_bytes, study_archive

HEADER = "filename,truth,generator,label\n"


def valid_entries() -> tuple[dict, str]:
    entries = {
        "img/r1.png": png_bytes(1),
        "img/r2.jpg": png_bytes(2, fmt="JPEG"),
        "img/d1.png": png_bytes(3),
        "img/p1.png": png_bytes(4),
    }
    manifest = HEADER + "img/r1.png,real,real,A\nimg/r2.jpg,real,,B\nimg/d1.png,synthetic,diffusion,A\n"
    manifest += "img/p1.png,synthetic,progan,B\n"
    return entries, manifest


def media_files(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()]


def nothing_created(media_root: Path) -> bool:
    rows = Study.objects.exists() or ImageSet.objects.exists() or Image.objects.exists()
    return not (rows or media_files(media_root))


@pytest.mark.django_db
def test_valid_archive_creates_one_set_per_truth_and_generator_and_the_study(
    _media_root, django_capture_on_commit_callbacks
):
    entries, manifest = valid_entries()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        study = study_import(name="Upload 1", archive=study_archive(entries, manifest), seed=3, allow_revision=True)
        # Staged until the commit: nothing has reached its final place yet.
        assert not list((_media_root / "imagesets").rglob("*.png")) and not (_media_root / "studies").exists()
    assert len(callbacks) == 1
    assert study.state == Study.State.DRAFT and study.allow_revision
    sets = {(s.kind, s.generator): s.images.count() for s in ImageSet.objects.all()}
    assert sets == {("real", "real"): 2, ("synthetic", "diffusion"): 1, ("synthetic", "progan"): 1}
    items = {(i.image.original_name, i.truth, i.generator, i.label) for i in study.items.select_related("image")}
    assert items == {
        ("img/r1.png", "real", "real", "A"), ("img/r2.jpg", "real", "real", "B"),
        ("img/d1.png", "synthetic", "diffusion", "A"), ("img/p1.png", "synthetic", "progan", "B"),
    }
    assert study.provenance["archive"] == "study.zip" and len(study.provenance["archive_sha256"]) == 64
    # 4 image files + 4 blinded files, nothing else, each where its row says (the staging folder is gone).
    assert len(media_files(_media_root)) == 8
    assert not [p for p in media_files(_media_root) if ".staging" in p.parts]
    for item in study.items.select_related("image"):
        assert (_media_root / item.blinded_file.name).is_file() and (_media_root / item.image.file.name).is_file()


@pytest.mark.django_db
def test_archive_in_one_folder_with_roles_and_extra_columns():
    manifest = "filename,truth,generator,label,role,slide\nr1.png,real,real,A,,S1\nr2.png,real,real,A,practice,S2\n"
    manifest += "d1.png,synthetic,diffusion,A,main,\n"
    data = study_archive({"export/manifest.csv": manifest, "export/r1.png": png_bytes(1), "export/r2.png": png_bytes(2),
                     "export/d1.png": png_bytes(3), "__MACOSX/export/._r1.png": b"junk"})
    study = study_import(name="Folder", archive=data, repeats=1)
    roles = sorted(study.items.values_list("role", flat=True))
    assert roles == ["main", "main", "practice", "repeat"]
    assert Image.objects.get(original_name="r1.png").origin == {"slide": "S1"}


def _problems(archive, **kwargs) -> list[str]:
    with pytest.raises(StudyImportError) as info:
        study_import(name="Hostile", archive=archive, **kwargs)
    return info.value.problems


@pytest.mark.django_db
def test_not_a_zip(_media_root):
    problems = _problems(io.BytesIO(b"PK\x03\x04 this is not really a zip"))
    assert problems == ["archive: not a zip archive"]
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_dotdot_and_absolute_entries_are_named(_media_root):
    entries, manifest = valid_entries()
    entries.update({"../evil.png": png_bytes(9), "/etc/evil.png": png_bytes(9), "img\\..\\x.png": png_bytes(9)})
    problems = _problems(study_archive(entries, manifest))
    assert any("../evil.png" in p and ".." in p for p in problems)
    assert any("/etc/evil.png" in p and "absolute" in p for p in problems)
    assert any("img\\..\\x.png" in p for p in problems)
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_decompression_bomb_by_total_size(_media_root):
    entries, manifest = valid_entries()
    entries["img/zeros.bin"] = b"\0" * 2_000_000  # compresses to ~2 kB
    problems = _problems(study_archive(entries, manifest), limits=ImportLimits(max_total_bytes=1_000_000))
    assert any("decompression bomb" in p for p in problems), problems
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_decompression_bomb_by_pixel_count(_media_root):
    # A 6000x6000 PNG of one colour is a few kB compressed and 108 MB decoded; refused from its header.
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (6000, 6000)).save(out, format="PNG")
    entries, manifest = valid_entries()
    entries["img/bomb.png"] = out.getvalue()
    problems = _problems(study_archive(entries, manifest + "img/bomb.png,synthetic,diffusion,A\n"))
    assert problems == [
        f"img/bomb.png: 6000x6000 pixels is more than the limit of {4096 * 4096} (a decompression bomb?)"
    ]
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_non_images_and_corrupt_images_are_named(_media_root):
    entries, manifest = valid_entries()
    entries["img/notes.png"] = b"just some text"
    entries["img/cut.png"] = png_bytes(7)[:120]
    manifest += "img/notes.png,real,real,A\nimg/cut.png,synthetic,diffusion,B\n"
    problems = _problems(study_archive(entries, manifest))
    assert len(problems) == 2
    assert problems[0].startswith("img/notes.png: not a readable image")
    assert problems[1].startswith("img/cut.png: not a readable image")
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_missing_columns(_media_root):
    entries, _ = valid_entries()
    problems = _problems(study_archive(entries, "filename,truth\nimg/r1.png,real\n"))
    assert problems[0] == (
        "manifest.csv: missing column(s) generator, label; expected filename,truth,generator,label "
        "(found filename,truth)"
    )
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_every_row_problem_is_collected_with_its_line(_media_root):
    entries, _ = valid_entries()
    manifest = HEADER + (
        "img/r1.png,real,real,A\n"  # line 2: fine
        "img/r2.jpg,maybe,real,B\n"  # line 3: unknown truth
        "img/r1.png,real,real,A\n"  # line 4: duplicate
        "img/gone.png,synthetic,diffusion,A\n"  # line 5: missing file
        "img/d1.png,synthetic,,A\n"  # line 6: synthetic without generator
        "img/d2.png,synthetic,all,A\n"  # line 7: the results' name for all synthetic images together
    )
    problems = _problems(study_archive(entries, manifest))
    assert "manifest.csv line 3: unknown truth 'maybe' (expected real or synthetic)" in problems
    assert "manifest.csv line 4: filename 'img/r1.png' is listed twice (first on line 2)" in problems
    assert "manifest.csv line 5: 'img/gone.png' is not in the archive" in problems
    assert "manifest.csv line 6: truth is synthetic, so generator must name the generator (got '')" in problems
    assert "manifest.csv line 7: generator 'all' is reserved: the results call the real images 'real' and all " \
        "synthetic images together 'all'; name the generator otherwise" in problems
    # Files in the archive whose row was rejected or never written are unlisted images.
    assert "img/p1.png: in the archive but not listed in manifest.csv" in problems
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_unlisted_image_and_no_manifest(_media_root):
    entries, manifest = valid_entries()
    entries["img/extra.png"] = png_bytes(11)
    assert _problems(study_archive(entries, manifest)) == ["img/extra.png: in the archive but not listed in manifest.csv"]
    assert _problems(study_archive(entries)) == ["study.zip: no manifest.csv at the top of the archive"]
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_failure_during_writing_leaves_no_rows_and_no_files(_media_root, monkeypatch):
    # Valid archive, but the study step fails after the image sets were written: all rolled back.
    import readerstudy.services.imports as imports

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "study_create", boom)
    entries, manifest = valid_entries()
    with pytest.raises(RuntimeError):
        study_import(name="Boom", archive=study_archive(entries, manifest))
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_existing_study_name_and_bad_settings_are_reported(_media_root):
    entries, manifest = valid_entries()
    study_import(name="Taken", archive=study_archive(entries, manifest))
    with pytest.raises(StudyImportError) as info:
        study_import(name="Taken", archive=study_archive(entries, manifest), confidence_labels=["x"])
    assert "a study named 'Taken' exists already" in info.value.problems
    assert any("confidence_labels: 1 labels for the 5 levels 1..5" in p for p in info.value.problems)
    assert Study.objects.count() == 1


@pytest.mark.django_db
def test_import_study_command(tmp_path):
    entries, manifest = valid_entries()
    path = tmp_path / "s.zip"
    path.write_bytes(study_archive(entries, manifest).getvalue())
    out = io.StringIO()
    call_command("import_study", str(path), "--name", "CLI", "--open", "--seed", "5", stdout=out)
    study = Study.objects.get(name="CLI")
    assert study.state == Study.State.OPEN and study.items.filter(role=StudyItem.Role.MAIN).count() == 4
    assert "imported study 'CLI'" in out.getvalue()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"nope")
    with pytest.raises(CommandError, match="bad.zip: not a zip archive"):
        call_command("import_study", str(bad), "--name", "CLI2")


@pytest.mark.django_db
def test_duplicate_entries_symlinks_and_too_many_entries(_media_root):
    import warnings

    entries, manifest = valid_entries()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        zf.writestr("manifest.csv", manifest)
        for name, data in entries.items():
            zf.writestr(name, data)
        zf.writestr("img/r1.png", png_bytes(99))
        link = zipfile.ZipInfo("img/link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    out.seek(0)
    problems = _problems(out)
    assert "img/r1.png: more than one entry with this name in the archive" in problems
    assert "img/link.png: symbolic link in the archive" in problems
    problems = _problems(study_archive(entries, manifest), limits=ImportLimits(max_entries=3))
    assert problems == ["the archive has 5 entries, more than the limit of 3"]
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_a_png_named_html_with_a_script_chunk_is_refused_by_row(_media_root):
    import io as _io

    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(document.cookie)</script>")
    out = _io.BytesIO()
    PILImage.new("RGB", (32, 32)).save(out, format="PNG", pnginfo=info)
    entries = {"img/r1.png": png_bytes(1), "img/evil.html": out.getvalue()}
    problems = _problems(study_archive(entries, HEADER + "img/r1.png,real,real,A\nimg/evil.html,synthetic,gan,A\n"))
    assert any(p.startswith("manifest.csv line 3: filename 'img/evil.html' does not end in an image extension")
               for p in problems), problems
    assert nothing_created(_media_root)


@pytest.mark.django_db
def test_a_large_upload_becomes_an_import_job_with_progress(_media_root, monkeypatch, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    import readerstudy.services.imports as imports
    from jobs.models import Job
    from tests.factories import make_user

    monkeypatch.setattr(imports, "BACKGROUND_ABOVE_ENTRIES", 3)  # this archive has 5 entries
    entries, manifest = valid_entries()
    client = APIClient()
    client.force_authenticate(make_user(staff=True))
    small = study_archive(dict(list(entries.items())[:2]), HEADER + "img/r1.png,real,real,A\nimg/r2.jpg,synthetic,g,B\n")
    assert client.post("/api/admin/studies/upload/", {"name": "Small", "archive": small}, format="multipart").status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/admin/studies/upload/",
            {"name": "Big", "archive": study_archive(entries, manifest, name="big.zip"), "harmonisation": "resize"},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["url"] == f"/api/admin/jobs/{body['job']}/"
    job = Job.objects.get(pk=body["job"])
    assert job.kind == Job.Kind.IMPORT_STUDY and job.state == Job.State.SUCCEEDED, job.error
    assert job.progress == pytest.approx(1.0)
    study = Study.objects.get(name="Big")
    assert job.result["study_id"] == study.pk and study.items.count() == 4
    assert study.harmonisation == "resize" and study.provenance["archive"] == "big.zip"
    assert not list((_media_root / imports.UPLOADS_DIR).iterdir())  # the stored archive is gone
    # A name already taken is refused before anything is stored or queued.
    again = client.post("/api/admin/studies/upload/", {"name": "Big", "archive": study_archive(entries, manifest)},
                        format="multipart")
    assert again.status_code == 400 and "exists already" in again.json()["problems"][0]


@pytest.mark.django_db
def test_the_import_job_takes_only_archives_from_the_uploads_folder(tmp_path):
    from readerstudy.services.imports import study_import_stored

    elsewhere = tmp_path / "precious.zip"
    elsewhere.write_bytes(b"not yours to delete")
    with pytest.raises(StudyImportError, match="not an uploaded archive"):
        study_import_stored(archive=str(elsewhere), name="X")
    assert elsewhere.exists()


@pytest.mark.django_db
def test_a_bomb_by_compression_ratio_is_refused_before_unpacking(_media_root, monkeypatch):
    import readerstudy.services.imports as imports

    unpacked = []
    monkeypatch.setattr(imports, "_unpack_entry", lambda **kw: unpacked.append(kw["info"].filename))
    entries, manifest = valid_entries()
    entries["img/zeros.png"] = b"\0" * 3_000_000  # 3 MB that pack into a few kB: well within the total size
    manifest += "img/zeros.png,real,real,A\n"
    problems = _problems(study_archive(entries, manifest))
    assert any(p.startswith("img/zeros.png: unpacks") and "times its packed size" in p for p in problems), problems
    assert unpacked == [] and nothing_created(_media_root)


class _ReadCounter(io.BufferedRandom):
    """A file on disk that remembers the largest single read asked of it."""

    largest = 0

    def read(self, size=-1):
        data = super().read(size)
        type(self).largest = max(type(self).largest, len(data))
        return data


@pytest.mark.django_db
def test_the_archive_is_streamed_never_read_whole(tmp_path, django_capture_on_commit_callbacks):
    entries, manifest = valid_entries()
    entries["img/big.png"] = png_bytes(9, size=800)  # 1.9 MB of noise: incompressible
    manifest += "img/big.png,synthetic,diffusion,B\n"
    path = tmp_path / "big.zip"
    path.write_bytes(study_archive(entries, manifest).getvalue())
    assert path.stat().st_size > 1_900_000
    with open(path, "r+b") as raw, django_capture_on_commit_callbacks(execute=True):
        study = study_import(name="Streamed", archive=_ReadCounter(raw.raw), archive_name="big.zip",
                             blinded_size=(32, 32))
    assert study.items.count() == 5 and study.confound_audit["arms"]  # audited at upload too
    assert 0 < _ReadCounter.largest <= (1 << 20) + 65_536, _ReadCounter.largest
