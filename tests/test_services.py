"""aspects_app.services: charts from birth data, persisted results, invalidation, configuration and scores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from aspects_app import ephemeris, results, services
from aspects_app.engine import ENGINE_VERSION, AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.aspects import KERYKEION_ALL_ORBS, KERYKEION_DEFAULT_ORBS, STANDARD_POINTS
from aspects_app.engine.errors import FieldError
from aspects_app.models import AspectResult, Chart
from aspects_app.services import ChartInput

from .conftest import PLANETS, ChartFactory

pytestmark = pytest.mark.django_db

BERLIN_1979 = ChartInput(
    name="R000", birth_datetime=datetime(1979, 7, 16, 7, 37, tzinfo=UTC), latitude=52.52, longitude=13.405
)


def _birth(n: int) -> ChartInput:
    """Distinct, valid birth data for chart ``n``."""
    return ChartInput(
        name=f"born {n}",
        birth_datetime=datetime(1950 + n, 1 + n % 12, 1 + n % 28, n % 24, 7 * n % 60, tzinfo=UTC),
        latitude=-60.0 + 11.0 * n % 120,
        longitude=-170.0 + 37.0 * n % 340,
    )


def _count_ephemeris_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the ephemeris: one entry (the number of charts) per compute_positions call."""
    calls: list[int] = []
    real = ephemeris.compute_positions

    def spy(datetimes: Any, lat: Any, lon: Any, *args: Any, **kwargs: Any) -> ephemeris.Positions:
        calls.append(len(datetimes))
        return real(datetimes, lat, lon, *args, **kwargs)

    monkeypatch.setattr(ephemeris, "compute_positions", spy)
    return calls


def _records(result: services.AspectsResult) -> list[tuple[str, str, str, float, str]]:
    return [(r["p1"], r["p2"], r["aspect"], r["orb"], r["movement"]) for r in result.aspects()]


# -- charts ------------------------------------------------------------------------------------------------------


def test_create_chart_from_birth_data_computes_the_13_standard_points(alice: Any) -> None:
    (chart,) = services.create_charts(alice, [BERLIN_1979])
    stored = Chart.objects.get(pk=chart.pk)
    assert stored.owner == alice
    assert stored.points == list(STANDARD_POINTS)
    assert len(STANDARD_POINTS) == 13
    expected = ephemeris.compute_positions([BERLIN_1979.birth_datetime], [52.52], [13.405])
    assert stored.longitude_array.tobytes() == np.ascontiguousarray(expected.longitudes[0]).tobytes()
    speeds = stored.speed_array
    assert speeds is not None
    assert speeds.tobytes() == np.ascontiguousarray(expected.speeds[0]).tobytes()
    assert stored.birth_datetime == BERLIN_1979.birth_datetime
    assert (stored.latitude, stored.longitude) == (52.52, 13.405)
    assert stored.positions_hash and len(stored.positions_hash) == 64
    # Sanity: the Sun of 16 July is in Cancer, about 113° (kerykeion: 113.1909°).
    assert abs(stored.longitude_array[0] - 113.1909) < 0.001


def test_anonymous_owner_is_stored_as_none() -> None:
    (chart,) = services.create_charts(AnonymousUser(), [BERLIN_1979])
    assert Chart.objects.get(pk=chart.pk).owner is None
    (chart,) = services.create_charts(None, [BERLIN_1979])
    assert Chart.objects.get(pk=chart.pk).owner is None


