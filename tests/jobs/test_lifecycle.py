"""Job lifecycle in the embedded (eager) mode: queued -> running -> succeeded/failed/cancelled,
enqueued on commit by primary key, stale jobs failed with their reason."""
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job
from jobs.runners import RUNNERS, Param, Runner, RunnerError
from jobs.services import JobError, job_cancel, job_create, job_execute, job_mark_stale
from tests.factories import make_image_set, make_user

KIND = Job.Kind.TRAIN_DIFFUSION


@pytest.fixture
def runner(monkeypatch):
    """Replace one kind's runner by a function the test controls."""
    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)

    def install(fn, params=(Param("n", int, default=3),)):
        monkeypatch.setitem(RUNNERS, KIND, Runner(KIND, fn, params=params))

    return install


@pytest.mark.django_db
def test_job_runs_on_commit_by_primary_key_and_succeeds(runner, django_capture_on_commit_callbacks, monkeypatch):
    seen = []

    def fn(params, reporter):
        states = Job.objects.filter(state=Job.State.RUNNING).count()
        for i in range(params["n"]):
            reporter.progress((i + 1) / params["n"], f"step {i + 1}")
            seen.append(Job.objects.get().progress)
        logging.getLogger("some.trainer").info("loss 0.25")
        return {"checkpoint": "run/ckpt.pt", "running_jobs": states}

    runner(fn)
    delivered = []
    from jobs import tasks

    original = tasks.run_job.apply_async
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, task_id: delivered.append(args) or original(
        args=args, task_id=task_id))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_create(kind=KIND, params={"n": "4"}, created_by=make_user())
    assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED and delivered == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert delivered == [[job.pk]]  # the task gets the primary key, not the object
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert job.params == {"n": 4}
    assert job.result == {"checkpoint": "run/ckpt.pt", "running_jobs": 1}
    assert job.progress == 1.0 and seen == [0.25, 0.5, 0.75, 1.0]
    assert job.started_at and job.finished_at and job.started_at <= job.finished_at
    assert "INFO some.trainer: loss 0.25" in job.log_tail and job.error == ""


@pytest.mark.django_db
def test_failing_function_fails_the_job_with_error_and_traceback(runner, django_capture_on_commit_callbacks):
    def fn(params, reporter):
        reporter.progress(0.4, "halfway")
        raise ValueError("data folder /nope is empty")

    runner(fn)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={})
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.error.startswith("ValueError: data folder /nope is empty")
    assert "Traceback" in job.error and "in fn" in job.error
    assert job.progress == pytest.approx(0.4) and job.finished_at is not None


@pytest.mark.django_db
def test_cancel_while_running_stops_the_job_cleanly(runner, django_capture_on_commit_callbacks):
    steps = []

    def fn(params, reporter):
        for i in range(100):
            if i == 3:  # another request asks to cancel
                job_cancel(job=Job.objects.get())
            reporter.progress(i / 100, f"step {i}")
            steps.append(i)
        return {}

    runner(fn)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={})
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.cancel_requested
    assert steps == [0, 1, 2]
    assert job.finished_at is not None and "cancelled" in job.log_tail


@pytest.mark.django_db
def test_cancel_of_queued_job_and_of_finished_job(runner, django_capture_on_commit_callbacks):
    calls = []
    runner(lambda params, reporter: calls.append(1) or {})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_create(kind=KIND, params={})
    job_cancel(job=job)
    callbacks[0]()  # the task arrives after the cancel: nothing runs
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and calls == []
    with pytest.raises(JobError, match="already cancelled"):
        job_cancel(job=job)


@pytest.mark.django_db
def test_task_delivered_twice_runs_once(runner, django_capture_on_commit_callbacks):
    calls = []
    runner(lambda params, reporter: calls.append(1) or {"ok": True})
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={})
    job_execute(job_pk=job.pk)
    assert calls == [1]
    assert Job.objects.get(pk=job.pk).state == Job.State.SUCCEEDED


@pytest.mark.django_db
def test_stale_heartbeat_marks_running_job_failed_with_reason():
    old = timezone.now() - timedelta(minutes=30)
    dead = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=old, heartbeat_at=old, worker="w1:42")
    alive = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=old, heartbeat_at=timezone.now())
    done = Job.objects.create(kind=KIND, state=Job.State.SUCCEEDED, started_at=old, heartbeat_at=old)
    marked = job_mark_stale(timeout=timedelta(minutes=10))
    assert [j.pk for j in marked] == [dead.pk]
    dead.refresh_from_db()
    assert dead.state == Job.State.FAILED and dead.finished_at is not None
    assert "worker stopped reporting" in dead.error and "w1:42" in dead.error
    assert Job.objects.get(pk=alive.pk).state == Job.State.RUNNING
    assert Job.objects.get(pk=done.pk).state == Job.State.SUCCEEDED


@pytest.mark.django_db
def test_task_lost_in_celery_marks_job_failed(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(services, "_celery_state", lambda task_id: "FAILURE" if task_id == "t-lost" else "STARTED")
    now = timezone.now()
    lost = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
                              celery_task_id="t-lost")
    ok = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
                            celery_task_id="t-ok")
    assert [j.pk for j in job_mark_stale()] == [lost.pk]
    assert "Celery reports the task FAILURE" in Job.objects.get(pk=lost.pk).error
    assert Job.objects.get(pk=ok.pk).state == Job.State.RUNNING


