"""The same distributed top-k job with 1 and with 2 Celery worker processes; the speedup is the figure.

    python benchmarks/distributed.py [--charts 4000]                 # SQLite file in a temporary folder
    ASPECTS_DB=postgres python benchmarks/distributed.py             # the local PostgreSQL (database "test")

Needs the local Redis as the broker (database 2). Each worker process has one pool process, so two workers use
both cores of this machine; the baseline is the single worker in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUEUE = f"aspects-bench-{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=4000, help="population (default 4000)")
    parser.add_argument("-k", type=int, default=10, help="partners per chart (default 10)")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("ASPECTS_SQLITE_PATH", str(Path(tmp.name) / "bench.sqlite3"))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from aspects_app.models import AspectResult, BatchBlock, BatchRun, Chart, Match
    from project.celery import app, worker_command

    call_command("migrate", verbosity=0)
    for model in (Match, AspectResult, BatchBlock, BatchRun, Chart):
        model.objects.all().delete()
    call_command("compute_aspects", demo=args.charts, seed=3, stdout=io.StringIO())
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)

    def run_with(workers: int) -> float:
        processes = [
            subprocess.Popen(
                worker_command(QUEUE, f"bench{n}@%h"),
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for n in range(workers)
        ]
        try:
            time.sleep(4)  # workers up and connected before the clock starts
            start = time.perf_counter()
            with override_settings(ASPECTS={"CPU_QUEUE": QUEUE}):
                call_command(
                    "compute_aspects",
                    mode=["top-k"],
                    k=args.k,
                    distributed=True,
                    no_progress=True,
                    backend="numpy",
                    stdout=io.StringIO(),
                    stderr=io.StringIO(),
                )
            return time.perf_counter() - start
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

    pairs = args.charts * args.charts
    one = run_with(1)
    two = run_with(2)
    blocks = BatchBlock.objects.filter(run=BatchRun.objects.latest("pk")).count()
    print(f"top-{args.k} over {args.charts:,} charts ({pairs:,} chart pairs, {blocks} blocks), database output")
    print(f"1 worker:  {one:6.2f} s  {pairs / one:12,.0f} chart pairs/s")
    print(f"2 workers: {two:6.2f} s  {pairs / two:12,.0f} chart pairs/s  -> speedup {one / two:.2f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
