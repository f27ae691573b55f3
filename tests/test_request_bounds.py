"""Bounds on what one request, or many, may cost a worker.

- The shared calculators' scratch buffers are bounded by bytes for the process, not by a count of calculators:
  every distinct orb configuration kept a budget's worth of buffers (up to 32 of them), and a worker grew from
  453 MB to 3 GB on 12 ``scores`` requests with slightly different orbs.
- ``matches`` loads its candidates in one query whatever their number: reading each candidate's deferred speeds
  back was one query per chart (about 20 s for 50,000 public charts).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from aspects_app import calculators, services
from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.models import Chart

from .conftest import PLANETS, ChartFactory

MIB = 1 << 20
# A small budget, so that one request fills a pool to about it in milliseconds.
WORKING_MEMORY_MB = 4
WIDE_POINTS = tuple(f"p{n}" for n in range(255))  # as in the report: 255 points, weighted scores


@pytest.fixture
def small_budget() -> Iterator[None]:
    with override_settings(ASPECTS={"WORKING_MEMORY_MB": WORKING_MEMORY_MB, "BACKEND": "numpy"}):
        yield


def wide_charts(count: int, seed: int = 0, points: tuple[str, ...] = WIDE_POINTS) -> list[Chart]:
    """Unsaved charts (``scores`` needs no rows), with 255 points unless told."""
    rng = np.random.default_rng(seed)
    charts = []
    for n in range(count):
        chart = Chart(is_public=True)
        chart.set_positions(points, rng.uniform(0.0, 360.0, len(points)))
        chart.pk = n + 1
        charts.append(chart)
    return charts


def slightly_different_orbs(n: int) -> AspectConfig:
    return services.aspect_config({"conjunction": 8 + n / 100, "opposition": 8, "trine": 7, "square": 7})


def pooled(configs: list[AspectConfig]) -> list[int]:
    """Free bytes in the pool of each configuration's shared calculator."""
    return [calculators.calculator(c).pool.free_bytes for c in configs]


# -- the shared calculators' pools -------------------------------------------------------------------------------


@pytest.mark.usefixtures("small_budget")
def test_pools_of_many_configurations_stay_within_a_byte_budget() -> None:
    # Ten points and many charts: the kernel tables (which each configuration keeps, 3 MiB of them for 255 points)
    # are a few KiB, so what tracemalloc sees grow is the pools.
    me, *others = wide_charts(4000, points=PLANETS)
    budget = 2 * WORKING_MEMORY_MB * MIB
    configs = [slightly_different_orbs(n) for n in range(10)]
    services.scores(me, others, "weighted", configs[0])  # warm-up: kernel tables, NumPy's own caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, config in enumerate(configs[1:], 1):
            services.scores(me, others, "weighted", config)
            held = pooled(configs[: n + 1])
            assert sum(held) <= budget, f"after {n + 1} configurations the pools keep {sum(held) / MIB:.1f} MiB"
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # One request fills its pool to about the working memory; a count-bounded cache kept ten of those.
    assert held[-1] > WORKING_MEMORY_MB * MIB / 2, "the most recent configuration keeps its buffers"
    assert grown <= budget + MIB, f"traced memory grew {grown / MIB:.1f} MiB over {len(configs)} configurations"


@pytest.mark.usefixtures("small_budget")
def test_the_least_recently_used_configurations_lose_their_buffers_first() -> None:
    me, *others = wide_charts(60)
    a, b, c = (slightly_different_orbs(n) for n in range(3))
    for config in (a, b, c):
        services.scores(me, others, "weighted", config)
    held_a, held_b, held_c = pooled([a, b, c])
    assert held_a == 0 and held_b > 0 and held_c > 0
    services.scores(me, others, "weighted", a)  # a is the most recent now, b the oldest
    held_a, held_b, held_c = pooled([a, b, c])
    assert held_a > 0 and held_b == 0 and held_c > 0


@pytest.mark.usefixtures("small_budget")
def test_repeated_identical_requests_reuse_their_buffers() -> None:
    me, *others = wide_charts(60)
    config = slightly_different_orbs(0)
    first = services.scores(me, others, "weighted", config)
    pool = calculators.calculator(config).pool
    allocations, reuses = pool.allocations, pool.reuses
    for _ in range(3):
        assert services.scores(me, others, "weighted", config) == first
    assert pool.allocations == allocations, "a warm request allocates no new buffers"
    assert pool.reuses > reuses


