"""A host project with its own user model that logs in by e-mail (``tests/host``: no ``username`` field at all)
driven through its own ``manage.py`` in a subprocess, with the app as installed here: owners are looked up by the
user model's USERNAME_FIELD. ``tests/host/check.sh`` (``make host-check``, CI) does the same from the built wheel
in a fresh virtual environment, with gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HOST = Path(__file__).parent / "host"
EMAIL = "ada@example.org"
PASSWORD = "a long host password"

Manage = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def host(tmp_path: Path) -> Manage:
    """``manage.py`` of the host project, on a database of its own in ``tmp_path``, migrated and seeded."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hostproject.settings",  # not the suite's, which pytest-django exports
        "HOST_WORK_DIR": str(tmp_path),
    }

    def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=HOST, env=env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    manage("migrate", "--verbosity", "0")
    manage("seed_host", EMAIL, PASSWORD, "4")
    return manage


def test_owners_are_found_by_the_user_model_s_username_field(host: Manage) -> None:
    manage = host
    natal = manage("compute_aspects", "--owner", EMAIL, "--mode", "natal", "--mode", "top-k", "-k", "2")
    assert "done: natal, top-k" in natal.stdout
    warmed = manage("aspects_cache", "warm", "--owner", EMAIL)
    assert "warmed 4 natal results" in warmed.stdout

    unknown = manage("compute_aspects", "--owner", "nobody@example.org", "--mode", "natal", check=False)
    assert unknown.returncode == 1
    assert "no charts owned by 'nobody@example.org'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_the_suite_uses_a_redis_database_of_its_own() -> None:
    """Not a developer's or a host's (a CELERY_BROKER_URL exported for their own project must not reach it), and
    movable with ASPECTS_TEST_REDIS_URL, as README's Development section says."""
    show = "from tests import settings; print(settings.CELERY_BROKER_URL)"
    root = Path(__file__).parent.parent

    def broker(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "ASPECTS_TEST_REDIS_URL")}
        result = subprocess.run(
            [sys.executable, "-c", show], cwd=root, env={**clean, **env}, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    assert broker() == "redis://127.0.0.1:6379/15"
    assert broker(CELERY_BROKER_URL="redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/15"
    assert broker(ASPECTS_TEST_REDIS_URL="redis://127.0.0.1:6380/9") == "redis://127.0.0.1:6380/9"
