"""The demo project's pages: the public demo charts with their wheels, natal aspects, aspect patterns and best
matches, so that a new user sees the app working in a browser after the Quick start (``/demo/``).

They belong to the demo project, not to the reusable app: a host has a front end of its own and installs the app
for its API. So they are what a host's pages would be: plain Django views calling the app's services, templates in
``project/templates/demo/`` (no JavaScript, no external assets), and the pictures as ``<img>`` of the API's
``wheel.svg`` and ``aspect-grid.svg`` endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from aspects_app import services
from aspects_app.engine import AspectConfig
from aspects_app.engine.errors import FieldError
from aspects_app.engine.zodiac import zodiac_positions
from aspects_app.models import Chart

PAGE_SIZE = 20
LIST_MATCHES = 3
DETAIL_MATCHES = 10
MATCH_METHOD = "discepolo"


@dataclass(frozen=True)
class ChartSummary:
    """What a page shows of one chart: its natal aspects, patterns and best partners (with their names)."""

    chart: Chart
    aspects: list[dict[str, Any]]
    patterns: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    matches_refused: bool = False  # more candidates than a request ranks (MAX_MATCH_CANDIDATES)
    problem: str | None = None  # why the stored positions cannot be used (a row written around the app)


# How the page names a pattern (the API's names are "t-square", "grand-trine"...).
PATTERN_LABELS = {"t-square": "T-square", "grand-trine": "grand trine", "grand-cross": "grand cross",
                  "mystic-rectangle": "mystic rectangle"}  # fmt: skip


def _label(point: str) -> str:
    return point.replace("_", " ")


def _summary(user: Any, chart: Chart, config: AspectConfig, k: int) -> ChartSummary:
    problem = chart.positions_problem()
    if problem is not None:  # as the API's list: such a row shows as it is, the other charts as usual
        return ChartSummary(chart, [], [], [], problem=problem)
    aspects = [
        {**a, "p1": _label(a["p1"]), "p2": _label(a["p2"])} for a in services.natal_aspects(chart, config).aspects()
    ]
    patterns = [
        {"name": PATTERN_LABELS.get(p["pattern"], p["pattern"]), "points": ", ".join(map(_label, p["points"]))}
        for p in services.chart_patterns(chart, config).patterns
    ]
    try:
        best = services.top_matches(chart, services.match_candidates(user, chart), k, MATCH_METHOD, config)
    except FieldError as exc:
        if exc.field != "k":  # past MAX_MATCH_CANDIDATES: a batch job's work, not a page's
            raise
        return ChartSummary(chart, aspects, patterns, [], matches_refused=True)
    names = dict(services.visible_charts(user).filter(pk__in=[m["chart"] for m in best]).values_list("pk", "name"))
    matches = [{**m, "name": names.get(m["chart"], "")} for m in best]
    return ChartSummary(chart, aspects, patterns, matches)


def chart_list(request: HttpRequest) -> HttpResponse:
    """The public charts, ``PAGE_SIZE`` a page, each with its wheel, aspects, patterns and best matches."""
    charts = services.visible_charts(request.user).filter(is_public=True).order_by("pk")
    page = Paginator(charts, PAGE_SIZE).get_page(request.GET.get("page"))
    config = services.aspect_config()
    rows = [_summary(request.user, chart, config, LIST_MATCHES) for chart in page.object_list]
    return render(request, "demo/chart_list.html", {"page": page, "rows": rows, "total": page.paginator.count})


def chart_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One chart the visitor may see: wheel, aspect grid, positions, aspects, patterns and best matches."""
    chart = services.visible_charts(request.user).filter(pk=pk).first()
    if chart is None:
        raise Http404("No such chart, or not visible.")
    summary = _summary(request.user, chart, services.aspect_config(), DETAIL_MATCHES)
    speeds = chart.speed_array
    positions = (
        []
        if summary.problem is not None
        else zodiac_positions(
            chart.longitude_array[None, :], None if speeds is None else speeds[None, :], points=list(chart.points)
        ).to_records()
    )
    return render(request, "demo/chart_detail.html", {"row": summary, "positions": positions})
