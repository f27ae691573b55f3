"""Failed HTTP Basic logins cost a bounded number of password hashes; throttles cover every compute and write
endpoint and hold across processes sharing a Redis; system check W005 catches per-process throttle stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.backends import ModelBackend
from django.test import override_settings
from rest_framework.test import APIClient

from aspects_app.checks import check_shared_state

from .conftest import basic_auth_header
from .live_server import free_port, wait_listening
from .test_cache import RedisServer

pytestmark = pytest.mark.django_db

API = "/api/aspects/"
CONFIGURATION = f"{API}configuration/"
ESTIMATE = f"{API}estimate/"
ESTIMATE_BODY = {"num_charts1": 10, "num_planets": 10}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hashes() -> Iterator[mock.MagicMock]:
    """Counts the password checks (ModelBackend hashes for unknown users too)."""
    with mock.patch.object(ModelBackend, "authenticate", autospec=True, side_effect=ModelBackend.authenticate) as spy:
        yield spy


def bogus(client: APIClient, username: str, **extra: str) -> Any:
    return client.get(CONFIGURATION, HTTP_AUTHORIZATION=basic_auth_header(username, "wrong"), **extra)


@override_settings(ASPECTS={"THROTTLE_FAILED_LOGINS": "3/min"})
def test_failed_logins_from_one_address_stop_hashing(hashes: mock.MagicMock) -> None:
    client = APIClient()
    answers = [bogus(client, f"nobody-{n}") for n in range(10)]
    assert [a.status_code for a in answers] == [403] * 3 + [429] * 7
    assert hashes.call_count == 3
    assert 1 <= int(answers[-1]["Retry-After"]) <= 60
    assert "no password was checked" in answers[-1].json()["detail"]


@override_settings(ASPECTS={"THROTTLE_FAILED_LOGINS": "3/min"})
def test_failed_logins_for_one_username_stop_hashing_from_any_address(hashes: mock.MagicMock) -> None:
    client = APIClient()
    codes = [bogus(client, "alice", REMOTE_ADDR=f"10.0.0.{n}").status_code for n in range(6)]
    assert codes == [403] * 3 + [429] * 3
    assert hashes.call_count == 3


@override_settings(ASPECTS={"THROTTLE_FAILED_LOGINS": "3/min"})
def test_a_forged_forwarded_for_is_not_a_fresh_address(hashes: mock.MagicMock) -> None:
    client = APIClient()
    codes = [bogus(client, f"u{n}", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(6)]
    assert codes == [403] * 3 + [429] * 3
    assert hashes.call_count == 3


@override_settings(ASPECTS={"THROTTLE_FAILED_LOGINS": "3/min"})
def test_good_credentials_and_other_callers_are_not_throttled(alice: Any, hashes: mock.MagicMock) -> None:
    client = APIClient()
    for n in range(2):
        assert bogus(client, f"nobody-{n}").status_code == 403
    good = client.get(CONFIGURATION, HTTP_AUTHORIZATION=basic_auth_header("alice"))
    assert good.status_code == 200
    assert bogus(client, "someone", REMOTE_ADDR="10.9.9.9").status_code == 403


@override_settings(ASPECTS={"THROTTLE_ANON": "2/min"})
def test_estimate_is_throttled() -> None:
    client = APIClient()
    codes = [client.post(ESTIMATE, ESTIMATE_BODY, format="json").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@override_settings(ASPECTS={"THROTTLE_USER": "1/min"})
def test_bulk_and_chart_writes_are_throttled(alice_client: APIClient) -> None:
    body = {"charts": [{"name": "x", "position_input": {"longitudes": [10.0, 20.0], "points": ["Sun", "Moon"]}}]}
    assert alice_client.post(f"{API}charts/bulk/", body, format="json").status_code == 201
    assert alice_client.post(f"{API}charts/bulk/", body, format="json").status_code == 429
    assert alice_client.get(f"{API}charts/").status_code == 200  # reading is not throttled


SHARED = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
LOCAL = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def test_check_warns_when_throttles_are_per_process_but_results_shared() -> None:
    with override_settings(CACHES={"default": LOCAL, "aspects": SHARED}, ASPECTS={"CACHE_ALIAS": "aspects"}):
        assert [m.id for m in check_shared_state()] == ["aspects_app.W005"]
    with override_settings(
        CACHES={"default": LOCAL, "aspects": SHARED, "state": SHARED},
        ASPECTS={"CACHE_ALIAS": "aspects", "THROTTLE_ALIAS": "state", "LOCK_ALIAS": "state"},
    ):
        assert check_shared_state() == []
    with override_settings(CACHES={"default": LOCAL}, ASPECTS={}):  # one process, all local
        assert check_shared_state() == []


# -- across processes ---------------------------------------------------------------------------------------------

SERVER_SETTINGS = """
from tests.settings import *  # noqa: F403

CACHES = {{
    "default": {{"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "{url}"}},
}}
ASPECTS = {{"THROTTLE_ANON": "{rate}"}}
ALLOWED_HOSTS = ["127.0.0.1"]
"""


def _post_estimate(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{ESTIMATE}",
        data=b'{"num_charts1": 10, "num_planets": 10}',
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_anonymous_limit_holds_across_two_server_processes(tmp_path: Path) -> None:
    """Two gunicorn servers (one worker each) on one Redis of the test's own: 5 an hour in all, not 5 each."""
    redis = RedisServer(tmp_path, policy="noeviction")
    (tmp_path / "throttle_settings.py").write_text(SERVER_SETTINGS.format(url=redis.url, rate="5/hour"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "throttle_settings",
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "django.core.wsgi:get_wsgi_application()",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, server in zip(ports, servers, strict=True):
            wait_listening(port, server)
        # Alternating, so each server answers some of the first five: alone, each would let five through.
        first_window = int(time.time() // 3600)
        codes = [(n % 2, _post_estimate(ports[n % 2])) for n in range(12)]
        windows = int(time.time() // 3600) - first_window + 1
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)
        redis.stop()
    allowed = [(side, code) for side, code in codes if code == 200]
    # Windows are aligned to the clock: a run straddling the hour gets a second window's five.
    assert len(allowed) == 5 if windows == 1 else len(allowed) <= 5 * windows
    assert {side for side, _ in allowed} == {0, 1}
    assert {code for _, code in codes} == {200, 429}
