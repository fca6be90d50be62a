"""The browser tests' support (tests/browser.py): what a test does while Chromium runs is cleaned up."""
import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from tests.browser import chromium

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's event loop runs in this thread

pytestmark = [pytest.mark.browser]


def other_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_queries_made_while_chromium_runs_leave_no_session_open():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite's in-memory test database is never closed")
    before = other_sessions()
    with chromium():
        get_user_model().objects.count()  # on a connection of its own while Playwright's loop runs
    # Left open, it would outlive the test: PostgreSQL then refuses to drop the test database.
    assert other_sessions() == before
