"""Schemathesis fuzzes every operation of the API's OpenAPI schema: no input may answer a 5xx.

* The schema is the one drf-spectacular serves at /api/aspects/schema/, generated in-process (so collection needs
  no request, host or database) and bound to Django's WSGI application: requests run in the test's own thread.
* ``transactional_db``: each request commits for real, as in production, so a database error in one request (a
  PostgreSQL DataError, say) fails that request only instead of poisoning a test-wide transaction. Django's WSGI
  handler would also close the connection after every request (``close_old_connections``; with the in-memory
  SQLite database it must not, and with PostgreSQL reconnecting doubles the run time): the signal receivers are
  detached for the test, as Django's own test client does.
* Every request authenticates as a user with HTTP Basic; throttling is off (hundreds of requests per operation).
* Generated chart ids are steered half of the time onto charts seeded for the test (the user's public and
  private charts, another user's, an orphan, one with birth data), so the handlers run past their 404.
* Deterministic: Hypothesis is derandomized and keeps no example database. A failure prints a curl command.

Schemathesis' ``from_fixture`` (lazy schema) is not used: with pytest 9 it fails on ``Node._nodeid``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from aspects_app import services
from aspects_app.models import Chart

from .conftest import PASSWORD, PLANETS, basic_auth_header, random_positions

FUZZER = "fuzzer"
AUTH = {"Authorization": basic_auth_header(FUZZER)}
EXAMPLES_PER_OPERATION = 25


def openapi_document() -> dict[str, Any]:
    """The document GET /api/aspects/schema/?format=json answers, without a request."""
    raw = SchemaGenerator().get_schema(request=None, public=True)
    document: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(raw))
    return document


schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = get_wsgi_application()  # what from_wsgi() sets: requests go to the WSGI app, not the network

# Ids of the charts seeded for the running test.
SEEDED: list[int] = []


def _seed_charts(owner: Any) -> list[int]:
    other = get_user_model().objects.create_user(username="someone-else", password=PASSWORD)
    ids = []
    for n, (who, public) in enumerate([(owner, True), (owner, False), (other, False), (other, True), (None, True)]):
        longitudes, speeds = random_positions(500 + n)
        chart = Chart(owner=who, name=f"seed {n}", is_public=public)
        chart.set_positions(PLANETS, longitudes, speeds)
        chart.save()
        ids.append(chart.pk)
    birth = datetime(1979, 7, 16, 7, 37, tzinfo=UTC)
    (born,) = services.create_charts(
        owner, [services.ChartInput(name="born", birth_datetime=birth, latitude=52.52, longitude=13.405)]
    )
    ids.append(born.pk)
    return ids


@pytest.fixture
def keep_connection_open() -> Iterator[None]:
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def seeded_world(transactional_db: None, keep_connection_open: None) -> Iterator[list[int]]:
    with override_settings(
        ALLOWED_HOSTS=["localhost", "testserver"],  # schemathesis' WSGI client sends Host: localhost
        ASPECTS={"THROTTLE_ANON": None, "THROTTLE_USER": None},
    ):
        fuzzer = get_user_model().objects.create_user(username=FUZZER, password=PASSWORD)
        SEEDED[:] = _seed_charts(fuzzer)
        try:
            yield SEEDED
        finally:
            SEEDED.clear()


def steer(value: Any, seeded: list[int]) -> Any:
    """An even non-negative integer (or digit string) becomes a seeded chart id; anything else stays."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        return value
    number = int(value)
    return seeded[(number // 2) % len(seeded)] if number % 2 == 0 else value


def steer_case(case: schemathesis.Case, seeded: list[int]) -> None:
    if case.path_parameters and "id" in case.path_parameters:
        case.path_parameters["id"] = steer(case.path_parameters["id"], seeded)
    if case.query:
        for name in ("chart_a", "chart_b"):
            if name in case.query:
                case.query[name] = steer(case.query[name], seeded)
    if isinstance(case.body, dict) and isinstance(case.body.get("charts"), list) and "scores" in case.path:
        case.body["charts"] = [steer(v, seeded) for v in case.body["charts"]]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, in bounded time
    suppress_health_check=list(HealthCheck),
)
def test_no_input_causes_a_server_error(case: schemathesis.Case, seeded_world: list[int]) -> None:
    steer_case(case, seeded_world)
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
