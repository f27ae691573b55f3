"""Settings for the test suite, separate from the demo project so tests never depend on it."""

import os
import tempfile
from pathlib import Path
from typing import Any

SECRET_KEY = "aspects-app-tests-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"

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
    "silk",
    "aspects_app",
]

MIDDLEWARE = [
    "aspects_app.middleware.MonitoringMiddleware",
    "silk.middleware.SilkyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent.parent / "project" / "templates"],  # the demo pages
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

# CI sets ASPECTS_TEST_DB=postgres to run against the real server; locally SQLite in memory needs nothing.
DATABASES: dict[str, dict[str, Any]]
if os.environ.get("ASPECTS_TEST_DB") == "postgres":
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
    # A file, not memory: the Celery worker processes of tests/test_distributed.py must open the same database.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), "aspects-tests.sqlite3"),
            "OPTIONS": {"timeout": 30},  # the worker and the test process take turns writing
        }
    }
# A worker started by the tests opens the test database itself, whose name only the test process knows.
if os.environ.get("ASPECTS_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ASPECTS_TEST_DB_NAME"]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The app's recommended DRF, OpenAPI and Celery settings, as a host would import them.
from aspects_app.recommended_settings import *  # noqa: E402, F403

ASPECTS: dict[str, object] = {}


def _silk_records(request: object) -> bool:
    # Silk is installed as a host would install it, but records only where a test switches it on.
    from django.conf import settings

    return bool(getattr(settings, "SILK_RECORDING", False))


SILKY_INTERCEPT_FUNC = _silk_records
SILKY_AUTHENTICATION = True
SILKY_AUTHORISATION = True
SILKY_PYTHON_PROFILER = False

# The suite's own Redis database for the broker (tests/test_distributed.py's workers): 15 by default, apart from the
# demo project's 2 and from a host's CELERY_BROKER_URL in the environment; ASPECTS_TEST_REDIS_URL moves it.
TEST_REDIS_URL = os.environ.get("ASPECTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = TEST_REDIS_URL
