"""A gunicorn worker's memory (RSS) over ``POST charts/{id}/scores/`` requests with distinct orbs, against the
same number of requests with one orbs configuration as the baseline (issue 17: 12 requests with slightly
different orbs took a worker from 453 MB to 3,037 MB, never released).

    python benchmarks/worker_memory.py                          # 100 requests per arm, 999 charts of 255 points
    python benchmarks/worker_memory.py --requests 30 --charts 300

It migrates a throw-away SQLite database, inserts ``--charts`` public charts of ``--points`` points, starts
gunicorn with one worker (so every request meets the same process) and, in that process:

- baseline: ``--requests`` weighted ``scores`` of one chart against all the others, with the same orbs
- distinct: ``--requests`` more, each with orbs of its own (conjunction 8°, 8.01°, 8.02°...)

It prints the worker's RSS after warm-up, after the baseline and after the distinct arm (with checkpoints), the
growth of each arm and the ratio between them, and the bound the shared calculators' buffers are held to
(twice WORKING_MEMORY_MB per process).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from support import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20

SEED_SCRIPT = """
import sys, django, numpy as np
django.setup()
from aspects_app.models import Chart
count, points = int(sys.argv[1]), int(sys.argv[2])
names = [f"p{n}" for n in range(points)]
rng = np.random.default_rng(0)
charts = []
for n in range(count):
    chart = Chart(name=f"c{n}", is_public=True)
    chart.set_positions(names, rng.uniform(0.0, 360.0, points))
    charts.append(chart)
print(" ".join(str(c.pk) for c in Chart.objects.bulk_create(charts)))
"""


def worker_rss_mb(master: subprocess.Popen[bytes]) -> float:
    (worker,) = psutil.Process(master.pid).children()
    return float(worker.memory_info().rss / MIB)


def orbs(n: int) -> dict[str, float]:
    return {"conjunction": 8 + n / 100, "opposition": 8, "trine": 7, "square": 7}


def post_scores(connection: http.client.HTTPConnection, chart: int, others: list[int], n: int) -> None:
    body = json.dumps({"charts": others, "method": "weighted", "orbs": orbs(n)})
    connection.request(
        "POST", f"/api/aspects/charts/{chart}/scores/", body=body, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"scores answered {response.status}: {payload[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="requests per arm (default 100)")
    parser.add_argument("--charts", type=int, default=999, help="charts scored per request, + 1 (default 999)")
    parser.add_argument("--points", type=int, default=255, help="points per chart (default 255)")
    parser.add_argument("--working-memory-mb", type=float, default=256, help="WORKING_MEMORY_MB (default 256)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The demo's settings with the benchmark's budget (the demo takes none from the environment).
        (Path(tmp) / "bench_settings.py").write_text(
            "from project.settings import *  # noqa: F403\n"
            f"ASPECTS = {{**ASPECTS, 'WORKING_MEMORY_MB': {args.working_memory_mb!r}}}  # noqa: F405\n"
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "ASPECTS_SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "benchmark-only-" + "k" * 50,
            "ASPECTS_THROTTLE_ANON": "off",
            "ASPECTS_THROTTLE_USER": "off",
        }
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "-c", SEED_SCRIPT, str(args.charts + 1), str(args.points)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        chart, *others = (int(pk) for pk in seeded)
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
                "1",
                "--timeout",
                "300",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_listening(port, timeout=60)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            for _ in range(3):  # lazy imports, kernel tables, NumPy's caches
                post_scores(connection, chart, others, 0)
            warm = worker_rss_mb(server)
            started = time.perf_counter()
            for _ in range(args.requests):
                post_scores(connection, chart, others, 0)
            baseline = worker_rss_mb(server)
            baseline_seconds = time.perf_counter() - started
            checkpoints = []
            started = time.perf_counter()
            for n in range(1, args.requests + 1):
                post_scores(connection, chart, others, n)
                if n in (10, args.requests // 2, args.requests):
                    checkpoints.append((n, worker_rss_mb(server)))
            distinct_seconds = time.perf_counter() - started
            connection.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    distinct = checkpoints[-1][1]
    grown_baseline, grown_distinct = baseline - warm, distinct - baseline
    print(
        f"gunicorn, 1 worker: weighted scores of 1 x {args.charts} charts of {args.points} points, "
        f"WORKING_MEMORY_MB {args.working_memory_mb:g} (buffers held to {2 * args.working_memory_mb:g} MiB)"
    )
    print(f"worker RSS after warm-up                     {warm:8.1f} MiB")
    print(
        f"after {args.requests} requests, same orbs (baseline)   {baseline:8.1f} MiB  "
        f"(+{grown_baseline:.1f} MiB, {baseline_seconds / args.requests * 1e3:.0f} ms/request)"
    )
    for n, rss in checkpoints:
        print(f"after {n:3d} requests with distinct orbs       {rss:8.1f} MiB  (+{rss - baseline:.1f} MiB)")
    ratio = (distinct - warm) / max(baseline - warm, 1.0)
    print(
        f"distinct-orbs arm grew {grown_distinct:.1f} MiB in {distinct_seconds / args.requests * 1e3:.0f} ms/request; "
        f"RSS over warm-up {distinct - warm:.1f} MiB = {ratio:.2f}x the baseline arm's (floor 1 MiB)"
    )


if __name__ == "__main__":
    main()
