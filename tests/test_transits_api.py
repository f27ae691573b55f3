"""The transit endpoints: one chart's transits computed on request (equal to the engine's, visibility, bad input,
the year maximum, the cache and its invalidation) and the stored events of batch runs (visibility, filters,
pagination), plus the writes of :mod:`aspects_app.results` they read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import yaml
from rest_framework.test import APIClient

from aspects_app import results, transit_windows
from aspects_app.engine import TRANSIT_ORBS, AspectConfig, MemoryOptimizedVectorizedCalculator, sky_events
from aspects_app.ephemeris import transit_track
from aspects_app.models import BatchRun, Chart, TransitEvent

from .conftest import PLANETS, ChartFactory, client_for

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 4, 1, tzinfo=UTC)
# The request's track is cut from a cached window whose samples start at midnight; the engine's own track here
# starts at ``start``: moments differ by the interpolant's error, ~0.01″ of arc at most.
ARC_TOLERANCE_ARCSEC = 0.05


def transits_url(pk: int) -> str:
    return f"/api/aspects/charts/{pk}/transits/"


def get_transits(client: APIClient, pk: int, **params: Any) -> Any:
    query = {"start": START.isoformat(), "end": END.isoformat(), **params}
    return client.get(transits_url(pk), query)


def _moment(text: str | None) -> np.datetime64:
    if text is None:
        return np.datetime64("NaT", "us")
    return np.datetime64(datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None), "us")


@pytest.fixture
def public_chart(make_chart: ChartFactory, alice: Any) -> Chart:
    chart: Chart = make_chart(alice, is_public=True, seed=7)
    return chart


def test_events_equal_the_engines_for_that_chart(anon_client: APIClient, public_chart: Chart) -> None:
    response = get_transits(anon_client, public_chart.pk)
    assert response.status_code == 200, response.json()
    body = response.json()
    track = transit_track(START, END)
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(TRANSIT_ORBS))
    expected = calc.transits(public_chart.longitude_array[None, :], track, points=PLANETS).to_records()
    got = body["events"]
    assert len(got) == len(expected) > 100
    assert [(e["point"], e["body"], e["aspect"], e["retrograde"]) for e in got] == [
        (e["point"], e["body"], e["aspect"], e["retrograde"]) for e in expected
    ]
    exact_got = np.array([_moment(e["exact"]) for e in got])
    exact_expected = np.array([np.datetime64(e["exact"].replace(tzinfo=None), "us") for e in expected])
    _, speeds = track.interpolate(exact_expected)
    body_column = [track.bodies.index(e["body"]) for e in expected]
    speed = np.abs(speeds[np.arange(len(expected)), body_column])
    arc = np.abs((exact_got - exact_expected).astype(np.int64)) / 86_400e6 * speed * 3600
    assert arc.max() < ARC_TOLERANCE_ARCSEC
    for key in ("starts", "ends"):
        assert [e[key] is None for e in got] == [e[key] is None for e in expected]
    assert body["bodies"] == list(PLANETS)
    assert body["orbs"] == dict(TRANSIT_ORBS)
    assert body["cached"] is False and body["source"] == "computed"
    assert [(s["body"], s["kind"], s["sign"]) for s in body["sky"]] == [
        (s["body"], s["kind"], s["sign"]) for s in sky_events(track).to_records()
    ]


def test_bodies_aspects_and_orbs_are_applied(anon_client: APIClient, public_chart: Chart) -> None:
    response = get_transits(anon_client, public_chart.pk, bodies="Mars,Jupiter", aspects="square,trine")
    assert response.status_code == 200, response.json()
    events = response.json()["events"]
    assert events and {e["body"] for e in events} <= {"Mars", "Jupiter"}
    assert {e["aspect"] for e in events} <= {"square", "trine"}
    assert response.json()["orbs"] == {"square": 3.0, "trine": 3.0}
    wide = get_transits(anon_client, public_chart.pk, bodies="Mars", orbs=json.dumps({"quintile": 5}))
    assert wide.status_code == 200, wide.json()
    assert {e["aspect"] for e in wide.json()["events"]} == {"quintile"}
    # Wider orbs open the same passes earlier and close them later.
    narrow = get_transits(anon_client, public_chart.pk, bodies="Mars", orbs=json.dumps({"quintile": 1}))
    pairs = zip(narrow.json()["events"], wide.json()["events"], strict=True)
    assert all(n["exact"] == w["exact"] for n, w in pairs)


def test_private_charts_answer_404_except_to_their_owner(
    make_chart: ChartFactory, alice: Any, anon_client: APIClient, bob_client: APIClient, alice_client: APIClient
) -> None:
    private = make_chart(alice, is_public=False)
    assert get_transits(anon_client, private.pk).status_code == 404
    assert get_transits(bob_client, private.pk).status_code == 404
    assert get_transits(alice_client, private.pk).status_code == 200
    assert get_transits(alice_client, private.pk + 1000).status_code == 404
    assert get_transits(alice_client, 2**63).status_code == 404  # past the databases' integers


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": None}, "start"),
        ({"start": "tomorrow"}, "start"),
        ({"start": "2027-02-30"}, "start"),
        ({"end": "2026-12-31"}, "end"),
        ({"end": START.isoformat()}, "end"),
        ({"start": "1850-01-01", "end": "1850-02-01"}, "start"),
        ({"start": "2053-09-01", "end": "2053-12-01"}, "end"),
        # The calendar's very ends: the padding around the range must not overflow datetime (was a 500).
        ({"start": "0001-01-01", "end": "0001-06-01"}, "start"),
        ({"start": "9999-06-01", "end": "9999-12-31T23:59:59"}, "end"),
        ({"bodies": "Sun,Vulcan"}, "bodies"),
        ({"bodies": "Sun,Sun"}, "bodies"),
        ({"bodies": "Ascendant"}, "bodies"),
        ({"aspects": "conjunction,wobble"}, "aspects"),
        ({"aspects": "quintile"}, "aspects"),  # no orb in the transit preset
        ({"orbs": json.dumps({"trine": -1})}, "orbs"),
        ({"orbs": "tight"}, "orbs"),
        ({"orbs": "{not json"}, "orbs"),
        ({"when": "now"}, "when"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(
    anon_client: APIClient, public_chart: Chart, params: dict[str, Any], field: str
) -> None:
    query = {"start": START.isoformat(), "end": END.isoformat(), **params}
    response = anon_client.get(transits_url(public_chart.pk), {k: v for k, v in query.items() if v is not None})
    assert response.status_code == 400, response.json()
    assert field in response.json()


def test_a_year_at_most_per_request(anon_client: APIClient, public_chart: Chart) -> None:
    year = START + timedelta(days=366)
    ok = get_transits(anon_client, public_chart.pk, end=year.isoformat(), bodies="Saturn")
    assert ok.status_code == 200, ok.json()
    over = get_transits(anon_client, public_chart.pk, end=(year + timedelta(seconds=1)).isoformat())
    assert over.status_code == 400
    assert "366 days" in over.json()["end"][0]


def test_moments_without_offset_are_utc_and_a_decoded_plus_is_an_offset(
    anon_client: APIClient, public_chart: Chart
) -> None:
    plain = get_transits(anon_client, public_chart.pk, start="2027-01-01", end="2027-02-01T00:00:00", bodies="Sun")
    assert plain.status_code == 200, plain.json()
    assert plain.json()["start"] == "2027-01-01T00:00:00Z"
    # "+01:00" sent unencoded arrives as " 01:00".
    shifted = get_transits(anon_client, public_chart.pk, start="2027-01-01T01:00:00 01:00", bodies="Sun")
    assert shifted.status_code == 200, shifted.json()
    assert shifted.json()["start"] == "2027-01-01T00:00:00Z"


def test_results_are_cached_and_forgotten_when_the_chart_changes(alice_client: APIClient, public_chart: Chart) -> None:
    first = get_transits(alice_client, public_chart.pk, bodies="Sun,Mars")
    again = get_transits(alice_client, public_chart.pk, bodies="Sun,Mars")
    assert (first.json()["cached"], again.json()["cached"]) == (False, True)
    assert again.json()["source"] == "local"
    assert again.json()["events"] == first.json()["events"]
    longitudes = [(lon + 40.0) % 360.0 for lon in public_chart.longitude_array.tolist()]
    edit = {"position_input": {"points": list(PLANETS), "longitudes": longitudes}}
    assert alice_client.patch(f"/api/aspects/charts/{public_chart.pk}/", edit, format="json").status_code == 200
    after = get_transits(alice_client, public_chart.pk, bodies="Sun,Mars")
    assert after.json()["cached"] is False
    assert after.json()["events"] != first.json()["events"]


def test_a_cut_window_matches_a_direct_track() -> None:
    """Also across a station: Mercury turns retrograde in 2027-02 (the triple pass of the engine's tests)."""
    start, end = datetime(2027, 2, 3, 5, 17, tzinfo=UTC), datetime(2027, 3, 19, 23, 1, tzinfo=UTC)
    cut = transit_windows.track_for(start, end)
    direct = transit_track(start, end)
    assert (cut.start, cut.end) == (direct.start, direct.end)
    assert cut.times[0] <= direct.times[0] and cut.times[-1] >= direct.times[-1] - np.timedelta64(6, "h")
    assert len(cut.station_times) == len(direct.station_times)
    gap = np.abs((cut.station_times - direct.station_times).astype(np.int64))
    assert gap.max() < 1_000_000  # µs: both bisected on the ephemeris to ~0.02 s
    probe = direct.times[4:-4]
    lon_cut, _ = cut.interpolate(probe)
    lon_direct, _ = direct.interpolate(probe)
    assert np.abs((lon_cut - lon_direct + 180) % 360 - 180).max() * 3600 < 0.01


# -- stored events -------------------------------------------------------------------------------------------------


Row = tuple[Any, ...]


def _events(chart: Chart, count: int, day: int = 1) -> list[Row]:
    """Rows as the batch writer hands them over (results.TRANSIT_EVENT_COLUMNS)."""
    base = datetime(2027, 1, day, tzinfo=UTC)
    return [
        (chart.pk, "Venus", "Mars", "square", base + timedelta(hours=6 * n), None, base + timedelta(hours=6 * n + 30),
         n % 2 == 1)
        for n in range(count)
    ]  # fmt: skip


def _store(chart: Chart, events: list[Row], config_hash: str = "c" * 16) -> int:
    return results.replace_transit_events(
        [chart.pk], config_hash, datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC), events
    )


