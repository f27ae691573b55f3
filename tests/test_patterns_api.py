"""The pattern endpoints: ``charts/{id}/patterns/`` and ``synastry/patterns/`` answer the engine's patterns under
the orbs, aspects and stellium span asked for, cached per chart (an edit forgets them), with the charts'
visibility (404s), bad parameters as 400s naming the field, and both documented in the schema."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from aspects_app import services
from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.models import Chart

from .conftest import PLANETS, ChartFactory

API = "/api/aspects"
# Sun, Moon, Mars a grand trine; Jupiter opposite Sun and sextile Moon and Mars: a kite (Uranus and Neptune
# square the Sun-Jupiter axis: a grand cross too); Mercury, Saturn, Venus within 7°: a stellium of 10° but not
# one of a sign (they straddle Taurus and Gemini).
KITE = [10.0, 130.0, 56.0, 63.0, 250.0, 190.0, 59.0, 100.0, 280.0, 215.0]


def patterns_url(pk: int) -> str:
    return f"{API}/charts/{pk}/patterns/"


def engine_records(config: AspectConfig, *rows: list[float], span: float | None = None) -> list[dict[str, Any]]:
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    if len(rows) == 1:
        found = calc.patterns([rows[0]], points=PLANETS, stellium_span=span)
    else:
        found = calc.synastry_patterns([rows[0]], [rows[1]], points=PLANETS, stellium_span=span)
    return [{k: v for k, v in r.items() if k != "i"} for r in found.to_records(point_names=True)]


@pytest.fixture
def kite(make_chart: ChartFactory, alice: Any) -> Chart:
    chart: Chart = make_chart(alice, is_public=True, longitudes=KITE, speeds=[1.0] * 10)
    return chart


def test_natal_patterns_are_the_engines(anon_client: APIClient, kite: Chart) -> None:
    response = anon_client.get(patterns_url(kite.pk))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["patterns"] == engine_records(services.aspect_config(), KITE)
    names = [p["pattern"] for p in body["patterns"]]
    assert "kite" in names and "grand-trine" in names and "stellium" not in names
    kite_row = next(p for p in body["patterns"] if p["pattern"] == "kite")
    assert kite_row["points"] == ["Sun", "Moon", "Mars", "Jupiter"]  # the point opposite the tail first
    assert (body["chart"], body["points"], body["stellium_span"]) == (kite.pk, list(PLANETS), None)
    assert body["orbs"] == dict(services.aspect_config().orbs)


def test_orbs_aspects_and_stellium_span_are_the_requests(anon_client: APIClient, kite: Chart) -> None:
    spanned = anon_client.get(patterns_url(kite.pk), {"stellium_span": 10}).json()
    assert spanned["stellium_span"] == 10.0
    assert spanned["patterns"] == engine_records(services.aspect_config(), KITE, span=10.0)
    stellium = next(p for p in spanned["patterns"] if p["pattern"] == "stellium")
    assert stellium["points"] == ["Mercury", "Saturn", "Venus"]  # by longitude from the arc's start
    trines_only = anon_client.get(patterns_url(kite.pk), {"aspects": "trine"}).json()
    assert [p["pattern"] for p in trines_only["patterns"]] == ["grand-trine"]
    tight = anon_client.get(patterns_url(kite.pk), {"orbs": '{"trine": 0.5, "opposition": 0.5}'}).json()
    assert tight["patterns"] == engine_records(AspectConfig.from_orbs({"trine": 0.5, "opposition": 0.5}), KITE)


def test_answers_are_cached_per_chart_and_an_edit_forgets_them(alice_client: APIClient, kite: Chart) -> None:
    first = alice_client.get(patterns_url(kite.pk)).json()
    second = alice_client.get(patterns_url(kite.pk)).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["source"] == "local" and second["patterns"] == first["patterns"]
    moved = [*KITE[:5], 160.0, *KITE[6:]]  # Jupiter leaves the kite
    edit = {"position_input": {"points": list(PLANETS), "longitudes": moved}}
    assert alice_client.patch(f"{API}/charts/{kite.pk}/", edit, format="json").status_code == 200
    after = alice_client.get(patterns_url(kite.pk)).json()
    assert after["cached"] is False
    assert after["patterns"] == engine_records(services.aspect_config(), moved)
    assert "kite" not in [p["pattern"] for p in after["patterns"]]


def test_synastry_patterns_are_the_engines_with_sides(
    anon_client: APIClient, make_chart: ChartFactory, alice: Any
) -> None:
    a_lon = [0.0, 50.0, 75.0, 100.0, 140.0, 210.0, 260.0, 300.0, 330.0, 345.0]
    b_lon = [120.0, 240.0, 10.0, 185.0, 215.0, 305.0, 95.0, 60.0, 160.0, 35.0]
    a = make_chart(alice, is_public=True, longitudes=a_lon)
    b = make_chart(alice, is_public=True, longitudes=b_lon)
    response = anon_client.get(f"{API}/synastry/patterns/", {"chart_a": a.pk, "chart_b": b.pk, "orbs": "all"})
    assert response.status_code == 200, response.json()
    body = response.json()
    expected = engine_records(AspectConfig.preset("all"), a_lon, b_lon)
    assert body["patterns"] == expected and expected
    grand_trine = next(p for p in body["patterns"] if p["pattern"] == "grand-trine")
    assert sorted(grand_trine["sides"]) == ["a", "b", "b"]  # a's Sun with b's Sun and Moon
    assert all({"a", "b"} <= set(p["sides"]) for p in body["patterns"])  # only figures across both charts
    assert (body["chart_a"], body["chart_b"]) == (a.pk, b.pk)


def test_private_charts_are_404s(
    anon_client: APIClient, bob_client: APIClient, alice_client: APIClient, make_chart: ChartFactory, alice: Any
) -> None:
    private = make_chart(alice, longitudes=KITE)
    public = make_chart(alice, is_public=True)
    for client in (anon_client, bob_client):
        assert client.get(patterns_url(private.pk)).status_code == 404
        for pair in ({"chart_a": private.pk, "chart_b": public.pk}, {"chart_a": public.pk, "chart_b": private.pk}):
            assert client.get(f"{API}/synastry/patterns/", pair).status_code == 404
    assert anon_client.get(patterns_url(10**6)).status_code == 404
    assert anon_client.get(patterns_url(2**70)).status_code == 404
    assert alice_client.get(patterns_url(private.pk)).status_code == 200
    pair = {"chart_a": private.pk, "chart_b": public.pk}
    assert alice_client.get(f"{API}/synastry/patterns/", pair).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stellium_span": "0"}, "stellium_span"),
        ({"stellium_span": "360"}, "stellium_span"),
        ({"stellium_span": "-5"}, "stellium_span"),
        ({"stellium_span": "nan"}, "stellium_span"),
        ({"stellium_span": "wide"}, "stellium_span"),
        ({"orbs": "tight"}, "orbs"),
        ({"aspects": "trine,bogus"}, "aspects"),
        ({"stelium_span": "10"}, "stelium_span"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(
    anon_client: APIClient, kite: Chart, make_chart: ChartFactory, params: dict[str, str], field: str
) -> None:
    response = anon_client.get(patterns_url(kite.pk), params)
    assert response.status_code == 400 and list(response.json()) == [field], response.json()
    other = make_chart(is_public=True)
    pair = {"chart_a": kite.pk, "chart_b": other.pk, **params}
    response = anon_client.get(f"{API}/synastry/patterns/", pair)
    assert response.status_code == 400 and list(response.json()) == [field], response.json()


def test_synastry_needs_both_charts_with_the_same_points(
    anon_client: APIClient, kite: Chart, make_chart: ChartFactory
) -> None:
    response = anon_client.get(f"{API}/synastry/patterns/", {"chart_a": kite.pk})
    assert response.status_code == 400 and list(response.json()) == ["chart_b"]
    fewer = make_chart(is_public=True, points=PLANETS[:5])
    response = anon_client.get(f"{API}/synastry/patterns/", {"chart_a": kite.pk, "chart_b": fewer.pk})
    assert response.status_code == 400 and list(response.json()) == ["chart_b"]


def test_the_schema_documents_both_endpoints(anon_client: APIClient) -> None:
    schema = anon_client.get(f"{API}/schema/", {"format": "json"}).json()
    natal = schema["paths"]["/api/aspects/charts/{id}/patterns/"]["get"]
    synastry = schema["paths"]["/api/aspects/synastry/patterns/"]["get"]
    assert {p["name"] for p in natal["parameters"]} >= {"id", "orbs", "aspects", "stellium_span"}
    assert {p["name"] for p in synastry["parameters"]} >= {"chart_a", "chart_b", "orbs", "aspects", "stellium_span"}
    for operation in (natal, synastry):
        assert {"200", "400", "404", "429"} <= set(operation["responses"])
