"""Every way a chart is written keeps points, longitudes, speeds and the positions hash consistent, and the read
path survives rows that were written around the app anyway (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from aspects_app import ephemeris, services
from aspects_app.models import Chart, positions_hash

from .conftest import ChartFactory, birth_payload, positions_payload

CHARTS = "/api/aspects/charts/"


@pytest.mark.django_db
def test_orm_save_refuses_points_without_longitudes() -> None:
    chart = Chart(name="admin-like", points=["Sun", "Moon"])
    with pytest.raises(ValidationError, match="positions"):
        chart.save()
    assert not Chart.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("points", "longitudes", "speeds"),
    [
        (["Sun", "Moon"], [1.0], None),
        (["Sun"], [1.0, 2.0], None),
        (["Sun", "Moon"], [1.0, 2.0], [1.0]),
        (["Sun", "Sun"], [1.0, 2.0], None),
        ([], [], None),
    ],
)
def test_orm_save_refuses_inconsistent_positions(points: list[str], longitudes: list[float], speeds: Any) -> None:
    chart = Chart(name="bad", points=points)
    chart.longitudes = np.asarray(longitudes, dtype="<f8").tobytes()
    chart.speeds = None if speeds is None else np.asarray(speeds, dtype="<f8").tobytes()
    with pytest.raises(ValidationError):
        chart.save()


def test_orm_save_makes_the_hash_that_of_the_stored_positions(make_chart: ChartFactory) -> None:
    chart = make_chart(points=["Sun", "Moon"], longitudes=[1.0, 2.0], speeds=None)
    chart.longitudes = np.asarray([5.0, 6.0], dtype="<f8").tobytes()  # behind set_positions' back
    chart.save(update_fields=["longitudes"])
    stored = Chart.objects.get(pk=chart.pk)
    assert stored.positions_hash == positions_hash(["Sun", "Moon"], np.asarray([5.0, 6.0]), None)


def test_rows_written_around_the_app_do_not_fail_the_read_path(
    anon_client: APIClient, make_chart: ChartFactory
) -> None:
    good = make_chart(is_public=True)
    broken = make_chart(is_public=True)
    # What the admin used to store: points, no longitudes (an update() skips save() and its check).
    Chart.objects.filter(pk=broken.pk).update(points=["Sun", "Moon"], longitudes=b"")
    detail = anon_client.get(f"{CHARTS}{broken.pk}/")
    assert detail.status_code == 200, detail.content
    assert detail.json()["positions"] == {}
    listing = anon_client.get(CHARTS)
    assert listing.status_code == 200
    by_id = {c["id"]: c for c in listing.json()["results"]}
    assert by_id[broken.pk]["positions"] == {}
    assert len(by_id[good.pk]["positions"]) == len(good.points)


def test_create_with_birth_data_and_position_input_is_refused(alice_client: APIClient) -> None:
    body = {**birth_payload(), "position_input": positions_payload()["position_input"]}
    response = alice_client.post(CHARTS, body, format="json")
    assert response.status_code == 400, response.content
    assert "position_input" in response.json()
    assert not Chart.objects.exists()


def test_bulk_create_with_both_is_refused(alice_client: APIClient) -> None:
    both = {**birth_payload(), "position_input": positions_payload()["position_input"]}
    response = alice_client.post(f"{CHARTS}bulk/", {"charts": [birth_payload(), both]}, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["charts"]
    assert "position_input" in (errors[1] if isinstance(errors, list) else errors["1"]), errors
    assert not Chart.objects.exists()


def test_patch_with_both_is_refused(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    body = {"latitude": 10.0, "position_input": {"points": ["Sun"], "longitudes": [1.0]}}
    response = alice_client.patch(f"{CHARTS}{pk}/", body, format="json")
    assert response.status_code == 400
    assert "position_input" in response.json()


def test_given_positions_replace_birth_data_they_were_not_computed_from(alice_client: APIClient) -> None:
    pk = alice_client.post(CHARTS, birth_payload(), format="json").json()["id"]
    body = {"position_input": {"points": ["Sun", "Moon"], "longitudes": [0.0, 90.0]}}
    response = alice_client.patch(f"{CHARTS}{pk}/", body, format="json")
    assert response.status_code == 200, response.content
    chart = Chart.objects.get(pk=pk)
    assert (chart.birth_datetime, chart.latitude, chart.longitude) == (None, None, None)
    assert chart.points == ["Sun", "Moon"]


@pytest.mark.django_db
def test_services_bulk_creation_checks_positions_before_bulk_create() -> None:
    bad = services.ChartInput(name="x", points=("Sun", "Moon"), longitudes=(1.0,))
    good = services.ChartInput(name="y", points=("Sun",), longitudes=(1.0,))
    with pytest.raises(ValidationError):
        services.create_charts(None, [good, bad])
    assert not Chart.objects.exists()


@pytest.mark.django_db
def test_recompute_positions_follows_the_birth_data_and_skips_charts_without() -> None:
    moment = datetime(1979, 7, 16, 7, 37, tzinfo=UTC)
    (born,) = services.create_charts(None, [services.ChartInput(birth_datetime=moment, latitude=52.5, longitude=13.4)])
    (given,) = services.create_charts(None, [services.ChartInput(points=("Sun",), longitudes=(3.0,))])
    Chart.objects.filter(pk=born.pk).update(birth_datetime=datetime(2000, 1, 1, 12, tzinfo=UTC))
    assert services.recompute_positions(Chart.objects.all()) == 1
    expected = ephemeris.compute_positions([datetime(2000, 1, 1, 12, tzinfo=UTC)], [52.5], [13.4])
    assert Chart.objects.get(pk=born.pk).longitude_array.tolist() == expected.longitudes[0].tolist()
    assert Chart.objects.get(pk=given.pk).longitude_array.tolist() == [3.0]
