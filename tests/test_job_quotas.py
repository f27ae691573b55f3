"""The job API's quotas and its refusal to take jobs no worker could get.

* ``POST jobs/`` took any size (49,781 public ids, top-k and synastry: 6,224 blocks and 3.7 x 10^9 pairs, synastry
  storing a row per pair) and any number of jobs per user: now MAX_JOB_PAIRS, MAX_JOB_ROWS and
  MAX_JOB_SYNASTRY_PAIRS answer 400 and MAX_ACTIVE_JOBS_PER_USER 429, naming the limit; compute_aspects (the
  operator's) is not bound by them.
* Without a Celery app (or a broker) ``POST jobs/`` answered 202 and the blocks went to Celery's default AMQP
  broker on localhost, where the run waited for ever: now check aspects_app.E006 fails and the API answers 503
  with a JSON reason, storing nothing.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from aspects_app import jobs, tasks
from aspects_app.checks import check_jobs
from aspects_app.models import BatchRun

from .conftest import ChartFactory, client_for

ROOT = Path(__file__).resolve().parents[1]
JOBS = "/api/aspects/jobs/"
QUEUE = f"aspects-quotas-{os.getpid()}"


@pytest.fixture
def own_queue() -> Iterator[None]:
    """Accepted jobs' blocks go to a queue of this test run's own, emptied afterwards (no worker runs)."""
    from project.celery import app

    yield
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


def quotas(**limits: Any) -> Any:
    return override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_ANON": None, "THROTTLE_USER": None, **limits})


def charts_of(owner: Any, make_chart: ChartFactory, count: int) -> list[int]:
    return [make_chart(owner).pk for _ in range(count)]


# -- size ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "limits", "limit"),
    [
        ({"modes": ["top-k"], "k": 2}, {"MAX_JOB_PAIRS": 24}, "MAX_JOB_PAIRS"),  # 5 x 5 pairs
        ({"modes": ["natal", "top-k"], "k": 2}, {"MAX_JOB_ROWS": 14}, "MAX_JOB_ROWS"),  # 5 + 5 x 2 rows
        ({"modes": ["synastry"]}, {"MAX_JOB_SYNASTRY_PAIRS": 9}, "MAX_JOB_SYNASTRY_PAIRS"),  # 10 unordered pairs
    ],
)
def test_a_job_over_a_size_quota_is_400_naming_the_limit(
    alice: Any, make_chart: ChartFactory, body: dict[str, Any], limits: dict[str, int], limit: str
) -> None:
    charts_of(alice, make_chart, 5)
    with quotas(**limits):
        response = client_for(alice).post(JOBS, body, format="json")
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["limit"] == limit
    assert answer["maximum"] == limits[limit]
    assert limit in answer["charts"][0]
    assert not BatchRun.objects.exists()


def test_a_job_at_its_quotas_is_accepted(alice: Any, make_chart: ChartFactory, own_queue: None) -> None:
    charts_of(alice, make_chart, 5)
    limits = {"MAX_JOB_PAIRS": 25 + 10, "MAX_JOB_ROWS": 5 * 2 + 10, "MAX_JOB_SYNASTRY_PAIRS": 10}
    with quotas(**limits):
        response = client_for(alice).post(JOBS, {"modes": ["top-k", "synastry"], "k": 2}, format="json")
    assert response.status_code == 202, response.content


def test_staff_may_store_synastry_past_its_threshold(staff: Any, make_chart: ChartFactory, own_queue: None) -> None:
    charts_of(staff, make_chart, 5)
    with quotas(MAX_JOB_SYNASTRY_PAIRS=1):
        assert client_for(staff).post(JOBS, {"modes": ["synastry"]}, format="json").status_code == 202
    with quotas(MAX_JOB_SYNASTRY_PAIRS=1, MAX_JOB_PAIRS=9):  # the size quotas bind staff too
        response = client_for(staff).post(JOBS, {"modes": ["synastry"]}, format="json")
    assert response.status_code == 400 and response.json()["limit"] == "MAX_JOB_PAIRS"


def test_the_size_is_what_the_run_counts(alice: Any, make_chart: ChartFactory) -> None:
    """job_size counts with the batch layer's own units: a run of the spec computes and stores exactly that."""
    group_a = charts_of(alice, make_chart, 7)
    group_b = charts_of(alice, make_chart, 4)
    for group_b_ids, modes in ((None, ["natal", "top-k", "synastry"]), (group_b, ["top-k", "synastry"])):
        spec = jobs.JobSpec(modes=modes, group_a=group_a, group_b=group_b_ids, k=3, backend="numpy")
        size = jobs.job_size(spec)
        run = jobs.create(spec)
        jobs.run_here(run)
        run.refresh_from_db()
        assert run.pairs_computed == sum(size.units.values())
        assert run.rows_written == sum(size.rows.values())


def test_the_command_is_not_bound_by_the_quotas(alice: Any, make_chart: ChartFactory) -> None:
    charts_of(alice, make_chart, 5)
    with quotas(MAX_JOB_PAIRS=1, MAX_JOB_ROWS=1, MAX_JOB_SYNASTRY_PAIRS=1, MAX_ACTIVE_JOBS_PER_USER=0):
        call_command("compute_aspects", mode=["synastry", "top-k"], k=2, no_progress=True, stdout=io.StringIO())
    assert BatchRun.objects.get().status == BatchRun.Status.DONE