@pytest.fixture
def stored(make_chart: ChartFactory, alice: Any) -> dict[str, Chart]:
    shown = make_chart(alice, is_public=True)
    hidden = make_chart(alice, is_public=False)
    _store(shown, _events(shown, 8))
    _store(hidden, _events(hidden, 3))
    return {"public": shown, "private": hidden}


def list_events(client: APIClient, **params: Any) -> Any:
    return client.get("/api/aspects/transit-events/", params)


def test_stored_events_follow_chart_visibility(
    stored: dict[str, Chart], anon_client: APIClient, alice_client: APIClient, bob_client: APIClient
) -> None:
    anon = list_events(anon_client).json()
    assert anon["count"] == 8 and {row["chart"] for row in anon["results"]} == {stored["public"].pk}
    assert list_events(alice_client).json()["count"] == 11
    assert list_events(bob_client, chart=stored["private"].pk).status_code == 404
    own = list_events(alice_client, chart=stored["private"].pk).json()
    assert own["count"] == 3
    assert own["results"][1] | {"chart": 0} == {
        "chart": 0, "point": "Venus", "body": "Mars", "aspect": "square", "exact": "2027-01-01T06:00:00Z",
        "starts": None, "ends": "2027-01-02T12:00:00Z", "retrograde": True, "config_hash": "c" * 16, "run": None,
    }  # fmt: skip
    assert set(own["results"][0]) == {
        "chart", "point", "body", "aspect", "exact", "starts", "ends", "retrograde", "config_hash", "run",
    }  # fmt: skip


