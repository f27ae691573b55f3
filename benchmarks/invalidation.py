"""Chart edit latency with a full results Redis, against the same edits with an empty one as the baseline.

    python benchmarks/invalidation.py                       # 500,000 keys in redis://127.0.0.1:6379/13
    python benchmarks/invalidation.py --keys 100000 --edits 20 --redis redis://127.0.0.1:6379/13

It migrates a throw-away SQLite database, creates one chart, points the results' shared level at ``--redis``
(its own database: only that one is flushed, before and after) and times, in one process, the median of
``--edits`` calls of ``services.update_chart`` with new positions (each invalidates the chart's results) and of
``PATCH charts/{id}/`` through Django's test client:

- baseline: the Redis database empty (only the chart's own result cached before each edit)
- full: the same after filling the database with ``--keys`` result-like keys (pipelined, bounded by
  ``--fill-seconds``)

and prints each as milliseconds and as the full/baseline ratio (the issue: 25 ms became 5 s with 500,000 keys,
one SCAN of the keyspace per edit; keys scoped by chart and generation make the ratio about 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(run: Callable[[int], object], runs: int) -> float:
    run(-1)  # warm: the calculator, the statement cache, the connection
    times = []
    for n in range(runs):
        start = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def fill(connection: object, keys: int, seconds: float) -> int:
    """Result-like keys (prefix, size and TTL-less as the shared level writes them), 10,000 per pipeline."""
    payload = b"x" * 200
    deadline = time.monotonic() + seconds
    written = 0
    while written < keys and time.monotonic() < deadline:
        pipe = connection.pipeline(transaction=False)  # type: ignore[attr-defined]
        for n in range(written, min(keys, written + 10_000)):
            pipe.set(f":1:aspects:r2:natal:filler:1:{n}.{n:016x}:{n}.{n:016x}:g:c{n}", payload)
        pipe.execute()
        written = min(keys, written + 10_000)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=500_000)
    parser.add_argument("--edits", type=int, default=15)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--fill-seconds", type=float, default=60.0)
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="aspects-invalidation-")
    os.environ["ASPECTS_SQLITE_PATH"] = str(Path(workdir.name) / "db.sqlite3")
    os.environ["ASPECTS_THROTTLE_ANON"] = "off"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "x" * 50)  # the demo needs one with DEBUG off
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    import django

    django.setup()

    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client, override_settings
    from django_redis import get_redis_connection

    from aspects_app import services
    from aspects_app.engine.aspects import STANDARD_POINTS

    caches = {
        **settings.CACHES,
        "bench-results": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": args.redis},
        "bench-locks": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "bench-locks"},
    }
    aspects = {
        **getattr(settings, "ASPECTS", {}),
        "CACHE_ALIAS": "bench-results",
        "LOCK_ALIAS": "bench-locks",
        "THROTTLE_ANON": None,
        "THROTTLE_USER": None,
    }
    with override_settings(CACHES=caches, ASPECTS=aspects):
        call_command("migrate", verbosity=0)
        redis = get_redis_connection("bench-results")
        redis.flushdb()
        owner = get_user_model().objects.create_user("bench", password="bench")
        points = STANDARD_POINTS[:10]
        rng = np.random.default_rng(0)
        (chart,) = services.create_charts(
            owner,
            [
                services.ChartInput(
                    name="edited",
                    points=points,
                    longitudes=tuple(rng.uniform(0, 360, 10).tolist()),
                    speeds=tuple(rng.uniform(-1, 2, 10).tolist()),
                )
            ],
        )
        config = services.aspect_config()
        client = Client()
        client.force_login(owner)
        url = f"/api/aspects/charts/{chart.pk}/"

        def new_positions(n: int) -> list[float]:
            return [(17.0 * n + 3.0 * p) % 360.0 for p in range(len(points))]

        def edit_by_service(n: int) -> object:
            services.natal_aspects(chart, config)  # something to invalidate
            changes = services.ChartInput(points=points, longitudes=tuple(new_positions(n)))
            return services.update_chart(chart, changes, ["points"])

        def edit_by_patch(n: int) -> object:
            services.natal_aspects(chart, config)
            body = {"position_input": {"points": list(points), "longitudes": new_positions(1000 + n)}}
            response = client.patch(url, body, content_type="application/json")
            assert response.status_code == 200, response.content[:300]
            return response

        figures: dict[str, tuple[float, float]] = {}
        empty = {
            name: median_ms(run, args.edits) for name, run in (("service", edit_by_service), ("PATCH", edit_by_patch))
        }
        start = time.perf_counter()
        written = fill(redis, args.keys, args.fill_seconds)
        print(f"{written:,} keys written in {time.perf_counter() - start:.1f} s; dbsize {redis.dbsize():,}")
        for name, run in (("service", edit_by_service), ("PATCH", edit_by_patch)):
            figures[name] = (empty[name], median_ms(run, args.edits))
        redis.flushdb()

    print(f"{'edit':<32} {'empty Redis':>12} {'full Redis':>12} {'ratio':>7}")
    labels = {"service": "services.update_chart", "PATCH": "PATCH charts/{id}/ (test client)"}
    for name, (baseline, full) in figures.items():
        print(f"{labels[name]:<32} {baseline:>9.2f} ms {full:>9.2f} ms {full / baseline:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