# -- jobs at once --------------------------------------------------------------------------------------------------


def test_too_many_active_jobs_is_429_naming_the_limit(
    alice: Any, staff: Any, make_chart: ChartFactory, own_queue: None
) -> None:
    charts_of(alice, make_chart, 3)
    charts_of(staff, make_chart, 3)
    BatchRun.objects.create(owner=alice, mode="natal", status=BatchRun.Status.RUNNING)
    BatchRun.objects.create(owner=alice, mode="natal", status=BatchRun.Status.DONE)  # finished: not counted
    with quotas(MAX_ACTIVE_JOBS_PER_USER=2):
        assert client_for(alice).post(JOBS, {"modes": ["natal"]}, format="json").status_code == 202
        response = client_for(alice).post(JOBS, {"modes": ["natal"]}, format="json")
        assert response.status_code == 429, response.content
        assert response.json()["limit"] == "MAX_ACTIVE_JOBS_PER_USER"
        assert response.json()["maximum"] == 2
        assert "Retry-After" in response
        # Staff are exempt.
        BatchRun.objects.create(owner=staff, mode="natal", status=BatchRun.Status.PENDING)
        BatchRun.objects.create(owner=staff, mode="natal", status=BatchRun.Status.RUNNING)
        assert client_for(staff).post(JOBS, {"modes": ["natal"]}, format="json").status_code == 202
    assert BatchRun.objects.filter(owner=alice).count() == 3


# -- no Celery app or broker ---------------------------------------------------------------------------------------


def celery_fallback() -> Celery:
    """What Celery hands out when the host made no app: Celery("default", set_as_current=False)."""
    return Celery("default", set_as_current=False, fixups=[])


def app_without_broker() -> Celery:
    return Celery("host", set_as_current=False)


@pytest.mark.parametrize(("app", "reason"), [(celery_fallback, "no Celery app"), (app_without_broker, "no broker")])
def test_jobs_without_celery_are_503_and_store_nothing(
    monkeypatch: pytest.MonkeyPatch, alice: Any, make_chart: ChartFactory, app: Any, reason: str
) -> None:
    charts_of(alice, make_chart, 3)
    monkeypatch.setattr(tasks, "celery_app", app)
    with quotas():
        response = client_for(alice).post(JOBS, {"modes": ["natal"]}, format="json")
        assert response.status_code == 503, response.content
        assert response["Content-Type"].startswith("application/json")
        assert reason in response.json()["detail"]
        assert not BatchRun.objects.exists()
        assert [m.id for m in check_jobs()] == ["aspects_app.E006"]
        with pytest.raises(CommandError, match=f"--distributed: .*{reason}"):
            call_command("compute_aspects", mode=["natal"], distributed=True, no_wait=True, stdout=io.StringIO())
    assert not BatchRun.objects.exists()


def test_resuming_without_celery_leaves_the_run_as_it_was(
    monkeypatch: pytest.MonkeyPatch, make_chart: ChartFactory
) -> None:
    chart = make_chart()
    run = jobs.create(jobs.JobSpec(modes=["natal"], group_a=[chart.pk]), distributed=True)
    monkeypatch.setattr(tasks, "celery_app", celery_fallback)
    with pytest.raises(jobs.FieldError, match="no Celery app"):
        jobs.start(run)
    run.refresh_from_db()
    assert run.status == BatchRun.Status.PENDING


def test_jobs_switched_off_are_503_and_silence_the_check(
    monkeypatch: pytest.MonkeyPatch, alice: Any, make_chart: ChartFactory
) -> None:
    charts_of(alice, make_chart, 2)
    monkeypatch.setattr(tasks, "celery_app", celery_fallback)
    with quotas(JOBS_ENABLED=False):
        response = client_for(alice).post(JOBS, {"modes": ["natal"]}, format="json")
        assert response.status_code == 503
        assert "JOBS_ENABLED" in response.json()["detail"]
        assert check_jobs() == []


def test_the_suites_host_passes_the_check() -> None:
    assert check_jobs() == []


HOST_SETTINGS = """
from aspects_app.recommended_settings import *  # CELERY_BROKER_URL among them, but no Celery app
SECRET_KEY = "host"
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "rest_framework", "drf_spectacular",
                  "aspects_app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
"""


@pytest.mark.parametrize("with_app", [False, True])
def test_a_host_without_a_celery_app_fails_manage_py_check(tmp_path: Path, with_app: bool) -> None:
    """The half-configured host of the issue, in a process of its own: the recommended settings (a broker URL)
    and no Celery app loaded with the project; then the same host loading one as Celery's Django guide says."""
    package = tmp_path / "host"
    package.mkdir()
    (package / "settings.py").write_text(HOST_SETTINGS)
    init = ""
    if with_app:
        (package / "celery.py").write_text(
            "from celery import Celery\n"
            "app = Celery('host')\n"
            "app.config_from_object('django.conf:settings', namespace='CELERY')\n"
        )
        init = "from .celery import app as celery_app\n"
    (package / "__init__.py").write_text(init)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "host.settings", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    env.pop("CELERY_BROKER_URL", None)
    checked = subprocess.run(
        [sys.executable, "-m", "django", "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    output = checked.stdout + checked.stderr
    if with_app:
        assert checked.returncode == 0, output
        assert "E006" not in output
    else:
        assert checked.returncode != 0
        assert "aspects_app.E006" in output and "no Celery app" in output
