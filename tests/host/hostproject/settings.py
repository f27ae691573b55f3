"""A minimal host project as README's "Host integration" section sets one up: its own user model (log-in by
e-mail), SQLite, DEBUG off, the app's recommended settings. Paths and the broker come from the environment, so the
check script (and tests/test_host_integration.py) run it in a directory of their own."""

import os
from pathlib import Path

WORK = Path(os.environ.get("HOST_WORK_DIR", Path(__file__).resolve().parent.parent))

SECRET_KEY = "host-project-check-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
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
    "drf_spectacular_sidecar",
    "django_filters",
    "accounts",
    "aspects_app",
]
AUTH_USER_MODEL = "accounts.EmailUser"

MIDDLEWARE = [
    "aspects_app.middleware.MonitoringMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
ROOT_URLCONF = "hostproject.urls"
WSGI_APPLICATION = "hostproject.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(WORK / "host.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
STATIC_ROOT = str(WORK / "static")  # collectstatic: the docs page's Swagger UI files, served by the web server

from aspects_app.recommended_settings import *  # noqa: E402, F403

SPECTACULAR_SETTINGS = {**SPECTACULAR_SETTINGS, "TITLE": "Host astrology API", "VERSION": "2.3"}  # noqa: F405
CELERY_BROKER_URL = os.environ.get("HOST_BROKER_URL", "redis://127.0.0.1:6379/14")
ASPECTS = {"BACKEND": "numpy"}
