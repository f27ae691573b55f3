"""``compute_aspects`` end to end, against the engine alone as the baseline, in one process.

    python benchmarks/command.py [--charts 5000]          # SQLite in a temporary folder
    ASPECTS_DB=postgres python benchmarks/command.py      # the local PostgreSQL (database "test")

Figures: demo charts per second (ephemeris + inserts), top-10 chart pairs per second with database output,
rows written per second (natal results), each next to the engine's own rate for the same work, so the ratio is
what the database and bookkeeping cost.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=5000, help="demo population (default 5000)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("ASPECTS_SQLITE_PATH", str(Path(tmp.name) / "bench.sqlite3"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from aspects_app import batch, demo_data, ephemeris
    from aspects_app.engine import MemoryOptimizedVectorizedCalculator
    from aspects_app.models import AspectResult, BatchRun, Chart, Match

    call_command("migrate", verbosity=0)
    # A clean slate for the figures (the PostgreSQL database may hold earlier runs).
    for model in (Match, AspectResult, BatchRun, Chart):
        model.objects.all().delete()
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO(), "no_progress": True, "backend": "numpy"}
    n = args.charts
    print(f"{connection.vendor}, {n:,} charts")

    inputs = demo_data.demo_charts(n, seed=1)
    start = time.perf_counter()
    ephemeris.compute_positions(
        [c.birth_datetime for c in inputs], [c.latitude for c in inputs], [c.longitude for c in inputs]
    )
    positions_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    call_command("compute_aspects", demo=n, seed=1, **{k: v for k, v in quiet.items() if k != "backend"})
    demo_rate = n / (time.perf_counter() - start)
    print(
        f"--demo:           {demo_rate:10,.0f} charts/s   (ephemeris alone {positions_rate:,.0f} charts/s;"
        f" {demo_rate / positions_rate:.2f}x)"
    )

    population = batch.load_population(list(Chart.objects.order_by("pk").values_list("pk", flat=True)), "group_a")
    engine = MemoryOptimizedVectorizedCalculator(backend="numpy")
    start = time.perf_counter()
    engine.top_k(population.longitudes, k=10, exclude_self=True, points=population.points)
    engine_rate = n * n / (time.perf_counter() - start)
    start = time.perf_counter()
    call_command("compute_aspects", mode=["top-k"], k=10, **quiet)
    command_seconds = time.perf_counter() - start
    print(
        f"top-10, database: {n * n / command_seconds:10,.0f} chart pairs/s   (engine alone {engine_rate:,.0f}/s;"
        f" {n * n / command_seconds / engine_rate:.2f}x), {Match.objects.count() / command_seconds:,.0f} matches"
        f" written/s"
    )

    start = time.perf_counter()
    engine.natal(population.longitudes, population.speeds, points=population.points)
    natal_engine = n / (time.perf_counter() - start)
    start = time.perf_counter()
    call_command("compute_aspects", mode=["natal"], **quiet)
    seconds = time.perf_counter() - start
    rows = AspectResult.objects.count()
    print(
        f"natal, database:  {rows / seconds:10,.0f} rows written/s   (engine alone {natal_engine:,.0f} charts/s;"
        f" {rows / seconds / natal_engine:.3f}x)"
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
