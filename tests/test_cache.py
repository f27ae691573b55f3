"""The result cache against a real Redis server: levels, LRU eviction, invalidation, single-flight, Redis going
down and coming back, system checks and the aspects_cache command.

Each test that needs Redis starts its own redis-server on a free port (so it can be stopped, restarted and
configured without touching the machine's shared instance).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import override_settings
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from aspects_app import services
from aspects_app.cache import (
    LocalLRU,
    ResultKey,
    chart_generation_key,
    reset_result_cache,
    result_cache,
    result_key,
)
from aspects_app.checks import check_caches
from aspects_app.models import AspectResult, Chart

pytestmark = pytest.mark.django_db


class RedisServer:
    """A private redis-server process: started, stopped and restarted by the tests."""

    def __init__(self, directory: Path, policy: str = "allkeys-lru", maxmemory: str = "0") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (CI installs and starts Redis)")
        self.binary = binary
        self.directory = directory
        self.policy = policy
        self.maxmemory = maxmemory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--maxmemory",
                self.maxmemory,
                "--maxmemory-policy",
                self.policy,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def redis_caches(server: RedisServer) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "locks"},
        "aspects": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1},
        },
    }


REDIS_ASPECTS = {
    "CACHE_ALIAS": "aspects",
    "LOCK_ALIAS": "default",
    "CACHE_RETRY_SECONDS": 0.3,
    "THROTTLE_ANON": None,
    "THROTTLE_USER": None,
}


@pytest.fixture
def with_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    with override_settings(CACHES=redis_caches(redis_server), ASPECTS=REDIS_ASPECTS):
        reset_result_cache()
        yield redis_server
    reset_result_cache()


def make_chart(seed: int, public: bool = True) -> Chart:
    rng = np.random.default_rng(seed)
    points = ("Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto")
    (chart,) = services.create_charts(
        None,
        [
            services.ChartInput(
                name=f"c{seed}",
                is_public=public,
                points=points,
                longitudes=tuple(rng.uniform(0, 360, 10).tolist()),
                speeds=tuple(rng.uniform(-1, 2, 10).tolist()),
            )
        ],
    )
    return chart


def natal_key(chart: Chart, config_hash: str | None = None) -> str:
    config_hash = config_hash or services.aspect_config().config_hash()
    scope = (chart.pk, chart.positions_hash)
    return result_key("natal", config_hash, "1", scope, scope).name


def redis_keys(server: RedisServer) -> list[str]:
    return [k.decode() for k in get_redis_connection("aspects").keys("*")]


# -- levels ------------------------------------------------------------------------------------------------------


def test_each_level_serves_in_turn(with_redis: RedisServer) -> None:
    chart = make_chart(1)
    config = services.aspect_config()
    first = services.natal_aspects(chart, config)
    assert (first.source, first.cached) == ("computed", False)
    assert services.natal_aspects(chart, config).source == "local"
    result_cache().local.clear()
    assert services.natal_aspects(chart, config).source == "shared"  # and the local level is refilled
    assert services.natal_aspects(chart, config).source == "local"
    result_cache().clear()
    again = services.natal_aspects(chart, config)
    assert again.source == "database"
    assert again.aspects() == first.aspects()
    stats = result_cache().stats()
    assert stats["local"]["hits"] >= 2 and stats["shared"]["hits"] >= 1 and stats["shared"]["sets"] >= 2


def test_keys_are_scoped_per_chart_and_generation(with_redis: RedisServer) -> None:
    chart = make_chart(2)
    services.natal_aspects(chart, services.aspect_config())
    stored = [k for k in _plain_keys(with_redis) if k.startswith(natal_key(chart) + ":")]
    assert len(stored) == 1 and f".{chart.positions_hash}" in stored[0]


def _plain_keys(server: RedisServer) -> list[str]:
    # django-redis prefixes keys with ":<version>:"; strip it.
    return [k.split(":", 2)[2] if k.startswith(":") else k for k in redis_keys(server)]


def test_get_many_and_set_many_round_trip(with_redis: RedisServer) -> None:
    cache = result_cache()
    values = {f"aspects:r1:test:{n}": bytes([n]) * 100 for n in range(50)}
    cache.set_many(values)
    cache.local.clear()
    found = cache.get_many(values)
    assert {k: v for k, (v, level) in found.items()} == values
    assert {level for _, level in found.values()} == {"shared"}


# -- eviction ----------------------------------------------------------------------------------------------------


def test_redis_evicts_least_recently_used_under_maxmemory(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, policy="allkeys-lru", maxmemory="4mb")
    try:
        with override_settings(CACHES=redis_caches(server), ASPECTS=REDIS_ASPECTS):
            reset_result_cache()
            connection = get_redis_connection("aspects")
            connection.config_set("maxmemory-samples", 10)
            cache = result_cache()
            payload = b"x" * 20_000
            hot = "aspects:r1:test:hot"
            old = [f"aspects:r1:test:old-{n}" for n in range(100)]
            cache.set_many({hot: payload, **dict.fromkeys(old, payload)})
            assert connection.info()["evicted_keys"] == 0
            time.sleep(1.1)  # Redis' LRU clock ticks once a second: the old keys are now older than anything new
            cache.local.clear()
            assert cache.get(hot) is not None  # used again: recent
            new = [f"aspects:r1:test:new-{n}" for n in range(80)]
            for key in new:  # ~1.6 MB more than fits
                cache.set(key, payload)
            cache.local.clear()
            assert connection.info()["evicted_keys"] > 0
            assert cache.get(hot) is not None
            surviving_old = sum(cache.get(key) is not None for key in old)
            cache.local.clear()
            surviving_new = sum(cache.get(key) is not None for key in new)
            assert surviving_old < 100
            assert surviving_new >= 75  # the least recently used went first
            assert cache.stats()["shared"]["errors"] == 0
    finally:
        reset_result_cache()
        server.stop()


def test_local_lru_is_bounded_by_entries_and_bytes() -> None:
    lru = LocalLRU(max_entries=3, max_bytes=250)
    for n in range(5):
        lru.set(str(n), b"." * 10)
    assert lru.summary()["entries"] == 3 and lru.get("0") is None and lru.get("4") is not None
    lru.get("2")  # now the most recently used of 2, 3, 4
    lru.set("big", b"." * 240)  # 270 bytes and 4 entries: 3 goes (entries), then 4 (bytes); 2 stays
    assert lru.summary()["bytes"] <= 250
    assert lru.get("3") is None and lru.get("4") is None and lru.get("2") is not None and lru.get("big") is not None
    lru.set("huge", b"." * 1000)  # larger than the bound: not kept, nothing evicted for it
    assert lru.get("huge") is None and lru.get("big") is not None


# -- invalidation ------------------------------------------------------------------------------------------------


def test_updating_a_chart_removes_its_cached_and_persisted_results(
    with_redis: RedisServer, django_capture_on_commit_callbacks: Any
) -> None:
    chart, other = make_chart(3), make_chart(4)
    config = services.aspect_config()
    services.natal_aspects(chart, config)
    services.synastry_aspects(other, chart, config)
    old_hash = chart.positions_hash
    assert any(old_hash in k for k in _plain_keys(with_redis))
    assert AspectResult.objects.filter(chart_a=chart).count() == 1
    changes = services.ChartInput(points=tuple(chart.points), longitudes=tuple([1.0] * 10))
    with django_capture_on_commit_callbacks(execute=True):
        services.update_chart(chart, changes, ["points"])
    # No scan: the old entries stay in Redis, unreachable (new positions, new generation), until evicted.
    assert result_cache().local.entries_of(chart.pk) == 0
    assert AspectResult.objects.filter(chart_a=chart).count() == 0
    assert AspectResult.objects.filter(chart_b=chart).count() == 0
    assert services.natal_aspects(chart, config).source == "computed"


def test_deleting_a_chart_removes_its_cached_results(
    with_redis: RedisServer, django_capture_on_commit_callbacks: Any
) -> None:
    chart = make_chart(5)
    services.natal_aspects(chart, services.aspect_config())
    doomed = chart.positions_hash
    chart_id = chart.pk
    generation = chart_generation_key(chart_id)
    assert caches["aspects"].get(generation) is not None
    with django_capture_on_commit_callbacks(execute=True):
        chart.delete()
    assert caches["aspects"].get(generation) is None  # its entries are unreachable
    assert result_cache().local.entries_of(chart_id) == 0
    assert any(doomed in k for k in _plain_keys(with_redis))  # left to age out: no scan
    assert not AspectResult.objects.exists()


# -- single-flight -----------------------------------------------------------------------------------------------


def test_concurrent_misses_compute_once(with_redis: RedisServer) -> None:
    cache = result_cache()
    calls = []
    gate = threading.Barrier(8)

    def compute() -> bytes:
        calls.append(1)
        time.sleep(0.2)
        return b"value"

    results: list[tuple[bytes, str]] = []

    def request() -> None:
        gate.wait()
        results.append(cache.get_or_compute("aspects:r1:test:flight", compute))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1
    assert [value for value, _ in results] == [b"value"] * 8
    assert sorted(level for _, level in results).count("computed") == 1


def test_a_lock_held_by_another_process_is_waited_for(with_redis: RedisServer) -> None:
    cache = result_cache()
    key = "aspects:r1:test:other-process"
    caches["default"].add(f"{key}:lock", "someone-else", timeout=5)  # another worker is computing it

    def other_process_finishes() -> None:
        time.sleep(0.2)
        cache.shared.set_many({ResultKey(key): b"from-the-other-worker"})

    threading.Thread(target=other_process_finishes).start()
    computed = []
    value, level = cache.get_or_compute(key, lambda: computed.append(1) or b"mine")
    assert value == b"from-the-other-worker" and level in ("shared", "local") and not computed


# -- Redis down and back -----------------------------------------------------------------------------------------


def test_api_answers_while_redis_is_down_and_hits_resume_after(
    with_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_chart(6), make_chart(7)
    client = APIClient()
    url = f"/api/aspects/synastry/?chart_a={a.pk}&chart_b={b.pk}"
    expected = client.get(url).json()["aspects"]
    with_redis.stop()
    result_cache().local.clear()
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200
        assert response.json()["aspects"] == expected
        assert response.json()["source"] in ("database", "local")
    assert result_cache().stats()["shared"]["errors"] >= 1
    assert "failed" in caplog.text
    with_redis.start()
    time.sleep(0.35)  # CACHE_RETRY_SECONDS: the shared level is tried again by itself
    chart = make_chart(8)
    services.natal_aspects(chart, services.aspect_config())
    result_cache().local.clear()
    assert services.natal_aspects(chart, services.aspect_config()).source == "shared"


# -- checks and command ------------------------------------------------------------------------------------------


def test_check_warns_when_redis_does_not_evict_by_lru(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, policy="noeviction")
    try:
        with override_settings(CACHES=redis_caches(server), ASPECTS=REDIS_ASPECTS):
            assert [m.id for m in check_caches()] == ["aspects_app.W002"]
            get_redis_connection("aspects").config_set("maxmemory-policy", "allkeys-lru")
            assert check_caches() == []
        shared = {"default": redis_caches(server)["aspects"]}
        with override_settings(CACHES=shared, ASPECTS={"CACHE_ALIAS": "default", "LOCK_ALIAS": "default"}):
            assert [m.id for m in check_caches()] == ["aspects_app.W001"]
        with override_settings(ASPECTS={"CACHE_ALIAS": "nope"}):
            assert [m.id for m in check_caches()] == ["aspects_app.E003"]
    finally:
        server.stop()


def test_aspects_cache_command(with_redis: RedisServer) -> None:
    charts = [make_chart(10 + n) for n in range(5)]
    out = io.StringIO()
    call_command("aspects_cache", "warm", ids=",".join(str(c.pk) for c in charts[:3]), stdout=out)
    assert "warmed 3" in out.getvalue()
    assert AspectResult.objects.filter(kind="natal").count() == 3
    assert services.natal_aspects(charts[0], services.aspect_config()).source in ("local", "shared")
    out = io.StringIO()
    call_command("aspects_cache", "stats", json=True, stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["database"]["natal"] == 3 and stats["shared"]["server"]["maxmemory_policy"] == "allkeys-lru"
    call_command("aspects_cache", "clear", chart=charts[0].pk, persisted=True, stdout=io.StringIO())
    assert AspectResult.objects.filter(chart_a=charts[0]).count() == 0
    # The command is another process: the web workers' shared level must not find the chart's entries either.
    result_cache().local.clear()
    assert services.natal_aspects(charts[0], services.aspect_config()).source == "computed"
    assert services.natal_aspects(charts[1], services.aspect_config()).source == "shared"
    call_command("aspects_cache", "clear", stdout=io.StringIO())
    result_cache().local.clear()
    assert services.natal_aspects(charts[1], services.aspect_config()).source == "database"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--chart"):
        call_command("aspects_cache", "clear", chart=999_999, stdout=io.StringIO())
    with pytest.raises(CommandError, match="ids"):
        call_command("aspects_cache", "warm", ids="1,x", stdout=io.StringIO())
