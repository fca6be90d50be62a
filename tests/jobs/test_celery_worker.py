"""A job launched by one process travels through Redis to a separate Celery worker process, which
runs it against the same PostgreSQL database: the production path of every admin-launched job."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from jobs.models import Job
from readerstudy.models import Study
from tests.conftest import require_redis, require_service
from tests.factories import make_image_set, make_user

ROOT = Path(__file__).resolve().parents[2]


def _services() -> str:
    if connection.vendor != "postgresql":
        require_service("PostgreSQL", "a worker process cannot share SQLite's in-memory test database; set DATABASE_URL")
    return require_redis()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_created_by_one_process_is_run_by_a_separate_worker(settings):
    redis_url = _services()
    real = make_image_set(n=4, kind="real")
    fake = make_image_set(n=4, kind="synthetic", generator="diffusion")
    make_user("worker-reader")
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(DATABASE_URL=database_url, CELERY_BROKER_URL=redis_url, CELERY_RESULT_BACKEND=redis_url,
               HISTOSYNTH_MEDIA_ROOT=str(settings.MEDIA_ROOT), DJANGO_SETTINGS_MODULE="config.settings")
    queue = f"jobs-test-{os.getpid()}"
    env["CELERY_TASK_DEFAULT_QUEUE"] = queue
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1", "-Q", queue,
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"jobs-test-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # The launching side is another process too, as the web server would be.
        code = (
            "from jobs.services import job_create\n"
            f"job = job_create(kind='build_study', params={{'name': 'via-worker', 'real_set': {real.name!r}, "
            f"'synthetic_sets': [{fake.name!r}], 'readers': ['worker-reader'], 'open': True, 'seed': 3}})\n"
            "print(job.pk)\n"
        )
        launch = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert launch.returncode == 0, launch.stderr[-3000:]
        job_pk = int(launch.stdout.strip().splitlines()[-1])
        deadline = time.monotonic() + 120
        job = Job.objects.get(pk=job_pk)
        while job.state in (Job.State.QUEUED, Job.State.RUNNING) and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stdout.read()[-3000:]
            time.sleep(0.5)
            job.refresh_from_db()
        assert job.state == Job.State.SUCCEEDED, (job.state, job.error)
        assert job.worker  # the worker recorded itself
        assert job.started_at and job.finished_at
        study = Study.objects.get(name="via-worker")
        assert study.state == Study.State.OPEN
        assert study.items.count() == 8
        assert study.assignments.filter(user__username="worker-reader").exists()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
