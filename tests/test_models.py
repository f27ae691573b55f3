"""Chart, AspectResult and BatchRun: stored positions, visibility, integrity and the run bookkeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from aspects_app.models import AspectResult, BatchRun, Chart, positions_hash

from .conftest import PLANETS, ChartFactory

pytestmark = pytest.mark.django_db

# Values whose float64 bits a lossy encoding (text, float32, rounding) would change.
AWKWARD_LONGITUDES = [
    0.0,
    np.nextafter(360.0, 0.0),
    0.1,
    1.0 / 3.0,
    5e-324,
    np.nextafter(180.0, 360.0),
    123.456789012345678,
    359.0,
    2.0**-40,
    271.8281828459045,
]
AWKWARD_SPEEDS = [-0.0, -1.2345678901234567, 13.7700948342908, 1e-300, -1e-9, 0.0, 1.1, -0.5, 2.5, 1e300]


def _result(kind: str, a: Chart, b: Chart, **overrides: Any) -> AspectResult:
    fields: dict[str, Any] = {
        "kind": kind,
        "chart_a": a,
        "chart_b": b,
        "config_hash": "c" * 16,
        "engine_version": "1",
        "positions_hash": "p" * 64,
        "payload": b"npz",
    }
    fields.update(overrides)
    return AspectResult.objects.create(**fields)


# -- positions ---------------------------------------------------------------------------------------------------


def test_set_positions_round_trip_is_bit_exact_in_memory_and_through_the_database() -> None:
    chart = Chart(name="exact")
    chart.set_positions(PLANETS, AWKWARD_LONGITUDES, AWKWARD_SPEEDS)
    expected_lon = np.asarray(AWKWARD_LONGITUDES, dtype=np.float64)
    expected_speed = np.asarray(AWKWARD_SPEEDS, dtype=np.float64)

    assert chart.longitude_array.dtype == np.float64
    assert chart.longitude_array.tobytes() == expected_lon.tobytes()
    speeds = chart.speed_array
    assert speeds is not None
    assert speeds.tobytes() == expected_speed.tobytes()  # -0.0 and 1e-300 survive bit for bit

    chart.save()
    stored = Chart.objects.get(pk=chart.pk)
    assert stored.points == list(PLANETS)
    assert stored.longitude_array.tobytes() == expected_lon.tobytes()
    stored_speeds = stored.speed_array
    assert stored_speeds is not None
    assert stored_speeds.tobytes() == expected_speed.tobytes()
    assert stored.positions_hash == chart.positions_hash == positions_hash(PLANETS, expected_lon, expected_speed)


def test_positions_without_speeds_store_null() -> None:
    chart = Chart(name="still")
    chart.set_positions(["Sun", "Moon"], [10.0, 20.0])
    chart.save()
    stored = Chart.objects.get(pk=chart.pk)
    assert stored.speeds is None
    assert stored.speed_array is None
    np.testing.assert_array_equal(stored.longitude_array, [10.0, 20.0])


def test_longitude_array_is_writable_copy_not_a_view_of_the_stored_bytes() -> None:
    chart = Chart()
    chart.set_positions(["Sun"], [42.0], [1.0])
    array = chart.longitude_array
    array[0] = 0.0  # must not raise (read-only buffer) nor change the chart
    assert chart.longitude_array[0] == 42.0


def _hash_of(points: Any, longitudes: Any, speeds: Any = None) -> str:
    chart = Chart()
    chart.set_positions(points, longitudes, speeds)
    return chart.positions_hash


def test_positions_hash_is_a_function_of_the_positions_only(make_chart: ChartFactory, alice: Any) -> None:
    lon = [float(x) for x in range(10, 110, 10)]
    speeds = [1.0] * 10
    base = _hash_of(PLANETS, lon, speeds)
    assert len(base) == 64
    # Same positions, other metadata, list vs array vs tuple: same hash.
    assert _hash_of(tuple(PLANETS), np.asarray(lon), tuple(speeds)) == base
    a = make_chart(alice, name="a", is_public=True, longitudes=lon, speeds=speeds)
    b = make_chart(None, name="b", is_public=False, longitudes=lon, speeds=speeds)
    assert a.positions_hash == b.positions_hash == base
    # Saving again without touching positions keeps the hash.
    a.name = "renamed"
    a.is_public = False
    a.save()
    a.refresh_from_db()
    assert a.positions_hash == base


@pytest.mark.parametrize(
    "change",
    ["one_ulp_longitude", "one_ulp_speed", "no_speeds", "zero_speeds", "renamed_point", "reordered", "fewer_points"],
)
def test_positions_hash_changes_when_any_position_changes(change: str) -> None:
    lon = [float(x) for x in range(10, 110, 10)]
    speeds = [1.0] * 10
    points = list(PLANETS)
    base = _hash_of(points, lon, speeds)
    if change == "one_ulp_longitude":
        lon[3] = float(np.nextafter(lon[3], 400.0))
    elif change == "one_ulp_speed":
        speeds[9] = float(np.nextafter(speeds[9], 2.0))
    elif change == "no_speeds":
        speeds = None  # type: ignore[assignment]
    elif change == "zero_speeds":
        speeds = [0.0] * 10
    elif change == "renamed_point":
        points[0] = "Sol"
    elif change == "reordered":
        points[0], points[1] = points[1], points[0]
    elif change == "fewer_points":
        points, lon, speeds = points[:9], lon[:9], speeds[:9]
    assert _hash_of(points, lon, speeds) != base


def test_saved_hash_follows_set_positions(make_chart: ChartFactory) -> None:
    chart = make_chart(longitudes=[1.0, 2.0], points=["Sun", "Moon"], speeds=[1.0, 1.0])
    before = chart.positions_hash
    chart.set_positions(["Sun", "Moon"], [1.0, 2.5], [1.0, 1.0])
    chart.save()
    assert Chart.objects.get(pk=chart.pk).positions_hash != before
    chart.set_positions(["Sun", "Moon"], [1.0, 2.0], [1.0, 1.0])
    chart.save()
    assert Chart.objects.get(pk=chart.pk).positions_hash == before


def test_str_and_has_birth_data(make_chart: ChartFactory) -> None:
    named = make_chart(name="Ada")
    unnamed = make_chart(name="")
    assert str(named) == "Ada"
    assert str(unnamed) == f"Chart {unnamed.pk}"
    assert not named.has_birth_data
    named.birth_datetime = timezone.now()
    assert named.has_birth_data


# -- visibility --------------------------------------------------------------------------------------------------


@pytest.fixture
def population(make_chart: ChartFactory, alice: Any, bob: Any) -> dict[str, Chart]:
    return {
        "alice_public": make_chart(alice, is_public=True),
        "alice_private": make_chart(alice, is_public=False),
        "bob_public": make_chart(bob, is_public=True),
        "bob_private": make_chart(bob, is_public=False),
        "orphan_public": make_chart(None, is_public=True),
        "orphan_private": make_chart(None, is_public=False),
    }


def _visible(user: Any, population: dict[str, Chart]) -> set[str]:
    ids = set(Chart.objects.visible_to(user).values_list("pk", flat=True))
    return {name for name, chart in population.items() if chart.pk in ids}


def test_anonymous_sees_public_charts_only(population: dict[str, Chart]) -> None:
    expected = {"alice_public", "bob_public", "orphan_public"}
    assert _visible(AnonymousUser(), population) == expected
    assert _visible(None, population) == expected


def test_user_sees_public_charts_and_own(population: dict[str, Chart], alice: Any, bob: Any) -> None:
    assert _visible(alice, population) == {"alice_public", "alice_private", "bob_public", "orphan_public"}
    assert _visible(bob, population) == {"alice_public", "bob_public", "bob_private", "orphan_public"}


def test_staff_sees_everything(population: dict[str, Chart], staff: Any) -> None:
    assert _visible(staff, population) == set(population)


def test_visible_to_is_chainable(population: dict[str, Chart], alice: Any) -> None:
    qs = Chart.objects.filter(owner=alice).visible_to(None)
    assert list(qs) == [population["alice_public"]]


# -- results -----------------------------------------------------------------------------------------------------


def test_duplicate_result_key_raises_integrity_error(make_chart: ChartFactory) -> None:
    a, b = make_chart(), make_chart()
    _result("synastry", a, b)
    with pytest.raises(IntegrityError), transaction.atomic():
        _result("synastry", a, b, positions_hash="q" * 64, payload=b"other")
    assert AspectResult.objects.count() == 1


def test_natal_result_key_is_unique_too(make_chart: ChartFactory) -> None:
    a = make_chart()
    _result("natal", a, a)
    with pytest.raises(IntegrityError), transaction.atomic():
        _result("natal", a, a)


@pytest.mark.parametrize(
    "differs",
    [
        {"kind": "natal"},
        {"swap": True},
        {"config_hash": "d" * 16},
        {"engine_version": "2"},
    ],
)
def test_results_differing_in_one_key_field_coexist(make_chart: ChartFactory, differs: dict[str, Any]) -> None:
    a, b = make_chart(), make_chart()
    _result("synastry", a, b)
    if differs.pop("swap", False):
        _result("synastry", b, a)
    else:
        _result(differs.pop("kind", "synastry"), a, b, **differs)
    assert AspectResult.objects.count() == 2


def test_deleting_a_chart_deletes_its_results_on_both_sides(make_chart: ChartFactory) -> None:
    x, y, z = make_chart(), make_chart(), make_chart()
    _result("natal", x, x)
    _result("synastry", x, y)
    _result("synastry", y, x)
    kept = _result("synastry", y, z)
    x.delete()
    assert list(AspectResult.objects.values_list("pk", flat=True)) == [kept.pk]


def test_deleting_the_owner_deletes_the_charts_and_their_results(make_chart: ChartFactory, alice: Any) -> None:
    mine, other = make_chart(alice), make_chart(None)
    _result("synastry", other, mine)
    alice.delete()
    assert list(Chart.objects.values_list("pk", flat=True)) == [other.pk]
    assert AspectResult.objects.count() == 0


# -- batch runs --------------------------------------------------------------------------------------------------


def test_batch_run_progress_fraction() -> None:
    run = BatchRun.objects.create(mode="synastry")
    assert run.status == BatchRun.Status.PENDING
    assert run.progress_fraction == 0.0  # nothing to do yet: not a division by zero
    run.progress_total = 400
    run.progress_done = 100
    assert run.progress_fraction == pytest.approx(0.25)
    run.progress_done = 400
    assert run.progress_fraction == 1.0


def test_batch_run_duration() -> None:
    start = timezone.now()
    run = BatchRun.objects.create(mode="natal", started_at=start)
    assert run.duration_s is None  # still running
    run.finished_at = start + timedelta(minutes=2, milliseconds=500)
    run.save()
    run.refresh_from_db()
    assert run.duration_s == pytest.approx(120.5)
    assert BatchRun(mode="natal", finished_at=start).duration_s is None  # never started


def test_batch_run_keeps_its_history_when_the_owner_goes(alice: Any) -> None:
    run = BatchRun.objects.create(mode="scores", owner=alice, parameters={"k": 10})
    alice.delete()
    run.refresh_from_db()
    assert run.owner is None
    assert run.parameters == {"k": 10}
    assert str(run) == f"scores run {run.pk} (pending)"


def test_batch_runs_are_listed_newest_first() -> None:
    old = BatchRun.objects.create(mode="a")
    new = BatchRun.objects.create(mode="b")
    BatchRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert list(BatchRun.objects.values_list("pk", flat=True)) == [new.pk, old.pk]
