"""The jobs admin (list, detail with log lines, cancel, launch forms) and the staff jobs API: they
work for staff and refuse everyone else."""
import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import Job
from jobs.runners import RUNNERS, Runner
from tests.factories import make_image_set, make_user

KIND = Job.Kind.EVALUATE_METRICS


@pytest.fixture
def staff_client(client):
    client.force_login(make_user(staff=True))
    return client


@pytest.fixture
def reader_client(client):
    client.force_login(make_user())
    return client


@pytest.fixture
def fake_runner(monkeypatch):
    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)
    calls = []

    def fn(params, reporter):
        reporter.log(f"comparing {params['fake']} with {params['real']}")
        calls.append(params)
        return {"fid": 12.5}

    monkeypatch.setitem(RUNNERS, KIND, Runner(KIND, fn, params=RUNNERS[KIND].params))
    return calls


def running_job(**kw):
    now = timezone.now()
    return Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
                              log_tail="12:00:00 step 7 loss 0.12", progress=0.35, message="step 7", **kw)


@pytest.mark.django_db
def test_admin_list_and_detail_render_for_staff(staff_client):
    job = running_job()
    failed = Job.objects.create(kind=KIND, state=Job.State.FAILED, error="ValueError: bad folder\nTraceback...")
    page = staff_client.get(reverse("admin:jobs_job_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="35" max="100"' in html and "Running" in html and "ValueError: bad folder" in html
    assert 'http-equiv="refresh"' in html and reverse("admin:jobs_job_launch") in html
    detail = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "step 7 loss 0.12" in detail and 'http-equiv="refresh"' in detail
    assert reverse("admin:jobs_job_cancel", args=[job.pk]) in detail
    done = staff_client.get(reverse("admin:jobs_job_change", args=[failed.pk])).content.decode()
    assert 'http-equiv="refresh"' not in done and "Traceback..." in done


@pytest.mark.django_db
def test_admin_cancel_button_and_action(staff_client):
    job = running_job()
    response = staff_client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.cancel_requested and job.state == Job.State.RUNNING  # stops at its next report
    queued = Job.objects.create(kind=KIND)
    staff_client.post(reverse("admin:jobs_job_changelist"),
                      {"action": "cancel_selected", "_selected_action": [queued.pk]})
    assert Job.objects.get(pk=queued.pk).state == Job.State.CANCELLED


@pytest.mark.django_db
def test_admin_launch_form_creates_and_runs_a_job(staff_client, fake_runner, django_capture_on_commit_callbacks):
    real, fake = make_image_set(kind="real", name="real-set"), make_image_set(kind="synthetic", name="fake-set")
    index = staff_client.get(reverse("admin:jobs_job_launch")).content.decode()
    for kind in RUNNERS:
        assert reverse("admin:jobs_job_launch_kind", args=[kind]) in index
    url = reverse("admin:jobs_job_launch_kind", args=[KIND])
    form = staff_client.get(url).content.decode()
    assert 'name="real"' in form and 'name="features"' in form and "random-inception" in form
    # Image sets are chosen from a menu of the right kind, not typed.
    assert f'<option value="{real.name}">' in form and f'<option value="{fake.name}">' in form
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, {"real": real.name, "fake": fake.name, "features": "random-inception"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert job.state == Job.State.SUCCEEDED and job.result == {"fid": 12.5}
    detail = staff_client.get(response["Location"]).content.decode()
    assert "<tr><th>Real image set</th><td>real-set</td></tr>" in detail  # labels, not parameter names
    assert fake_runner == [{"real": "real-set", "fake": "fake-set", "features": "random-inception",
                            "per_label": False, "seed": 0}]
    missing = staff_client.post(url, {"real": real.name})
    assert missing.status_code == 200 and Job.objects.count() == 1
    swapped = staff_client.post(url, {"real": fake.name, "fake": real.name, "features": "inception"})
    assert swapped.status_code == 200 and "Select a valid choice" in swapped.content.decode()
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_admin_refuses_non_staff(reader_client, client):
    job = running_job()
    for url in [reverse("admin:jobs_job_changelist"), reverse("admin:jobs_job_change", args=[job.pk]),
                reverse("admin:jobs_job_launch"), reverse("admin:jobs_job_launch_kind", args=[KIND])]:
        response = reader_client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    reader_client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))
    assert not Job.objects.get(pk=job.pk).cancel_requested


@pytest.mark.django_db
def test_admin_list_marks_dead_workers_failed(staff_client):
    old = timezone.now() - services.STALE_AFTER * 2
    job = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=old, heartbeat_at=old)
    page = staff_client.get(reverse("admin:jobs_job_changelist"), follow=True).content.decode()
    assert "worker stopped reporting" in page
    assert Job.objects.get(pk=job.pk).state == Job.State.FAILED


