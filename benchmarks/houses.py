"""House-cusp throughput: charts per second, per system, vectorised against a per-chart loop.

    python benchmarks/houses.py              # N = 100,000 vectorised, and a 200-chart per-chart loop
    python benchmarks/houses.py --quick      # N = 10,000 and a 50-chart loop, for a smoke run

Both sides call ``compute_houses`` (instants → ARMC and obliquity → cusps, validation included); the baseline calls
it once per chart, the way a naive caller would, so the ratio shows what vectorising the formulas (Placidus'
iteration included) buys. Charts are spread over 1900–2050 and over every latitude, polar ones too (where Placidus
and Koch fall back to Porphyry). Times are medians of a few runs after a warm-up call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import median_seconds

from aspects_app.ephemeris import compute_houses
from aspects_app.houses import HOUSE_SYSTEMS


def random_charts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n instants over 1900–2050 (to the second) and places anywhere on Earth."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(-2_208_988_800, 2_524_608_000, n)
    return seconds.astype("datetime64[s]"), rng.uniform(-90.0, 90.0, n), rng.uniform(-180.0, 180.0, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 10,000 and a 50-chart loop")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, n_loop = (10_000, 50) if args.quick else (100_000, 200)
    when, lat, lon = random_charts(n)
    start = time.perf_counter()
    compute_houses(when[:1], lat[:1], lon[:1])
    print(f"first call (opens DE421, builds the timescale; once per process): {time.perf_counter() - start:.2f} s")
    vectorised_title, loop_title = f"vectorised, N={n:,}", f"loop, {n_loop} charts"
    print(f"{'system':<14} {vectorised_title:>22} {loop_title:>18} {'ratio':>8}")
    for system in HOUSE_SYSTEMS:

        def all_at_once(system: str = system) -> None:
            compute_houses(when, lat, lon, system=system)

        def per_chart(system: str = system) -> None:
            for i in range(n_loop):
                compute_houses(when[i : i + 1], lat[i], lon[i], system=system)

        vectorised = median_seconds(all_at_once, args.repeat)
        loop = median_seconds(per_chart, max(1, args.repeat - 1))
        rate, loop_rate = n / vectorised, n_loop / loop
        print(f"{system:<14} {rate:>15,.0f} charts/s {loop_rate:>11,.0f} charts/s {rate / loop_rate:>7,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