def test_bulk_create_computes_every_position_in_one_ephemeris_call(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ephemeris_calls(monkeypatch)
    inputs = [_birth(n) for n in range(7)]
    charts = services.create_charts(alice, inputs)
    assert calls == [7]
    assert len(charts) == 7
    assert all(c.pk is not None for c in charts)
    assert Chart.objects.filter(owner=alice).count() == 7
    expected = ephemeris.compute_positions(
        [i.birth_datetime for i in inputs], [i.latitude for i in inputs], [i.longitude for i in inputs]
    )
    for n, chart in enumerate(charts):
        stored = Chart.objects.get(pk=chart.pk)
        assert stored.name == inputs[n].name
        np.testing.assert_array_equal(stored.longitude_array, expected.longitudes[n])


def test_bulk_create_mixes_birth_data_and_given_positions(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_ephemeris_calls(monkeypatch)
    given = ChartInput(name="given", points=("Sun", "Moon"), longitudes=(1.0, 2.0), speeds=None)
    charts = services.create_charts(alice, [_birth(1), given, _birth(2)])
    assert calls == [2]  # only the charts with birth data go to the ephemeris
    stored = Chart.objects.get(pk=charts[1].pk)
    assert stored.points == ["Sun", "Moon"]
    np.testing.assert_array_equal(stored.longitude_array, [1.0, 2.0])
    assert stored.speed_array is None
    assert Chart.objects.get(pk=charts[0].pk).points == list(STANDARD_POINTS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"birth_datetime": datetime(1800, 1, 1, tzinfo=UTC)}, "birth_datetime"),
        ({"birth_datetime": datetime(2100, 1, 1, tzinfo=UTC)}, "birth_datetime"),
        ({"latitude": 95.0}, "latitude"),
        ({"longitude": float("nan")}, "longitude"),
    ],
)
def test_bad_birth_data_is_a_service_error_and_creates_nothing(alice: Any, change: dict[str, Any], field: str) -> None:
    bad = ChartInput(**{**BERLIN_1979.__dict__, **change})
    with pytest.raises(FieldError) as info:
        services.create_charts(alice, [BERLIN_1979, bad])
    assert info.value.field == field
    assert Chart.objects.count() == 0


# -- persisted results -------------------------------------------------------------------------------------------


def test_natal_result_is_persisted_then_served(make_chart: ChartFactory) -> None:
    chart = make_chart()
    config = services.aspect_config()
    first = services.natal_aspects(chart, config)
    assert not first.cached
    assert AspectResult.objects.count() == 1
    row = AspectResult.objects.get()
    assert (row.kind, row.chart_a_id, row.chart_b_id) == ("natal", chart.pk, chart.pk)
    assert row.config_hash == config.config_hash()
    assert row.engine_version == ENGINE_VERSION
    assert row.hit_count == len(first.hits)

    second = services.natal_aspects(Chart.objects.get(pk=chart.pk), config)
    assert second.cached
    assert _records(second) == _records(first)
    assert AspectResult.objects.count() == 1


def test_natal_result_equals_the_engine_called_directly(make_chart: ChartFactory) -> None:
    chart = make_chart()
    config = AspectConfig.preset("all")
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    speeds = chart.speed_array
    assert speeds is not None
    expected = calc.natal(chart.longitude_array[None, :], speeds[None, :], points=PLANETS)
    result = services.natal_aspects(chart, config)
    assert result.hits.to_records(point_names=True) == expected.to_records(point_names=True)
    assert len(expected) > 0


def test_another_configuration_is_another_row(make_chart: ChartFactory) -> None:
    chart = make_chart()
    services.natal_aspects(chart, services.aspect_config("default"))
    services.natal_aspects(chart, services.aspect_config("all"))
    assert not services.natal_aspects(chart, services.aspect_config({"trine": 3})).cached
    assert AspectResult.objects.filter(chart_a=chart).count() == 3
    assert services.natal_aspects(chart, services.aspect_config("all")).cached


def test_synastry_result_is_persisted_then_served_per_ordered_pair(make_chart: ChartFactory) -> None:
    a, b = make_chart(), make_chart()
    config = services.aspect_config()
    ab = services.synastry_aspects(a, b, config)
    assert not ab.cached
    assert services.synastry_aspects(a, b, config).cached
    ba = services.synastry_aspects(b, a, config)
    assert not ba.cached  # p1 comes from chart_a: (b, a) is another result
    assert AspectResult.objects.filter(kind="synastry").count() == 2
    swapped = sorted((p2, p1, asp, orb) for p1, p2, asp, orb, _ in _records(ab))
    assert swapped == sorted((p1, p2, asp, orb) for p1, p2, asp, orb, _ in _records(ba))


def test_synastry_needs_the_same_points(make_chart: ChartFactory) -> None:
    a = make_chart()
    b = make_chart(points=["Sun", "Moon"], longitudes=[1.0, 2.0])
    with pytest.raises(FieldError) as info:
        services.synastry_aspects(a, b, services.aspect_config())
    assert info.value.field == "chart_b"
    assert AspectResult.objects.count() == 0


