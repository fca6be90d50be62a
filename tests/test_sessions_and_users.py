"""Sessions and the request's user, as the settings choose them (config/cache_settings.py, config/auth.py):
Redis-backed sessions only with a shared Redis cache, still revoked at logout; the user read in plain
SQL is the one the ORM reads, and an inactive one is refused as before."""
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from config.auth import PlainSQLModelBackend
from config.cache_settings import CACHED_DB_SESSIONS, DB_SESSIONS, cache_settings
from tests.conftest import require_redis
from tests.factories import PASSWORD, make_study, make_user


def test_without_a_cache_url_sessions_stay_in_the_database_and_the_cache_is_per_process():
    caches, engine = cache_settings("")
    assert engine == DB_SESSIONS
    assert caches["default"]["BACKEND"].endswith("LocMemCache")


def test_a_redis_url_puts_sessions_in_the_cache_backed_by_the_database():
    caches, engine = cache_settings("redis://cache-host:6379/2", key_prefix="site-a")
    assert engine == CACHED_DB_SESSIONS
    assert caches["default"]["LOCATION"] == "redis://cache-host:6379/2"
    assert caches["default"]["KEY_PREFIX"] == "site-a"


def test_a_cache_url_that_is_not_redis_is_refused_with_its_value_named():
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL='memcached://x:11211'"):
        cache_settings("memcached://x:11211")


@pytest.mark.django_db
def test_with_sessions_in_redis_logging_out_revokes_the_session_for_every_holder(settings):
    settings.CACHES, settings.SESSION_ENGINE = cache_settings(require_redis(), key_prefix=f"test-{uuid.uuid4()}")
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    page, stolen = Client(), Client()
    assert page.login(username=reader.username, password=PASSWORD)
    stolen.cookies = page.cookies  # the same session cookie, held elsewhere (another process, another device)
    url = f"/api/reader/studies/{study.pk}/next/"
    assert stolen.get(url).status_code == 200
    page.post("/accounts/logout/")
    assert stolen.get(url).status_code == 403


@pytest.mark.django_db
def test_the_user_read_in_plain_sql_is_the_orm_user():
    user = make_user(staff=True)
    user.email, user.first_name = "ada@example.org", "Ada"
    user.save()
    got = PlainSQLModelBackend().get_user(user.pk)
    expected = get_user_model().objects.get(pk=user.pk)
    for field in get_user_model()._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(expected, field.attname), field.name
    assert got.date_joined.tzinfo is not None
    assert PlainSQLModelBackend().get_user(user.pk + 1000) is None


@pytest.mark.django_db
def test_an_inactive_user_is_logged_out_on_the_next_request():
    reader = make_user()
    study = make_study(n_real=1, n_synthetic=1, readers=[reader])
    client = Client()
    assert client.login(username=reader.username, password=PASSWORD)
    url = f"/api/reader/studies/{study.pk}/next/"
    assert client.get(url).status_code == 200
    get_user_model().objects.filter(pk=reader.pk).update(is_active=False)
    assert client.get(url).status_code == 403
    assert PlainSQLModelBackend().get_user(reader.pk) is None
