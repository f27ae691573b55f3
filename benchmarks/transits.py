"""Transits for a population: events per second of ``calc.transits`` over a year, against the peers' method (one
chart at a time: sample the sky hourly, refine each crossing by bisection) timed on a few charts in the same
process. ``--against REF`` also times the engine of git commit REF (its ``aspects_app/engine`` loaded beside this
one) on the same sky and charts, alternating runs, and checks that it finds the same events. Run:
``.venv/bin/python benchmarks/transits.py [--charts 10000] [--baseline-charts 2] [--against COMMIT]``."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

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


def engine_at(commit: str, into: Path) -> ModuleType:
    """The ``aspects_app.engine`` package of ``commit`` as the module ``engine_<commit>`` (its imports are relative)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "aspects_app/engine"],
        check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent,
    ).stdout  # fmt: skip
    path = into / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    root = into / "aspects_app" / "engine"
    name = f"engine_{commit.replace('/', '_').replace('~', '_')}"
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(run: Any) -> tuple[Any, tuple[float, float]]:
    """``run()`` and its (wall, CPU) seconds: the CPU time is the steadier on a machine shared with others."""
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, (time.perf_counter() - started, time.process_time() - cpu)


def against(commit: str, natal: np.ndarray, track: Any, calc: Any, repeats: int = 3) -> None:
    """This engine and ``commit``'s, alternating ``repeats`` times each on the same input; best wall and CPU times."""
    with tempfile.TemporaryDirectory() as folder:
        old = engine_at(commit, Path(folder))
        old_track = old.TransitTrack.from_samples(
            track.times, track.longitudes, track.speeds, track.bodies, track.start, track.end,
            stations=(track.station_times, track.station_bodies, track.station_longitudes),
        )  # fmt: skip
        old_calc = old.MemoryOptimizedVectorizedCalculator(config=old.AspectConfig.from_orbs(ORBS), backend="numpy")
        old_s: list[tuple[float, float]] = []
        new_s: list[tuple[float, float]] = []
        old_events = events = None
        for repeat in range(repeats):  # alternating which goes first, as the first run in a process pays more
            for which in (0, 1) if repeat % 2 else (1, 0):
                # The previous result goes first, so that both reuse memory already mapped (a first touch costs).
                if which:
                    old_events = None
                    old_events, seconds = timed(lambda: old_calc.transits(natal, old_track))
                    old_s.append(seconds)
                else:
                    events = None
                    events, seconds = timed(lambda: calc.transits(natal, track))
                    new_s.append(seconds)
    assert events is not None and old_events is not None
    assert len(events) == len(old_events), (len(events), len(old_events))
    for column in ("i", "point", "body", "aspect", "retrograde"):
        assert (getattr(events, column) == getattr(old_events, column)).all(), column
    speed = np.empty(len(events))
    for first in range(0, len(events), 1 << 20):  # interpolate gives every body: bounded slices
        rows = slice(first, first + (1 << 20))
        at = track.interpolate(events.exact[rows])[1]
        speed[rows] = np.abs(at[np.arange(at.shape[0]), events.body[rows]])
    worst = 0.0
    for column in ("exact", "starts", "ends"):
        ours, theirs = getattr(events, column), getattr(old_events, column)
        assert (np.isnat(ours) == np.isnat(theirs)).all(), column
        both = ~np.isnat(ours)
        days = np.abs((ours[both] - theirs[both]).astype(np.int64)) / 86_400e6
        worst = max(worst, float((days * speed[both]).max(initial=0.0)) * 3600)
    for n, clock in enumerate(("wall", "CPU")):
        theirs_s, ours_s = min(t[n] for t in old_s), min(t[n] for t in new_s)
        rates = f"{commit}: {len(events) / theirs_s:,.0f}/s, this tree: {len(events) / ours_s:,.0f}/s"
        print(f"{rates} ({clock} time, best of {repeats}): {theirs_s / ours_s:.2f}x")
    print(f'same events, moments within {worst:.2g}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charts", type=int, default=10_000, help="charts in the population (default 10000)")
    parser.add_argument(
        "--baseline-charts", type=int, default=1, help="charts for the per-chart loop (default 1; 0 skips it)"
    )
    parser.add_argument("--against", metavar="COMMIT", help="also time this git commit's engine, same input")
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
    if args.against:
        against(args.against, natal, track, calc)
    if args.baseline_charts <= 0:
        return
    angles = sorted({s * a for a in (0, 30, 45, 60, 72, 90, 120, 135, 144, 150, 180) for s in (1, -1)})
    started = time.perf_counter()
    baseline_events = per_chart_hourly(natal[: args.baseline_charts].ravel(), track, angles)
    baseline_s = time.perf_counter() - started
    baseline_rate = baseline_events / baseline_s
    print(f"per-chart hourly loop: {baseline_events:,} events in {baseline_s:.2f} s ({baseline_rate:,.0f}/s)")
    print(f"ratio engine / per-chart loop: {engine_rate / baseline_rate:,.0f}x")


if __name__ == "__main__":
    main()
