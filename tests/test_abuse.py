"""Hostile or broken input that used to answer a 5xx (or hang): it must answer a 4xx JSON error, or a 503 when
the broker cannot take a job, quickly and without leaving a run "running".

* Basic credentials hiding a NUL byte in their base64 reached the database: PostgreSQL refuses NUL in text
  (psycopg.DataError, a 500 on every endpoint); SQLite accepts it. Run with ASPECTS_TEST_DB=postgres (as CI does)
  to test against the real server; on SQLite the answers must be the same 401s.
* JSON nested about 1,000 levels deep (2 KB) raised RecursionError in the parser; a body over
  DATA_UPLOAD_MAX_MEMORY_SIZE answered Django's HTML 400.
* A broker that is down answered 500, one that is stopped (it accepts connections and never replies) hung the
  request until the server killed it; both left the run "running" with no tasks queued.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient, APIRequestFactory

from aspects_app.api.authentication import BasicAuthentication
from aspects_app.api.parsers import MAX_DEPTH, JSONParser
from aspects_app.models import BatchRun, Chart

from .conftest import PASSWORD, ChartFactory, basic_auth_header, positions_payload

API = "/api/aspects"
CHARTS = f"{API}/charts/"
INLINE = f"{API}/synastry/inline/"
JOBS = f"{API}/jobs/"


def raw_basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


def refused_login() -> int:
    """What DRF answers a failed Basic login: 401 only when its *first* authentication class names a challenge
    (Basic does; Session, first in the recommended settings, does not), else 403. Never a 5xx."""
    first = api_settings.DEFAULT_AUTHENTICATION_CLASSES[0]()
    return 401 if first.authenticate_header(APIRequestFactory().get(CHARTS)) else 403


def lenient(client: APIClient) -> APIClient:
    """A client that returns a server error's response instead of raising the view's exception."""
    client.raise_request_exception = False
    return client


def test_the_hardened_classes_are_the_recommended_ones() -> None:
    assert BasicAuthentication in api_settings.DEFAULT_AUTHENTICATION_CLASSES
    assert api_settings.DEFAULT_PARSER_CLASSES[0] is JSONParser


# -- Basic credentials -------------------------------------------------------------------------------------------

HOSTILE_CREDENTIALS = {
    "nul in the username": b"ali\x00ce:" + PASSWORD.encode(),
    "nul in the password": b"alice:" + PASSWORD.encode() + b"\x00",
    "control character in the username": b"ali\x1bce:" + PASSWORD.encode(),
    "C1 control (latin-1 fallback)": b"ali\x85ce:" + PASSWORD.encode(),
    "username too long": b"a" * 10_000 + b":" + PASSWORD.encode(),
    "password too long": b"alice:" + b"p" * 10_000,
}
ENDPOINTS = [
    ("get", CHARTS),
    ("get", f"{API}/configuration/"),
    ("get", JOBS),
    ("post", CHARTS),
    ("post", INLINE),
    ("get", f"{API}/metrics/summary/"),
]


@pytest.mark.parametrize("method, url", ENDPOINTS)
@pytest.mark.parametrize("credentials", list(HOSTILE_CREDENTIALS.values()), ids=list(HOSTILE_CREDENTIALS))
def test_hostile_basic_credentials_are_a_401(alice: Any, credentials: bytes, method: str, url: str) -> None:
    client = lenient(APIClient())
    client.credentials(HTTP_AUTHORIZATION=raw_basic(credentials))
    response = getattr(client, method)(url, {}, format="json")
    assert response.status_code == refused_login(), response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"].startswith("Invalid basic header")


def test_the_database_is_the_one_ci_asks_for(db: None) -> None:
    """The NUL cases above only ever failed on PostgreSQL: make sure ASPECTS_TEST_DB=postgres really runs there."""
    expected = "postgresql" if os.environ.get("ASPECTS_TEST_DB") == "postgres" else "sqlite"
    assert connection.vendor == expected


def test_ordinary_credentials_still_work(alice: Any, make_chart: ChartFactory) -> None:
    client = lenient(APIClient())
    client.credentials(HTTP_AUTHORIZATION=basic_auth_header("alice"))
    assert client.get(CHARTS).status_code == 200
    response = client.post(CHARTS, positions_payload(), format="json")
    assert response.status_code == 201, response.content
    wrong = lenient(APIClient())
    wrong.credentials(HTTP_AUTHORIZATION=basic_auth_header("alice", "wrong"))
    assert wrong.get(CHARTS).status_code == refused_login()


def test_non_ascii_credentials_still_work(django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="jürgen", password="pässwörd\t")  # a tab: forms allow it
    client = lenient(APIClient())
    client.credentials(HTTP_AUTHORIZATION=raw_basic("jürgen:pässwörd\t".encode()))
    assert client.get(CHARTS).status_code == 200


# -- JSON bodies ---------------------------------------------------------------------------------------------------


def post_raw(body: bytes, url: str = INLINE, client: APIClient | None = None) -> Any:
    return lenient(client or APIClient()).generic("POST", url, body, content_type="application/json")


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
def test_deeply_nested_json_is_a_400(db: None, opening: str, closing: str) -> None:
    body = (opening * 1000 + "1" + closing * 1000).encode()
    assert len(body) < 8_000
    response = post_raw(body)
    assert response.status_code == 400, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert "nested" in response.json()["detail"]


def test_nesting_inside_strings_does_not_count(db: None) -> None:
    body = json.dumps({"a": {"points": ["[" * 5000 + "{" * 5000], "longitudes": [1.0]}, "b": {"longitudes": [2.0]}})
    response = post_raw(body.encode())
    assert response.status_code == 400
    assert "nested" not in json.dumps(response.json())  # an ordinary validation error, on a field


def test_nesting_up_to_the_limit_parses() -> None:
    parser = JSONParser()
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parser.parse(io.BytesIO(nested.encode()), "application/json", {}) is not None
    escaped = json.dumps({"s": 'a "quoted" \\ [{[{ string'})
    assert parser.parse(io.BytesIO(escaped.encode()), "application/json", {}) == json.loads(escaped)


def test_malformed_json_is_still_a_400(db: None) -> None:
    for body in (b"[}", b'{"a": "unterminated', b"[" * 10 + b"}" * 10, b"\xff\xfe"):
        response = post_raw(body)
        assert response.status_code == 400, body
        assert response["Content-Type"].startswith("application/json")


def test_a_body_over_the_upload_limit_is_a_json_400(alice: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth_header("alice"))
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000):
        body = json.dumps({"charts": [positions_payload(seed) for seed in range(60)]}).encode()
        assert len(body) > 10_000
        response = post_raw(body, f"{CHARTS}bulk/", client)
        assert response.status_code == 400, response.content[:500]
        assert response["Content-Type"].startswith("application/json")
        assert "10000 bytes" in response.json()["detail"]
        assert post_raw(json.dumps(positions_payload()).encode(), CHARTS, client).status_code == 201
    assert Chart.objects.count() == 1


# -- the broker --------------------------------------------------------------------------------------------------

QUEUE = f"aspects-abuse-{os.getpid()}"
# The longest POST jobs/ may take when the broker cannot take the blocks (the enqueue timeout is 2 s).
PROMPT = 8.0


@pytest.fixture
def own_queue() -> Iterator[None]:
    """The run's blocks go to a queue of this test run's own, emptied before and after."""
    from project.celery import app

    with override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_ANON": None, "THROTTLE_USER": None}):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(QUEUE)
        yield
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(QUEUE)


@pytest.fixture(params=["down", "stopped"])
def broken_broker(request: pytest.FixtureRequest, own_queue: None) -> Iterator[str]:
    """The Celery app's broker moved to a loopback port where nothing listens ("down") or where a socket listens
    but never accepts or answers ("stopped", as a SIGSTOPped Redis); restored afterwards."""
    from project.celery import app

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if request.param == "down":
        listener.close()
    else:
        listener.listen(64)  # the kernel completes handshakes; nothing ever reads or writes
    previous = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{port}/0"
    try:
        yield str(request.param)
    finally:
        app.conf.broker_url = previous
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_job_create_answers_503_when_the_broker_cannot_take_it(
    broken_broker: str, alice: Any, make_chart: ChartFactory
) -> None:
    for _ in range(4):
        make_chart(alice)
    client = lenient(APIClient())
    client.credentials(HTTP_AUTHORIZATION=basic_auth_header("alice"))
    began = time.monotonic()
    response = client.post(JOBS, {"modes": ["top-k"], "k": 2}, format="json")
    seconds = time.monotonic() - began
    assert response.status_code == 503, response.content[:2000]
    assert seconds < PROMPT, f"the 503 took {seconds:.1f} s"
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert "broker" in body["detail"]
    assert "Retry-After" in response
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.FAILED
    assert "enqueueing failed" in run.error
    assert body["job"] == run.pk

    # The broker is back: the run resumes with every block.
    from project.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL  # back up (the fixture restores it either way)
    out = io.StringIO()
    call_command("compute_aspects", resume=run.pk, no_wait=True, stdout=out)
    run.refresh_from_db()
    assert run.status == BatchRun.Status.RUNNING
    assert f"{run.parameters['distributed']['blocks']} blocks enqueued on {QUEUE!r}" in out.getvalue()
