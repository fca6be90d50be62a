"""The ground every feature stands on: the ML core without Django, PostgreSQL, Celery over Redis,
and a production configuration that passes `check --deploy`."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import require_redis, require_service

ROOT = Path(__file__).resolve().parent.parent
# Django wrappers inside the ML packages: everything else there must import without Django.
DJANGO_WRAPPERS = {"models", "admin", "apps", "tasks", "services", "selectors", "views", "urls", "serializers", "forms", "api"}


def ml_core_modules() -> list[str]:
    modules = []
    for package in ("generation", "evaluation"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            wrapper = parts[-1] in DJANGO_WRAPPERS or parts[-1].endswith(("_urls", "_views"))  # compare_urls
            if {"management", "migrations", "services"} & set(parts) or wrapper:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append(".".join(parts))
    return modules


def test_ml_core_imports_without_django():
    modules = ml_core_modules()
    assert "generation" in modules and "evaluation" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad[:5]\n"
        "print('ok', len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.django_db
def test_database_url_selects_postgresql():
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        require_service("PostgreSQL", "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/histosynth")
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        assert "PostgreSQL" in cursor.fetchone()[0]


def test_celery_task_travels_through_redis_to_a_worker_process():
    url = require_redis()
    env = dict(os.environ, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-Q", "histosynth-test", "-n", f"test-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        from celery import Celery

        client = Celery("histosynth-test-client", broker=url, backend=url)
        result = client.send_task("config.health_check", queue="histosynth-test")
        deadline = time.monotonic() + 60
        while not result.ready() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert worker.poll() is None, worker.stdout.read()[-3000:]
        payload = result.get(timeout=5)
        assert payload["pid"] != os.getpid()
        assert payload["pid"] == worker.pid
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def _production_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x" * 10 + "production-secret-key-for-the-deploy-check-0123456789abc",
        DJANGO_ALLOWED_HOSTS="histo.example.org",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env.update(extra)
    return env


def test_check_deploy_passes_in_production_mode(tmp_path):
    env = _production_env(HISTOSYNTH_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path):
    env = _production_env(HISTOSYNTH_VAR_DIR=str(tmp_path))
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_embedded_mode_runs_tasks_in_process(settings):
    from config.celery import health_check

    if os.environ.get("CELERY_BROKER_URL"):
        pytest.skip("a broker is configured for this run")
    assert settings.CELERY_TASK_ALWAYS_EAGER
    assert health_check.delay().get()["pid"] == os.getpid()
