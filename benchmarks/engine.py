"""Engine throughput and memory, each figure against baselines run in the same process.

    python benchmarks/engine.py            # the issue's sizes: 1000 x 1000 synastry, 4000 x 4000 top-10
    python benchmarks/engine.py --quick    # smaller sizes, for a smoke run

Baselines: the unchunked broadcast (the whole problem as one chunk) and a pure-Python per-pair loop (the test
suite's reference implementation, timed on a sample and extrapolated per pair). Memory: tracemalloc's peak of
NumPy allocations during a call, and RSS growth (psutil), against the estimator's prediction.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.aspects import STANDARD_POINTS
from tests.engine import brute_force

MIB = 2**20


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` runs after one warm-up run (which also fills the buffer pool)."""
    result = run()
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measured_peak(run: Callable[[], Any]) -> tuple[int, int, Any]:
    """(tracemalloc peak above the start, RSS growth, result) of one run."""
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    tracemalloc.start()
    tracemalloc.reset_peak()
    start_bytes = tracemalloc.get_traced_memory()[0]
    result = run()
    peak = tracemalloc.get_traced_memory()[1] - start_bytes
    tracemalloc.stop()
    return peak, process.memory_info().rss - rss_before, result


def result_bytes(result: Any) -> int:
    if hasattr(result, "to_arrays"):
        return sum(int(a.nbytes) for a in result.to_arrays().values())
    return int(result.scores.nbytes + result.indices.nbytes)


def synastry_section(rng: np.random.Generator, n: int, repeat: int) -> None:
    points = 10
    config = AspectConfig.preset("all")
    lon_a = rng.uniform(0, 360, (n, points))
    lon_b = rng.uniform(0, 360, (n, points))
    planet_pairs = n * n * points * points
    print(f"\n## Synastry hit extraction: {n} x {n} charts, {points} points, all 11 aspects")

    chunked = MemoryOptimizedVectorizedCalculator(config, backend="numpy", working_memory_mb=64)
    seconds, hits = timed(lambda: chunked.synastry(lon_a, lon_b), repeat)
    rate = planet_pairs / seconds
    print(f"chunked (64 MiB):      {seconds:7.3f} s  {rate / 1e6:8.1f} M planet pairs/s  ({len(hits):,} hits)")

    one_chunk = MemoryOptimizedVectorizedCalculator(config, backend="numpy", chunk_size=n)
    base_seconds, base_hits = timed(lambda: one_chunk.synastry(lon_a, lon_b), 1)
    assert np.array_equal(base_hits.orb, hits.orb), "the unchunked run must give the same hits"
    print(
        f"unchunked broadcast:   {base_seconds:7.3f} s  {planet_pairs / base_seconds / 1e6:8.1f} M planet pairs/s"
        f"  -> chunked is {base_seconds / seconds:.2f}x its speed"
    )

    sample = 12
    names = STANDARD_POINTS[:points]
    start = time.perf_counter()
    brute_force.synastry(lon_a[:sample], lon_b[:sample], config, names)
    python_rate = sample * sample * points * points / (time.perf_counter() - start)
    print(f"pure-Python loop:      {python_rate / 1e6:8.3f} M planet pairs/s  -> chunked is {rate / python_rate:,.0f}x")

    # The estimator against tracemalloc, with an empty pool so the chunk's buffers are allocated inside the run.
    fresh = MemoryOptimizedVectorizedCalculator(config, backend="numpy", working_memory_mb=64)
    estimate = fresh.estimate_memory_usage(n, n, points, operation="synastry")
    peak, rss_growth, measured_hits = measured_peak(lambda: fresh.synastry(lon_a, lon_b))
    temporaries = peak - result_bytes(measured_hits)
    print(
        f"memory: predicted chunk temporaries {estimate['chunked_mb']:.1f} MiB, measured {temporaries / MIB:.1f} MiB"
        f" (ratio {temporaries / estimate['chunked_bytes']:.2f}); result {result_bytes(measured_hits) / MIB:.0f} MiB;"
        f" unchunked would hold {estimate['unchunked_mb']:,.0f} MiB"
        f" ({estimate['memory_savings_percent']:.1f}% saved); RSS growth {rss_growth / MIB:.0f} MiB"
    )


def top_k_section(rng: np.random.Generator, n: int, repeat: int) -> None:
    points = 13
    lon = rng.uniform(0, 360, (n, points))
    pairs = n * n
    print(f"\n## Top-10 matching (discepolo): {n} x {n} charts")

    chunked = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=64)
    seconds, best = timed(lambda: chunked.top_k(lon, lon, k=10), repeat)
    rate = pairs / seconds
    print(f"chunked (64 MiB):      {seconds:7.3f} s  {rate / 1e6:8.2f} M chart pairs/s")

    one_chunk = MemoryOptimizedVectorizedCalculator(backend="numpy", chunk_size=n)
    base_seconds, base_best = timed(lambda: one_chunk.top_k(lon, lon, k=10), 1)
    assert np.array_equal(base_best.indices, best.indices), "the unchunked run must give the same matches"
    print(
        f"unchunked broadcast:   {base_seconds:7.3f} s  {pairs / base_seconds / 1e6:8.2f} M chart pairs/s"
        f"  -> chunked is {base_seconds / seconds:.2f}x its speed"
    )

    sample = 40
    start = time.perf_counter()
    brute_force.discepolo_scores(lon[:sample], lon[:sample], STANDARD_POINTS)
    python_rate = sample * sample / (time.perf_counter() - start)
    print(f"pure-Python loop:      {python_rate / 1e6:8.3f} M chart pairs/s  -> chunked is {rate / python_rate:,.0f}x")

    fresh = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=64)
    estimate = fresh.estimate_memory_usage(n, n, points, operation="top_k")
    seed_style = fresh.estimate_memory_usage(n, n, points, operation="synastry")
    peak, rss_growth, _ = measured_peak(lambda: fresh.top_k(lon, lon, k=10))
    _, base_rss_growth, _ = measured_peak(
        lambda: MemoryOptimizedVectorizedCalculator(backend="numpy", chunk_size=n).top_k(lon, lon, k=10)
    )
    print(
        f"memory (64 MiB budget): peak NumPy allocations {peak / MIB:.1f} MiB"
        f" (predicted {estimate['chunked_mb']:.1f} MiB, ratio {peak / estimate['chunked_bytes']:.2f}),"
        f" RSS growth {rss_growth / MIB:.0f} MiB; unchunked run's RSS growth {base_rss_growth / MIB:.0f} MiB;"
        f" a broadcast of all point pairs (the seed's way) would need {seed_style['unchunked_mb'] / 1024:,.1f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure (median; default 3)")
    args = parser.parse_args()
    rng = np.random.default_rng(20240601)
    print(f"numpy {np.__version__}, {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    synastry_section(rng, 200 if args.quick else 1000, args.repeat)
    top_k_section(rng, 500 if args.quick else 4000, args.repeat)


if __name__ == "__main__":
    main()