@pytest.mark.django_db
def test_job_finishing_after_being_marked_stale_keeps_the_reason(runner, django_capture_on_commit_callbacks):
    def fn(params, reporter):
        Job.objects.filter(pk=reporter.job_pk).update(state=Job.State.FAILED, error="worker lost")
        return {"late": True}

    runner(fn)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={})
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.error == "worker lost" and job.result == {}


@pytest.mark.django_db
def test_bad_parameters_are_refused_before_anything_is_stored():
    with pytest.raises(RunnerError, match="data: required"):
        job_create(kind=Job.Kind.TRAIN_DIFFUSION, params={"out": "x"})
    with pytest.raises(RunnerError, match="steps: expected int"):
        job_create(kind=Job.Kind.TRAIN_DIFFUSION, params={"data": "d", "out": "x", "steps": "many"})
    with pytest.raises(RunnerError, match="unknown parameter.*colour"):
        job_create(kind=Job.Kind.TRAIN_DIFFUSION, params={"data": "d", "out": "x", "colour": 1})
    with pytest.raises(JobError, match="kind 'bake'"):
        job_create(kind="bake", params={})
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_log_tail_is_bounded(runner, django_capture_on_commit_callbacks, monkeypatch):
    monkeypatch.setattr(services, "LOG_TAIL_LINES", 5)

    def fn(params, reporter):
        for i in range(50):
            reporter.log(f"line {i}")
        return {}

    runner(fn)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={})
    job.refresh_from_db()
    lines = job.log_tail.splitlines()
    assert len(lines) == 5 and lines[-1].endswith("finished") and lines[-2].endswith("line 49")


@pytest.mark.django_db
def test_build_study_job_makes_a_balanced_open_study(django_capture_on_commit_callbacks):
    real = make_image_set(n=8, kind="real", labels=("A", "B"))
    fake1 = make_image_set(n=6, kind="synthetic", generator="diffusion", labels=("A", "B"))
    fake2 = make_image_set(n=6, kind="synthetic", generator="progan", labels=("A", "B"))
    reader = make_user("reader-x")
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=Job.Kind.BUILD_STUDY, params={
            "name": "demo-study", "real_set": real.name, "synthetic_sets": f"{fake1.name}, {fake2.name}",
            "n_per_synthetic": 4, "readers": "reader-x", "open": "yes", "seed": 3, "repeats": 2,
            "harmonisation": "jpeg90",
        })
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    from readerstudy.models import Study

    study = Study.objects.get(name="demo-study")
    assert job.result["study_id"] == study.pk and study.state == Study.State.OPEN
    assert study.harmonisation == Study.Harmonisation.JPEG90  # passed on to the builder
    items = list(study.items.filter(role="main"))
    assert study.items.filter(role="repeat").count() == 2
    assert sum(i.truth == "real" for i in items) == 8
    assert sum(i.generator == "diffusion" for i in items) == 4 and sum(i.generator == "progan" for i in items) == 4
    # stratified: each label equally represented within each source
    assert sorted(i.label for i in items if i.generator == "diffusion") == ["A", "A", "B", "B"]
    assert list(study.readers.all()) == [reader]


@pytest.mark.django_db
def test_missing_owner_function_gives_a_clear_job_error(django_capture_on_commit_callbacks, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_diffusion(name, *args, **kwargs):
        if name.startswith("generation.diffusion"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_diffusion)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(kind=KIND, params={"data": "d", "out": "o"})
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert "diffusion training" in job.error and "not available in this installation" in job.error


@pytest.mark.django_db(transaction=True)
def test_embedded_server_runs_launched_jobs_in_a_background_thread(settings, monkeypatch):
    import threading
    import time

    settings.JOBS_EAGER_IN_THREAD = True
    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)
    release = threading.Event()

    def fn(params, reporter):
        release.wait(10)
        return {"thread": threading.current_thread().name}

    monkeypatch.setitem(RUNNERS, KIND, Runner(KIND, fn))
    job = job_create(kind=KIND, params={})  # autocommit: enqueued at once, returns while it runs
    assert Job.objects.get(pk=job.pk).state in (Job.State.QUEUED, Job.State.RUNNING)
    release.set()
    for _ in range(100):
        job.refresh_from_db()
        if job.state == Job.State.SUCCEEDED:
            break
        time.sleep(0.1)
    assert job.state == Job.State.SUCCEEDED and job.result == {"thread": f"job-{job.pk}"}


@pytest.mark.django_db
def test_mark_stale_jobs_command():
    import io

    from django.core.management import call_command

    old = timezone.now() - timedelta(minutes=3)
    job = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=old, heartbeat_at=old)
    out = io.StringIO()
    call_command("mark_stale_jobs", "--minutes", "5", stdout=out)
    assert Job.objects.get(pk=job.pk).state == Job.State.RUNNING and out.getvalue() == ""
    call_command("mark_stale_jobs", "--minutes", "2", stdout=out)
    assert Job.objects.get(pk=job.pk).state == Job.State.FAILED and f"job #{job.pk}" in out.getvalue()