@pytest.mark.django_db
def test_api_staff_create_list_detail_cancel(staff_client, fake_runner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        created = staff_client.post("/api/admin/jobs/", {"kind": KIND, "params": {"real": "r", "fake": "f"}},
                                    content_type="application/json")
    assert created.status_code == 201, created.content
    body = staff_client.get(f"/api/admin/jobs/{created.json()['id']}/").json()
    assert body["state"] == "succeeded" and body["result"] == {"fid": 12.5} and "comparing f with r" in body["log_tail"]
    listing = staff_client.get("/api/admin/jobs/?state=succeeded").json()
    assert [j["id"] for j in listing] == [body["id"]]
    assert staff_client.get("/api/admin/jobs/?state=running").json() == []
    assert staff_client.post(f"/api/admin/jobs/{body['id']}/cancel/").status_code == 409
    job = running_job()
    cancelled = staff_client.post(f"/api/admin/jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    bad = staff_client.post("/api/admin/jobs/", {"kind": KIND, "params": {"real": "r"}}, content_type="application/json")
    assert bad.status_code == 400 and "fake: required" in bad.json()["params"][0]
    kinds = staff_client.get("/api/admin/jobs/kinds/").json()
    assert {k["kind"] for k in kinds} == set(Job.Kind.values)


@pytest.mark.django_db
def test_api_refuses_readers_and_anonymous(reader_client, client):
    job = running_job()
    for c in (reader_client,):
        assert c.get("/api/admin/jobs/").status_code == 403
        assert c.get(f"/api/admin/jobs/{job.pk}/").status_code == 403
        assert c.post("/api/admin/jobs/", {"kind": KIND, "params": {}}, content_type="application/json").status_code == 403
        assert c.post(f"/api/admin/jobs/{job.pk}/cancel/").status_code == 403
    client.logout()
    assert client.get("/api/admin/jobs/").status_code == 403
    assert not Job.objects.get(pk=job.pk).cancel_requested and Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_admin_launch_returns_while_the_job_runs_in_the_background(staff_client, settings, monkeypatch):
    """Defect 9: under plain runserver (no broker) the launch used to block the tab until the job ended."""
    import threading
    import time

    import os

    import config.settings

    if "JOBS_EAGER_IN_THREAD" not in os.environ:
        assert config.settings.JOBS_EAGER_IN_THREAD is True  # on by default, not only under `manage.py demo`
    del settings.JOBS_EAGER_IN_THREAD  # as if never configured (the tests' fixture turns it off)
    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)
    started, release = threading.Event(), threading.Event()

    def fn(params, reporter):
        started.set()
        release.wait(20)
        return {"fid": 1.0}

    monkeypatch.setitem(RUNNERS, KIND, Runner(KIND, fn, params=RUNNERS[KIND].params))
    real, fake = make_image_set(kind="real"), make_image_set(kind="synthetic")
    url = reverse("admin:jobs_job_launch_kind", args=[KIND])
    try:
        response = staff_client.post(url, {"real": real.name, "fake": fake.name, "features": "inception"},
                                     follow=True)
        job = Job.objects.get()
        assert job.state in (Job.State.QUEUED, Job.State.RUNNING)  # the request came back first
        html = response.content.decode()
        assert f"Job #{job.pk} queued" in html or f"Job #{job.pk} is running" in html
        assert "launched" not in html
        assert started.wait(20)
        page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
        assert '<progress max="100"' in page  # moving bar while nothing is measured yet, not a frozen 0%
    finally:
        release.set()
    for _ in range(200):
        job.refresh_from_db()
        if job.state == Job.State.SUCCEEDED:
            break
        time.sleep(0.05)
    assert job.state == Job.State.SUCCEEDED and job.result == {"fid": 1.0}


@pytest.mark.django_db(transaction=True)  # autocommit, as under a server: the job runs inside job_create
def test_admin_never_says_launched_about_a_job_already_cancelled(staff_client, monkeypatch):
    """Defect 9: the message after a launch says what the job is now."""
    from jobs.services import job_cancel

    monkeypatch.setattr(services, "REPORT_INTERVAL", 0.0)

    def fn(params, reporter):
        job_cancel(job=Job.objects.get())
        reporter.progress(0.5, "half", force=True)  # sees the cancel and stops

    monkeypatch.setitem(RUNNERS, KIND, Runner(KIND, fn, params=RUNNERS[KIND].params))
    real, fake = make_image_set(kind="real"), make_image_set(kind="synthetic")
    url = reverse("admin:jobs_job_launch_kind", args=[KIND])
    html = staff_client.post(url, {"real": real.name, "fake": fake.name, "features": "inception"},
                             follow=True).content.decode()
    job = Job.objects.get()
    assert job.state == Job.State.CANCELLED
    assert f"Job #{job.pk} was cancelled" in html and "launched" not in html and "queued" not in html


@pytest.mark.django_db
def test_admin_shows_a_moving_bar_and_the_message_before_the_first_progress(staff_client):
    now = timezone.now()
    job = Job.objects.create(kind=KIND, state=Job.State.RUNNING, started_at=now, heartbeat_at=now,
                             progress=0.0, message="loading the feature extractor")
    html = staff_client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert '<progress max="100" style="width:8em"></progress> loading the feature extractor' in html
    assert 'content="2"' in html  # the list reloads every 2 s while a job is active
    job.progress = 0.4
    job.save()
    assert 'value="40"' in staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()


@pytest.mark.django_db(transaction=True)
def test_admin_launch_with_an_unreachable_broker_fails_the_job_with_the_reason(staff_client, settings, monkeypatch):
    from jobs import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False

    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(tasks.run_job, "apply_async", unreachable)
    real, fake = make_image_set(kind="real"), make_image_set(kind="synthetic")
    url = reverse("admin:jobs_job_launch_kind", args=[KIND])
    html = staff_client.post(url, {"real": real.name, "fake": fake.name, "features": "inception"},
                             follow=True).content.decode()
    job = Job.objects.get()
    assert job.state == Job.State.FAILED and "could not be queued on the Celery broker" in job.error
    assert f"Job #{job.pk} failed at once: could not be queued" in html
