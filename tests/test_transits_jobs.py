"""Transits as a distributed run: through ``POST jobs/`` and ``compute_aspects --distributed`` with real Celery
workers (the machinery of ``test_distributed``), blocks delivered twice, bad job requests and the row quota."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from aspects_app import distributed, jobs
from aspects_app.engine import TRANSIT_ORBS, AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.ephemeris import transit_track
from aspects_app.models import BatchBlock, BatchRun, Chart, TransitEvent

from .test_distributed import POINTS, QUEUE, Workers, make_charts, own_queue, wait_for, workers

__all__ = ["own_queue", "workers"]  # fixtures, imported for pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("own_queue")]

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 8, tzinfo=UTC)
Row = tuple[Any, ...]


def engine_rows(charts: list[Chart]) -> set[Row]:
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(TRANSIT_ORBS), backend="numpy")
    lon = np.stack([c.longitude_array for c in charts])
    events = calc.transits(lon, transit_track(START, END), points=POINTS)
    return {(charts[r["i"]].pk, r["point"], r["body"], r["aspect"], r["exact"]) for r in events.to_records()}


def stored_rows() -> list[Row]:
    rows = TransitEvent.objects.values_list("chart_id", "point", "body", "aspect", "exact")
    return [(*row[:4], row[4].astimezone(UTC)) for row in rows]


def test_a_transits_job_through_the_api_to_completion(workers: Workers, django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    charts = make_charts(40, owner=alice, seed=14)
    workers.start()
    client = APIClient()
    client.force_authenticate(alice)
    body = {"modes": ["transits"], "start": "2027-01-01", "end": "2027-01-08T00:00:00Z"}
    response = client.post("/api/aspects/jobs/", body, format="json")
    assert response.status_code == 202, response.content
    location = response["Location"]
    wait_for(lambda: client.get(location).json()["status"] == "done", 90, "the job to finish")
    job = client.get(location).json()
    assert job["progress"]["done"] == job["progress"]["total"] == 40
    rows = stored_rows()
    assert len(rows) == len(set(rows)) == job["rows_written"]
    assert set(rows) == engine_rows(sorted(charts, key=lambda c: c.pk))
    listed = client.get("/api/aspects/transit-events/", {"chart": charts[0].pk, "page_size": 500}).json()
    assert listed["count"] == sum(1 for row in rows if row[0] == charts[0].pk) > 0


def test_the_command_runs_transits_on_the_workers(workers: Workers) -> None:
    charts = make_charts(30, seed=15)
    workers.start()
    out = io.StringIO()
    call_command(
        "compute_aspects", "--mode", "transits", "--start", "2027-01-01", "--end", "2027-01-08", "--distributed",
        "--no-progress", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert "done on the workers" in out.getvalue()
    assert set(stored_rows()) == engine_rows(sorted(charts, key=lambda c: c.pk))


def test_a_transit_block_delivered_twice_is_written_once() -> None:
    charts = make_charts(40, seed=16)
    spec = jobs.JobSpec(
        modes=["transits"], group_a=[c.pk for c in charts], backend="numpy", start=START.isoformat(),
        end=END.isoformat(),
    )  # fmt: skip
    run = jobs.create(spec, distributed=True)
    jobs.start(run, queue=QUEUE)  # enqueued; no worker runs in this test
    assert distributed.run_block(run.pk, "transits", 0, 16) == "done"
    count = TransitEvent.objects.count()
    assert count > 0
    assert distributed.run_block(run.pk, "transits", 0, 16) == "duplicate"
    assert TransitEvent.objects.count() == count
    assert BatchBlock.objects.filter(run=run).count() == 1
    run.refresh_from_db()
    assert run.progress_done == 16 and run.rows_written == count


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"modes": ["transits"], "end": "2027-01-08"}, "start"),
        ({"modes": ["transits"], "start": "2027-01-01"}, "end"),
        ({"modes": ["transits"], "start": "2027-01-08", "end": "2027-01-01"}, "end"),
        ({"modes": ["transits"], "start": "someday", "end": "2027-01-08"}, "start"),
        ({"modes": ["transits", "natal"], "start": "2027-01-01", "end": "2027-01-08"}, "modes"),
        ({"modes": ["transits"], "start": "2027-01-01", "end": "2027-01-08", "bodies": ["Vulcan"]}, "bodies"),
        ({"modes": ["natal"], "start": "2027-01-01"}, "start"),
    ],
)
def test_bad_transit_jobs_are_400_naming_the_field(django_user_model: Any, body: dict[str, Any], field: str) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    make_charts(3, owner=alice, seed=17)
    client = APIClient()
    client.force_authenticate(alice)
    response = client.post("/api/aspects/jobs/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not BatchRun.objects.exists()


def test_the_row_quota_counts_transit_events(django_user_model: Any) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    make_charts(10, owner=alice, seed=18)
    client = APIClient()
    client.force_authenticate(alice)
    body = {"modes": ["transits"], "start": "2027-01-01", "end": "2027-01-08"}
    with override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_USER": None, "MAX_JOB_ROWS": 100}):
        response = client.post("/api/aspects/jobs/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["limit"] == "MAX_JOB_ROWS"
    assert not BatchRun.objects.exists()


class TrackSpy:
    """ephemeris.transit_track, recording the length of every track built (and refusing more than a year of it:
    building a long track inside the request is what the test rules out)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from aspects_app import ephemeris

        self.days: list[float] = []
        real = ephemeris.transit_track

        def spy(start: datetime, end: datetime, **kwargs: Any) -> Any:
            self.days.append((end - start) / timedelta(days=1))
            assert self.days[-1] <= jobs.TRANSIT_SAMPLE_DAYS, f"a track of {self.days[-1]:g} days built"
            return real(start, end, **kwargs)

        monkeypatch.setattr(ephemeris, "transit_track", spy)


