"""Transits through the Django layer: the API's latency for one chart-year, and ``compute_aspects --mode transits``
rows per second into the database, each next to a baseline run in the same process.

    python benchmarks/transits_django.py [--requests 200] [--charts 1000]    # SQLite in a temporary folder
    ASPECTS_DB=postgres ASPECTS_DB_NAME=mine python benchmarks/transits_django.py --part command   # PostgreSQL

API (gunicorn on loopback, one worker, keep-alive, throttles off; ``api_latency.py``'s client):

- baseline: GET /configuration/ (framework and serialisation only)
- one chart-year, uncached: GET /charts/{id}/transits/?start=…&end=… (+365 days), a new start minute every
  request, so the result cache misses and the engine runs (the sky window is warm after the warm-up requests)
- one chart-year, cached: the same query every time

Command: ``--charts`` demo charts (13 points) × 2027, TRANSIT_ORBS, into the database, against the engine alone
(``calc.transits`` on the same population and sky) as the baseline: the ratio is what building rows and
inserting them costs. The command's rows are deleted again afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_latency import free_port, measure, prepare, summary, wait_for  # noqa: E402  (a sibling script)

YEAR_START = datetime(2027, 1, 1, tzinfo=UTC)


def api(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "ASPECTS_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "benchmark-only-" + "k" * 50,
            "ASPECTS_THROTTLE_ANON": "off",
            "ASPECTS_THROTTLE_USER": "off",
        }
        env.pop("ASPECTS_DB", None)  # the API part runs on its own SQLite file
        chart, _ = prepare(env)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            wait_for(port)
            print(f"gunicorn, 1 worker, 1 client x {requests} keep-alive requests, SQLite")
            base = summary(
                "baseline GET /configuration/",
                measure(port, "GET", "/api/aspects/configuration/", None, requests, 1),
                None,
            )
            # measure() repeats one path; a new start minute per request needs a path of its own each time.
            uncached = _walk(port, [_year_path(chart, YEAR_START + timedelta(minutes=n)) for n in range(requests + 10)])
            summary("one chart-year, uncached", uncached, base)
            cached = _year_path(chart, YEAR_START)
            summary("one chart-year, cached", measure(port, "GET", cached, None, requests, 1), base)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _year_path(chart: int, start: datetime) -> str:
    end = start + timedelta(days=365)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return f"/api/aspects/charts/{chart}/transits/?start={start:{stamp}}&end={end:{stamp}}"


def _walk(port: int, paths: list[str]) -> tuple[list[float], float]:
    """Latencies of GETs of ``paths`` over one keep-alive connection, the first 10 untimed (warm-up)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    timed_from = 0.0
    for n, path in enumerate(paths):
        if n == 10:
            timed_from = time.perf_counter()
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
        if n >= 10:
            latencies.append(elapsed)
    wall = time.perf_counter() - timed_from
    connection.close()
    return latencies, wall


def command(charts: int) -> None:
    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("ASPECTS_SQLITE_PATH", str(Path(tmp.name) / "bench.sqlite3"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from aspects_app import batch, demo_data
    from aspects_app.engine import TRANSIT_ORBS, AspectConfig, MemoryOptimizedVectorizedCalculator
    from aspects_app.ephemeris import transit_track
    from aspects_app.models import BatchRun, Chart, TransitEvent

    call_command("migrate", verbosity=0)
    demo_data.create_demo_charts(charts, 1)
    ids = list(Chart.objects.order_by("pk").values_list("pk", flat=True))[:charts]
    population = batch.load_population(ids, "group_a")
    end = YEAR_START.replace(year=2028)
    start = time.perf_counter()
    track = transit_track(YEAR_START, end)
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(TRANSIT_ORBS), backend="numpy")
    events = len(calc.transits(population.longitudes, track, points=population.points))
    engine_seconds = time.perf_counter() - start
    engine_rate = events / engine_seconds
    ids_option = ",".join(map(str, ids))
    start = time.perf_counter()
    call_command(
        "compute_aspects", mode=["transits"], start="2027-01-01", end="2028-01-01", ids=ids_option,
        backend="numpy", no_progress=True, stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    run = BatchRun.objects.latest("pk")
    rows = TransitEvent.objects.filter(run=run).count()
    print(f"{connection.vendor}, {len(ids):,} charts x 2027 (13 points, TRANSIT_ORBS)")
    print(f"engine alone (track + search): {events:,} events in {engine_seconds:.2f} s ({engine_rate:,.0f}/s)")
    print(
        f"compute_aspects --mode transits, database: {rows:,} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s;"
        f" {rows / seconds / engine_rate:.3f}x the engine's rate)"
    )
    TransitEvent.objects.filter(run=run).delete()
    tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["api", "command", "both"], default="both")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per API case (default 200)")
    parser.add_argument("--charts", type=int, default=1000, help="charts for the command (default 1000)")
    args = parser.parse_args()
    if args.part in ("api", "both"):
        api(args.requests)
    if args.part in ("command", "both"):
        command(args.charts)


if __name__ == "__main__":
    main()