def test_stale_result_is_recomputed_and_overwritten_not_duplicated(make_chart: ChartFactory) -> None:
    chart = make_chart(points=["Sun", "Moon"], longitudes=[0.0, 120.0], speeds=None)
    config = services.aspect_config()
    assert [r[2] for r in _records(services.natal_aspects(chart, config))] == ["trine"]
    # Positions changed behind the services' back (no invalidation): the row is stale, not served.
    chart.set_positions(["Sun", "Moon"], [0.0, 90.0])
    chart.save()
    again = services.natal_aspects(chart, config)
    assert not again.cached
    assert [r[2] for r in _records(again)] == ["square"]
    row = AspectResult.objects.get()
    assert row.positions_hash != ""
    assert services.natal_aspects(chart, config).cached
    assert AspectResult.objects.count() == 1


def test_recomputation_after_update_chart_leaves_one_row(make_chart: ChartFactory) -> None:
    chart = make_chart(points=["Sun", "Moon"], longitudes=[0.0, 120.0], speeds=None)
    config = services.aspect_config()
    services.natal_aspects(chart, config)
    services.update_chart(chart, ChartInput(points=("Sun", "Moon"), longitudes=(0.0, 180.0)), ["points", "longitudes"])
    result = services.natal_aspects(Chart.objects.get(pk=chart.pk), config)
    assert not result.cached
    assert [r[2] for r in _records(result)] == ["opposition"]
    assert AspectResult.objects.count() == 1
    assert AspectResult.objects.get().hit_count == 1


# -- update and invalidation -------------------------------------------------------------------------------------


def _fill_results(x: Chart, y: Chart, z: Chart) -> dict[str, int]:
    config = services.aspect_config()
    services.natal_aspects(x, config)
    services.natal_aspects(y, config)
    services.synastry_aspects(x, y, config)
    services.synastry_aspects(y, x, config)
    services.synastry_aspects(y, z, config)
    return {"total": AspectResult.objects.count()}


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        (ChartInput(points=PLANETS, longitudes=tuple(float(i) for i in range(10))), ["points", "longitudes"]),
        (ChartInput(birth_datetime=BERLIN_1979.birth_datetime, latitude=10.0, longitude=20.0), ["latitude"]),
    ],
    ids=["new positions", "new birth data"],
)
def test_update_chart_invalidates_its_results_as_chart_a_and_as_chart_b(
    make_chart: ChartFactory, changes: ChartInput, fields: list[str]
) -> None:
    x, y, z = make_chart(), make_chart(), make_chart()
    if "latitude" in fields:
        (x,) = services.create_charts(None, [BERLIN_1979])
        (y,) = services.create_charts(None, [_birth(3)])
        (z,) = services.create_charts(None, [_birth(4)])
    assert _fill_results(x, y, z)["total"] == 5
    old_hash = x.positions_hash
    services.update_chart(x, changes, fields)
    assert Chart.objects.get(pk=x.pk).positions_hash != old_hash
    remaining = set(AspectResult.objects.values_list("kind", "chart_a", "chart_b"))
    assert remaining == {("natal", y.pk, y.pk), ("synastry", y.pk, z.pk)}


def test_update_chart_without_position_change_keeps_results(make_chart: ChartFactory) -> None:
    x, y, z = make_chart(), make_chart(), make_chart()
    _fill_results(x, y, z)
    updated = services.update_chart(x, ChartInput(name="renamed", is_public=True), ["name", "is_public"])
    assert AspectResult.objects.count() == 5
    stored = Chart.objects.get(pk=x.pk)
    assert (stored.name, stored.is_public) == ("renamed", True)
    assert updated.positions_hash == x.positions_hash
    # Setting the same positions again is not a change either.
    services.update_chart(
        x, ChartInput(points=PLANETS, longitudes=tuple(x.longitude_array), speeds=tuple(x.speed_array)), []
    )
    assert AspectResult.objects.count() == 5


def test_update_chart_recomputes_positions_from_new_birth_data() -> None:
    (chart,) = services.create_charts(None, [BERLIN_1979])
    new_time = datetime(1990, 3, 4, 5, 6, tzinfo=UTC)
    services.update_chart(chart, ChartInput(birth_datetime=new_time), ["birth_datetime"])
    stored = Chart.objects.get(pk=chart.pk)
    expected = ephemeris.compute_positions([new_time], [52.52], [13.405])
    np.testing.assert_array_equal(stored.longitude_array, expected.longitudes[0])
    assert stored.birth_datetime == new_time


