"""Transit endpoints: one chart's transits computed on request (``charts/{id}/transits/``), and the events batch
runs stored (``transit-events/``), for hosts that build calendars and notifications from rows. Thin, as the
other views: validate, call :mod:`aspects_app.services`, render."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import jobs, services
from . import transit_serializers as ts
from .throttling import ComputeRateThrottle
from .views import ChartPagination, path_chart, service_errors

CHART_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The chart's id.")


class ChartTransitsView(APIView):
    """When each transiting body is exact to each of this chart's points (natal point ± aspect angle), with
    when each pass enters and leaves the orb, over at most a year; default orbs: the transit preset (the five
    majors at 3°). Computed on request and cached per chart (an edit of the chart forgets it)."""

    permission_classes = [permissions.AllowAny]  # visibility is the chart's: a private chart answers 404
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(parameters=[CHART_ID, ts.TransitQuerySerializer], responses=ts.TransitsResponseSerializer)
    def get(self, request: Request, pk: int) -> HttpResponse:
        query = ts.TransitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        chart = path_chart(request.user, pk)
        with service_errors():
            config = services.transit_config(data.get("orbs"), data.get("aspects"))
            result = services.chart_transits(chart, data["start"], data["end"], data.get("bodies"), config)
        head = {
            "chart": chart.pk,
            "start": _iso(result.start),
            "end": _iso(result.end),
            "bodies": list(result.bodies),
            "orbs": dict(result.config.orbs),
            "cached": result.cached,
            "source": result.source,
        }
        # The events' JSON as cached, spliced in: decoding and rendering 2,000 events again cost more than the
        # search (the content is TransitsResponseSerializer's, which the schema documents).
        body = json.dumps(head, separators=(",", ":")).encode()[:-1]
        body += b',"events":' + result.events_json + b',"sky":' + result.sky_json + b"}"
        return HttpResponse(body, content_type="application/json")


def _visible_run(user: Any, run_id: int) -> None:
    """A 404 naming ``run`` unless ``user`` may see that job (as ``jobs/{id}/matches/``): the same whether it
    exists or not, so that run ids reveal nothing."""
    try:
        jobs.visible_job(user, run_id)
    except jobs.JobNotFound as exc:
        raise NotFound(f"run: {exc.message}") from exc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TransitEventListView(APIView):
    """Transit events stored by batch runs (``compute_aspects --mode transits``, jobs), of the charts the
    caller may see, by chart and exact moment, a page at a time; ``run``: only that job's (one of the caller's)."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[ts.TransitEventsQuerySerializer],
        responses={
            200: ts.TransitEventsPageSerializer,
            404: OpenApiResponse(
                description="No such chart or job, or one the caller may not see; or a page past the end."
            ),
        },
    )
    def get(self, request: Request) -> Response:
        query = ts.TransitEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data: dict[str, Any] = query.validated_data
        run_id = data.get("run")
        if run_id is not None:
            _visible_run(request.user, run_id)
        with service_errors():
            rows = services.stored_transit_events(
                request.user, data.get("chart"), data.get("start"), data.get("end"), run_id
            )
        paginator = ChartPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ts.StoredTransitEventSerializer(page or [], many=True).data)
