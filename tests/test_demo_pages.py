"""The demo project's pages (project/demo_views.py, /demo/): after the demo data exists, the list shows the public
charts a page at a time with their wheels, natal aspects, patterns and best matches; a chart's page shows its
pictures and positions; nothing private leaks, names are text, and nothing is loaded from elsewhere."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client, override_settings

from aspects_app import services
from aspects_app.demo_data import create_demo_charts
from aspects_app.models import Chart
from project.demo_views import PATTERN_LABELS

from .conftest import ChartFactory

pytestmark = pytest.mark.django_db

DEMO_CHARTS = 25


@pytest.fixture
def demo_charts(db: None) -> list[Chart]:
    assert create_demo_charts(DEMO_CHARTS, seed=3) == DEMO_CHARTS
    return list(Chart.objects.filter(is_public=True).order_by("pk"))


def page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    text: str = response.content.decode()
    return text


def self_contained(html: str) -> None:
    assert "<script" not in html
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "?", "#")), f"external or odd link {url}"


def test_the_list_shows_a_page_of_public_charts_with_wheels_aspects_patterns_and_matches(
    client: Client, demo_charts: list[Chart], alice: Any, make_chart: ChartFactory
) -> None:
    hidden = make_chart(alice, name="alice's secret chart")
    html = page(client, "/demo/")
    self_contained(html)
    first_page = demo_charts[:20]
    wheels = re.findall(r'<img src="/api/aspects/charts/(\d+)/wheel\.svg\?size=300"', html)
    assert [int(pk) for pk in wheels] == [c.pk for c in first_page]
    assert hidden.name not in html and f"/charts/{hidden.pk}/" not in html
    assert f"{DEMO_CHARTS} public charts, page 1 of 2" in html
    config = services.aspect_config()
    first = first_page[0]
    aspects = services.natal_aspects(first, config).aspects()
    section = html.split('<section class="chart">')[1]
    assert f"{len(aspects)} natal aspect" in section
    labels = [f"{a['p1']} {a['aspect']} {a['p2']}".replace("_", " ") for a in aspects]
    assert all(f"<li>{label} " in section for label in labels)
    patterns = services.chart_patterns(first, config).patterns
    if patterns:
        assert PATTERN_LABELS.get(patterns[0]["pattern"], patterns[0]["pattern"]) in section
    else:
        assert "<strong>Patterns:</strong>" in section and "none" in section
    best = services.top_matches(first, services.match_candidates(None, first), 3, "discepolo", config)
    linked = [int(pk) for pk in re.findall(r'<li><a href="/demo/charts/(\d+)/">', section)]
    assert linked == [m["chart"] for m in best] and len(best) == 3
    second = page(client, "/demo/?page=2")
    assert len(re.findall(r"wheel\.svg\?size=300", second)) == DEMO_CHARTS - 20


def test_every_wheel_the_list_links_is_served(client: Client, demo_charts: list[Chart]) -> None:
    html = page(client, "/demo/?page=2")
    for src in re.findall(r'<img src="([^"]+)"', html):
        response = client.get(src.replace("&amp;", "&"))
        assert response.status_code == 200 and response["Content-Type"].startswith("image/svg+xml")


def test_a_chart_page_shows_its_pictures_positions_and_matches(client: Client, demo_charts: list[Chart]) -> None:
    chart = demo_charts[0]
    html = page(client, f"/demo/charts/{chart.pk}/")
    self_contained(html)
    assert f"/api/aspects/charts/{chart.pk}/wheel.svg?size=600" in html
    assert f"/api/aspects/charts/{chart.pk}/aspect-grid.svg?size=500" in html
    assert all(f"<td>{point}</td>" in html for point in chart.points)
    assert re.search(r"<td>\d+°\d\d′\d\d″ \w+</td>", html)  # degrees, minutes, seconds and sign
    assert len(re.findall(r'<li><a href="/demo/charts/\d+/">', html)) == 10
    assert f"synastry/wheel.svg?chart_a={chart.pk}&amp;chart_b=" in html


def test_names_are_text_and_private_charts_are_not_found(
    client: Client, alice: Any, bob: Any, make_chart: ChartFactory
) -> None:
    shown = make_chart(None, name="<script>alert(1)</script>", is_public=True)
    html = page(client, "/demo/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    private = make_chart(alice, name="private")
    assert client.get(f"/demo/charts/{private.pk}/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/demo/charts/{private.pk}/").status_code == 404
    client.force_login(alice)
    assert "private" in page(client, f"/demo/charts/{private.pk}/")  # the owner sees her own
    assert "no other chart" not in page(client, f"/demo/charts/{shown.pk}/")


def test_without_demo_data_the_list_says_how_to_make_it(client: Client) -> None:
    assert "make demo" in page(client, "/demo/")


def test_more_charts_than_a_request_compares_still_serves_the_pages(client: Client, demo_charts: list[Chart]) -> None:
    # Past MAX_MATCH_CANDIDATES the services refuse to rank partners (a batch job's work): the pages still show
    # the charts, saying why there are no matches, instead of a 500.
    with override_settings(ASPECTS={"MAX_MATCH_CANDIDATES": 5}):
        for html in (page(client, "/demo/"), page(client, f"/demo/charts/{demo_charts[0].pk}/")):
            assert "too many charts to rank here" in html
            assert not re.search(r'<li><a href="/demo/charts/\d+/">', html)


def test_a_chart_row_written_around_the_app_does_not_fail_the_pages(
    client: Client, demo_charts: list[Chart], make_chart: ChartFactory
) -> None:
    # As the API's list (issue 13): a public row with points and no longitudes shows as such, the other charts
    # as usual, instead of a 500 for the whole page.
    broken = make_chart(None, name="broken row", is_public=True)
    Chart.objects.filter(pk=broken.pk).update(points=["Sun", "Moon"], longitudes=b"")
    listing = page(client, "/demo/?page=2")
    assert "broken row" in listing and "positions that cannot be used" in listing
    assert len(re.findall(r"wheel\.svg\?size=300", listing)) == DEMO_CHARTS - 20  # its wheel would be a 400
    detail = page(client, f"/demo/charts/{broken.pk}/")
    assert "positions that cannot be used" in detail and "<img" not in detail
