"""The admin: charts edited by their birth data only, positions shown readably, the app's rows read-only
(issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from aspects_app import ephemeris, results
from aspects_app.admin import compact, zodiac_position
from aspects_app.models import AspectResult, BatchRun, Chart, Match, TransitEvent

from .conftest import ChartFactory

ADMIN = "/admin/aspects_app"
BIRTH = {"birth_datetime_0": "1979-07-16", "birth_datetime_1": "07:37:00", "latitude": "52.52", "longitude": "13.405"}


def chart_form(**overrides: str) -> dict[str, str]:
    return {"name": "admin chart", "owner": "", "time_zone": "", **BIRTH, **overrides}


def expected_longitudes(moment: datetime, lat: float, lon: float) -> list[float]:
    return ephemeris.compute_positions([moment], [lat], [lon]).longitudes[0].tolist()


@pytest.fixture
def born(admin_client: Client) -> Chart:
    response = admin_client.post(f"{ADMIN}/chart/add/", chart_form(is_public="on"))
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Chart.objects.get()


def test_added_chart_gets_its_positions_from_the_birth_data(born: Chart, anon_client: APIClient) -> None:
    # TIME_ZONE of the test settings is UTC: the form's wall-clock time is the UTC instant.
    assert born.longitude_array.tolist() == expected_longitudes(datetime(1979, 7, 16, 7, 37, tzinfo=UTC), 52.52, 13.405)
    assert born.positions_problem() is None
    assert anon_client.get(f"/api/aspects/charts/{born.pk}/").status_code == 200
    assert anon_client.get(f"/api/aspects/charts/{born.pk}/natal/").status_code == 200


def test_a_chart_without_birth_data_is_refused(admin_client: Client) -> None:
    form = chart_form(birth_datetime_0="", birth_datetime_1="", latitude="", longitude="")
    response = admin_client.post(f"{ADMIN}/chart/add/", {**form, "points": '["Sun", "Moon"]'})
    assert response.status_code == 200  # the form again, with its error
    assert "positions are computed from them" in response.content.decode()
    assert not Chart.objects.exists()


def test_partial_birth_data_is_refused(admin_client: Client) -> None:
    response = admin_client.post(f"{ADMIN}/chart/add/", chart_form(latitude=""))
    assert response.status_code == 200
    assert "required with the rest of the birth data" in response.content.decode()
    assert not Chart.objects.exists()


def test_editing_birth_data_recomputes_positions_and_drops_results(admin_client: Client, born: Chart) -> None:
    results.save_results([results.result_row("natal", born.pk, born.pk, "cfg", b"old", 1)])
    old_hash = born.positions_hash
    form = chart_form(birth_datetime_0="2000-01-01", birth_datetime_1="12:00:00", points='["Sun"]')
    response = admin_client.post(f"{ADMIN}/chart/{born.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    chart = Chart.objects.get(pk=born.pk)
    assert chart.longitude_array.tolist() == expected_longitudes(datetime(2000, 1, 1, 12, tzinfo=UTC), 52.52, 13.405)
    assert chart.positions_hash != old_hash
    assert len(chart.points) == len(born.points)  # points are not a form field
    assert not AspectResult.objects.filter(chart_a=chart).exists()


def test_editing_other_fields_keeps_positions(admin_client: Client, born: Chart) -> None:
    response = admin_client.post(f"{ADMIN}/chart/{born.pk}/change/", chart_form(name="renamed"))
    assert response.status_code == 302
    chart = Chart.objects.get(pk=born.pk)
    assert (chart.name, chart.positions_hash) == ("renamed", born.positions_hash)


def test_change_page_shows_positions_as_a_table_and_no_user_select(admin_client: Client, born: Chart) -> None:
    page = admin_client.get(f"{ADMIN}/chart/{born.pk}/change/").content.decode()
    sun_sign, sun_degree = zodiac_position(born.longitude_array[born.points.index("Sun")])
    assert sun_sign == "Cancer"  # 16 July
    assert f"<td>Sun</td><td>{sun_sign}</td><td>{sun_degree}</td>" in page
    speeds = born.speed_array
    assert speeds is not None and (speeds < 0).any()  # some planet is retrograde in mid-1979
    assert "<td>R</td>" in page
    assert 'name="points"' not in page and 'name="longitudes"' not in page
    assert '<select name="owner"' not in page  # a raw id, not every user in a list


def test_zodiac_position_rounds_into_the_next_sign_cleanly() -> None:
    assert zodiac_position(29.9999999) == ("Taurus", "0°00′00″")
    assert zodiac_position(359.5) == ("Pisces", "29°30′00″")


def test_recompute_action(admin_client: Client, born: Chart) -> None:
    Chart.objects.filter(pk=born.pk).update(birth_datetime=datetime(2000, 1, 1, 12, tzinfo=UTC))
    response = admin_client.post(
        f"{ADMIN}/chart/", {"action": "recompute_positions", "_selected_action": [str(born.pk)]}, follow=True
    )
    assert "Recomputed the positions of 1 chart" in response.content.decode()
    chart = Chart.objects.get(pk=born.pk)
    assert chart.longitude_array.tolist() == expected_longitudes(datetime(2000, 1, 1, 12, tzinfo=UTC), 52.52, 13.405)


def test_chart_search_uses_the_user_models_login_field(
    admin_client: Client, make_chart: ChartFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_model = get_user_model()
    carol = user_model.objects.create_user(username="carol", email="carol@example.org")
    mine = make_chart(carol, name="carols")
    make_chart(None, name="nobodys")
    # A host model that logs in by email: the username is then no login name at all.
    monkeypatch.setattr(user_model, "USERNAME_FIELD", "email")
    page = admin_client.get(f"{ADMIN}/chart/", {"q": "carol@example.org"}).content.decode()
    assert f"/chart/{mine.pk}/change/" in page
    assert "nobodys" not in page


@pytest.fixture
def app_rows(make_chart: ChartFactory) -> dict[str, Any]:
    a, b = make_chart(), make_chart()
    run = BatchRun.objects.create(mode="top-k", parameters={"spec": {"charts": list(range(1, 501)), "k": 5}})
    match = Match.objects.create(chart=a, partner=b, rank=1, score=0.5, method="discepolo", config_hash="c", run=run)
    results.save_results([results.result_row("natal", a.pk, a.pk, "cfg", b"x", 1)])
    event = TransitEvent.objects.create(
        chart=a, point="Venus", body="Mars", aspect="square", exact=datetime(2027, 1, 3, tzinfo=UTC), config_hash="c",
        run=run,
    )  # fmt: skip
    return {"run": run, "match": match, "result": AspectResult.objects.get(), "event": event, "other": b}


@pytest.mark.parametrize(
    ("model", "key"),
    [("batchrun", "run"), ("match", "match"), ("aspectresult", "result"), ("transitevent", "event")],
)
def test_the_apps_rows_are_read_only(admin_client: Client, app_rows: dict[str, Any], model: str, key: str) -> None:
    row = app_rows[key]
    assert admin_client.get(f"{ADMIN}/{model}/").status_code == 200
    assert admin_client.get(f"{ADMIN}/{model}/add/").status_code == 403
    page = admin_client.get(f"{ADMIN}/{model}/{row.pk}/change/")
    assert page.status_code == 200
    assert 'type="submit" value="Save"' not in page.content.decode()
    assert admin_client.post(f"{ADMIN}/{model}/{row.pk}/change/", {"status": "done"}).status_code == 403


def test_transit_events_are_listed_by_body_and_aspect_and_found_by_chart(
    admin_client: Client, app_rows: dict[str, Any]
) -> None:
    event = app_rows["event"]
    TransitEvent.objects.create(
        chart=app_rows["other"], point="Sun", body="Saturn", aspect="trine", exact=datetime(2027, 2, 1, tzinfo=UTC),
        config_hash="c",
    )  # fmt: skip

    def listed(**query: str) -> set[int]:
        response = admin_client.get(f"{ADMIN}/transitevent/", query)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert len(listed()) == 2
    assert listed(body__exact="Mars") == listed(aspect__exact="square") == {event.pk}
    assert listed(q=str(event.chart_id)) == {event.pk}
    assert listed(q="not an id") == set()


def test_run_parameters_are_shown_compactly(admin_client: Client, app_rows: dict[str, Any]) -> None:
    page = admin_client.get(f"{ADMIN}/batchrun/{app_rows['run'].pk}/change/").content.decode()
    assert "500 ids: 1, 2, 3 … 498, 499, 500" in page
    assert "<textarea" not in page


def test_compact_keeps_short_lists_and_other_values() -> None:
    assert compact({"a": [1, 2], "b": {"c": list(range(20))}, "d": ["x"] * 20}) == {
        "a": [1, 2],
        "b": {"c": "20 ids: 0, 1, 2 … 17, 18, 19"},
        "d": ["x"] * 20,
    }
