"""``GET charts/{id}/matches/`` over many public candidates, against the engine's top-k alone as the baseline.

    python benchmarks/matches.py                    # 50,000 public charts, 5 timed runs per arm
    python benchmarks/matches.py --charts 5000 --runs 3

It migrates a throw-away SQLite database, inserts ``--charts`` public charts (ten planets with speeds, through
``Chart.set_positions`` and ``bulk_create``) and times, in one process, the median of ``--runs`` runs of:

- baseline: the warm shared calculator's ``top_k`` of one chart against the candidates' (N, P) array in memory
- services: ``services.match_candidates`` then ``services.top_matches`` (the candidates' query included)
- view: an anonymous ``GET /api/aspects/charts/{id}/matches/?k=10`` through Django's test client

and prints each as seconds and as a ratio to the baseline, with the queries one request made (the issue: one per
candidate, about 20 s for 50,000; the target: well under a second).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from support import median_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="aspects-matches-")
    os.environ["ASPECTS_SQLITE_PATH"] = str(Path(workdir.name) / "db.sqlite3")
    os.environ["ASPECTS_THROTTLE_ANON"] = "off"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "k" * 50)  # DEBUG off: the demo requires one
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    import django

    django.setup()

    import numpy as np
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from aspects_app import calculators, services
    from aspects_app.engine.aspects import STANDARD_POINTS
    from aspects_app.models import Chart

    call_command("migrate", verbosity=0)
    points = STANDARD_POINTS[:10]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for first in range(0, args.charts, 5000):
        batch = []
        for _ in range(min(5000, args.charts - first)):
            chart = Chart(is_public=True)
            chart.set_positions(points, rng.uniform(0, 360, len(points)), rng.uniform(-1, 14, len(points)))
            batch.append(chart)
        Chart.objects.bulk_create(batch)
    print(f"{args.charts:,} public charts inserted in {time.perf_counter() - start:.1f} s")

    me = Chart.objects.order_by("pk").first()
    assert me is not None
    config = services.aspect_config()
    rows = list(Chart.objects.exclude(pk=me.pk).order_by("pk").values_list("pk", "longitudes"))
    ids = [pk for pk, _ in rows]
    lon_b = np.stack([np.frombuffer(bytes(blob), dtype="<f8") for _, blob in rows])
    lon_a = me.longitude_array[None, :]
    calc = calculators.calculator(config)

    def baseline() -> object:
        return calc.top_k(lon_a, lon_b, k=args.k, method="discepolo", points=points)

    def through_services() -> object:
        return services.top_matches(me, services.match_candidates(None, me), args.k, "discepolo", config)

    client = Client()
    url = f"/api/aspects/charts/{me.pk}/matches/"

    def through_view() -> object:
        response = client.get(url, {"k": args.k})
        assert response.status_code == 200, response.content[:500]
        return response

    expected = calc.top_k(lon_a, lon_b, k=args.k, method="discepolo", points=points)
    got = through_services()
    assert [g["chart"] for g in got] == [ids[j] for j in expected.indices[0].tolist()], "not the engine's top-k"
    queries: list[str] = []

    def count(execute: Callable[..., object], sql: str, *rest: object) -> object:
        queries.append(sql)
        return execute(sql, *rest)

    with connection.execute_wrapper(count):  # the test client closes the connection after each request
        through_view()

    figures = {
        "baseline: engine top_k alone": median_seconds(baseline, args.runs),
        "services: match_candidates + top_matches": median_seconds(through_services, args.runs),
        "view: GET matches/ (anonymous)": median_seconds(through_view, args.runs),
    }
    base = figures["baseline: engine top_k alone"]
    print(f"{args.charts - 1:,} candidates, k={args.k}, median of {args.runs} runs, {len(queries)} queries a request")
    for name, seconds in figures.items():
        print(f"  {name:42s} {seconds * 1000:9.1f} ms  {seconds / base:6.1f}x baseline")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
