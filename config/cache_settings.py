"""The cache and the session store, from `CACHE_URL`.

Sessions are read on every request. With a Redis cache shared by all the server's processes
(`CACHE_URL=redis://host:6379/1`), they live in `cached_db`: read from the cache, written to the
database and the cache together, so a session survives a cache restart, and logging out deletes it
from both at once, in every process (still revocable, unlike signed-cookie sessions). Without one,
the cache is each process's own memory, where a logged-out session could live on in the other
processes' copies, so sessions stay in the database alone (one indexed query per request).
"""
from django.core.exceptions import ImproperlyConfigured

DB_SESSIONS = "django.contrib.sessions.backends.db"
CACHED_DB_SESSIONS = "django.contrib.sessions.backends.cached_db"


def cache_settings(url: str, *, key_prefix: str = "histosynth") -> tuple[dict, str]:
    """(CACHES, SESSION_ENGINE) for the cache at `url` (redis://, rediss:// or unix://; empty: none)."""
    if not url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}, DB_SESSIONS
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"CACHE_URL={url!r}: expected a Redis URL (redis://host:6379/1) or nothing")
    caches = {
        "default": {
            "BACKEND": "config.redis_cache.RedisCache",  # Django's, a client per pool
            "LOCATION": url,
            "KEY_PREFIX": key_prefix,
        }
    }
    return caches, CACHED_DB_SESSIONS
