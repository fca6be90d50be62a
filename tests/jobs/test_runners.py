"""Runners call their owners' real functions: patch extraction from small pyramidal TIFF slides,
with its image sets registered, and a bad slide failing the job with the slide named."""
import pytest

from generation.slides.synthetic import Rect, write_slide
from jobs.models import Job
from jobs.services import job_create
from readerstudy.models import ImageSet


def cohort(tmp_path, corrupt: bool = False):
    slides = tmp_path / "slides"
    slides.mkdir()
    rows = []
    for i, (sid, label) in enumerate([("s1", "A"), ("s2", "B")]):
        write_slide(slides / f"{sid}.tiff", 1024, 1024, tissue=[Rect(128, 128, 768, 768)], seed=i)
        rows.append(f"{sid},{label},p{i}\n")
    if corrupt:
        (slides / "s3.tiff").write_bytes(b"II*\x00 truncated")
        rows.append("s3,A,p9\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label,patient_id\n" + "".join(rows))
    return slides, labels


@pytest.mark.django_db
def test_extract_patches_job_registers_real_sets(tmp_path, django_capture_on_commit_callbacks):
    slides, labels = cohort(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, params={
            "slides": str(slides), "labels": str(labels), "out": str(tmp_path / "out"), "patch_size": 128,
            "out_size": 32, "per_slide": 3, "split": "0.5,0,0.5", "register_name": "cohort", "seed": 1,
        })
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["patches"] == 6 and job.result["failed_slides"] == []
    sets = ImageSet.objects.filter(name__startswith="cohort-")
    assert sets.exists() and all(s.kind == "real" for s in sets)
    assert sum(s.images.count() for s in sets) == 6
    assert set(job.result["image_sets"].values()) == {s.name for s in sets}


@pytest.mark.django_db
def test_extract_patches_job_fails_naming_the_bad_slide(tmp_path, django_capture_on_commit_callbacks):
    slides, labels = cohort(tmp_path, corrupt=True)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, params={
            "slides": str(slides), "labels": str(labels), "out": str(tmp_path / "out"), "patch_size": 128,
            "out_size": 32, "per_slide": 2, "register_name": "cohort",
        })
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert "1 slide(s) failed" in job.error and "s3" in job.error and "FAILED s3" in job.log_tail
    assert not ImageSet.objects.exists()


@pytest.mark.django_db
def test_warnings_of_the_function_reach_the_job_log(tmp_path, django_capture_on_commit_callbacks):
    slides, labels = cohort(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=Job.Kind.EXTRACT_PATCHES, params={
            "slides": str(slides), "labels": str(labels), "out": str(tmp_path / "out"), "patch_size": 128,
            "out_size": 32, "per_slide": 1,
        })
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert "WARNING TissueDetectionWarning: s1: no annotation" in job.log_tail


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_training_job_stops_at_the_next_step_with_its_checkpoint(tmp_path, monkeypatch):
    """Progress and cancel go through the trainer's on_progress callback: the job reports `step k/N`,
    and a cancel asked during step 3 stops the run after that step, checkpoint of step 3 written."""
    from generation.training.checkpoint import checkpoint_load
    from jobs import services
    from jobs.services import job_cancel
    from tests.generation.diffusion_helpers import write_patches

    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)
    data = write_patches(tmp_path / "data", n=4, size=32)
    seen = []
    original = services.JobReporter.on_progress

    def spying(self, what="step", **kw):
        callback = original(self, what, **kw)

        def spy(step, total, metrics):
            answer = callback(step, total, metrics)
            seen.append((step, total, Job.objects.get().message, answer))
            if step == 2:
                job_cancel(job=Job.objects.get())  # read at the next report
            return answer

        return spy

    monkeypatch.setattr(services.JobReporter, "on_progress", spying)
    job = job_create(kind=Job.Kind.TRAIN_DIFFUSION, params={
        "data": str(data), "out": str(tmp_path / "run"), "preset": "tiny", "steps": 10, "batch_size": 2,
        "save_every": 100, "log_every": 1})  # autocommit: runs at once
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED, job.error
    assert [(s, t, a) for s, t, _, a in seen] == [(1, 10, True), (2, 10, True), (3, 10, False)]
    assert seen[1][2].startswith("step 2/10, loss ")
    assert checkpoint_load(tmp_path / "run" / "checkpoint.pt", kind="diffusion")["step"] == 3
