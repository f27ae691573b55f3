"""Schemathesis with ``--checks all`` against a live server: gunicorn on 127.0.0.1 with 2 workers, on the test
database, anonymous and then authenticated. Every check must pass: no 5xx, status codes, content types, headers
and bodies as the schema documents them, schema-valid requests accepted and invalid ones refused.

tests/test_api_fuzz.py fuzzes in-process (WSGI, many examples per operation, steered ids); this one is what a
real client meets through HTTP: gunicorn's parsing, two processes, real commits, a real broker.

* Authenticated with a session cookie (plus the CSRF cookie and header DRF asks of session writes), not HTTP
  Basic, which hashes a password on every request.
* The server's settings (a module written for the test) switch the throttles off (hundreds of requests) and
  give it a Redis of its own as the broker, so the jobs it accepts reach no other test's worker.
* Bounded: few examples per operation, a fixed seed, deterministic generation, no shrinking, and a hard timeout
  per run. A failure prints schemathesis' report (with a curl command per failure).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.middleware.csrf import _get_new_csrf_string

from aspects_app.models import Chart

from .conftest import PASSWORD, PLANETS, random_positions
from .live_server import free_port, wait_listening
from .test_cache import RedisServer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMA_PATH = "/api/aspects/schema/?format=json"
EXAMPLES_PER_OPERATION = 5
SEED = 17
RUN_TIMEOUT_S = 100  # per run (anonymous, authenticated); both well under 3 minutes on 2 loaded cores

SERVER_SETTINGS = """
from tests.settings import *  # noqa: F403

ALLOWED_HOSTS = ["127.0.0.1"]
DEBUG = False
ASPECTS = {{"THROTTLE_ANON": None, "THROTTLE_USER": None, "THROTTLE_FAILED_LOGINS": None}}
CELERY_BROKER_URL = "{broker}"
# A 500's traceback to the server's log (with DEBUG off Django would only mail it to ADMINS).
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"stderr": {{"class": "logging.StreamHandler"}}}},
    "loggers": {{"django.request": {{"handlers": ["stderr"], "level": "ERROR"}}}},
}}
"""


def _seed(owner: Any) -> None:
    """Public and private charts of the user and of another, so that ids 1, 2... mostly name a chart."""
    other = get_user_model().objects.create_user(username="someone-else", password=PASSWORD)
    for n, (who, public) in enumerate([(owner, True), (owner, False), (other, False), (other, True), (None, True)]):
        longitudes, speeds = random_positions(700 + n)
        chart = Chart(owner=who, name=f"seed {n}", is_public=public)
        chart.set_positions(PLANETS, longitudes, speeds)
        chart.save()


@pytest.fixture
def live_server_url(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """gunicorn (2 workers) on the test database, with a broker of its own; its log (a 500's traceback) goes to
    ``server.log`` beside the settings."""
    broker = RedisServer(tmp_path, policy="noeviction")
    (tmp_path / "live_fuzz_settings.py").write_text(SERVER_SETTINGS.format(broker=broker.url))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "live_fuzz_settings",
        "ASPECTS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed with the server
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "django.core.wsgi:get_wsgi_application()",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "60",
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
        broker.stop()


def session_headers(user: Any) -> list[str]:
    """Headers of a logged-in browser: the session cookie, and the CSRF cookie and header for writes."""
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.set_expiry(timedelta(hours=1))
    session.create()
    csrf = _get_new_csrf_string()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}; {settings.CSRF_COOKIE_NAME}={csrf}"
    return ["--header", f"Cookie: {cookie}", "--header", f"X-CSRFToken: {csrf}"]


def schemathesis(base_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),  # the operations whose cross-field rules may refuse a body valid field by field
        "--no-color",
        "run",
        f"{base_url}{SCHEMA_PATH}",
        "--url",
        base_url,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--generation-deterministic",  # implies no example database
        # The coverage phase's boundary cases are not bounded by --max-examples (minutes for 24 operations).
        "--phases",
        "examples,fuzzing,stateful",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        *extra,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


@pytest.mark.parametrize("who", ["anonymous", "authenticated"])
def test_schemathesis_checks_all_pass_against_gunicorn(live_server_url: str, who: str, tmp_path: Path) -> None:
    user = get_user_model().objects.create_user(username="fuzzer", password=PASSWORD)
    _seed(user)
    extra = session_headers(user) if who == "authenticated" else []
    started = time.monotonic()
    result = schemathesis(live_server_url, *extra)
    seconds = time.monotonic() - started
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    report = result.stdout[-12000:] + result.stderr[-3000:] + "\n--- server log ---\n" + server_log[-6000:]
    print(f"schemathesis --checks all, {who}: exit {result.returncode} in {seconds:.1f} s")
    assert result.returncode == 0, report
