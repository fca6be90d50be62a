"""Shared fixtures: every test writes media under its own temporary folder."""
import os

import pytest


def pytest_configure(config):
    # Keep the Hugging Face libraries offline in every test process too.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # PBKDF2 with its production work factor would dominate tests that create users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
