"""No cache side channel: a user who recreates another user's private chart from guessed birth data, and asks its
aspects, must see exactly what they would see had nobody computed that chart (issue 17, item 1).

Each case runs the attacker's requests twice, once after the victim computed their chart's natal aspects and
synastry, once after the victim only created the chart, and compares the responses and the counters of every
cache level, with the in-process shared level and a real Redis (its own database, flushed before each case).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import override_settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from aspects_app.cache import reset_result_cache, result_cache
from aspects_app.models import AspectResult, Chart

from .conftest import PASSWORD, birth_payload, client_for

pytestmark = pytest.mark.django_db

API = "/api/aspects"
CHARTS = f"{API}/charts/"
# The suite's own Redis database for this test (the broker uses 3, the demo 1 and 2, the benchmark 13).
REDIS_URL = os.environ.get("ASPECTS_TEST_SIDE_CHANNEL_REDIS", "redis://127.0.0.1:6379/12")
VICTIM_BIRTH = "1984-03-09T21:14:00+00:00"
ATTACKER_FIRST_GUESS = "1984-03-09T21:13:00+00:00"

UNTHROTTLED = {"THROTTLE_ANON": None, "THROTTLE_USER": None}
LOCMEM = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "side-default"},
    "aspects": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "side-results"},
}
REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "side-locks"},
    "aspects": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    },
}


@pytest.fixture(params=["locmem", "redis"])
def shared_level(request: pytest.FixtureRequest) -> Iterator[str]:
    caches_setting = LOCMEM if request.param == "locmem" else REDIS
    aspects = {"CACHE_ALIAS": "aspects", "LOCK_ALIAS": "default", **UNTHROTTLED}
    with override_settings(CACHES=caches_setting, ASPECTS=aspects):
        reset_result_cache()
        yield request.param
    reset_result_cache()


def _empty_everything(level: str) -> None:
    """As on a fresh deployment: no results anywhere, no charts but the shared public one."""
    if level == "redis":
        get_redis_connection("aspects").flushdb()  # only this test's database
    else:
        caches["aspects"].clear()
    reset_result_cache()
    AspectResult.objects.all().delete()


def _created(client: APIClient, **overrides: Any) -> int:
    response = client.post(CHARTS, birth_payload(**overrides), format="json")
    assert response.status_code == 201, response.json()
    return int(response.json()["id"])


def _aspects(client: APIClient, chart: int, partner: int) -> list[dict[str, Any]]:
    natal = client.get(f"{CHARTS}{chart}/natal/")
    synastry = client.get(f"{API}/synastry/", {"chart_a": chart, "chart_b": partner})
    assert natal.status_code == 200 and synastry.status_code == 200
    answers = []
    for body in (natal.json(), synastry.json()):
        # The ids differ from run to run; everything else must not.
        answers.append({k: v for k, v in body.items() if k not in ("chart", "chart_a", "chart_b")})
    return answers


def _counters() -> dict[str, dict[str, Any]]:
    stats = result_cache().stats()
    return {level: {k: v for k, v in stats[level].items() if k not in ("alias", "available")} for level in stats}


def _attack(level: str, victim_computes: bool, *, other_worker: bool) -> tuple[list[Any], dict[str, Any]]:
    """The victim creates a private chart (and maybe asks its aspects, alone and with a public chart); the
    attacker recreates it by stepping a guess with PATCH and asks the same. Returns what the attacker saw."""
    _empty_everything(level)
    victim, attacker = client_for(_user("victim")), client_for(_user("attacker"))
    public = _created(victim, name="a celebrity", is_public=True, birth_datetime="1970-01-01T12:00:00+00:00")
    secret = _created(victim, name="me", birth_datetime=VICTIM_BIRTH)
    if victim_computes:
        _aspects(victim, secret, public)
    if other_worker:
        result_cache().local.clear()  # the attacker's requests land on another worker: only the shared level
    guess = _created(attacker, name="guess", birth_datetime=ATTACKER_FIRST_GUESS)
    before = _counters()
    seen = _aspects(attacker, guess, public)
    patched = attacker.patch(f"{CHARTS}{guess}/", {"birth_datetime": VICTIM_BIRTH}, format="json")
    assert patched.status_code == 200
    seen += _aspects(attacker, guess, public)
    after = _counters()
    delta = {
        name: {k: after[name][k] - before[name][k] for k in after[name] if k not in ("entries", "bytes")}
        for name in after
    }
    Chart.objects.all().delete()
    get_user_model().objects.filter(username__in=["victim", "attacker"]).delete()
    return seen, delta


def _user(username: str) -> Any:
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


@pytest.mark.parametrize("other_worker", [False, True], ids=["same-worker", "other-worker"])
def test_a_recreated_private_chart_finds_nothing_of_the_victims(shared_level: str, other_worker: bool) -> None:
    unseen, unseen_counters = _attack(shared_level, victim_computes=False, other_worker=other_worker)
    seen, seen_counters = _attack(shared_level, victim_computes=True, other_worker=other_worker)
    assert seen == unseen
    assert seen_counters == unseen_counters
    # Every answer the attacker got was computed for their own chart, before and after the PATCH.
    assert [(answer["source"], answer["cached"]) for answer in seen] == [("computed", False)] * 4
    assert seen[2]["aspects"]  # the stepped guess is the victim's chart: the same aspects, computed afresh
