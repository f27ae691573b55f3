"""Settings for the demo project, from environment variables (README, "Running the demo in production").

With none set it runs the Quick start: SQLite, in-process caches, DEBUG off. Serving it (runserver, gunicorn,
uvicorn: project/wsgi.py and project/asgi.py) needs DJANGO_SECRET_KEY unless DJANGO_DEBUG is on; management
commands that sign nothing (migrate, compute_aspects, check) run without one.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
TRUE = {"1", "true", "yes", "on"}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in TRUE


DEBUG = _flag("DJANGO_DEBUG", False)
# Empty without DJANGO_SECRET_KEY and DEBUG: Django then refuses anything that signs (sessions, CSRF, password
# resets), and require_secret_key() refuses to serve at all.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or ("django-insecure-debug-only" if DEBUG else "")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")


def require_secret_key() -> None:
    """Called by the WSGI and ASGI entry points: a server without a key would fail on its first signed cookie."""
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. With DEBUG off (the default) the demo needs a secret key to serve: "
            "set DJANGO_SECRET_KEY to 50 or more random characters (python -c 'from "
            "django.core.management.utils import get_random_secret_key; print(get_random_secret_key())'), "
            "or DJANGO_DEBUG=1 for local development only."
        )


# Behind HTTPS (DJANGO_HTTPS=1, as in production): redirect http, HSTS, cookies sent over TLS only.
HTTPS = _flag("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = _flag("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _flag("DJANGO_HSTS_PRELOAD", True)
if _flag("DJANGO_BEHIND_TLS_PROXY", False):  # a proxy terminates TLS and says so in X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served locally: the docs work offline
    "django_filters",
    "aspects_app",
]

MIDDLEWARE = [
    "aspects_app.middleware.MonitoringMiddleware",  # first: it times everything below it
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "project" / "templates"],  # the demo pages (project/demo_views.py)
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

# DATABASE_URL (e.g. postgres://user:password@host:5432/aspects; dj-database-url, in the dev extra) wins;
# ASPECTS_DB=postgres uses the local PostgreSQL, database ASPECTS_DB_NAME (default "test"); else SQLite.
DATABASES: dict[str, dict[str, object]]
if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dict(dj_database_url.config(conn_max_age=60))}
elif os.environ.get("ASPECTS_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("ASPECTS_DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("ASPECTS_DB_PORT", "5432"),
            "NAME": os.environ.get("ASPECTS_DB_NAME", "test"),
            "USER": os.environ.get("ASPECTS_DB_USER", "postgres"),
            "PASSWORD": os.environ.get("ASPECTS_DB_PASSWORD", ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ASPECTS_SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        }
    }

# Embedded default: in-process caches, no server (one process). With ASPECTS_REDIS_URL (e.g.
# redis://127.0.0.1:6379/1) results go to that Redis, which should run as an LRU (maxmemory + allkeys-lru), and
# "default", which keeps the throttle counters and the single-flight locks, to ASPECTS_STATE_REDIS_URL: a Redis
# that does not evict (maxmemory-policy noeviction). Without it they share the results' server (under a key
# prefix of their own): shared by every worker, but evictable under memory pressure.
CACHES: dict[str, dict[str, object]] = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS_URL = os.environ.get("ASPECTS_REDIS_URL")
if REDIS_URL:
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("ASPECTS_STATE_REDIS_URL") or REDIS_URL,
        "KEY_PREFIX": "aspects-state",
    }
    CACHES["aspects"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            # Short timeouts: a slow Redis must cost a request milliseconds, not seconds (the app then skips it).
            "SOCKET_CONNECT_TIMEOUT": 0.1,
            "SOCKET_TIMEOUT": 0.1,
        },
    }

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# aspects_app settings; keys and defaults are documented in aspects_app/conf.py.
# DRF authentication, the OpenAPI schema (Swagger UI served from drf-spectacular-sidecar, offline) and Celery.
from aspects_app.recommended_settings import *  # noqa: E402, F403


def _rate(name: str, default: str) -> str | None:
    """A throttle rate from the environment; "off" disables it (benchmarks, trusted networks)."""
    value = os.environ.get(name, default)
    return None if value.lower() == "off" else value


ASPECTS: dict[str, object] = {
    "THROTTLE_ANON": _rate("ASPECTS_THROTTLE_ANON", "60/min"),
    "THROTTLE_USER": _rate("ASPECTS_THROTTLE_USER", "600/min"),
    "CACHE_ALIAS": "aspects" if REDIS_URL else "default",
}

# django-silk (pip install 'aspects_app[silk]'), switched on with ASPECTS_SILK=1: its UI at /silk/ is for
# staff only, and it keeps its tables bounded (the oldest requests are deleted past the limit).
SILK_ENABLED = os.environ.get("ASPECTS_SILK", "").lower() in {"1", "true", "yes", "on"}
if SILK_ENABLED:
    INSTALLED_APPS.append("silk")
    # After the monitoring middleware (silk's own work is then visible in the timings), before the rest: nothing
    # above it may return from process_request, or silk would never see the request.
    MIDDLEWARE.insert(1, "silk.middleware.SilkyMiddleware")
    SILKY_AUTHENTICATION = True
    SILKY_AUTHORISATION = True  # staff only (silk's default permission)
    SILKY_MAX_RECORDED_REQUESTS = 10_000
    SILKY_MAX_RECORDED_REQUESTS_CHECK_PERCENT = 10
    SILKY_PYTHON_PROFILER = False  # service calls are named silk_profile blocks instead

# Celery (in recommended_settings above): batch runs spread over worker machines (README, "Work spread over
# machines"). Redis is the broker: CELERY_BROKER_URL, default redis://127.0.0.1:6379/2.