@pytest.mark.usefixtures("small_budget")
def test_one_pool_never_keeps_more_than_the_budget() -> None:
    pool = calculators.calculator(slightly_different_orbs(0)).pool
    assert pool.max_free_bytes <= 2 * WORKING_MEMORY_MB * MIB


# -- matches: one query for the candidates -----------------------------------------------------------------------


def public_crowd(count: int, seed: int = 0, points: tuple[str, ...] = PLANETS) -> list[Chart]:
    rng = np.random.default_rng(seed)
    charts = []
    for _ in range(count):
        chart = Chart(is_public=True)
        chart.set_positions(points, rng.uniform(0.0, 360.0, len(points)), rng.uniform(-1.0, 14.0, len(points)))
        charts.append(chart)
    return Chart.objects.bulk_create(charts)


def matches_queries(client: APIClient, chart: Chart) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/aspects/charts/{chart.pk}/matches/", {"k": 5})
    assert response.status_code == 200, response.content
    assert len(response.json()["matches"]) == 5
    return len(queries)


@pytest.mark.django_db
def test_matches_queries_do_not_grow_with_the_candidates(anon_client: APIClient) -> None:
    me, *_ = public_crowd(10, seed=1)
    few = matches_queries(anon_client, me)
    public_crowd(300, seed=2)
    assert matches_queries(anon_client, me) == few


@pytest.mark.django_db
def test_match_candidates_and_top_matches_take_one_query(
    django_assert_max_num_queries: Any, make_chart: ChartFactory
) -> None:
    me = make_chart(is_public=True)
    public_crowd(200, seed=3)
    with django_assert_max_num_queries(1):
        candidates = services.match_candidates(None, me)
        services.top_matches(me, candidates, 10, "discepolo", services.aspect_config())
    assert len(candidates) == 200


@pytest.mark.django_db
@pytest.mark.parametrize(("k", "method"), [(1, "discepolo"), (7, "weighted"), (100, "discepolo")])
def test_matches_equal_the_engines_top_k(make_chart: ChartFactory, alice: Any, k: int, method: str) -> None:
    me = make_chart(is_public=True, seed=7)
    crowd = public_crowd(40, seed=4)
    # Ties: copies of earlier charts score the same, and the earlier one ranks first.
    twins = [make_chart(is_public=True, longitudes=c.longitude_array.tolist()) for c in crowd[:5]]
    make_chart(is_public=True, points=["Sun", "Moon"], longitudes=[1.0, 2.0])  # other points: skipped
    make_chart(alice, seed=8)  # private: not a candidate for an anonymous caller
    config = services.aspect_config()
    got = services.top_matches(me, services.match_candidates(None, me), k, method, config)

    others = [*crowd, *twins]  # ascending ids, as the candidates come
    best = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy").top_k(
        me.longitude_array[None, :], np.stack([c.longitude_array for c in others]), k=k, method=method, points=PLANETS
    )
    assert [g["rank"] for g in got] == list(range(1, min(k, len(others)) + 1))
    assert [g["chart"] for g in got] == [others[j].pk for j in best.indices[0].tolist()]
    np.testing.assert_allclose([g["score"] for g in got], best.scores[0].tolist(), atol=1e-6, rtol=0)
    # The same as from the charts themselves, the chart among them.
    assert services.top_matches(me, [me, *others], k, method, config) == got
    if k == 100:
        ranked = [g["chart"] for g in got]
        for original, twin in zip(crowd[:5], twins, strict=True):
            assert ranked.index(original.pk) < ranked.index(twin.pk)


@pytest.mark.django_db
def test_match_candidates_of_a_chart_with_other_points(make_chart: ChartFactory) -> None:
    odd = make_chart(is_public=True, points=["Sun", "Moon"], longitudes=[1.0, 2.0])
    public_crowd(5)
    candidates = services.match_candidates(None, odd)
    assert len(candidates) == 0
    assert services.top_matches(odd, candidates, 3, "discepolo", services.aspect_config()) == []
