"""Shared fixtures: every test writes media under its own temporary folder."""
import os
import threading

import pytest


def pytest_configure(config):
    # Keep the Hugging Face libraries offline in every test process too.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # PBKDF2 with its production work factor would dominate tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _jobs_inline(settings):
    # Jobs run inside the call that queued them, so a test sees the outcome; the background thread is
    # tested on its own (tests/jobs/test_lifecycle.py).
    settings.JOBS_EAGER_IN_THREAD = False
    yield
    # A test that turned the background thread on may end while the thread is closing its database
    # connection (jobs.services names it "job-<pk>"): wait, so that no connection outlives the test and
    # PostgreSQL can drop the test database.
    for thread in threading.enumerate():
        if thread.name.startswith("job-") and thread is not threading.current_thread():
            thread.join(timeout=30)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    yield settings.MEDIA_ROOT


def require_service(name: str, reason: str) -> None:
    """Skip when a service is absent, except in CI, where its absence is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} not available: {reason}")


def require_redis() -> str:
    """The Redis URL for tests that need a broker (`TEST_REDIS_URL`); skip or fail as `require_service`."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is absent
        require_service("Redis", f"{url}: {exc}")
    return url
