"""Distributed batch runs with real Celery worker processes on the machine's Redis broker: a job through the API
to completion, a worker killed mid-job, cancellation, permissions, idempotent blocks.

Workers run ``celery -A project worker`` on this test run's own queue and open the test database (a file for
SQLite, the per-run database on PostgreSQL), so they see what the tests commit (``transactional_db``).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from aspects_app import distributed, jobs, services
from aspects_app.engine import MemoryOptimizedVectorizedCalculator
from aspects_app.models import AspectResult, BatchBlock, BatchRun, Chart, Match
from project.celery import worker_command

ROOT = Path(__file__).resolve().parents[1]
QUEUE = f"aspects-test-{os.getpid()}"
POINTS = ("Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("own_queue")]


@pytest.fixture
def own_queue() -> Iterator[None]:
    with override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_ANON": None, "THROTTLE_USER": None}):
        from project.celery import app

        with app.connection_for_write() as conn:  # nothing left over from an earlier run of this queue
            conn.default_channel.queue_purge(QUEUE)
        yield


class Workers:
    """Celery worker processes consuming this run's queue, started and killed by the tests."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "ASPECTS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            # A killed worker's unacknowledged block comes back within seconds.
            "CELERY_VISIBILITY_TIMEOUT": "3",
            "CELERY_UNACKED_RESTORE_INTERVAL": "1",
            "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        }

    def start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            worker_command(QUEUE),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)  # the worker and its pool child, without warning
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers()
    yield pool
    pool.stop_all()


def make_charts(count: int, owner: Any = None, seed: int = 0) -> list[Chart]:
    rng = np.random.default_rng(seed)
    return services.create_charts(
        owner,
        [
            services.ChartInput(
                name=f"d{n}", is_public=True, points=POINTS, longitudes=tuple(rng.uniform(0, 360, 10).tolist())
            )
            for n in range(count)
        ],
    )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def status_of(run_id: int) -> str:
    return BatchRun.objects.get(pk=run_id).status


def expected_matches(charts: list[Chart], k: int) -> dict[int, list[int]]:
    lon = np.stack([c.longitude_array for c in charts])
    best = MemoryOptimizedVectorizedCalculator(backend="numpy").top_k(lon, k=k, exclude_self=True)
    return {charts[r].pk: [charts[c].pk for c in best.indices[r].tolist()] for r in range(len(charts))}


def stored_matches() -> dict[int, list[int]]:
    result: dict[int, list[int]] = {}
    for chart, partner in Match.objects.order_by("chart", "rank").values_list("chart", "partner"):
        result.setdefault(chart, []).append(partner)
    return result