def test_update_chart_with_incomplete_birth_data_fails_without_saving(make_chart: ChartFactory) -> None:
    chart = make_chart(name="positions only")
    services.natal_aspects(chart, services.aspect_config())
    with pytest.raises(FieldError) as info:
        services.update_chart(chart, ChartInput(name="x", latitude=10.0), ["name", "latitude"])
    assert info.value.field == "birth_datetime"
    stored = Chart.objects.get(pk=chart.pk)
    assert (stored.name, stored.latitude) == ("positions only", None)
    assert AspectResult.objects.count() == 1


def test_invalidate_results_counts_what_it_deleted(make_chart: ChartFactory) -> None:
    x, y, z = make_chart(), make_chart(), make_chart()
    _fill_results(x, y, z)
    assert results.invalidate_results(x) == 3
    assert results.invalidate_results(x) == 0
    assert AspectResult.objects.count() == 2


# -- configuration -----------------------------------------------------------------------------------------------


def test_aspect_config_presets() -> None:
    assert dict(services.aspect_config("default").orbs) == dict(KERYKEION_DEFAULT_ORBS)
    assert dict(services.aspect_config("all").orbs) == dict(KERYKEION_ALL_ORBS)
    assert services.aspect_config() == AspectConfig()


def test_aspect_config_from_dict_and_subset() -> None:
    config = services.aspect_config({"trine": 8, "square": 3.5})
    assert dict(config.orbs) == {"square": 3.5, "trine": 8.0}
    subset = services.aspect_config("all", ["trine", "quincunx"])
    assert dict(subset.orbs) == {"trine": 8.0, "quincunx": 1.0}
    assert subset.config_hash() != services.aspect_config("all").config_hash()


def test_aspect_config_default_follows_settings() -> None:
    with override_settings(ASPECTS={"ORBS": {"opposition": 2}}):
        assert dict(services.aspect_config().orbs) == {"opposition": 2.0}
        assert dict(services.describe_configuration()["default_orbs"]) == {"opposition": 2.0}
    assert dict(services.aspect_config().orbs) == dict(KERYKEION_DEFAULT_ORBS)


@pytest.mark.parametrize(
    ("orbs", "aspects", "field"),
    [
        ("wide", None, "orbs"),
        ({"trine": -1}, None, "orbs"),
        ({"trine": float("nan")}, None, "orbs"),
        ({"trine": 95}, None, "orbs"),
        ({"trines": 8}, None, "orbs"),
        ({"trine": "8"}, None, "orbs"),
        ({}, None, "orbs"),
        ("default", ["trine", "sqare"], "aspects"),
        ({"trine": 8}, ["square"], "aspects"),  # nothing left active
    ],
)
def test_aspect_config_bad_values_name_the_field(orbs: Any, aspects: Any, field: str) -> None:
    with pytest.raises(FieldError) as info:
        services.aspect_config(orbs, aspects)
    assert info.value.field == field
    assert info.value.message
    assert isinstance(info.value, ValueError)


def test_describe_configuration() -> None:
    described = services.describe_configuration()
    assert [a["name"] for a in described["aspects"]][:3] == ["conjunction", "semi-sextile", "semi-square"]
    assert described["points"] == list(STANDARD_POINTS)
    assert set(described["orb_presets"]) == {"default", "all"}
    assert described["engine_version"] == ENGINE_VERSION
    with override_settings(ASPECTS={"MAX_CHARTS_PER_REQUEST": 7}):
        assert services.describe_configuration()["max_charts_per_request"] == 7


# -- scores and matches ------------------------------------------------------------------------------------------


@pytest.fixture
def people(make_chart: ChartFactory) -> list[Chart]:
    return [make_chart(seed=100 + n) for n in range(12)]


@pytest.mark.parametrize("method", ["discepolo", "weighted"])
def test_scores_agree_with_the_engine(people: list[Chart], method: str) -> None:
    me, others = people[0], people[1:]
    config = services.aspect_config()
    got = services.scores(me, others, method, config)
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    lon_b = np.stack([c.longitude_array for c in others])
    expected = calc.scores(me.longitude_array[None, :], lon_b, method=method, points=PLANETS)[0]
    assert [g["chart"] for g in got] == [c.pk for c in others]
    if method == "discepolo":
        assert [g["score"] for g in got] == expected.tolist()
        assert all(isinstance(g["score"], int) for g in got)
    else:
        np.testing.assert_allclose([g["score"] for g in got], expected, atol=1e-6, rtol=0)
    assert len(set(expected.tolist())) > 1  # the population is not degenerate


