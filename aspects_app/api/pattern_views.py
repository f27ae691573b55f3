"""Aspect patterns (grand trine, T-square, grand cross, yod, kite, mystic rectangle, stellium) of one chart and of
two charts' points together. Thin, as the other views: validate, call :mod:`aspects_app.services`, render."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from . import pattern_serializers as ps
from .throttling import ComputeRateThrottle
from .views import path_chart, service_errors

CHART_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The chart's id.")


def _head(result: services.PatternsResult) -> dict[str, Any]:
    return {
        "points": list(result.points),
        "orbs": dict(result.config.orbs),
        "stellium_span": result.stellium_span,
        "cached": result.cached,
        "source": result.source,
    }


class ChartPatternsView(APIView):
    """The aspect patterns of this chart's points under the orbs asked for (as natal aspects), a figure inside
    another reported too (a kite's grand trine). Cached per chart (an edit of the chart forgets it)."""

    permission_classes = [permissions.AllowAny]  # visibility is the chart's: a private chart answers 404
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(parameters=[CHART_ID, ps.PatternQuerySerializer], responses=ps.ChartPatternsResponseSerializer)
    def get(self, request: Request, pk: int) -> Response:
        query = ps.PatternQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        chart = path_chart(request.user, pk)
        with service_errors():
            config = services.aspect_config(data.get("orbs"), data.get("aspects"))
            result = services.chart_patterns(chart, config, data.get("stellium_span"))
        return Response({"chart": chart.pk, **_head(result), "patterns": result.patterns})


class SynastryPatternsView(APIView):
    """The aspect patterns of two charts' points together (both natal aspect sets and the synastry aspects) that
    have points of each chart."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(parameters=[ps.SynastryPatternQuerySerializer], responses=ps.SynastryPatternsResponseSerializer)
    def get(self, request: Request) -> Response:
        query = ps.SynastryPatternQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        with service_errors():
            charts = services.visible_charts_by_field(request.user, {f: data[f] for f in ("chart_a", "chart_b")})
            a, b = charts["chart_a"], charts["chart_b"]
            config = services.aspect_config(data.get("orbs"), data.get("aspects"))
            result = services.synastry_patterns(a, b, config, data.get("stellium_span"))
        return Response({"chart_a": a.pk, "chart_b": b.pk, **_head(result), "patterns": result.patterns})
