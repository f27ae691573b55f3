"""Settings for the demo project. Not for production: the defaults favour running out of the box."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-demo-only-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in {"1", "true", "yes", "on"}
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

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
        "DIRS": [],
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

# SQLite needs no server; ASPECTS_DB=postgres uses the local PostgreSQL (needs psycopg, in the dev extra).
if os.environ.get("ASPECTS_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "NAME": "test",
            "USER": "postgres",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("ASPECTS_SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        }
    }

# Embedded default: in-process caches, no server. With ASPECTS_REDIS_URL (e.g. redis://127.0.0.1:6379/1) results
# go to that Redis, which should run as an LRU (maxmemory + allkeys-lru); "default" keeps DRF's throttle counters
# and the single-flight locks, which must not be evicted.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS_URL = os.environ.get("ASPECTS_REDIS_URL")
if REDIS_URL:
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