def test_scores_keep_the_requested_order_and_duplicates(people: list[Chart]) -> None:
    me = people[0]
    order = [people[5], people[2], people[5]]
    got = services.scores(me, order, "discepolo", services.aspect_config())
    assert [g["chart"] for g in got] == [people[5].pk, people[2].pk, people[5].pk]
    assert got[0]["score"] == got[2]["score"]


def test_scores_errors(people: list[Chart], make_chart: ChartFactory) -> None:
    config = services.aspect_config()
    with pytest.raises(FieldError) as info:
        services.scores(people[0], people[1:3], "astrology", config)
    assert info.value.field == "method"
    odd = make_chart(points=["Sun", "Moon"], longitudes=[1.0, 2.0])
    with pytest.raises(FieldError) as info:
        services.scores(people[0], [odd], "discepolo", config)
    assert info.value.field == "charts"
    with pytest.raises(FieldError) as info:
        services.scores(people[0], [], "discepolo", config)
    assert info.value.field == "charts"


@pytest.mark.parametrize(("k", "method"), [(1, "discepolo"), (5, "discepolo"), (4, "weighted"), (50, "discepolo")])
def test_top_matches_agree_with_the_engine(people: list[Chart], k: int, method: str) -> None:
    me = people[3]
    config = services.aspect_config()
    got = services.top_matches(me, people, k, method, config)  # the chart itself is among the candidates
    others = [c for c in people if c.pk != me.pk]
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    lon_b = np.stack([c.longitude_array for c in others])
    best = calc.top_k(me.longitude_array[None, :], lon_b, k=k, method=method, points=PLANETS)
    assert [g["rank"] for g in got] == list(range(1, min(k, len(others)) + 1))
    assert [g["chart"] for g in got] == [others[j].pk for j in best.indices[0].tolist()]
    np.testing.assert_allclose([g["score"] for g in got], best.scores[0].tolist(), atol=1e-6, rtol=0)
    assert me.pk not in [g["chart"] for g in got]
    # And the ranking is the scores' ranking.
    all_scores = {s["chart"]: s["score"] for s in services.scores(me, others, method, config)}
    ranked = sorted(others, key=lambda c: (-all_scores[c.pk], others.index(c)))
    assert [g["chart"] for g in got] == [c.pk for c in ranked[:k]]


def test_top_matches_skips_charts_with_other_points(people: list[Chart], make_chart: ChartFactory) -> None:
    odd = make_chart(points=["Sun", "Moon"], longitudes=[1.0, 2.0])
    got = services.top_matches(people[0], [*people[1:4], odd], 10, "discepolo", services.aspect_config())
    assert {g["chart"] for g in got} == {c.pk for c in people[1:4]}
    assert services.top_matches(people[0], [people[0], odd], 3, "discepolo", services.aspect_config()) == []


def test_inline_synastry_matches_stored_synastry(make_chart: ChartFactory) -> None:
    a, b = make_chart(), make_chart()
    config = services.aspect_config("all")
    stored = services.synastry_aspects(a, b, config)
    inline = services.inline_synastry(
        PLANETS,
        a.longitude_array.tolist(),
        b.longitude_array.tolist(),
        a.speed_array.tolist(),  # type: ignore[union-attr]
        b.speed_array.tolist(),  # type: ignore[union-attr]
        config,
    )
    assert _records(inline) == _records(stored)
    assert AspectResult.objects.count() == 1  # inline results are not stored as rows


def test_estimate_and_its_errors() -> None:
    plan = services.estimate(1000, 500, 10, "synastry", "discepolo", 256.0)
    assert plan["memory_savings_percent"] > 0
    assert plan["chunk_rows"] >= 1
    with pytest.raises(FieldError) as info:
        services.estimate(1000, 500, 10, "scores", "astrology", 256.0)
    assert info.value.field == "method"
    with pytest.raises(FieldError) as info:
        services.estimate(1000, 500, 10, "sorting", "discepolo", 256.0)
    assert info.value.field == "operation"
    with pytest.raises(FieldError) as info:
        services.estimate(0, 500, 10, "synastry", "discepolo", 256.0)
    assert info.value.field == "num_charts1"
