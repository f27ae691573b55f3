"""Batch selections whose charts have different point sets: the run keeps the charts with its point set (the most
common in group A, ties to the lowest id's), skips the others and counts them, instead of aborting every mode."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command

from aspects_app import batch, jobs
from aspects_app.engine.errors import FieldError
from aspects_app.models import AspectResult, BatchRun, Match
from tests.conftest import PLANETS, ChartFactory

TWO_POINTS = ("Sun", "Moon")


def compute(*args: str) -> str:
    out = io.StringIO()
    call_command("compute_aspects", *args, "--backend", "numpy", "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def mixed(make_chart: ChartFactory) -> tuple[list[Any], Any]:
    """Six ten-point charts and, between them, one chart made with two points only."""
    charts = [make_chart() for _ in range(3)]
    odd = make_chart(points=TWO_POINTS, longitudes=[10.0, 100.0], speeds=[1.0, 13.0])
    charts += [make_chart() for _ in range(3)]
    return charts, odd


def test_a_natal_run_skips_the_odd_chart_and_counts_it(mixed: tuple[list[Any], Any]) -> None:
    charts, odd = mixed
    out = compute("--mode", "natal")
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.DONE
    natal = set(AspectResult.objects.filter(kind="natal").values_list("chart_a_id", flat=True))
    assert natal == {c.pk for c in charts}
    assert run.parameters["skipped"] == {"points": list(PLANETS), "charts": [odd.pk]}
    assert f"1 charts skipped: other points than the run's {list(PLANETS)}" in out
    assert run.progress_done == run.progress_total == len(charts)
    assert jobs.describe(run)["skipped_charts"] == 1  # what GET jobs/{id}/ shows


def test_pairwise_modes_run_within_the_charts_of_the_run_s_points(mixed: tuple[list[Any], Any]) -> None:
    charts, odd = mixed
    compute("--mode", "top-k", "-k", "2", "--mode", "synastry")
    matched = set(Match.objects.values_list("chart_id", flat=True))
    partners = set(Match.objects.values_list("partner_id", flat=True))
    assert matched == {c.pk for c in charts}
    assert odd.pk not in partners
    assert BatchRun.objects.get().status == BatchRun.Status.DONE


def test_odd_charts_of_group_b_are_skipped_too(make_chart: ChartFactory) -> None:
    a = [make_chart() for _ in range(3)]
    b = [make_chart() for _ in range(2)] + [make_chart(points=TWO_POINTS, longitudes=[1.0, 2.0])]
    ids = ",".join(str(c.pk) for c in a)
    with_ids = ",".join(str(c.pk) for c in b)
    out = compute("--mode", "top-k", "-k", "1", "--ids", ids, "--with-ids", with_ids)
    assert set(Match.objects.values_list("partner_id", flat=True)) <= {c.pk for c in b[:2]}
    assert BatchRun.objects.get().parameters["skipped"]["charts"] == [b[2].pk]
    assert "1 charts skipped" in out


def test_the_most_common_point_set_wins(make_chart: ChartFactory) -> None:
    small = [make_chart(points=TWO_POINTS, longitudes=[float(i), 90.0 + i]) for i in range(2)]  # the lowest ids
    full = [make_chart() for _ in range(3)]
    ids = [c.pk for c in small + full]
    run = jobs.create(jobs.JobSpec(modes=["natal"], group_a=ids, backend="numpy"))
    assert run.parameters["spec"]["group_a"] == [c.pk for c in full]
    assert run.parameters["skipped"]["charts"] == [c.pk for c in small]


def test_the_estimate_and_every_loader_of_the_run_take_the_narrowed_selection(mixed: tuple[list[Any], Any]) -> None:
    charts, odd = mixed
    spec = jobs.JobSpec(modes=["natal", "top-k"], group_a=sorted([c.pk for c in charts] + [odd.pk]), backend="numpy")
    report = jobs.estimate(spec)
    assert report["modes"]["natal"]["units"] == len(charts)
    run = jobs.create(spec)
    job = batch.BatchJob(run)
    try:
        a, b = job.load_groups()  # what distributed.plan, every worker and a resume load
    finally:
        job.calculator.close()
    assert a.ids.tolist() == [c.pk for c in charts]
    assert b is a


def test_a_group_b_with_none_of_the_run_s_points_is_still_refused(make_chart: ChartFactory) -> None:
    a = [make_chart().pk for _ in range(2)]
    b = [make_chart(points=TWO_POINTS, longitudes=[1.0, 2.0]).pk]
    with pytest.raises(FieldError) as raised:
        jobs.create(jobs.JobSpec(modes=["top-k"], group_a=a, group_b=b, backend="numpy"))
    assert raised.value.field == "group_b"
    assert not BatchRun.objects.exists()