def test_a_job_through_the_api_to_completion(workers: Workers, django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    charts = make_charts(60, owner=alice)
    workers.start()
    client = APIClient()
    client.force_authenticate(alice)
    response = client.post("/api/aspects/jobs/", {"modes": ["natal", "top-k"], "k": 5}, format="json")
    assert response.status_code == 202, response.content
    location = response["Location"]
    assert location.endswith(f"/api/aspects/jobs/{response.json()['id']}/")
    wait_for(lambda: client.get(location).json()["status"] == "done", 60, "the job to finish")
    body = client.get(location).json()
    assert body["progress"]["done"] == body["progress"]["total"] == 60 + 60 * 60
    assert body["blocks"]["done"] == body["blocks"]["total"]
    assert "matches" in body["links"]
    assert AspectResult.objects.filter(kind="natal").count() == 60
    assert stored_matches() == expected_matches(charts, 5)


def test_a_worker_killed_mid_job_loses_nothing(workers: Workers) -> None:
    """SIGKILL while a block runs: the block is delivered again after the visibility timeout, its half-done
    transaction having left nothing behind."""
    charts = make_charts(1500, seed=1)
    first = workers.start()
    out = io.StringIO()
    call_command(
        "compute_aspects",
        mode=["top-k"],
        k=3,
        distributed=True,
        no_wait=True,
        backend="numpy",
        chunk_size=1,
        stdout=out,
    )
    run = BatchRun.objects.latest("pk")
    total = run.parameters["distributed"]["blocks"]
    assert total >= 20
    wait_for(lambda: BatchBlock.objects.filter(run=run).count() >= 3, 60, "the first blocks")
    workers.kill(first)
    done_at_kill = BatchBlock.objects.filter(run=run).count()
    assert done_at_kill < total, "the job finished before the worker could be killed"
    workers.start()
    # Nobody resumes anything: late acknowledgement brings the lost block back to the new worker.
    wait_for(lambda: status_of(run.pk) == "done", 60, "the lost block to be delivered again")
    assert BatchBlock.objects.filter(run=run).count() == total
    assert Match.objects.count() == 1500 * 3  # no duplicates, no gaps
    assert stored_matches() == expected_matches(charts, 3)
    run.refresh_from_db()
    assert run.progress_done == run.progress_total


def test_the_command_follows_a_run_to_its_end(workers: Workers) -> None:
    make_charts(40, seed=2)
    workers.start()
    out = io.StringIO()
    call_command(
        "compute_aspects", mode=["natal"], distributed=True, no_progress=True, stdout=out, stderr=io.StringIO()
    )
    assert "done on the workers" in out.getvalue()
    assert AspectResult.objects.filter(kind="natal").count() == 40


def test_cancelled_runs_skip_their_remaining_blocks(workers: Workers, django_user_model: Any) -> None:
    bob = django_user_model.objects.create_user("bob", password="pw")
    make_charts(30, owner=bob, seed=3)
    client = APIClient()
    client.force_authenticate(bob)
    job = client.post("/api/aspects/jobs/", {"modes": ["top-k"]}, format="json").json()
    cancelled = client.delete(f"/api/aspects/jobs/{job['id']}/")  # before any worker runs
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    # A run enqueued after it on the same queue: one worker takes messages in order, so once this run is done,
    # every block of the cancelled one has been delivered (and skipped).
    make_charts(5, seed=8)
    workers.start()
    call_command(
        "compute_aspects",
        mode=["natal"],
        distributed=True,
        no_progress=True,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert status_of(job["id"]) == "cancelled"
    assert BatchBlock.objects.filter(run_id=job["id"]).count() == 0
    assert Match.objects.count() == 0
    with pytest.raises(CommandError, match="already cancelled"):
        call_command("compute_aspects", cancel=job["id"], stdout=io.StringIO())


def test_only_the_owner_or_staff_see_a_job(django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    mallory = django_user_model.objects.create_user("mallory", password="pw")
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    make_charts(5, owner=alice, seed=4)
    client = APIClient()
    client.force_authenticate(alice)
    job = client.post("/api/aspects/jobs/", {"modes": ["natal"]}, format="json").json()
    url = f"/api/aspects/jobs/{job['id']}/"
    assert client.get(url).status_code == 200
    assert [j["id"] for j in client.get("/api/aspects/jobs/").json()] == [job["id"]]
    client.force_authenticate(mallory)
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert client.get("/api/aspects/jobs/").json() == []
    client.force_authenticate(staff)
    assert client.get(url).status_code == 200
    client.force_authenticate(None)
    assert client.get(url).status_code in (401, 403)
    assert client.post("/api/aspects/jobs/", {"modes": ["natal"]}, format="json").status_code in (401, 403)


def test_bad_job_requests_are_400_naming_the_field(django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    private = make_charts(2, owner=bob, seed=5)
    Chart.objects.filter(pk__in=[c.pk for c in private]).update(is_public=False)
    client = APIClient()
    client.force_authenticate(alice)
    cases = [
        ({"modes": ["natal"]}, "charts"),  # alice owns no charts
        ({"modes": ["scores"], "charts": [private[0].pk]}, "modes"),
        ({"modes": ["top-k"], "charts": [1], "k": 0}, "k"),
        ({"modes": ["natal"], "charts": [1], "orbs": "nope"}, "orbs"),
    ]
    runs_before = BatchRun.objects.count()
    for body, field in cases:
        response = client.post("/api/aspects/jobs/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json(), (body, response.json())
    hidden = client.post("/api/aspects/jobs/", {"modes": ["natal"], "charts": [private[0].pk]}, format="json")
    assert hidden.status_code == 404, hidden.content  # not visible to alice: as if it did not exist
    assert hidden.json()["detail"].startswith("charts:")
    assert BatchRun.objects.count() == runs_before


def test_a_block_delivered_twice_is_written_once() -> None:
    charts = make_charts(40, seed=6)
    spec = jobs.JobSpec(modes=["top-k"], group_a=[c.pk for c in charts], k=4, backend="numpy", chunk_size=1)
    run = jobs.create(spec, distributed=True)
    jobs.start(run, queue=QUEUE)  # enqueued; no worker runs in this test
    assert distributed.run_block(run.pk, "top-k", 0, 16) == "done"
    assert distributed.run_block(run.pk, "top-k", 0, 16) == "duplicate"
    assert Match.objects.count() == 16 * 4
    run.refresh_from_db()
    assert run.progress_done == 16 * 40
    assert BatchBlock.objects.filter(run=run).count() == 1


def test_resume_re_enqueues_only_the_missing_blocks(workers: Workers) -> None:
    """A run whose messages were lost (broker flushed, say) completes with --resume, computing only what is
    missing."""
    charts = make_charts(100, seed=7)
    call_command(
        "compute_aspects", mode=["top-k"], k=2, distributed=True, no_wait=True, chunk_size=1, stdout=io.StringIO()
    )
    run = BatchRun.objects.latest("pk")
    assert distributed.run_block(run.pk, "top-k", 0, 16) == "done"  # one block made it before the loss
    from project.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)
    workers.start()
    out = io.StringIO()
    call_command("compute_aspects", resume=run.pk, no_wait=True, stdout=out)
    assert f"{run.parameters['distributed']['blocks'] - 1} blocks enqueued" in out.getvalue()
    wait_for(lambda: status_of(run.pk) == "done", 60, "the resumed run")
    assert stored_matches() == expected_matches(charts, 2)
