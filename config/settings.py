"""Settings for both modes of the one codebase.

Embedded default (nothing configured): SQLite under `var/`, media under `var/media/`, Celery
tasks run in-process, DEBUG on. Production: `DATABASE_URL`, `CELERY_BROKER_URL`,
`DJANGO_DEBUG=0` with `DJANGO_SECRET_KEY` and `DJANGO_ALLOWED_HOSTS` from the environment.
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.cache_settings import cache_settings

# Nothing in this project may download weights or data at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HISTOSYNTH_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected 1/0, true/false, yes/no or on/off")


DEBUG = env_bool("DJANGO_DEBUG", True)

if DEBUG:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-dev-key-only-for-the-embedded-mode")
    ALLOWED_HOSTS = ["*"]
else:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "DJANGO_DEBUG is off: set DJANGO_SECRET_KEY to a random string of at least 50 characters "
            '(python -c "import secrets; print(secrets.token_urlsafe(64))").'
        )
    ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_DEBUG is off: set DJANGO_ALLOWED_HOSTS (comma-separated host names).")
    CSRF_TRUSTED_ORIGINS = [
        o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
    ]
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Off only for the demo server, which serves plain http on the loopback (jobs.demo.demo_server_env).
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our static files: the docs work offline
    "readerstudy",
    "generation",
    "evaluation",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.PathIntegerRangeMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        # A `SELECT 1` before the first query of each request: about 0.1 ms of the server's CPU and
        # 0.075 ms of PostgreSQL's, some 2 % of an answer's (POST and image: about 19 ms in all);
        # kept, so that a persistent connection dropped by a database restart costs no reader an error.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Readers answer concurrently; wait for the write lock rather than failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

# The reader's answer path runs its few queries as prepared statements on PostgreSQL (parsing and
# planning them cost the database more than running them: readerstudy/plain_sql.py). Turn off with
# DATABASE_PREPARED_STATEMENTS=0 behind a pooler in transaction mode (PgBouncer's, say), where a
# connection's prepared statements are not its own.
PLAIN_SQL_PREPARED = env_bool("DATABASE_PREPARED_STATEMENTS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions in the cache (backed by the database) when CACHE_URL names a Redis server shared by the
# server's processes; in the database otherwise (config/cache_settings.py says why).
CACHES, SESSION_ENGINE = cache_settings(
    os.environ.get("CACHE_URL", ""), key_prefix=os.environ.get("CACHE_KEY_PREFIX", "histosynth")
)
# ModelBackend with the request's user read in plain SQL (config/auth.py).
AUTHENTICATION_BACKENDS = ["config.auth.PlainSQLModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("HISTOSYNTH_MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "readerstudy.staging.StagingFileSystemStorage"},  # see readerstudy/staging.py
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Blinded images: bytes kept per process (readerstudy.blinded_images), or handed to the front server
# with READER_IMAGE_SENDFILE = "x-accel-redirect" (nginx) or "x-sendfile" (Apache).
READER_IMAGE_CACHE_BYTES = int(os.environ.get("READER_IMAGE_CACHE_BYTES", 64 * 1024 * 1024))
READER_IMAGE_SENDFILE = os.environ.get("READER_IMAGE_SENDFILE", "")
READER_IMAGE_ACCEL_PREFIX = os.environ.get("READER_IMAGE_ACCEL_PREFIX", "/protected-media/")
if READER_IMAGE_SENDFILE not in ("", "x-accel-redirect", "x-sendfile"):
    raise ImproperlyConfigured(
        f"READER_IMAGE_SENDFILE={READER_IMAGE_SENDFILE!r}: expected x-accel-redirect, x-sendfile or nothing"
    )
# Study archives may hold a few hundred images; the importer enforces its own limits.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON with size, depth and number limits (config/parsers.py): hostile bodies get a 4xx, never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
API_JSON_MAX_BYTES = int(os.environ.get("API_JSON_MAX_BYTES", 2 * 1024 * 1024))
API_JSON_MAX_DEPTH = 32
SPECTACULAR_SETTINGS = {
    "TITLE": "HistoSynth API",
    "DESCRIPTION": "Reader-study, image-set, metric and job API of the HistoSynth reader-study application.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs pages are for staff only; their assets are local (no CDN).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No call to the public validator at swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # One name for each choice set used by several models (answer/truth/kind, study state).
    "ENUM_NAME_OVERRIDES": {
        "TruthEnum": "readerstudy.models.Truth",
        "StudyStateEnum": "readerstudy.models.Study.State",
        "JobKindEnum": "jobs.models.Job.Kind",
    },
}

# Celery: eager in-process without a broker, real workers with one.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
# One queue name per deployment (or per test run) keeps workers of different installs apart.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# Inception-v3 FID weights: a local file, never downloaded at run time (see evaluation/).
INCEPTION_WEIGHTS = Path(os.environ.get("INCEPTION_WEIGHTS", VAR_DIR / "weights" / "pt_inception-2015-12-05-6726825d.pth"))

# The only server folders the job forms and the jobs API may point at (their file browser lists these):
# HISTOSYNTH_DATA_ROOTS is a list separated by os.pathsep; default var/data and the demo's var/demo.
HISTOSYNTH_DATA_ROOTS = [
    Path(p) for p in os.environ.get("HISTOSYNTH_DATA_ROOTS", f"{VAR_DIR / 'data'}{os.pathsep}{VAR_DIR / 'demo'}")
    .split(os.pathsep) if p.strip()
]
HISTOSYNTH_WEIGHTS_ROOT = Path(os.environ.get("HISTOSYNTH_WEIGHTS_ROOT", VAR_DIR / "weights"))
# Without a broker, a job launched from the admin or the API runs in a background thread of the web
# process, so the request that launched it returns at once (tests turn it off to run jobs inline).
JOBS_EAGER_IN_THREAD = env_bool("JOBS_EAGER_IN_THREAD", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

for _d in (VAR_DIR, MEDIA_ROOT, STATIC_ROOT):
    Path(_d).mkdir(parents=True, exist_ok=True)