def post_job(user: Any, body: dict[str, Any], **limits: Any) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    with override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_USER": None, **limits}):
        return client.post("/api/aspects/jobs/", body, format="json")


def test_a_long_range_is_counted_on_a_sample_year_and_the_quota_still_refuses(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 150 years (allowed once MAX_JOB_TRANSIT_DAYS is lifted): counting on the whole range built 150 years of sky
    # track inside the request (30 s+, past gunicorn's timeout); only a year's is built now.
    alice = django_user_model.objects.create_user("alice", password="pw")
    make_charts(10, owner=alice, seed=19)
    spy = TrackSpy(monkeypatch)
    body = {"modes": ["transits"], "start": "1901-01-01", "end": "2051-01-01"}
    response = post_job(alice, body, MAX_JOB_TRANSIT_DAYS=None, MAX_JOB_ROWS=1_000_000)
    assert response.status_code == 400, response.content
    assert response.json()["limit"] == "MAX_JOB_ROWS"
    assert spy.days and max(spy.days) <= jobs.TRANSIT_SAMPLE_DAYS
    assert not BatchRun.objects.exists()


def test_the_estimated_rows_are_close_to_the_exact_count() -> None:
    charts = make_charts(3, seed=20)
    spec = jobs.JobSpec(
        modes=["transits"], group_a=[c.pk for c in charts], backend="numpy", start="2027-01-01T00:00:00+00:00",
        end="2029-07-01T00:00:00+00:00",
    )  # fmt: skip
    estimated = jobs.job_size(spec).rows["transits"]
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(TRANSIT_ORBS), backend="numpy")
    window = spec.transit_window()
    assert window is not None
    exact = len(calc.transits(charts[0].longitude_array[None, :], transit_track(*window), points=POINTS))
    assert estimated == pytest.approx(3 * exact, rel=0.1)


def test_a_range_past_the_maximum_is_400_naming_end_before_any_counting(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = django_user_model.objects.create_user("alice", password="pw")
    make_charts(3, owner=alice, seed=21)
    spy = TrackSpy(monkeypatch)
    response = post_job(alice, {"modes": ["transits"], "start": "2027-01-01", "end": "2038-01-01"})
    assert response.status_code == 400, response.content
    body = response.json()
    assert "end" in body and body["limit"] == "MAX_JOB_TRANSIT_DAYS" and body["maximum"] == 3653
    assert spy.days == []
    assert not BatchRun.objects.exists()
