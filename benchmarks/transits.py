"""Transits for a population: events per second of ``calc.transits`` over a year, against the peers' method (one
chart at a time: sample the sky hourly, refine each crossing by bisection) timed on a few charts in the same
process. Run: ``.venv/bin/python benchmarks/transits.py [--charts 10000] [--baseline-charts 2]``."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np

from aspects_app.engine import ASPECT_NAMES, AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.ephemeris import transit_track

ORBS = {name: 1.0 for name in ASPECT_NAMES}  # all 11 aspects


def per_chart_hourly(natal: np.ndarray, track: object, angles: list[float]) -> int:
    """The peers' loop: for each target, hourly samples and 30 bisection steps per crossing."""
    t0 = track.times[0]  # type: ignore[attr-defined]
    hours = t0 + np.arange(0, 365 * 24) * np.timedelta64(3600, "s")
    lon = track.interpolate(hours)[0]  # type: ignore[attr-defined]
    events = 0
    for x in natal:
        for angle in angles:
            for q in range(lon.shape[1]):
                f = (lon[:, q] - (x + angle) + 180.0) % 360.0 - 180.0
                cross = np.flatnonzero((np.sign(f[:-1]) != np.sign(f[1:])) & (np.abs(f[:-1] - f[1:]) < 180))
                for k in cross:
                    lo, hi = hours[k], hours[k + 1]
                    for _ in range(30):
                        mid = lo + (hi - lo) / 2
                        fm = (track.interpolate(np.array([mid]))[0][0, q] - (x + angle) + 180) % 360 - 180  # type: ignore[attr-defined]
                        lo, hi = (mid, hi) if np.sign(fm) == np.sign(f[k]) else (lo, mid)
                    events += 1
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charts", type=int, default=10_000, help="charts in the population (default 10000)")
    parser.add_argument("--baseline-charts", type=int, default=1, help="charts for the per-chart loop (default 1)")
    args = parser.parse_args()
    started = time.perf_counter()
    track = transit_track(datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    print(f"track: {len(track)} samples, {time.perf_counter() - started:.2f} s")
    natal = np.random.default_rng(1).uniform(0, 360, (args.charts, 13))
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(ORBS), backend="numpy")
    started = time.perf_counter()
    events = calc.transits(natal, track)
    engine_s = time.perf_counter() - started
    engine_rate = len(events) / engine_s
    print(f"engine: {len(events):,} events for {args.charts:,} chart-years in {engine_s:.2f} s ({engine_rate:,.0f}/s)")
    angles = sorted({s * a for a in (0, 30, 45, 60, 72, 90, 120, 135, 144, 150, 180) for s in (1, -1)})
    started = time.perf_counter()
    baseline_events = per_chart_hourly(natal[: args.baseline_charts].ravel(), track, angles)
    baseline_s = time.perf_counter() - started
    baseline_rate = baseline_events / baseline_s
    print(f"per-chart hourly loop: {baseline_events:,} events in {baseline_s:.2f} s ({baseline_rate:,.0f}/s)")
    print(f"ratio engine / per-chart loop: {engine_rate / baseline_rate:,.0f}x")


if __name__ == "__main__":
    main()
