"""The demo server runs with DEBUG off: `demo_server_env` gives production settings on plain http on
the loopback, static files are collected into var/ and served by WhiteNoise, and a 20-digit study
id (a 500 listing the settings under the old DEBUG-on demo, issue 13) is a plain 404.

The settings are read once per process, so the check runs in a child process with that environment.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.demo import demo_secret_key, demo_server_env

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)
client = Client(raise_request_exception=False, HTTP_HOST="127.0.0.1")
client.force_login(get_user_model().objects.create_user("reader", password="not-used-here-123"))
huge = client.get("/studies/99999999999999999999/")
home = client.get("/")
script = client.get(staticfiles_storage.url("js/rate.js"))
print(json.dumps({
    "debug": settings.DEBUG,
    "huge": [huge.status_code, huge.content.decode(errors="replace")],
    "home": home.status_code,
    "static": [script.status_code, b"".join(script.streaming_content).decode()[:200] if script.streaming else ""],
    "static_root": str(settings.STATIC_ROOT),
}))
"""


@pytest.mark.slow
def test_the_demo_server_runs_with_debug_off_and_serves_its_static_files(tmp_path):
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "HISTOSYNTH_MEDIA_ROOT", "CELERY_BROKER_URL", "DJANGO_DEBUG")}
    base["HISTOSYNTH_VAR_DIR"] = str(tmp_path / "var")
    env = demo_server_env(workdir=tmp_path, base=base)
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["debug"] is False
    status, body = result["huge"]
    assert status == 404
    for leak in ("SECRET_KEY", "DATABASES", "Traceback", "settings"):
        assert leak not in body
    assert result["home"] == 200  # plain http works: no HTTPS redirect, cookies not secure-only
    assert result["static"][0] == 200 and "rate" in result["static"][1].lower()
    assert result["static_root"].startswith(str(tmp_path / "var"))


def test_the_demo_secret_key_is_made_once_and_kept_private(tmp_path):
    key = demo_secret_key(workdir=tmp_path)
    assert len(key) >= 50 and demo_secret_key(workdir=tmp_path) == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    other = tmp_path / "other"
    other.mkdir()
    assert demo_secret_key(workdir=other) != key