def test_stored_events_between_two_moments_a_page_at_a_time(stored: dict[str, Chart], anon_client: APIClient) -> None:
    window = list_events(anon_client, start="2027-01-01T06:00:00Z", end="2027-01-02T00:00:00Z").json()
    assert [row["exact"] for row in window["results"]] == [
        "2027-01-01T06:00:00Z", "2027-01-01T12:00:00Z", "2027-01-01T18:00:00Z",
    ]  # fmt: skip
    page = list_events(anon_client, page_size=5, page=2).json()
    assert page["count"] == 8 and len(page["results"]) == 3 and page["previous"]
    assert list_events(anon_client, page=9).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "soon"}, "start"),
        ({"start": "2027-01-02", "end": "2027-01-01"}, "end"),
        ({"chart": "x"}, "chart"),
        ({"chart": 2**63}, "chart"),
        ({"page_size": 0}, "page_size"),
        ({"charts": 1}, "charts"),
        ({"run": "x"}, "run"),
        ({"run": 0}, "run"),
        ({"run": 2**63}, "run"),
    ],
)
def test_stored_events_bad_filters_are_400s(
    stored: dict[str, Chart], anon_client: APIClient, params: dict[str, Any], field: str
) -> None:
    response = list_events(anon_client, **params)
    assert response.status_code == 400
    assert field in response.json()


