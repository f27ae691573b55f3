"""API latency from a real HTTP server (gunicorn) on loopback, against a trivial endpoint as the baseline.

    python benchmarks/api_latency.py [--requests 500] [--workers 2]

It migrates a throw-away SQLite database (or the local PostgreSQL with ASPECTS_DB=postgres), creates two charts
from birth data, starts gunicorn on 127.0.0.1 and times sequential keep-alive requests:

- baseline: GET /configuration/ (framework and serialisation only)
- synastry, stored charts: GET /synastry/?chart_a=&chart_b= (served from the persisted result after the first)
- synastry, inline positions: POST /synastry/inline/ (computed by the engine on every request)

Figures: p50 / p99 latency and requests per second, and each p50 as a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not listen on port {port} within {timeout} s")


def measure(port: int, method: str, path: str, body: dict[str, object] | None, count: int) -> list[float]:
    """Latencies in seconds of ``count`` sequential requests over one keep-alive connection (after 10 warm-ups)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    payload = None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    latencies = []
    for n in range(count + 10):
        start = time.perf_counter()
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}")
        if n >= 10:
            latencies.append(elapsed)
    connection.close()
    return latencies


def summary(name: str, latencies: list[float], baseline_p50: float | None) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    ratio = "" if baseline_p50 is None else f"  ({p50 / baseline_p50:.2f}x the baseline's p50)"
    print(
        f"{name:34s} p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms   "
        f"{len(ordered) / sum(ordered):8.0f} req/s{ratio}"
    )
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "ASPECTS_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "DJANGO_DEBUG": "0",
            "ASPECTS_THROTTLE_ANON": "off",
            "ASPECTS_THROTTLE_USER": "off",
        }
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
            wait_for(port)
            inline = {
                "a": {"longitudes": [113.19, 21.4, 134.35, 102.16, 74.22, 133.95, 160.71, 226.96, 258.23, 196.53]},
                "b": {"longitudes": [280.5, 10.2, 290.1, 310.7, 200.3, 95.5, 290.0, 276.4, 282.5, 226.3]},
            }
            print(f"gunicorn, {args.workers} workers, {args.requests} sequential keep-alive requests per endpoint")
            base = summary(
                "baseline GET /configuration/",
                measure(port, "GET", "/api/aspects/configuration/", None, args.requests),
                None,
            )
            stored = f"/api/aspects/synastry/?chart_a={chart_a}&chart_b={chart_b}"
            summary("synastry, stored charts (persisted)", measure(port, "GET", stored, None, args.requests), base)
            summary(
                "synastry, inline (computed)",
                measure(port, "POST", "/api/aspects/synastry/inline/", inline, args.requests),
                base,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
