"""The picture endpoints (charts/{id}/wheel.svg, charts/{id}/aspect-grid.svg, synastry/wheel.svg,
synastry/aspect-grid.svg): SVG that parses, drawing the points and exactly the aspects the natal and synastry
endpoints return; visibility as theirs; errors as the API's JSON naming the field; safe headers; a PNG."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import cairosvg
import pytest
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from PIL import Image
from rest_framework.test import APIClient

from aspects_app import services
from aspects_app.houses import HOUSE_SYSTEMS
from aspects_app.models import Chart

from .conftest import PLANETS, ChartFactory

pytestmark = pytest.mark.django_db

API = "/api/aspects/"
NS = "{http://www.w3.org/2000/svg}"
SCRIPT_NAME = "<script>alert(1)</script>"
# A wheel with houses draws these angles as its axes, labelled so, not as points in the band.
ANGLE_LABELS = {"Ascendant": "Asc", "Medium_Coeli": "MC", "Descendant": "Dsc", "Imum_Coeli": "IC"}
BERLIN = {"birth_datetime": datetime(1979, 7, 16, 7, 37, tzinfo=UTC), "latitude": 52.52, "longitude": 13.405}
ROME = {"birth_datetime": datetime(1985, 3, 2, 18, 5, tzinfo=UTC), "latitude": 41.9028, "longitude": 12.4964}


def born(owner: Any, name: str, place: dict[str, Any], is_public: bool = True) -> Chart:
    (chart,) = services.create_charts(owner, [services.ChartInput(name=name, is_public=is_public, **place)])
    return chart


@pytest.fixture
def alices(alice: Any) -> tuple[Chart, Chart]:
    """Two charts from birth data (so with houses): a public one and a private one."""
    return born(alice, "Alice", BERLIN), born(alice, "Alice's friend", ROME, is_public=False)


def parse(body: bytes) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == f"{NS}svg" and root.get("role") == "img"
    return root


def with_class(root: ET.Element, name: str, tag: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.tag == NS + tag and name in e.get("class", "").split()]


def heading(root: ET.Element) -> str:
    title = root.find(f"{NS}title")
    assert title is not None and title.text
    return title.text


def picture(client: APIClient, path: str, **query: Any) -> Any:
    response = client.get(f"{API}{path}", query, HTTP_ACCEPT="image/svg+xml,image/*;q=0.8,*/*;q=0.5")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert response["X-Content-Type-Options"] == "nosniff"
    return response


def aspects_of(client: APIClient, path: str, **query: Any) -> list[dict[str, Any]]:
    response = client.get(f"{API}{path}", query)
    assert response.status_code == 200, response.content
    found: list[dict[str, Any]] = response.json()["aspects"]
    return found


QUERIES = [{}, {"orbs": "all"}, {"aspects": "trine,square,opposition", "orbs": json.dumps({"trine": 9.0})}]


@pytest.mark.parametrize("query", QUERIES, ids=["default", "all orbs", "chosen aspects"])
def test_the_wheel_draws_every_point_and_the_natal_endpoints_aspects(
    alice_client: APIClient, alices: tuple[Chart, Chart], query: dict[str, str]
) -> None:
    chart = alices[0]
    root = parse(picture(alice_client, f"charts/{chart.pk}/wheel.svg", **query).content)
    # Houses are drawn (birth data): one glyph per point but the angles, one axis label per angle.
    angles = [p for p in chart.points if p in ANGLE_LABELS]
    others = [p for p in chart.points if p not in ANGLE_LABELS]
    assert angles == ["Ascendant", "Medium_Coeli"]
    assert [g.get("data-point") for g in with_class(root, "point", "g")] == others
    assert len(with_class(root, "point-glyph", "text")) == len(others)
    assert [g.get("data-point") for g in with_class(root, "angle", "g")] == angles
    assert [t.text for t in with_class(root, "axis-label", "text")] == [ANGLE_LABELS[p] for p in angles]
    expected = aspects_of(alice_client, f"charts/{chart.pk}/natal/", **query)
    lines = with_class(root, "aspect", "line")
    assert len(lines) == len(expected) > 0
    assert [line.get("class", "").split()[1] for line in lines] == [f"aspect-{a['aspect']}" for a in expected]
    assert len(with_class(root, "cusp", "line")) == 12  # birth data: houses drawn
    assert heading(root) == "Chart wheel of Alice"


def test_the_aspect_grid_has_one_glyph_per_point_and_one_marked_cell_per_aspect(
    alice_client: APIClient, alices: tuple[Chart, Chart]
) -> None:
    chart = alices[1]  # the owner sees her private chart
    root = parse(picture(alice_client, f"charts/{chart.pk}/aspect-grid.svg", orbs="all").content)
    assert len(with_class(root, "point-glyph", "text")) == len(chart.points)
    expected = aspects_of(alice_client, f"charts/{chart.pk}/natal/", orbs="all")
    marked = [g for g in with_class(root, "pair", "g") if "no-aspect" not in g.get("class", "")]
    assert len(marked) == len(expected) > 0
    assert heading(root) == "Aspect grid of Alice's friend"


@pytest.mark.parametrize("kind", ["wheel", "aspect-grid"])
def test_synastry_pictures_draw_both_charts_and_the_synastry_endpoints_aspects(
    alice_client: APIClient, alices: tuple[Chart, Chart], kind: str
) -> None:
    a, b = alices
    query = {"chart_a": a.pk, "chart_b": b.pk, "orbs": "all"}
    root = parse(picture(alice_client, f"synastry/{kind}.svg", **query).content)
    expected = aspects_of(alice_client, "synastry/", **query)
    assert expected
    if kind == "wheel":
        # chart_a's houses are drawn, so its angles are axes; chart_b's (no houses drawn) stay points.
        a_angles = [p for p in a.points if p in ANGLE_LABELS]
        assert len(with_class(root, "point-glyph", "text")) == len(a.points) - len(a_angles) + len(b.points)
        assert [t.text for t in with_class(root, "axis-label", "text")] == [ANGLE_LABELS[p] for p in a_angles]
        assert len(with_class(root, "aspect", "line")) == len(expected)
        assert len(with_class(root, "cusp", "line")) == 12  # chart_a's houses, inside
        assert heading(root) == "Synastry bi-wheel of Alice and Alice's friend"
    else:
        assert len(with_class(root, "point-glyph", "text")) == len(a.points) + len(b.points)
        marked = [g for g in with_class(root, "pair", "g") if "no-aspect" not in g.get("class", "")]
        assert len(marked) == len(expected)
        assert heading(root) == "Synastry grid of Alice and Alice's friend"


def test_a_picture_shares_the_natal_endpoints_result_cache(
    alice_client: APIClient, alices: tuple[Chart, Chart]
) -> None:
    chart = alices[0]
    picture(alice_client, f"charts/{chart.pk}/wheel.svg", orbs="all")
    answer = alice_client.get(f"{API}charts/{chart.pk}/natal/", {"orbs": "all"}).json()
    assert answer["cached"] is True and answer["source"] != "computed"


@pytest.mark.parametrize("path", ["wheel.svg", "aspect-grid.svg"])
def test_a_chart_name_is_text_never_markup(alice_client: APIClient, alice: Any, path: str) -> None:
    chart = born(alice, SCRIPT_NAME, BERLIN)
    body = picture(alice_client, f"charts/{chart.pk}/{path}").content
    assert b"<script" not in body and b"&lt;script&gt;" in body
    root = parse(body)
    assert SCRIPT_NAME in heading(root)
    assert not [e for e in root.iter() if e.tag in (f"{NS}script", "script")]


def test_a_chart_given_by_positions_only_has_no_houses(alice_client: APIClient, make_chart: ChartFactory) -> None:
    chart = make_chart(name="positions", is_public=True)
    root = parse(picture(alice_client, f"charts/{chart.pk}/wheel.svg", houses="koch").content)
    assert not with_class(root, "cusp", "line") and not with_class(root, "house-number", "text")
    assert len(with_class(root, "point-glyph", "text")) == len(PLANETS)
    description = root.find(f"{NS}desc")
    assert description is not None and "no houses" in (description.text or "")


def test_the_house_system_changes_the_cusps_drawn(alice_client: APIClient, alices: tuple[Chart, Chart]) -> None:
    chart = alices[0]

    def cusps(**query: str) -> list[str]:
        root = parse(picture(alice_client, f"charts/{chart.pk}/wheel.svg", **query).content)
        return [e.get("x2", "") + "," + e.get("y2", "") for e in with_class(root, "cusp", "line")]

    assert cusps() == cusps(houses="placidus")  # the HOUSE_SYSTEM setting's default
    assert cusps(houses="whole_sign") != cusps(houses="placidus")
    with override_settings(ASPECTS={"HOUSE_SYSTEM": "whole_sign"}):
        assert cusps() == cusps(houses="whole_sign")


def test_size_and_theme_are_honoured(anon_client: APIClient, alices: tuple[Chart, Chart]) -> None:
    chart = alices[0]
    light = parse(picture(anon_client, f"charts/{chart.pk}/wheel.svg", size=400).content)
    dark = parse(picture(anon_client, f"charts/{chart.pk}/wheel.svg", size=400, theme="dark").content)
    assert (light.get("width"), light.get("height")) == ("400", "400")
    assert "theme-light" in light.get("class", "") and "theme-dark" in dark.get("class", "")


BAD_QUERIES = [
    ("size", "10"),
    ("size", "5000"),
    ("size", "big"),
    ("theme", "pink"),
    ("houses", "nope"),
    ("orbs", "nope"),
    ("orbs", '{"trine": -1}'),
    ("aspects", "trine,nope"),
]


PICTURE_PATHS = ["charts/{id}/wheel.svg", "charts/{id}/aspect-grid.svg", "synastry/wheel.svg",
                 "synastry/aspect-grid.svg"]  # fmt: skip
# Grids draw no houses and take no houses parameter.
BAD_CASES = [(p, f, v) for p in PICTURE_PATHS for f, v in BAD_QUERIES if f != "houses" or "wheel" in p]


@pytest.mark.parametrize(("path", "field", "value"), BAD_CASES)
def test_a_bad_parameter_is_a_400_in_json_naming_it(
    alice_client: APIClient, alices: tuple[Chart, Chart], path: str, field: str, value: str
) -> None:
    a, b = alices
    query = {"chart_a": a.pk, "chart_b": b.pk} if path.startswith("synastry") else {}
    # An <img>'s Accept: the error is JSON all the same.
    response = alice_client.get(
        f"{API}{path.format(id=a.pk)}", {**query, field: value}, HTTP_ACCEPT="image/svg+xml,image/*"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json()


def test_another_users_private_chart_and_an_unknown_id_are_the_same_404(
    bob_client: APIClient, anon_client: APIClient, alices: tuple[Chart, Chart]
) -> None:
    public, private = alices
    missing = Chart.objects.order_by("-pk").first().pk + 1  # type: ignore[union-attr]
    for client in (bob_client, anon_client):
        for path in ("wheel.svg", "aspect-grid.svg"):
            hidden = client.get(f"{API}charts/{private.pk}/{path}", HTTP_ACCEPT="image/svg+xml")
            unknown = client.get(f"{API}charts/{missing}/{path}", HTTP_ACCEPT="image/svg+xml")
            assert hidden.status_code == unknown.status_code == 404
            assert hidden["Content-Type"] == "application/json"
            assert hidden.json() == unknown.json()
        for path in ("synastry/wheel.svg", "synastry/aspect-grid.svg"):
            response = client.get(f"{API}{path}", {"chart_a": public.pk, "chart_b": private.pk})
            assert response.status_code == 404 and "chart_b" in response.json()["detail"]
    assert anon_client.get(f"{API}charts/{2**63}/wheel.svg").status_code == 404  # past the databases' integers


def test_cache_control_is_private_unless_every_chart_drawn_is_public(
    alice_client: APIClient, alices: tuple[Chart, Chart]
) -> None:
    public, private = alices
    shared = picture(alice_client, f"charts/{public.pk}/wheel.svg")["Cache-Control"]
    assert "public" in shared and "private" not in shared
    assert "private" in picture(alice_client, f"charts/{private.pk}/wheel.svg")["Cache-Control"]
    pair = picture(alice_client, "synastry/aspect-grid.svg", chart_a=public.pk, chart_b=private.pk)
    assert "private" in pair["Cache-Control"]


def test_a_client_that_accepts_only_json_is_told_406_in_json(
    alice_client: APIClient, alices: tuple[Chart, Chart]
) -> None:
    response = alice_client.get(f"{API}charts/{alices[0].pk}/wheel.svg", HTTP_ACCEPT="application/json")
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json" and "detail" in response.json()


@override_settings(ASPECTS={"THROTTLE_ANON": "2/min"})
def test_pictures_are_throttled_as_the_compute_endpoints(anon_client: APIClient, alices: tuple[Chart, Chart]) -> None:
    path = f"{API}charts/{alices[0].pk}/aspect-grid.svg"
    assert [anon_client.get(path).status_code for _ in range(3)] == [200, 200, 429]
    throttled = anon_client.get(path)
    assert throttled["Content-Type"] == "application/json" and "Retry-After" in throttled


def test_a_response_renders_to_a_png(anon_client: APIClient, alices: tuple[Chart, Chart]) -> None:
    chart = alices[0]
    body = picture(anon_client, f"charts/{chart.pk}/wheel.svg", size=500, theme="dark").content
    png = cairosvg.svg2png(bytestring=body)
    image = Image.open(io.BytesIO(png))
    assert image.size == (500, 500)
    colours = image.convert("RGB").getcolors(maxcolors=500 * 500)
    assert colours is not None and len(colours) > 10  # drawn, not a blank square


def test_the_schema_documents_svg_answers_and_json_errors() -> None:
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    for path in PICTURE_PATHS:
        operation = document["paths"][f"{API}{path}"]["get"]
        responses = operation["responses"]
        assert set(responses["200"]["content"]) == {"image/svg+xml"}, path
        assert {"400", "404", "429"} <= set(responses)
        assert set(responses["400"]["content"]) == {"application/json"}
        parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert "format" not in parameters  # the JSON renderer is for errors, not a format to ask for
        assert parameters["size"]["minimum"] == 200 and parameters["size"]["maximum"] == 2000
        assert set(parameters["theme"]["enum"]) == {"light", "dark"}
        assert ("houses" in parameters) == ("wheel" in path)
        if "houses" in parameters:
            assert set(parameters["houses"]["enum"]) == set(HOUSE_SYSTEMS)


def test_options_describes_the_view_in_json(anon_client: APIClient, alices: tuple[Chart, Chart]) -> None:
    response = anon_client.options(f"{API}charts/{alices[0].pk}/wheel.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json" and response.json()["name"]