def test_stored_events_of_one_run_follow_the_jobs_visibility(
    stored: dict[str, Chart], make_chart: ChartFactory, alice: Any, bob: Any, staff: Any
) -> None:
    def job(owner: Any) -> int:
        # A job (POST jobs/) is a distributed run; visible to its owner and staff only.
        return BatchRun.objects.create(mode="transits", owner=owner, parameters={"distributed": {}}).pk

    alices, bobs = job(alice), job(bob)
    operators = BatchRun.objects.create(mode="transits", parameters={}).pk  # compute_aspects' own run
    public, bobs_private = stored["public"], make_chart(bob, is_public=False)
    for run, config_hash, count in ((alices, "a" * 16, 5), (bobs, "b" * 16, 2), (operators, "o" * 16, 1)):
        for chart in (public, bobs_private):
            results.replace_transit_events(
                [chart.pk], config_hash, START, END, _events(chart, count, day=10), run_id=run
            )

    def runs_listed(user: Any, run: int) -> Any:
        response = list_events(client_for(user), run=run, page_size=500)
        if response.status_code != 200:
            return response.status_code, response.json()
        return sorted((row["chart"], row["run"]) for row in response.json()["results"])

    # Only that run's rows, of the charts the caller may see (bob's private chart is not alice's to see).
    assert runs_listed(alice, alices) == [(public.pk, alices)] * 5
    assert runs_listed(bob, bobs) == sorted([(public.pk, bobs), (bobs_private.pk, bobs)] * 2)
    assert runs_listed(staff, operators) == sorted([(public.pk, operators), (bobs_private.pk, operators)])
    # Another user's job, an operator's run, no such run, or an anonymous caller: the same 404, naming run.
    hidden = {"detail": "run: no such job"}
    assert runs_listed(alice, bobs) == runs_listed(alice, operators) == (404, hidden)
    assert runs_listed(alice, 10**9) == runs_listed(None, alices) == (404, hidden)
    assert list_events(client_for(alice), run=alices, chart=public.pk).json()["count"] == 5
    assert list_events(client_for(alice), run=alices, chart=bobs_private.pk).status_code == 404


def test_the_schema_documents_the_stored_events_filters(anon_client: APIClient) -> None:
    schema = yaml.safe_load(anon_client.get("/api/aspects/schema/").content)
    read = schema["paths"]["/api/aspects/transit-events/"]["get"]
    parameters = {p["name"]: p for p in read["parameters"]}
    assert {"chart", "start", "end", "run", "page", "page_size"} <= set(parameters)
    assert parameters["run"]["schema"] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}
    assert "job" in read["responses"]["404"]["description"]


def test_storing_a_block_again_replaces_it(make_chart: ChartFactory) -> None:
    chart = make_chart()
    assert _store(chart, _events(chart, 5)) == 5
    assert _store(chart, _events(chart, 5)) == 5
    assert TransitEvent.objects.filter(chart=chart).count() == 5
    # Another configuration's events, and events outside the replaced range, stay.
    _store(chart, _events(chart, 2), config_hash="d" * 16)
    results.replace_transit_events(
        [chart.pk], "c" * 16, datetime(2027, 1, 1, 12, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC), []
    )
    assert sorted(TransitEvent.objects.filter(chart=chart).values_list("config_hash", flat=True)) == [
        "c" * 16, "c" * 16, "d" * 16, "d" * 16,
    ]  # fmt: skip


def test_point_names_are_stored_as_given_whatever_characters_they_hold(make_chart: ChartFactory, bob: Any) -> None:
    # Point names are the caller's text (the API takes up to 64 characters). PostgreSQL's COPY text format reads
    # tabs and newlines as separators and backslashes as escapes: unescaped, a name could end its own row and
    # write a second one, here an event of someone else's chart.
    victim = make_chart(bob)
    attacker = make_chart()
    forged = f"P\tB\tA\t2027-01-01\t\\N\t\\N\tf\t\t\\N\n{victim.pk}\tZ"
    names = [forged, "back\\slash\\", "carriage\rreturn", "a" * 64, "Mars"]
    assert all(len(name) <= 64 for name in names)
    base = datetime(2027, 3, 1, tzinfo=UTC)
    rows = [(attacker.pk, name, "Mars", "trine", base + timedelta(days=n), None, None, False)
            for n, name in enumerate(names)]  # fmt: skip
    assert _store(attacker, rows) == len(rows)
    assert not TransitEvent.objects.filter(chart=victim).exists()
    stored = TransitEvent.objects.filter(chart=attacker).order_by("exact")
    assert list(stored.values_list("point", "body", "aspect")) == [(name, "Mars", "trine") for name in names]


def test_editing_the_positions_deletes_the_charts_stored_events(
    alice_client: APIClient, stored: dict[str, Chart]
) -> None:
    chart = stored["public"]
    edit = {"position_input": {"points": list(PLANETS), "longitudes": [10.0 * n for n in range(10)]}}
    assert alice_client.patch(f"/api/aspects/charts/{chart.pk}/", edit, format="json").status_code == 200
    assert not TransitEvent.objects.filter(chart=chart).exists()
    assert TransitEvent.objects.filter(chart=stored["private"]).count() == 3
