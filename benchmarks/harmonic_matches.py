"""``GET charts/{id}/matches/?method=harmonic`` through the services: the exact product over stored features and
the match index, against the engine's harmonic top-k of in-memory longitudes as the baseline.

    python benchmarks/harmonic_matches.py                    # 20,000 public charts, 5 timed runs per arm
    python benchmarks/harmonic_matches.py --charts 100000 --runs 3

It migrates a throw-away SQLite database, inserts ``--charts`` public charts (ten planets) with their stored
features, and times, in one process, the median of ``--runs`` runs of:

- baseline: the warm calculator's harmonic ``top_k`` of one chart against the candidates' longitudes in memory
- longitudes: ``services.match_candidates`` then ``services.top_matches`` (what method=harmonic did before)
- stored features, exact: ``services.harmonic_matches`` below ``INDEX_MIN_CANDIDATES``
- index (hnsw, exact): ``services.harmonic_matches`` above it, after ``manage.py aspects_index build``

and prints each as milliseconds and as a ratio to the baseline; every arm's ids are checked against the
baseline's (the hnsw arm: its recall).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from support import median_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="aspects-harmonic-")
    os.environ["ASPECTS_SQLITE_PATH"] = str(Path(workdir.name) / "db.sqlite3")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-" + "k" * 50)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    import django

    django.setup()

    import numpy as np
    from django.core.management import call_command
    from django.test import override_settings

    from aspects_app import calculators, features, live_index, services
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
            chart.set_positions(points, rng.uniform(0, 360, len(points)))
            batch.append(chart)
        features.store_features(Chart.objects.bulk_create(batch))
    print(f"{args.charts:,} public charts and their features stored in {time.perf_counter() - start:.1f} s")

    me = Chart.objects.order_by("pk").first()
    assert me is not None
    config = services.aspect_config()
    rows = list(Chart.objects.exclude(pk=me.pk).order_by("pk").values_list("pk", "longitudes"))
    ids = [pk for pk, _ in rows]
    lon_b = np.stack([np.frombuffer(bytes(blob), dtype="<f8") for _, blob in rows])
    lon_a = me.longitude_array[None, :]
    calc = calculators.calculator(config)
    expected = calc.top_k(lon_a, lon_b, k=args.k, method="harmonic", points=points)
    truth = [ids[j] for j in expected.indices[0].tolist()]

    def baseline() -> object:
        return calc.top_k(lon_a, lon_b, k=args.k, method="harmonic", points=points)

    def longitudes() -> object:
        return services.top_matches(me, services.match_candidates(None, me), args.k, "harmonic", config)

    def stored() -> list[dict[str, object]]:
        return services.harmonic_matches(None, me, args.k)

    limits = {"MAX_MATCH_CANDIDATES": args.charts, "INDEX_PATH": str(Path(workdir.name) / "indexes")}
    figures: dict[str, float] = {"baseline: engine top_k (longitudes in memory)": median_seconds(baseline, args.runs)}
    with override_settings(ASPECTS={**limits, "INDEX_MIN_CANDIDATES": args.charts}):
        assert [m["chart"] for m in stored()] == truth, "stored features: not the engine's top-k"
        figures["services: candidates' longitudes + top_k"] = median_seconds(longitudes, args.runs)
        figures["services: stored features, exact product"] = median_seconds(stored, args.runs)
    for kind in ("hnsw", "exact"):
        with override_settings(ASPECTS={**limits, "INDEX_MIN_CANDIDATES": 0, "INDEX_KIND": kind}):
            started = time.perf_counter()
            call_command("aspects_index", "rebuild", verbosity=0)
            built = time.perf_counter() - started
            found = [m["chart"] for m in stored()]
            recall = len(set(found) & set(truth)) / len(truth)
            assert kind != "exact" or found == truth, "exact index: not the engine's top-k"
            figures[f"services: {kind} index (built in {built:.1f} s, recall {recall:.2f})"] = median_seconds(
                stored, args.runs
            )
            live_index.reset()
    base = figures["baseline: engine top_k (longitudes in memory)"]
    print(f"{args.charts - 1:,} candidates, k={args.k}, median of {args.runs} runs")
    for name, seconds in figures.items():
        print(f"  {name:58s} {seconds * 1000:9.1f} ms  {seconds / base:6.1f}x baseline")
    workdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
