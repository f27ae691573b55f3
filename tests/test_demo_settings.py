"""The demo project's settings come from the environment: DEBUG off unless asked, a secret key required to
serve, the database from DATABASE_URL or ASPECTS_DB_NAME, throttles and locks in Redis whenever Redis is set,
and ``check --deploy`` clean when run as README's production paragraph says."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "project" / "settings.py"
DEMO_VARIABLES = (
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DATABASE_URL",
    "ASPECTS_DB",
    "ASPECTS_DB_NAME",
    "ASPECTS_REDIS_URL",
    "ASPECTS_STATE_REDIS_URL",
    "DJANGO_HTTPS",
    "DJANGO_ALLOWED_HOSTS",
)
KEY = "x7#k2!q9@m4$w8%z1^c6&v3*b5(n0)p_l-j=h+g~f;d:s<a>r?e/t.y,u|i"  # 58 characters, many distinct


def demo_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in DEMO_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def run_demo(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in DEMO_VARIABLES and k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_debug_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo_settings(monkeypatch)["DEBUG"] is False
    assert demo_settings(monkeypatch)["SECRET_KEY"] == ""
    debug = demo_settings(monkeypatch, DJANGO_DEBUG="1")
    assert debug["DEBUG"] is True and debug["SECRET_KEY"]


def test_serving_without_a_key_is_refused_with_a_clear_message() -> None:
    refused = run_demo(["-c", "import project.wsgi"])
    assert refused.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in refused.stderr
    assert run_demo(["-c", "import project.wsgi"], DJANGO_SECRET_KEY=KEY).returncode == 0


def test_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    named = demo_settings(monkeypatch, ASPECTS_DB="postgres", ASPECTS_DB_NAME="aspects_prod")["DATABASES"]
    assert named["default"]["NAME"] == "aspects_prod"
    url = "postgres://app:secret@db.internal:5433/aspects"
    database = demo_settings(monkeypatch, DATABASE_URL=url)["DATABASES"]["default"]
    assert (database["ENGINE"], database["HOST"], database["PORT"], database["NAME"], database["USER"]) == (
        "django.db.backends.postgresql",
        "db.internal",
        5433,
        "aspects",
        "app",
    )


def test_throttles_and_locks_go_to_redis_when_redis_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    local = demo_settings(monkeypatch)["CACHES"]
    assert set(local) == {"default"} and "locmem" in local["default"]["BACKEND"]
    shared = demo_settings(monkeypatch, ASPECTS_REDIS_URL="redis://127.0.0.1:6379/1")
    caches, aspects = shared["CACHES"], shared["ASPECTS"]
    assert "redis" in caches["default"]["BACKEND"].lower()  # throttle counters and locks: every worker's
    assert aspects["CACHE_ALIAS"] == "aspects"
    state = demo_settings(
        monkeypatch, ASPECTS_REDIS_URL="redis://lru:6379/0", ASPECTS_STATE_REDIS_URL="redis://state:6379/0"
    )["CACHES"]
    assert state["default"]["LOCATION"] == "redis://state:6379/0"


def test_check_deploy_is_clean_as_documented_for_production() -> None:
    production = {"DJANGO_SECRET_KEY": KEY, "DJANGO_HTTPS": "1", "DJANGO_ALLOWED_HOSTS": "aspects.example.com"}
    deploy = run_demo(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr


def test_plain_check_passes_with_no_variables_set() -> None:
    check = run_demo(["manage.py", "check", "--fail-level", "WARNING"])
    assert check.returncode == 0, check.stdout + check.stderr
