"""Shared fixtures of the Django-layer tests: users, API clients, chart factories and the kerykeion sample."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import override_settings
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from aspects_app.cache import reset_result_cache
from aspects_app.engine.aspects import STANDARD_POINTS

# CI runs the property tests on fixed draws (ASPECTS_HYPOTHESIS_PROFILE=ci in .ci/run), so that a submission's
# verdict does not depend on the dice; other runs keep drawing new examples, which is how they find new bugs.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("ASPECTS_HYPOTHESIS_PROFILE"):
    hypothesis_settings.load_profile(os.environ["ASPECTS_HYPOTHESIS_PROFILE"])

PASSWORD = "correct horse battery staple"
SAMPLE_PATH = Path(__file__).parent / "data" / "kerykeion_sample.json"
PLANETS: tuple[str, ...] = STANDARD_POINTS[:10]

ChartFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """A test database of this run's own on a shared server (ASPECTS_TEST_DB=postgres): runs started at the same
    time (developers, CI) would otherwise create, flush and drop the same ``test_test`` under each other."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        if db["ENGINE"] == "django.db.backends.sqlite3":
            test["NAME"] = f"{db['NAME']}.{os.getpid()}"  # a file beside the configured one
        else:
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{os.getpid()}"


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hasher() -> Iterator[None]:
    """Every API request authenticates with HTTP Basic: PBKDF2's million rounds would cost ~0.3 s each."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


def _reset_caches() -> None:
    cache.clear()  # throttle counters, and shared-level results
    reset_result_cache()  # the in-process level: results are content-addressed, so they outlive a test's rows


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    """Every test starts (and leaves) with no throttle counters and no cached results."""
    _reset_caches()
    yield
    _reset_caches()


@pytest.fixture(scope="session")
def kerykeion_sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE_PATH.read_text())
    return data


# -- users and clients -------------------------------------------------------------------------------------------


def _user(username: str, *, is_staff: bool = False) -> Any:
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD, is_staff=is_staff
    )


@pytest.fixture
def alice(db: None) -> Any:
    return _user("alice")


@pytest.fixture
def bob(db: None) -> Any:
    return _user("bob")


@pytest.fixture
def staff(db: None) -> Any:
    return _user("staff", is_staff=True)


def basic_auth_header(username: str, password: str = PASSWORD) -> str:
    """The value of an ``Authorization`` header for HTTP Basic authentication."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def client_for(user: Any | None) -> APIClient:
    """An API client that authenticates ``user`` with HTTP Basic (as a real caller would), or an anonymous one."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=basic_auth_header(user.get_username()))
    return client


@pytest.fixture
def anon_client(db: None) -> APIClient:
    return client_for(None)


@pytest.fixture
def alice_client(alice: Any) -> APIClient:
    return client_for(alice)


@pytest.fixture
def bob_client(bob: Any) -> APIClient:
    return client_for(bob)


@pytest.fixture
def staff_client(staff: Any) -> APIClient:
    return client_for(staff)


# -- charts ------------------------------------------------------------------------------------------------------


def random_positions(
    seed: int, points: Sequence[str] = PLANETS, with_speeds: bool = True
) -> tuple[list[float], list[float] | None]:
    """Deterministic longitudes in [0, 360) and speeds in (−1, 14) for ``points``."""
    rng = np.random.default_rng(seed)
    longitudes = rng.uniform(0.0, 360.0, len(points)).tolist()
    speeds = rng.uniform(-1.0, 14.0, len(points)).tolist() if with_speeds else None
    return longitudes, speeds


@pytest.fixture
def make_chart(db: None) -> ChartFactory:
    """Save a chart with given (or seeded random) positions, without the ephemeris: fast and exact."""
    from aspects_app.models import Chart

    counter = iter(range(10_000))

    def make(
        owner: Any = None,
        *,
        name: str | None = None,
        is_public: bool = False,
        points: Sequence[str] = PLANETS,
        longitudes: Sequence[float] | None = None,
        speeds: Sequence[float] | None = None,
        seed: int | None = None,
        with_speeds: bool = True,
    ) -> Chart:
        n = next(counter)
        if longitudes is None:
            longitudes, generated = random_positions(n if seed is None else seed, points, with_speeds)
            speeds = generated if speeds is None else speeds
        chart = Chart(owner=owner, name=name if name is not None else f"chart {n}", is_public=is_public)
        chart.set_positions(tuple(points), longitudes, speeds)
        chart.save()
        return chart

    return make


def birth_payload(**overrides: Any) -> dict[str, Any]:
    """A valid chart-from-birth-data request body (Berlin, 1979), with ``overrides`` applied."""
    body: dict[str, Any] = {
        "name": "R000",
        "birth_datetime": "1979-07-16T07:37:00+00:00",
        "latitude": 52.52,
        "longitude": 13.405,
    }
    body.update(overrides)
    return body


def positions_payload(seed: int = 1, points: Sequence[str] = PLANETS, **overrides: Any) -> dict[str, Any]:
    """A valid chart-from-positions request body."""
    longitudes, speeds = random_positions(seed, points)
    body: dict[str, Any] = {
        "name": f"positions {seed}",
        "position_input": {"points": list(points), "longitudes": longitudes, "speeds": speeds},
    }
    body.update(overrides)
    return body
