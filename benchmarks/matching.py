"""Exact top-k matching: the ``harmonic`` score (BLAS products) beside ``discepolo`` and ``weighted``, one run.

    python benchmarks/matching.py                         # harmonic top-10 over 100,000 x 100,000 charts
    python benchmarks/matching.py --rows 20000            # the first 20,000 charts against all 100,000
    python benchmarks/matching.py --subset-rows 50 --backend numpy

One population of ``--charts`` random charts (13 points) is matched against itself (``exclude_self``), top-``k``:

- harmonic, float64: the first ``--rows`` charts against all (features included in the time)
- harmonic, float32: the same rows; its largest score error against float64 on the subset rows is printed
- discepolo and weighted: the first ``--subset-rows`` charts against all (they are far slower)

Each is printed as chart pairs per second, and the harmonic rate as a ratio to each of the others (issue 15's
target: at least 100 M pairs/s for harmonic on a 2-core machine). The harmonic top-k of the subset rows is also
checked against a full score matrix sorted by brute force (score descending, then index).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aspects_app.engine import MemoryOptimizedVectorizedCalculator  # noqa: E402
from aspects_app.engine.harmonic import HarmonicConfig  # noqa: E402


def rate(calc: MemoryOptimizedVectorizedCalculator, rows: np.ndarray, population: np.ndarray, k: int, method: str,
         label: str) -> float:  # fmt: skip
    """Chart pairs per second of one top-k call, printed with its wall time."""
    start = time.perf_counter()
    calc.top_k(rows, population, k=k, method=method, exclude_self=True)
    seconds = time.perf_counter() - start
    pairs_per_s = float(rows.shape[0] * population.shape[0] / seconds)
    print(f"{label:<17} {rows.shape[0]:>7,} rows  {seconds:8.2f} s  {pairs_per_s / 1e6:10.1f} M pairs/s", flush=True)
    return pairs_per_s


def load_average() -> str:
    # The machine is shared: the figures mean little without how busy it was.
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=100_000, help="population size (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=None, help="harmonic rows matched (default: all charts)")
    parser.add_argument("--subset-rows", type=int, default=100, help="rows for the baselines (default: %(default)s)")
    parser.add_argument("-k", type=int, default=10, help="partners per chart (default: %(default)s)")
    parser.add_argument("--backend", default="numpy", help="engine backend (default: %(default)s)")
    parser.add_argument("--working-memory-mb", type=float, default=256, help="(default: %(default)s)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    population = rng.uniform(0.0, 360.0, (args.charts, 13))
    rows = population[: args.rows or args.charts]
    subset = population[: args.subset_rows]
    options = {"backend": args.backend, "working_memory_mb": args.working_memory_mb}
    double = MemoryOptimizedVectorizedCalculator(**options)  # type: ignore[arg-type]
    single = MemoryOptimizedVectorizedCalculator(harmonic=HarmonicConfig(dtype="float32"), **options)  # type: ignore[arg-type]
    print(f"population {args.charts:,} charts x 13 points, top-{args.k}, backend {double.backend.name}, "
          f"{os.cpu_count()} CPUs, {load_average()}", flush=True)  # fmt: skip

    figures = {
        "harmonic float64": rate(double, rows, population, args.k, "harmonic", "harmonic float64"),
        "harmonic float32": rate(single, rows, population, args.k, "harmonic", "harmonic float32"),
    }
    for method in ("discepolo", "weighted"):
        figures[method] = rate(double, subset, population, args.k, method, method)
    print(load_average())
    harmonic = figures["harmonic float64"]
    for name in ("harmonic float32", "discepolo", "weighted"):
        print(f"ratio harmonic float64 / {name}: {harmonic / figures[name]:.3g}")

    # Exactness on the subset: the top-k against a brute-force sort of the full scores.
    scores = double.scores(subset, population, method="harmonic")
    scores[np.arange(subset.shape[0]), np.arange(subset.shape[0])] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, : args.k]
    top = double.top_k(subset, population, k=args.k, method="harmonic", exclude_self=True)
    print(f"harmonic top-k equals brute force on {subset.shape[0]} rows: {bool((top.indices == expected).all())}")
    error = np.abs(single.scores(subset, population, method="harmonic") - double.scores(subset, population, "harmonic"))
    print(f"float32 score error against float64 (scale ±100): max {error.max():.3g}, mean {error.mean():.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
