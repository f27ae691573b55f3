"""Picture endpoints: a chart's wheel and aspect grid, and a pair's bi-wheel and synastry grid, as SVG.

Thin, as the other views: validate the query, find the charts the caller may see (a private chart of someone else
answers 404, the same as an unknown id), call :mod:`aspects_app.chart_pictures`, which draws the aspects the natal
and synastry endpoints return (through the same services, so the result cache is shared). Errors are the API's
JSON (``{field: [message]}``), whatever the request's ``Accept`` (a browser's ``<img>`` asks for ``image/*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import Http404
from django.utils.cache import patch_cache_control
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import NotAcceptable
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from .. import chart_pictures, services
from ..engine import AspectConfig
from ..models import Chart
from . import picture_serializers as ps
from .throttling import ComputeRateThrottle
from .views import path_chart, service_errors

SVG_MEDIA_TYPE = "image/svg+xml"
# The picture holds user-supplied chart names (escaped by the renderer): should one ever slip through, a browser
# opening the SVG by itself runs no script and loads nothing; the renderer's inline style attributes still apply.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
# Public charts' pictures may sit in shared caches for a while (an edit shows after at most this long); others'
# only in the caller's browser, briefly.
PUBLIC_MAX_AGE = 300
PRIVATE_MAX_AGE = 60

CHART_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The chart's id.")
# drf-spectacular offers ?format= when a view has two renderers; the JSON one here is for errors, not a format.
NO_FORMAT = OpenApiParameter("format", exclude=True)
ERRORS = {
    400: OpenApiResponse(description="A bad query parameter, named: {field: [message]}."),
    404: OpenApiResponse(description="No such chart, or one the caller may not see (the same answer either way)."),
    406: OpenApiResponse(description="The request's Accept header allows no image/svg+xml (the answer is JSON)."),
}


def _svg_answer(description: str) -> dict[Any, Any]:
    return {(200, SVG_MEDIA_TYPE): OpenApiResponse(OpenApiTypes.STR, description=description), **ERRORS}


class SVGRenderer(BaseRenderer):
    media_type = SVG_MEDIA_TYPE
    format = "svg"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if not isinstance(data, str):  # anything else goes to the JSON renderer (PictureView.finalize_response)
            raise TypeError(f"an SVG document is text, not {type(data).__name__}")
        return data.encode("utf-8")


class PictureView(APIView):
    """Shared by the picture endpoints: anyone may ask (visibility is the charts'), throttled as every compute
    endpoint, SVG on success and JSON on error."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ComputeRateThrottle]
    # The JSON renderer answers errors only; listed, so that the schema documents them as JSON.
    renderer_classes = [SVGRenderer, JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        if request.method == "OPTIONS":  # the view's description, JSON as everywhere in the API
            return super().perform_content_negotiation(request, force)
        # A success is SVG or nothing: Accept: application/json alone is a 406, not the SVG quoted in JSON.
        svg = SVGRenderer()
        try:
            renderer, media_type = self.get_content_negotiator().select_renderer(request, [svg], self.format_kwarg)
        except (NotAcceptable, Http404):
            if force:
                return svg, svg.media_type
            raise
        return renderer, media_type

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Only a picture is SVG: errors (an <img> asks for image/*) and OPTIONS' description are the API's JSON.
        if isinstance(response, Response) and not isinstance(response.data, str):
            json = JSONRenderer()
            request.accepted_renderer = json
            request.accepted_media_type = json.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    def query(self, request: Request, serializer_class: type[Serializer[Any]]) -> tuple[dict[str, Any], AspectConfig]:
        query = serializer_class(data=request.query_params)
        query.is_valid(raise_exception=True)
        data: dict[str, Any] = query.validated_data
        with service_errors():
            return data, services.aspect_config(data.get("orbs"), data.get("aspects"))

    def chart(self, request: Request, pk: int) -> Chart:
        return path_chart(request.user, pk)

    def pair(self, request: Request, data: dict[str, Any]) -> tuple[Chart, Chart]:
        with service_errors():
            charts = services.visible_charts_by_field(request.user, {f: data[f] for f in ("chart_a", "chart_b")})
        return charts["chart_a"], charts["chart_b"]


def svg_response(svg: str, charts: Sequence[Chart], filename: str) -> Response:
    response = Response(svg)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    if all(chart.is_public for chart in charts):
        patch_cache_control(response, public=True, max_age=PUBLIC_MAX_AGE)
    else:
        patch_cache_control(response, private=True, max_age=PRIVATE_MAX_AGE)
    return response


class ChartWheelView(PictureView):
    @extend_schema(
        operation_id="charts_wheel_svg",
        parameters=[NO_FORMAT, CHART_ID, ps.WheelQuerySerializer],
        responses=_svg_answer(
            "The chart wheel: zodiac, house cusps (for charts with birth data), points with "
            "glyphs and degrees, and the natal aspects as lines coloured by kind."
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        """This chart's wheel as SVG, with the aspects ``natal/`` answers under the same ``orbs`` and
        ``aspects``."""
        data, config = self.query(request, ps.WheelQuerySerializer)
        chart = self.chart(request, pk)
        with service_errors():
            svg = chart_pictures.chart_wheel(chart, config, data["size"], data["theme"], data.get("houses"))
        return svg_response(svg, [chart], f"chart-{chart.pk}-wheel.svg")


class ChartAspectGridView(PictureView):
    @extend_schema(
        operation_id="charts_aspect_grid_svg",
        parameters=[NO_FORMAT, CHART_ID, ps.PictureQuerySerializer],
        responses=_svg_answer("The natal aspect grid: points on the diagonal, one cell per pair of points."),
    )
    def get(self, request: Request, pk: int) -> Response:
        """This chart's aspect grid as SVG (the aspects ``natal/`` answers)."""
        data, config = self.query(request, ps.PictureQuerySerializer)
        chart = self.chart(request, pk)
        with service_errors():
            svg = chart_pictures.chart_aspect_grid(chart, config, data["size"], data["theme"])
        return svg_response(svg, [chart], f"chart-{chart.pk}-aspect-grid.svg")


class SynastryWheelView(PictureView):
    @extend_schema(
        operation_id="synastry_wheel_svg",
        parameters=[NO_FORMAT, ps.SynastryWheelQuerySerializer],
        responses=_svg_answer(
            "The bi-wheel: chart_a inside with its houses, chart_b outside, and the synastry aspects between them."
        ),
    )
    def get(self, request: Request) -> Response:
        """Both charts on one wheel as SVG, with the aspects ``synastry/`` answers."""
        data, config = self.query(request, ps.SynastryWheelQuerySerializer)
        a, b = self.pair(request, data)
        with service_errors():
            svg = chart_pictures.synastry_wheel(a, b, config, data["size"], data["theme"], data.get("houses"))
        return svg_response(svg, [a, b], f"synastry-{a.pk}-{b.pk}-wheel.svg")


class SynastryAspectGridView(PictureView):
    @extend_schema(
        operation_id="synastry_aspect_grid_svg",
        parameters=[NO_FORMAT, ps.SynastryPictureQuerySerializer],
        responses=_svg_answer("The synastry grid: chart_a's points in rows, chart_b's in columns."),
    )
    def get(self, request: Request) -> Response:
        """The synastry aspect grid as SVG (the aspects ``synastry/`` answers)."""
        data, config = self.query(request, ps.SynastryPictureQuerySerializer)
        a, b = self.pair(request, data)
        with service_errors():
            svg = chart_pictures.synastry_aspect_grid(a, b, config, data["size"], data["theme"])
        return svg_response(svg, [a, b], f"synastry-{a.pk}-{b.pk}-aspect-grid.svg")
