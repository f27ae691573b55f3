"""Bounds on what one request, or many, may cost a worker.

- The shared calculators' scratch buffers are bounded by bytes for the process, not by a count of calculators:
  every distinct orb configuration kept a budget's worth of buffers (up to 32 of them), and a worker grew from
  453 MB to 3 GB on 12 ``scores`` requests with slightly different orbs.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest
from django.test import override_settings

from aspects_app import services
from aspects_app.engine import AspectConfig
from aspects_app.models import Chart

from .conftest import PLANETS

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
    return [services.calculator(c).pool.free_bytes for c in configs]


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
    pool = services.calculator(config).pool
    allocations, reuses = pool.allocations, pool.reuses
    for _ in range(3):
        assert services.scores(me, others, "weighted", config) == first
    assert pool.allocations == allocations, "a warm request allocates no new buffers"
    assert pool.reuses > reuses


@pytest.mark.usefixtures("small_budget")
def test_one_pool_never_keeps_more_than_the_budget() -> None:
    pool = services.calculator(slightly_different_orbs(0)).pool
    assert pool.max_free_bytes <= 2 * WORKING_MEMORY_MB * MIB
