"""Ephemeris throughput: charts per second for all 13 points with speeds.

    python benchmarks/ephemeris.py              # N = 10,000 vectorised, and a 200-chart per-chart loop
    python benchmarks/ephemeris.py --quick      # N = 1,000, for a smoke run

Baseline: the same function called once per chart (a Python loop over 200 charts), the way a naive caller
would use it; the ratio shows what vectorising buys. Times are the median of a few runs after a warm-up call,
so the one-off cost of opening DE421 (printed separately) is not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import median_seconds

from aspects_app.engine.aspects import STANDARD_POINTS
from aspects_app.ephemeris import compute_positions

TARGET_CHARTS_PER_S = 3000.0


def random_charts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n instants spread over 1900–2050 (to the second) and places anywhere outside the polar caps."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(-2_208_988_800, 2_524_608_000, n)
    return seconds.astype("datetime64[s]"), rng.uniform(-66.0, 66.0, n), rng.uniform(-180.0, 180.0, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1,000 and a 50-chart loop")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, n_loop = (1_000, 50) if args.quick else (10_000, 200)

    when, lat, lon = random_charts(n)
    start = time.perf_counter()
    compute_positions(when[:1], lat[:1], lon[:1])
    print(f"first call (opens DE421, builds the timescale; once per process): {time.perf_counter() - start:.2f} s")

    vectorised = median_seconds(lambda: compute_positions(when, lat, lon), args.repeat)
    rate = n / vectorised
    print(
        f"vectorised, N = {n:,}, {len(STANDARD_POINTS)} points with speeds: {vectorised:.2f} s = {rate:,.0f} charts/s"
    )

    def per_chart() -> None:
        for i in range(n_loop):
            compute_positions(when[i : i + 1], lat[i], lon[i])

    loop = median_seconds(per_chart, max(1, args.repeat - 1))
    loop_rate = n_loop / loop
    print(f"per-chart loop, {n_loop} charts: {loop:.2f} s = {loop_rate:,.0f} charts/s")
    print(f"vectorised / per-chart: {rate / loop_rate:.0f}x")
    verdict = "meets" if rate >= TARGET_CHARTS_PER_S else "MISSES"
    print(f"{verdict} the target of {TARGET_CHARTS_PER_S:,.0f} charts/s")
    return 0 if rate >= TARGET_CHARTS_PER_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
