"""A self-contained engine run: natal aspects and top-10 matches for a population of random charts.

    python -m aspects_app.engine.demo [--charts 2000] [--backend auto] [--working-memory-mb 256]

Longitudes are drawn uniformly (with speeds of a realistic size), so the figures show the engine's throughput,
not astrology; the Django app computes real positions from birth data.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .aspects import STANDARD_POINTS
from .calculator import memory_optimized_processing

# Typical daily motion in degrees (Sun … Pluto, mean node, Ascendant, MC), with a spread, for movement figures.
_MEAN_SPEEDS = np.array([0.99, 13.2, 1.2, 1.1, 0.5, 0.08, 0.03, 0.01, 0.006, 0.004, -0.053, 361.0, 361.0])


def random_charts(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(0.0, 360.0, (count, len(STANDARD_POINTS)))
    speed = _MEAN_SPEEDS * rng.uniform(-0.5, 1.5, (count, len(STANDARD_POINTS)))
    return lon, speed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=2000, help="population size (default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="auto, numpy or cupy (default: %(default)s)")
    parser.add_argument("--working-memory-mb", type=float, default=256, help="chunk budget (default: %(default)s)")
    parser.add_argument("--k", type=int, default=10, help="partners per chart (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.charts < 2:
        parser.error("--charts must be at least 2")

    lon, speed = random_charts(args.charts)
    with memory_optimized_processing(
        chunk_size=None, backend=args.backend, working_memory_mb=args.working_memory_mb
    ) as (calculator, monitor):
        start = time.perf_counter()
        natal = calculator.natal(lon, speed)
        natal_s = time.perf_counter() - start
        start = time.perf_counter()
        matches = calculator.top_k(lon, k=args.k, exclude_self=True)
        match_s = time.perf_counter() - start
        memory = monitor.get_memory_stats()

    n = args.charts
    print(f"backend: {calculator.backend.name} ({calculator.backend.fallback_reason or 'requested'})")
    print(f"natal aspects: {len(natal):,} over {n:,} charts in {natal_s:.3f} s  {natal.counts_by_aspect()}")
    print(
        f"top-{args.k} matching: {n * n:,} chart pairs in {match_s:.3f} s"
        f" ({n * n / match_s / 1e6:.1f} M pairs/s); chart 0's best: {matches.indices[0, :3].tolist()}"
        f" with scores {matches.scores[0, :3].tolist()}"
    )
    print(f"peak memory growth: {memory['peak_memory_mb']:.1f} MiB (budget {args.working_memory_mb:g} MiB per chunk)")


if __name__ == "__main__":
    main()
