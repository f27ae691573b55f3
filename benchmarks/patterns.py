"""Aspect patterns for a population: charts per second of ``calc.patterns`` (natal aspects included) against a
per-chart brute force (every role assignment of every point triple and quadruple, every subset for stellia, in
Python) timed on a few charts in the same process, reported as a ratio.
Run: ``.venv/bin/python benchmarks/patterns.py [--charts 100000] [--baseline-charts 20]``."""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import numpy as np

from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator

SPAN = 10.0  # stellium arc in degrees


def brute_force_chart(table: dict[tuple[int, int], str], lon: list[float]) -> int:
    """The peers' way: try every ordered triple and quadruple of points, then every subset for stellia."""
    count = len(lon)

    def aspect(p: int, q: int) -> str | None:
        return table.get((p, q))

    found = brute_force_triples(aspect, count)
    for w, x, y, z in itertools.permutations(range(count), 4):
        sides = [aspect(w, x), aspect(x, y), aspect(y, z), aspect(z, w)]
        if aspect(w, y) == aspect(x, z) == "opposition":
            if sides == ["square"] * 4:
                found.add(("grand-cross", frozenset((w, x, y, z))))
            if sides in (["sextile", "trine"] * 2, ["trine", "sextile"] * 2):
                found.add(("mystic-rectangle", frozenset((w, x, y, z))))
        trine = aspect(w, x) == aspect(w, y) == aspect(x, y) == "trine"
        if trine and aspect(w, z) == "opposition" and aspect(z, x) == aspect(z, y) == "sextile":
            found.add(("kite", frozenset((w, x, y, z))))
    return len(found) + brute_force_stellia(lon)


def brute_force_triples(aspect: Callable[[int, int], str | None], count: int) -> set[tuple[str, object]]:
    found: set[tuple[str, object]] = set()
    for a, b, c in itertools.permutations(range(count), 3):
        if aspect(a, b) == aspect(b, c) == aspect(a, c) == "trine":
            found.add(("grand-trine", frozenset((a, b, c))))
        if aspect(a, b) == "opposition" and aspect(a, c) == aspect(b, c) == "square":
            found.add(("t-square", frozenset((a, b, c))))
        if aspect(a, b) == "sextile" and aspect(a, c) == aspect(b, c) == "quincunx":
            found.add(("yod", frozenset((a, b, c))))
    return found


def brute_force_stellia(lon: list[float]) -> int:
    count = len(lon)
    groups = [
        frozenset(g)
        for size in range(3, count + 1)
        for g in itertools.combinations(range(count), size)
        if any(all((lon[p] - lon[s]) % 360 <= SPAN for p in g) for s in g)
    ]
    return sum(1 for g in groups if not any(g < other for other in groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charts", type=int, default=100_000, help="natal charts (default 100000)")
    parser.add_argument("--baseline-charts", type=int, default=20, help="charts for the brute force (default 20)")
    parser.add_argument("--points", type=int, default=10, help="points per chart (default 10: Sun..Pluto)")
    args = parser.parse_args()
    lon = np.random.default_rng(1).uniform(0, 360, (args.charts, args.points))
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.preset("all"), backend="numpy")

    started = time.perf_counter()
    found = calc.patterns(lon, stellium_span=SPAN)
    engine_s = time.perf_counter() - started
    engine_rate = args.charts / engine_s
    print(f"engine: {len(found):,} patterns in {args.charts:,} charts, {engine_s:.2f} s ({engine_rate:,.0f} charts/s)")
    print(f"  {found.counts_by_pattern()}")
    started = time.perf_counter()
    calc.natal(lon)
    print(f"  of which natal aspects: about {time.perf_counter() - started:.2f} s")

    few = lon[: args.baseline_charts]
    started = time.perf_counter()
    hits = calc.natal(few)  # the brute force gets the same aspects; its time includes them, like the engine's
    baseline_found = 0
    for row in range(few.shape[0]):
        table: dict[tuple[int, int], str] = {}
        for r in hits.select(hits.i == row).to_records():
            table[(r["p1"], r["p2"])] = table[(r["p2"], r["p1"])] = r["aspect"]
        baseline_found += brute_force_chart(table, few[row].tolist())
    baseline_s = time.perf_counter() - started
    baseline_rate = few.shape[0] / baseline_s
    engine_few = len(calc.patterns(few, stellium_span=SPAN))
    assert engine_few == baseline_found, (engine_few, baseline_found)  # the same answer, or the ratio is moot
    print(f"brute force: {baseline_found:,} patterns in {few.shape[0]} charts, {baseline_s:.2f} s "
          f"({baseline_rate:,.1f} charts/s)")  # fmt: skip
    print(f"ratio: {engine_rate / baseline_rate:,.0f}x charts/s")


if __name__ == "__main__":
    main()
