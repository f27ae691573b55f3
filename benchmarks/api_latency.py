"""API latency from a real HTTP server (gunicorn) on loopback, against a trivial endpoint as the baseline.

    python benchmarks/api_latency.py [--requests 500] [--workers 2] [--clients 1] [--redis]

It migrates a throw-away SQLite database (or the local PostgreSQL with ASPECTS_DB=postgres), creates two charts
from birth data, starts gunicorn on 127.0.0.1 and times keep-alive requests from ``--clients`` threads:

- baseline: GET /configuration/ (framework and serialisation only)
- synastry, stored charts, cached: GET /synastry/?chart_a=&chart_b= (after the first, a cache hit)
- synastry, inline, cached: POST /synastry/inline/ with the same positions every time
- synastry, inline, uncached: POST /synastry/inline/ with new positions every time (the engine runs)

``--redis`` puts results in the local Redis (database 1) as the shared level, besides each worker's own LRU.
Figures: p50 / p99 latency and requests per second, and each p50 as a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]


def prepare(env: dict[str, str]) -> tuple[int, int]:
    """Migrate and create two charts through the services; returns their ids."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = (
        "import django, datetime as d; django.setup();"
        "from aspects_app import services as s;"
        "cs = s.create_charts(None, [s.ChartInput(name=n, is_public=True, birth_datetime=t, latitude=la, longitude=lo)"
        " for n, t, la, lo in [('a', d.datetime(1979, 7, 16, 7, 37, tzinfo=d.UTC), 52.52, 13.405),"
        " ('b', d.datetime(1990, 1, 1, 11, 0, tzinfo=d.UTC), 41.9, 12.5)]]);"
        "print(cs[0].pk, cs[1].pk)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    first, second = out.split()
    return int(first), int(second)


Body = Callable[[int], dict[str, object]] | None


def client(port: int, method: str, path: str, body: Body, count: int, first: int) -> tuple[list[float], float]:
    """Latencies in seconds of ``count`` requests over one keep-alive connection after 10 warm-ups (which also
    let each gunicorn worker finish its lazy imports), and the timed requests' wall time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    latencies = []
    timed_from = 0.0
    for n in range(count + 10):
        if n == 10:
            timed_from = time.perf_counter()
        payload = None if body is None else json.dumps(body(first + n))
        start = time.perf_counter()
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {response.read()[:200]!r}")
        if n >= 10:
            latencies.append(elapsed)
    wall = time.perf_counter() - timed_from
    connection.close()
    return latencies, wall


def measure(port: int, method: str, path: str, body: Body, count: int, clients: int) -> tuple[list[float], float]:
    """All clients' latencies and the longest client's timed wall time (for requests per second)."""
    with ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda c: client(port, method, path, body, count, c * (count + 10)), range(clients)))
    return [latency for latencies, _ in runs for latency in latencies], max(wall for _, wall in runs)


def inline_body(seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    return {
        "a": {"longitudes": [rng.uniform(0, 359.9) for _ in range(10)]},
        "b": {"longitudes": [rng.uniform(0, 359.9) for _ in range(10)]},
    }


def summary(name: str, run: tuple[list[float], float], baseline_p50: float | None) -> float:
    ordered = sorted(run[0])
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    ratio = "" if baseline_p50 is None else f"  ({p50 / baseline_p50:.2f}x the baseline's p50)"
    print(f"{name:32s} p50 {p50 * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms   {len(ordered) / run[1]:7.0f} req/s{ratio}")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--clients", type=int, default=1, help="concurrent client threads (default 1)")
    parser.add_argument("--redis", action="store_true", help="use the local Redis (db 1) as the shared cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "ASPECTS_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "benchmark-only-" + "k" * 50,  # DEBUG off: the server refuses to start without one
            "ASPECTS_THROTTLE_ANON": "off",
            "ASPECTS_THROTTLE_USER": "off",
        }
        if args.redis:
            env["ASPECTS_REDIS_URL"] = "redis://127.0.0.1:6379/1"
        chart_a, chart_b = prepare(env)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "project.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_listening(port)
            count, clients = args.requests, args.clients
            print(
                f"gunicorn, {args.workers} workers, {clients} client(s) x {count} keep-alive requests"
                f"{', Redis shared cache' if args.redis else ''}"
            )
            base = summary(
                "baseline GET /configuration/",
                measure(port, "GET", "/api/aspects/configuration/", None, count, clients),
                None,
            )
            stored = f"/api/aspects/synastry/?chart_a={chart_a}&chart_b={chart_b}"
            summary("synastry, stored, cached", measure(port, "GET", stored, None, count, clients), base)
            inline = "/api/aspects/synastry/inline/"
            summary(
                "synastry, inline, cached",
                measure(port, "POST", inline, lambda n: inline_body(0), count, clients),
                base,
            )
            summary(
                "synastry, inline, uncached",
                measure(port, "POST", inline, lambda n: inline_body(n + 1), count, clients),
                base,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
