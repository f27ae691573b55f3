"""Signs and houses in chart payloads: each point's sign, degree, text, element, modality, retrograde flag and
house against the engine; the cusps stored with the chart on every write that computes positions (API create,
bulk, edits, admin, recompute, demo data), a lazy fill for rows without them, ``?houses=`` and its errors, and the
HOUSE_SYSTEM setting with its system check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from django.core import checks
from django.test import Client, override_settings
from rest_framework.test import APIClient

from aspects_app import demo_data, ephemeris, services
from aspects_app.engine import zodiac_positions
from aspects_app.engine.zodiac import ELEMENTS, MODALITIES
from aspects_app.models import Chart

from .conftest import birth_payload, positions_payload

CHARTS = "/api/aspects/charts/"
ADMIN = "/admin/aspects_app"
BERLIN_1979 = (datetime(1979, 7, 16, 7, 37, tzinfo=UTC), 52.52, 13.405)
SVALBARD = {"birth_datetime": "1990-01-10T12:00:00+00:00", "latitude": 78.22, "longitude": 15.65}


def engine_houses(moment: datetime, lat: float, lon: float, system: str = "placidus") -> Any:
    return ephemeris.compute_houses([moment], [lat], [lon], system)


def assert_payload_matches_engine(body: dict[str, Any], chart: Chart, system: str = "placidus") -> None:
    assert chart.birth_datetime is not None and chart.latitude is not None and chart.longitude is not None
    houses = engine_houses(chart.birth_datetime, chart.latitude, chart.longitude, system)
    lon, speed = chart.longitude_array, chart.speed_array
    assert speed is not None
    zodiac = zodiac_positions(lon[None, :], speed[None, :], chart.points)
    numbers = houses.house_of(lon[None, :])[0]
    assert list(body["positions"]) == chart.points
    for n, name in enumerate(chart.points):
        point = body["positions"][name]
        assert point["lon"] == lon[n] and point["speed"] == speed[n]
        assert point["sign"] == zodiac.sign_names()[0, n]
        assert point["sign_degree"] == pytest.approx(lon[n] % 30.0, abs=1e-9)
        assert point["dms"] == zodiac.dms_text()[0, n]
        assert point["element"] == ELEMENTS[zodiac.element[0, n]]
        assert point["modality"] == MODALITIES[zodiac.modality[0, n]]
        assert point["retrograde"] is bool(speed[n] < 0)
        assert point["house"] == numbers[n]
    assert body["houses"] == {"system": system, "cusps": houses.cusps[0].tolist(), "fallback": False}


def stored_cusps(chart_id: int) -> tuple[str, list[float] | None]:
    chart = Chart.objects.get(pk=chart_id)
    return chart.house_system, None if chart.house_cusps is None else chart.house_cusps["cusps"]


def test_a_created_charts_payload_gives_signs_and_houses_as_the_engine(alice_client: APIClient) -> None:
    response = alice_client.post(CHARTS, birth_payload(), format="json")
    assert response.status_code == 201, response.json()
    chart = Chart.objects.get(pk=response.json()["id"])
    assert_payload_matches_engine(response.json(), chart)
    # Stored with the chart: the detail view reads them without the ephemeris.
    assert stored_cusps(chart.pk) == ("placidus", engine_houses(*BERLIN_1979).cusps[0].tolist())
    assert alice_client.get(f"{CHARTS}{chart.pk}/").json()["houses"] == response.json()["houses"]
    sun = response.json()["positions"]["Sun"]
    assert (sun["sign"], sun["element"], sun["modality"]) == ("Cancer", "water", "cardinal")  # 16 July
    assert sun["dms"].endswith(" Cancer") and sun["dms"].startswith("23°")


def test_bulk_creation_stores_each_charts_cusps(alice_client: APIClient) -> None:
    bodies = [
        birth_payload(name="a"),
        birth_payload(name="b", latitude=-33.9, longitude=151.2, birth_datetime="2001-03-04T05:06:00+00:00"),
        positions_payload(seed=3),
    ]
    response = alice_client.post(f"{CHARTS}bulk/", {"charts": bodies}, format="json")
    assert response.status_code == 201, response.json()
    first, second, given = (Chart.objects.get(pk=row["id"]) for row in response.json())
    expected = ephemeris.compute_houses(
        [BERLIN_1979[0], datetime(2001, 3, 4, 5, 6, tzinfo=UTC)], [52.52, -33.9], [13.405, 151.2]
    )
    assert stored_cusps(first.pk) == ("placidus", expected.cusps[0].tolist())
    assert stored_cusps(second.pk) == ("placidus", expected.cusps[1].tolist())
    assert stored_cusps(given.pk) == ("", None)
    assert_payload_matches_engine(response.json()[1], second)
    assert response.json()[2]["houses"] is None


def test_a_position_only_chart_has_no_houses_and_no_house_numbers(
    alice_client: APIClient, make_chart: Any, alice: Any
) -> None:
    response = alice_client.post(CHARTS, positions_payload(seed=5), format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["houses"] is None
    assert all("house" not in point for point in body["positions"].values())
    chart = Chart.objects.get(pk=body["id"])
    speed = chart.speed_array
    assert speed is not None
    assert [p["retrograde"] for p in body["positions"].values()] == (speed < 0).tolist()
    assert services.chart_houses(chart) is None
    # Positions without speeds: never retrograde.
    still = make_chart(alice, with_speeds=False)
    positions = alice_client.get(f"{CHARTS}{still.pk}/").json()["positions"]
    assert {p["retrograde"] for p in positions.values()} == {False}
    assert {p["speed"] for p in positions.values()} == {None}


def test_editing_birth_data_recomputes_the_cusps_and_giving_positions_drops_them(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    response = alice_client.patch(f"{CHARTS}{pk}/", {"latitude": -45.0}, format="json")
    assert response.status_code == 200, response.json()
    moved = engine_houses(BERLIN_1979[0], -45.0, 13.405)
    assert stored_cusps(pk) == ("placidus", moved.cusps[0].tolist())
    assert_payload_matches_engine(response.json(), Chart.objects.get(pk=pk))
    renamed = alice_client.patch(f"{CHARTS}{pk}/", {"name": "renamed"}, format="json")
    assert renamed.json()["houses"]["cusps"] == moved.cusps[0].tolist()
    given = alice_client.patch(f"{CHARTS}{pk}/", positions_payload(seed=2), format="json")
    assert given.status_code == 200 and given.json()["houses"] is None
    assert stored_cusps(pk) == ("", None)


def test_recompute_positions_recomputes_the_cusps(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    moment = datetime(2000, 1, 1, 12, tzinfo=UTC)
    Chart.objects.filter(pk=pk).update(birth_datetime=moment)  # behind the app's back, as an upgrade would
    assert services.recompute_positions(Chart.objects.filter(pk=pk)) == 1
    assert stored_cusps(pk) == ("placidus", engine_houses(moment, 52.52, 13.405).cusps[0].tolist())


def test_admin_add_edit_and_recompute_store_the_cusps(admin_client: Client) -> None:
    form = {"name": "admin", "owner": "", "time_zone": "", "birth_datetime_0": "1979-07-16"}
    form |= {"birth_datetime_1": "07:37:00", "latitude": "52.52", "longitude": "13.405"}
    assert admin_client.post(f"{ADMIN}/chart/add/", form).status_code == 302
    chart = Chart.objects.get()
    assert stored_cusps(chart.pk) == ("placidus", engine_houses(*BERLIN_1979).cusps[0].tolist())
    page = admin_client.get(f"{ADMIN}/chart/{chart.pk}/change/").content.decode()
    assert "house cusps" in page.lower() and "<th>house</th>" in page
    assert f"<td>{engine_houses(*BERLIN_1979).cusps[0][3]:.6f}</td>" in page  # the fourth cusp, read-only
    assert admin_client.post(f"{ADMIN}/chart/{chart.pk}/change/", {**form, "latitude": "10.0"}).status_code == 302
    assert stored_cusps(chart.pk) == ("placidus", engine_houses(BERLIN_1979[0], 10.0, 13.405).cusps[0].tolist())
    moment = datetime(2000, 1, 1, 12, tzinfo=UTC)
    Chart.objects.filter(pk=chart.pk).update(birth_datetime=moment)
    admin_client.post(f"{ADMIN}/chart/", {"action": "recompute_positions", "_selected_action": [str(chart.pk)]})
    assert stored_cusps(chart.pk) == ("placidus", engine_houses(moment, 10.0, 13.405).cusps[0].tolist())


def test_demo_charts_carry_their_cusps(db: None) -> None:
    assert demo_data.create_demo_charts(3, seed=4) == 3
    charts = list(Chart.objects.order_by("pk"))
    expected = ephemeris.compute_houses(
        [c.birth_datetime for c in charts], [c.latitude for c in charts], [c.longitude for c in charts]
    )
    assert [stored_cusps(c.pk) for c in charts] == [("placidus", row.tolist()) for row in expected.cusps]


def test_koch_at_a_polar_latitude_falls_back_to_porphyry(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(**SVALBARD), format="json").json()["id"]
    body = alice_client.get(f"{CHARTS}{pk}/", {"houses": "koch"}).json()
    moment = datetime(1990, 1, 10, 12, tzinfo=UTC)
    porphyry = engine_houses(moment, 78.22, 15.65, "porphyry")
    assert body["houses"] == {"system": "koch", "cusps": porphyry.cusps[0].tolist(), "fallback": True}
    chart = Chart.objects.get(pk=pk)
    numbers = porphyry.house_of(chart.longitude_array[None, :])[0].tolist()
    assert [p["house"] for p in body["positions"].values()] == numbers
    assert stored_cusps(pk)[0] == "placidus"  # another system is computed on request, not stored


@pytest.mark.parametrize("value", ["kochh", "", "Placidus"])
def test_an_unknown_house_system_is_a_400_naming_houses(alice_client: APIClient, value: str) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    for url in (f"{CHARTS}{pk}/", CHARTS):
        response = alice_client.get(url, {"houses": value})
        assert response.status_code == 400
        assert list(response.json()) == ["houses"]


def test_the_list_gives_each_chart_the_system_asked_for(alice_client: APIClient) -> None:
    bodies = [birth_payload(name=str(n), latitude=10.0 * n) for n in range(3)] + [positions_payload(seed=9)]
    assert alice_client.post(f"{CHARTS}bulk/", {"charts": bodies}, format="json").status_code == 201
    rows = alice_client.get(CHARTS, {"houses": "equal"}).json()["results"]
    assert rows[-1]["houses"] is None
    for n, row in enumerate(rows[:3]):
        chart = Chart.objects.get(pk=row["id"])
        assert_payload_matches_engine(row, chart, "equal")
        assert row["houses"]["cusps"] == engine_houses(BERLIN_1979[0], 10.0 * n, 13.405, "equal").cusps[0].tolist()


def test_rows_without_stored_cusps_are_filled_lazily(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    Chart.objects.filter(pk=pk).update(house_system="", house_cusps=None)  # a row stored before migration 0007
    updated = Chart.objects.get(pk=pk).updated_at
    body = alice_client.get(f"{CHARTS}{pk}/").json()
    assert body["houses"]["cusps"] == engine_houses(*BERLIN_1979).cusps[0].tolist()
    assert stored_cusps(pk) == ("placidus", body["houses"]["cusps"])
    assert Chart.objects.get(pk=pk).updated_at == updated  # nothing the host set has changed


def test_chart_houses_reads_the_stored_cusps_of_the_stored_system(
    alice_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    chart = Chart.objects.get(pk=pk)
    stored = chart.house_cusps
    assert stored is not None
    # Recognisably not the ephemeris' (stored ones are served as they are).
    Chart.objects.filter(pk=pk).update(house_cusps={**stored, "cusps": [float(30 * k) for k in range(12)]})
    chart = Chart.objects.get(pk=pk)

    def no_ephemeris(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("stored cusps must not be recomputed")

    with monkeypatch.context() as patched:
        patched.setattr(ephemeris, "compute_houses", no_ephemeris)
        houses = services.chart_houses(chart)
    assert houses is not None and houses.system == "placidus"
    assert houses.cusps.tolist() == [[float(30 * k) for k in range(12)]]
    assert not houses.cusps.flags.writeable
    other = services.chart_houses(chart, "whole_sign")
    assert other is not None and other.system == "whole_sign"
    assert other.cusps.tolist() == engine_houses(*BERLIN_1979, "whole_sign").cusps.tolist()
    # A stored value the app could not have written is computed again.
    Chart.objects.filter(pk=pk).update(house_cusps={"cusps": [1.0, "x"]})
    again = services.chart_houses(Chart.objects.get(pk=pk))
    assert again is not None and np.array_equal(again.cusps, engine_houses(*BERLIN_1979).cusps)


def test_the_house_system_setting_is_the_default_and_is_checked(alice_client: APIClient) -> None:
    with override_settings(ASPECTS={"HOUSE_SYSTEM": "regiomontanus"}):
        body = alice_client.post(CHARTS, birth_payload(), format="json").json()
        assert body["houses"]["system"] == "regiomontanus"
        assert stored_cusps(body["id"])[0] == "regiomontanus"
        assert not [m for m in checks.run_checks() if m.id == "aspects_app.E007"]
    with override_settings(ASPECTS={"HOUSE_SYSTEM": "vedic"}):
        found = [m for m in checks.run_checks() if m.id == "aspects_app.E007"]
        assert len(found) == 1 and "'vedic'" in found[0].msg and "placidus" in (found[0].hint or "")
