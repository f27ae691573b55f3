"""Pictures of stored charts: a chart (or a pair of charts) with the aspects the API returns for it, drawn by the
Django-free :mod:`aspects_app.pictures`.

The aspects come from :func:`services.natal_aspects` / :func:`services.synastry_aspects`, so a picture draws exactly
what ``charts/{id}/natal/`` and ``synastry/`` answer and shares their result cache; house cusps from
:func:`services.chart_houses` (None for a chart given by positions only: the wheel then has no houses). Visibility
is the caller's business: these functions draw the charts they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import services
from .engine import AspectConfig
from .engine.zodiac import zodiac_positions
from .models import Chart
from .pictures import (
    ChartData,
    SynastryData,
    render_aspect_grid,
    render_biwheel,
    render_synastry_grid,
    render_wheel,
)


def _retrograde(chart: Chart) -> npt.NDArray[np.bool_] | None:
    speeds = chart.speed_array
    if speeds is None:
        return None
    flags: npt.NDArray[np.bool_] = zodiac_positions(
        chart.longitude_array[None, :], speeds[None, :], points=list(chart.points)
    ).retrograde[0]
    return flags


def _cusps(chart: Chart, houses: str | None) -> npt.NDArray[np.float64] | None:
    found = services.chart_houses(chart, houses)
    return None if found is None else found.cusps[0]


def chart_data(
    chart: Chart, aspects: Sequence[dict[str, Any]] = (), houses: str | None = None, with_houses: bool = True
) -> ChartData:
    """``chart`` as picture data; its cusps in the ``houses`` system (default: the ``HOUSE_SYSTEM`` setting) when
    ``with_houses`` and the chart has birth data."""
    return ChartData(
        points=list(chart.points),
        longitudes=chart.longitude_array,
        retrograde=_retrograde(chart),
        cusps=_cusps(chart, houses) if with_houses else None,
        aspects=list(aspects),
        name=chart.name,
    )


def chart_wheel(chart: Chart, config: AspectConfig, size: int, theme: str, houses: str | None = None) -> str:
    """The chart wheel of ``chart`` (SVG text) with its natal aspects under ``config``."""
    aspects = services.natal_aspects(chart, config).aspects()
    return render_wheel(chart_data(chart, aspects, houses), size=size, theme=theme)


def chart_aspect_grid(chart: Chart, config: AspectConfig, size: int, theme: str) -> str:
    """The natal aspect grid of ``chart`` (SVG text): no houses are computed, the grid has none."""
    aspects = services.natal_aspects(chart, config).aspects()
    return render_aspect_grid(chart_data(chart, aspects, with_houses=False), size=size, theme=theme)


def _synastry(
    chart_a: Chart, chart_b: Chart, config: AspectConfig, houses: str | None, with_houses: bool
) -> SynastryData:
    aspects = services.synastry_aspects(chart_a, chart_b, config).aspects()
    # The bi-wheel draws chart a's houses only: chart b's are never computed.
    return SynastryData(
        chart_data(chart_a, houses=houses, with_houses=with_houses), chart_data(chart_b, with_houses=False), aspects
    )


def synastry_wheel(
    chart_a: Chart, chart_b: Chart, config: AspectConfig, size: int, theme: str, houses: str | None = None
) -> str:
    """Both charts on one wheel (SVG text): ``chart_a`` inside with its houses, ``chart_b`` outside, and the
    synastry aspects between them under ``config``."""
    return render_biwheel(_synastry(chart_a, chart_b, config, houses, True), size=size, theme=theme)


def synastry_aspect_grid(chart_a: Chart, chart_b: Chart, config: AspectConfig, size: int, theme: str) -> str:
    """The synastry aspect grid (SVG text): ``chart_a``'s points in rows, ``chart_b``'s in columns."""
    return render_synastry_grid(_synastry(chart_a, chart_b, config, None, False), size=size, theme=theme)
