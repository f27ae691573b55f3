"""The scratch-buffer pool, the performance monitor, the processing context and progress reporting."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from aspects_app.engine import (
    ArrayPool,
    MemoryOptimizedVectorizedCalculator,
    VectorizedPerformanceMonitor,
    memory_optimized_processing,
)

from .helpers import CPU_BACKENDS

# -- ArrayPool -------------------------------------------------------------------------------------------------------


def test_borrow_returns_exact_shape_and_dtype_even_from_a_larger_buffer() -> None:
    pool = ArrayPool()
    with pool.borrow((50, 40), np.float64) as big:
        assert big.shape == (50, 40) and big.dtype == np.float64
        big[...] = 1.0
    for shape, dtype in [((3, 4), np.float64), ((7,), np.float64), ((2, 3, 5), np.float64), ((0, 4), np.float64)]:
        with pool.borrow(shape, dtype) as small:
            assert small.shape == shape
            assert small.dtype == np.dtype(dtype)
            assert small.flags.c_contiguous
    assert pool.reuses >= 3
    assert pool.allocations == 1
    with pool.borrow((4,), np.int8) as other:  # another dtype never gets a float buffer
        assert other.dtype == np.int8 and other.shape == (4,)
    assert pool.allocations == 2


def test_nested_borrows_get_distinct_memory() -> None:
    pool = ArrayPool()
    with pool.borrow((100,), np.float64):  # leave a large free buffer behind
        pass
    with pool.borrow((10,), np.float64) as a, pool.borrow((10,), np.float64) as b, pool.borrow((20,), np.float64) as c:
        assert not np.shares_memory(a, b)
        assert not np.shares_memory(a, c)
        assert not np.shares_memory(b, c)
        assert pool.borrowed_count == 3
        a[...], b[...], c[...] = 1.0, 2.0, 3.0
        assert np.all(a == 1.0) and np.all(b == 2.0) and np.all(c == 3.0)
    assert pool.borrowed_count == 0
    # Returned buffers are reused, not reallocated.
    allocations = pool.allocations
    with pool.borrow((10,), np.float64), pool.borrow((10,), np.float64), pool.borrow((20,), np.float64):
        pass
    assert pool.allocations == allocations


def test_buffers_come_back_when_the_body_raises() -> None:
    pool = ArrayPool()
    with pytest.raises(RuntimeError, match="boom"), pool.borrow((5,), np.float64), pool.borrow((6,), np.int16):
        assert pool.borrowed_count == 2
        raise RuntimeError("boom")
    assert pool.borrowed_count == 0
    assert pool.stats()["free_buffers"] == 2


def test_negative_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"), ArrayPool().borrow((2, -1), np.float64):
        pass


def test_thread_safety() -> None:
    pool = ArrayPool()
    errors: list[str] = []
    start = threading.Barrier(8)

    def work(tag: int) -> None:
        start.wait()
        for round_ in range(200):
            shape = (1 + (tag + round_) % 13, 3)
            with pool.borrow(shape, np.float64) as outer, pool.borrow((tag + 1,), np.float64) as inner:
                outer[...] = tag
                inner[...] = -tag
                if not (np.all(outer == tag) and np.all(inner == -tag)):
                    errors.append(f"thread {tag} round {round_}: buffer written by another thread")

    threads = [threading.Thread(target=work, args=(tag,)) for tag in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pool.borrowed_count == 0


@pytest.mark.parametrize("order", [(50, 10, 100), (10, 50, 100), (100, 50, 10), (100, 10, 50)])
def test_max_free_bytes_is_respected(order: tuple[int, int, int]) -> None:
    """Whatever order buffers come back in, what the pool keeps stays within its bound (1000 bytes here)."""
    pool = ArrayPool(max_free_bytes=1000)
    first, second, third = order
    with pool.borrow((first,), np.float64), pool.borrow((second,), np.float64), pool.borrow((third,), np.float64):
        pass
    assert pool.free_bytes <= 1000
    assert pool.borrowed_count == 0


def test_max_free_bytes_across_dtypes() -> None:
    pool = ArrayPool(max_free_bytes=1000)
    for _ in range(3):
        with pool.borrow((60,), np.float64), pool.borrow((300,), np.int8), pool.borrow((90,), np.int32):
            pass
        assert pool.free_bytes <= 1000
    with pool.borrow((200,), np.float64):  # 1600 bytes: more than the bound on its own
        pass
    assert pool.free_bytes <= 1000


def test_clear_drops_free_buffers() -> None:
    pool = ArrayPool()
    with pool.borrow((10,), np.float64):
        pass
    assert pool.free_bytes > 0
    pool.clear()
    assert pool.free_bytes == 0


# -- results outlive the pool's reuse --------------------------------------------------------------------------------


def snapshot(hits: Any) -> dict[str, np.ndarray[Any, Any]]:
    return {name: column.copy() for name, column in hits.to_arrays().items()}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_results_are_not_altered_by_later_calls(backend: str, chunk_size: int | None) -> None:
    rng = np.random.default_rng(17)
    calc = MemoryOptimizedVectorizedCalculator(backend=backend, chunk_size=chunk_size)
    lon_a, lon_b = rng.uniform(0, 360, (6, 10)), rng.uniform(0, 360, (5, 10))
    speed_a, speed_b = rng.uniform(-1, 14, (6, 10)), rng.uniform(-1, 14, (5, 10))
    synastry = calc.synastry(lon_a, lon_b, speed_a, speed_b)
    natal = calc.natal(lon_a, speed_a)
    paired = calc.paired_synastry(lon_a[:5], lon_b)
    scores = calc.scores(lon_a, lon_b)
    weighted = calc.scores(lon_a, lon_b, method="weighted")
    top = calc.top_k(lon_a, lon_b, k=3)
    kept = {
        "synastry": snapshot(synastry),
        "natal": snapshot(natal),
        "paired": snapshot(paired),
    }
    kept_scores, kept_weighted = scores.copy(), weighted.copy()
    kept_top = (top.indices.copy(), top.scores.copy())
    records = synastry.to_records()
    for _ in range(3):  # same shapes (the pool hands back the same buffers) and other shapes
        calc.synastry(rng.uniform(0, 360, (6, 10)), rng.uniform(0, 360, (5, 10)), speed_a, speed_b)
        calc.natal(rng.uniform(0, 360, (6, 10)), speed_a)
        calc.paired_synastry(rng.uniform(0, 360, (5, 10)), rng.uniform(0, 360, (5, 10)))
        calc.scores(rng.uniform(0, 360, (6, 10)), rng.uniform(0, 360, (5, 10)))
        calc.scores(rng.uniform(0, 360, (9, 10)), rng.uniform(0, 360, (2, 10)), method="weighted")
        calc.top_k(rng.uniform(0, 360, (6, 10)), rng.uniform(0, 360, (5, 10)), k=3)
        calc.synastry(rng.uniform(0, 360, (2, 10)), rng.uniform(0, 360, (40, 10)))
    for name, hits in (("synastry", synastry), ("natal", natal), ("paired", paired)):
        for column, values in snapshot(hits).items():
            np.testing.assert_array_equal(values, kept[name][column], err_msg=f"{name}.{column}")
    np.testing.assert_array_equal(scores, kept_scores)
    np.testing.assert_array_equal(weighted, kept_weighted)
    np.testing.assert_array_equal(top.indices, kept_top[0])
    np.testing.assert_array_equal(top.scores, kept_top[1])
    assert synastry.to_records() == records
    assert calc.pool.borrowed_count == 0


def test_result_columns_do_not_share_memory_with_the_pool() -> None:
    rng = np.random.default_rng(2)
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", chunk_size=2)
    hits = calc.synastry(rng.uniform(0, 360, (4, 10)), rng.uniform(0, 360, (4, 10)))
    free = [buffer for buffers in calc.pool._free.values() for buffer in buffers]
    assert free, "the pool kept no buffers"
    for column in hits.to_arrays().values():
        assert not any(np.shares_memory(column, buffer) for buffer in free)


# -- monitor ---------------------------------------------------------------------------------------------------------


def test_timer_records_counts() -> None:
    monitor = VectorizedPerformanceMonitor()
    for _ in range(3):
        with monitor.timer("step"):
            pass
    with pytest.raises(KeyError), monitor.timer("failing"):
        raise KeyError("x")
    report = monitor.report()
    assert report["timings"]["step"]["count"] == 3
    assert report["timings"]["failing"]["count"] == 1
    assert report["timings"]["step"]["total_s"] >= 0.0
    monitor.count("things", 2)
    monitor.count("things")
    assert monitor.report()["counters"]["things"] == 3


def test_engine_calls_are_timed_and_counted() -> None:
    rng = np.random.default_rng(4)
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", chunk_size=2)
    hits = calc.synastry(rng.uniform(0, 360, (5, 10)), rng.uniform(0, 360, (3, 10)))
    calc.natal(rng.uniform(0, 360, (5, 10)))
    report = calc.monitor.report()
    assert report["timings"]["synastry"]["count"] == 1
    assert report["timings"]["natal"]["count"] == 1
    assert report["counters"]["chunks"] == 3 + 3  # 5 rows in chunks of 2, twice
    assert report["counters"]["hits"] >= len(hits)


def test_get_memory_stats() -> None:
    monitor = VectorizedPerformanceMonitor()
    stats = monitor.get_memory_stats()
    for key in ("memory_used_mb", "peak_memory_mb", "rss_mb", "peak_rss_mb"):
        assert isinstance(stats[key], float), key
    assert stats["peak_rss_mb"] >= stats["rss_mb"] > 0
    block = np.ones(16 * 2**20 // 8)  # 16 MiB, touched
    monitor.sample()
    assert monitor.get_memory_stats()["peak_memory_mb"] >= stats["peak_memory_mb"]
    del block


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_leak_on_repeated_engine_calls(backend: str) -> None:
    rng = np.random.default_rng(8)
    lon_a, lon_b = rng.uniform(0, 360, (20, 10)), rng.uniform(0, 360, (15, 10))
    speed = rng.uniform(-1, 14, (20, 10))
    calc = MemoryOptimizedVectorizedCalculator(backend=backend, chunk_size=4)

    def operation() -> None:
        calc.synastry(lon_a, lon_b, speed_a=speed)
        calc.natal(lon_a, speed)
        calc.scores(lon_a, lon_b)
        calc.scores(lon_a, lon_b, method="weighted")
        calc.top_k(lon_a, lon_b, k=4)

    report = VectorizedPerformanceMonitor.check_leaks(operation, runs=5, warmup=2)
    assert report.runs == 5
    assert not report.leaks(256 * 1024), f"grew {report.growth_bytes} bytes: {report.top}"
    assert report.growth_bytes < 256 * 1024


# -- memory_optimized_processing -------------------------------------------------------------------------------------


def test_memory_optimized_processing_yields_calculator_and_monitor() -> None:
    rng = np.random.default_rng(6)
    with memory_optimized_processing(chunk_size=3, backend="numpy") as (calculator, monitor):
        assert isinstance(calculator, MemoryOptimizedVectorizedCalculator)
        assert isinstance(monitor, VectorizedPerformanceMonitor)
        assert monitor is calculator.monitor
        assert calculator.chunk_size == 3
        calculator.synastry(rng.uniform(0, 360, (7, 10)), rng.uniform(0, 360, (4, 10)))
        assert calculator.pool.free_bytes > 0
        assert "memory_used_mb" in monitor.get_memory_stats()
    assert calculator.pool.free_bytes == 0
    assert calculator.pool.borrowed_count == 0


def test_memory_optimized_processing_default_chunk_size() -> None:
    with memory_optimized_processing() as (calculator, _monitor):
        assert calculator.chunk_size == 100


def test_memory_optimized_processing_clears_the_pool_when_the_body_raises() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(RuntimeError, match="inside"), memory_optimized_processing(backend="numpy") as (calculator, _):
        calculator.scores(rng.uniform(0, 360, (7, 10)), rng.uniform(0, 360, (4, 10)))
        assert calculator.pool.free_bytes > 0
        raise RuntimeError("inside")
    assert calculator.pool.free_bytes == 0
    assert calculator.pool.borrowed_count == 0


# -- progress --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("options", [{}, {"chunk_size": 1}, {"chunk_size": 4}, {"working_memory_mb": 0.01}])
def test_progress_is_monotonic_and_completes(backend: str, options: dict[str, Any]) -> None:
    rng = np.random.default_rng(12)
    n, m = 9, 13
    lon_a, lon_b = rng.uniform(0, 360, (n, 10)), rng.uniform(0, 360, (m, 10))
    calls: list[tuple[int, int]] = []
    calc = MemoryOptimizedVectorizedCalculator(
        backend=backend, progress=lambda done, total: calls.append((done, total)), **options
    )
    operations: dict[str, tuple[Callable[[], object], int]] = {
        "synastry": (lambda: calc.synastry(lon_a, lon_b), n * m),
        "natal": (lambda: calc.natal(lon_a), n),
        "paired": (lambda: calc.paired_synastry(lon_a, lon_a), n),
        "scores": (lambda: calc.scores(lon_a, lon_b), n * m),
        "weighted": (lambda: calc.scores(lon_a, lon_b, method="weighted"), n * m),
        "top_k": (lambda: calc.top_k(lon_a, lon_b, k=3), n * m),
    }
    for name, (run, total) in operations.items():
        calls.clear()
        run()
        assert calls, name
        done = [d for d, _ in calls]
        assert all(t == total for _, t in calls), f"{name}: totals {calls}"
        assert all(x < y for x, y in itertools.pairwise(done)), f"{name}: not increasing {done}"
        assert done[-1] == total, f"{name}: ended at {done[-1]} of {total}"
        assert done[0] > 0
