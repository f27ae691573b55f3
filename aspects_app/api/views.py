"""Thin DRF views: validate, call one owner (:mod:`aspects_app.services` for request-time work,
:mod:`aspects_app.jobs` for batch runs), render."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import jobs, services
from ..engine.aspects import ORB_PRESETS
from ..engine.errors import FieldError
from ..engine.scoring import SCORE_METHODS
from ..houses import HOUSE_SYSTEMS
from ..models import BatchRun, Chart
from . import serializers as s
from .exceptions import BrokerUnavailable, JobsUnavailable, JobTooLarge, TooManyJobs
from .throttling import ComputeRateThrottle
from .transit_fields import MAX_CHART_ID


@contextmanager
def service_errors() -> Iterator[None]:
    """An owner's FieldError becomes a 400 naming the offending field; a chart or job the caller may not see
    becomes a 404 (the same whether it exists or not); a job the broker could not take becomes a 503 (the job
    is marked failed and resumable)."""
    try:
        yield
    except jobs.EnqueueFailed as exc:
        raise BrokerUnavailable(
            f"The job broker is unavailable ({exc.reason}): job {exc.run_id} is marked failed. Submit it again "
            f"later; an operator can resume it with compute_aspects --resume {exc.run_id}.",
            job=exc.run_id,
        ) from exc
    except jobs.JobsUnavailable as exc:
        raise JobsUnavailable(exc.reason) from exc
    except jobs.JobTooLarge as exc:
        raise JobTooLarge(exc.field, exc.message, exc.limit, exc.maximum) from exc
    except jobs.TooManyJobs as exc:
        raise TooManyJobs(
            f"{exc}: wait for one to finish or cancel one (DELETE jobs/{{id}}/)", exc.limit, exc.maximum
        ) from exc
    except services.ChartNotFound as exc:
        raise NotFound(f"{exc.field}: {exc.message}") from exc
    except jobs.JobNotFound as exc:
        raise NotFound(exc.message) from exc
    except FieldError as exc:
        raise ValidationError({exc.field: [exc.message]}) from exc


def path_chart(user: Any, pk: int) -> Chart:
    """The chart named by a URL's ``{id}`` if ``user`` may see it, else the same 404 for unknown and private ids
    (and for ids past the databases' 64-bit integers, on which SQLite would raise)."""
    if pk > MAX_CHART_ID:
        raise NotFound("id: no such chart, or not visible")
    with service_errors():
        return services.visible_charts_by_field(user, {"id": pk})["id"]


def _config(data: dict[str, Any]) -> Any:
    with service_errors():
        return services.aspect_config(data.get("orbs"), data.get("aspects"))


def _aspects_response(result: services.AspectsResult) -> dict[str, Any]:
    return {
        "points": list(result.points),
        "orbs": dict(result.config.orbs),
        "cached": result.cached,
        "source": result.source,
        "aspects": s.display_aspects(result.aspects()),
    }


class IsOwnerOrStaffForWrites(permissions.BasePermission):
    message = "Only the chart's owner (or staff) may change it."

    def has_object_permission(self, request: Request, view: Any, obj: Chart) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return bool(user.is_staff or (obj.owner_id is not None and obj.owner_id == user.pk))


class ChartPagination(PageNumberPagination):
    """DRF's page numbers, with ``page_size`` held to what the schema says: an integer of at least 1 (DRF
    ignored anything else, ``page_size=7.5e-143`` included, and served the default); above 500, pages of 500."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        given = request.query_params.get(self.page_size_query_param)
        if given is None:
            return self.page_size
        try:
            size = int(given)
        except ValueError:
            size = 0
        if size < 1 or not given.strip().isdigit():
            raise ValidationError({self.page_size_query_param: ["must be a positive integer"]})
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] in (self.page_query_param, self.page_size_query_param):
                parameter["schema"]["minimum"] = 1
        return parameters


class StrictBooleanField(forms.NullBooleanField):
    """``true``/``false`` (or ``1``/``0``); anything else is an error, where django-filter's boolean widget reads
    it as "no filter" and ``is_public=maybe`` would list every chart."""

    widget = forms.TextInput

    # NullBooleanField returns None for "no value"; the stubs inherit BooleanField's bool.
    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]
        text = str(value).strip().lower() if value is not None else ""
        if text in ("", "none"):
            return None
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("must be true or false", code="invalid")

    def validate(self, value: Any) -> None:
        pass


@extend_schema_field(OpenApiTypes.BOOL)  # a method filter (``mine``) is otherwise documented as a string
class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # django-filter's DRF BooleanFilter defaults to its BooleanWidget, which reads "maybe" as no value.
        kwargs.setdefault("widget", forms.TextInput)
        super().__init__(*args, **kwargs)


class StrictIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, as the schema says: given empty (``updated_after=``) it is an error, where
    django-filter reads it as "no filter"; so is a control character (CPython's ``fromisoformat`` stops at a NUL,
    so ``2020-01-01T00:00:00\\x00`` parsed)."""

    def to_python(self, value: Any) -> datetime | None:
        if value is not None and (not str(value).strip() or any(ord(c) < 32 or ord(c) == 127 for c in str(value))):
            raise forms.ValidationError("must be an ISO 8601 date-time, e.g. 2024-05-01T00:00:00Z", code="invalid")
        parsed: datetime | None = super().to_python(value)
        return parsed


@extend_schema_field(OpenApiTypes.DATETIME)  # a method filter is otherwise documented as any string
class IsoDateTimeQueryFilter(filters.IsoDateTimeFilter):
    field_class = StrictIsoDateTimeField


class ChartFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    is_public = StrictBooleanFilter()
    mine = StrictBooleanFilter(method="filter_mine", label="Only the requesting user's charts")
    updated_after = IsoDateTimeQueryFilter(method="filter_updated_after", label="Updated at or after (ISO 8601)")

    class Meta:
        model = Chart
        fields = ["name", "is_public", "mine", "updated_after"]

    def filter_updated_after(self, queryset: QuerySet[Chart], name: str, value: datetime | None) -> QuerySet[Chart]:
        if value is None:
            return queryset
        # In UTC: PostgreSQL refuses offsets beyond ±15:59, and the calendar's ends overflow on conversion.
        try:
            moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError as exc:
            raise ValidationError({"updated_after": ["outside the supported range of dates"]}) from exc
        return queryset.filter(updated_at__gte=moment)

    def filter_mine(self, queryset: QuerySet[Chart], name: str, value: bool | None) -> QuerySet[Chart]:
        user = self.request.user if self.request is not None else None
        if not value:
            return queryset
        if user is None or not user.is_authenticated:
            return queryset.none()
        return queryset.filter(owner=user)


@extend_schema_view(
    list=extend_schema(parameters=[s.ChartHousesQuerySerializer]),
    retrieve=extend_schema(parameters=[s.ChartHousesQuerySerializer]),
)
class ChartViewSet(viewsets.ModelViewSet[Chart]):
    """Charts: birth data and positions. Anonymous users read public charts; writing needs authentication, and
    only the owner (or staff) changes a chart."""

    serializer_class = s.ChartSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly, IsOwnerOrStaffForWrites]
    pagination_class = ChartPagination
    filter_backends = [filters.DjangoFilterBackend]
    filterset_class = ChartFilter

    def get_queryset(self) -> QuerySet[Chart]:
        return services.visible_charts(self.request.user).select_related("owner")

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        # ?houses= on reads (list, retrieve); payloads of writes show the setting's system.
        request = getattr(self, "request", None)
        if getattr(self, "action", None) in ("list", "retrieve") and request and "houses" in request.query_params:
            query = s.ChartHousesQuerySerializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            if "houses" not in query.validated_data:  # given empty: DRF reads a blank query value as absent
                raise ValidationError({"houses": [f"a house system: {', '.join(HOUSE_SYSTEMS)}"]})
            context["house_system"] = query.validated_data["houses"]
        return context

    def paginate_queryset(self, queryset: Any) -> Any:
        page: list[Chart] | None = super().paginate_queryset(queryset)
        if page is not None:
            # A page's cusps at once (one ephemeris call for those not stored in the system asked for).
            context = self.get_serializer_context()
            with service_errors():
                houses = services.charts_houses(page, context.get("house_system"))
            self._page_houses = {chart.pk: found for chart, found in zip(page, houses, strict=True)}
        return page

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        serializer = super().get_serializer(*args, **kwargs)
        page_houses = getattr(self, "_page_houses", None)
        if page_houses is not None:
            cast(dict[str, Any], serializer.context).setdefault("chart_houses", {}).update(page_houses)
        return serializer

    def get_throttles(self) -> list[Any]:
        # Every compute and write action; reading charts (list, retrieve) is cheap and paginated.
        if self.action in ("list", "retrieve"):
            return super().get_throttles()
        return [ComputeRateThrottle()]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            (chart,) = services.create_charts(request.user, [s.chart_input(serializer.validated_data)])
        return Response(self.get_serializer(chart).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        chart = self.get_object()
        serializer = self.get_serializer(chart, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with service_errors():
            chart = services.update_chart(chart, s.chart_input(data), data.keys())
        return Response(self.get_serializer(chart).data)

    @extend_schema(request=s.BulkChartSerializer, responses={201: s.ChartSerializer(many=True)})
    @action(detail=False, methods=["post"], pagination_class=None)  # a plain list, not a page
    def bulk(self, request: Request) -> Response:
        """Create many charts in one request (positions computed in one vectorised call)."""
        serializer = s.BulkChartSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        inputs = [s.chart_input(item) for item in serializer.validated_data["charts"]]
        with service_errors():
            charts = services.create_charts(request.user, inputs)
        return Response(self.get_serializer(charts, many=True).data, status=status.HTTP_201_CREATED)

    # The query's own serializer: the schema then carries its constraints (a preset or a non-empty object).
    @extend_schema(parameters=[s.AspectSelectionSerializer], responses=s.AspectsResponseSerializer)
    @action(detail=True, methods=["get"])
    def natal(self, request: Request, pk: str | None = None) -> Response:
        """Aspects within this chart."""
        query = s.AspectSelectionSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        chart = self.get_object()
        with service_errors():
            result = services.natal_aspects(chart, _config(query.validated_data))
        return Response({"chart": chart.pk, **_aspects_response(result)})

    @extend_schema(request=s.ScoresRequestSerializer, responses=s.ScoresResponseSerializer)
    @action(detail=True, methods=["post"], permission_classes=[permissions.AllowAny])
    def scores(self, request: Request, pk: str | None = None) -> Response:
        """Compatibility of this chart with each chart in ``charts`` (all must be visible to the caller)."""
        body = s.ScoresRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        chart = self.get_object()
        with service_errors():
            others = services.visible_charts_by_id(request.user, body.validated_data["charts"], "charts")
            values = services.scores(chart, others, body.validated_data["method"], _config(body.validated_data))
        return Response({"chart": chart.pk, "method": body.validated_data["method"], "scores": values})

    @extend_schema(
        parameters=[
            # The query serializer's bounds and choices, so the schema refuses what the server refuses (k=0).
            OpenApiParameter(
                "k", {"type": "integer", "minimum": 1, "maximum": s.MAX_K}, description="Number of partners."
            ),
            OpenApiParameter("method", str, enum=list(SCORE_METHODS)),
            OpenApiParameter(
                "orbs", str, enum=list(ORB_PRESETS), description="Orb preset for the weighted score: default or all."
            ),
            OpenApiParameter("stored", bool, description="1: read the list a batch top-k run stored (no compute)."),
            OpenApiParameter("run", int, description="With stored=1: that job's list (404 if not yours)."),
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="MatchesOrStored",
                serializers=[s.MatchesResponseSerializer, s.StoredMatchesResponseSerializer],
                resource_type_field_name=None,
            ),
            400: OpenApiResponse(description="A bad parameter, named: {field: [message]}."),
            404: OpenApiResponse(description="No such chart or job, or one the caller may not see."),
        },
    )
    @action(detail=True, methods=["get"])
    def matches(self, request: Request, pk: str | None = None) -> Response:
        """The ``k`` best partners of this chart among the charts visible to the caller; with ``stored=1`` the
        list a batch run stored (``run``: that job's), partners the caller may not see left out."""
        query = s.StoredMatchesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        chart = self.get_object()
        if query.validated_data["stored"]:
            return Response(self._stored_matches(request, chart, query.validated_data))
        k, method = query.validated_data["k"], query.validated_data["method"]
        with service_errors():
            if method == "harmonic":  # from stored features, by the match index above INDEX_MIN_CANDIDATES
                best = services.harmonic_matches(request.user, chart, k)
            else:
                candidates = services.match_candidates(request.user, chart)
                best = services.top_matches(chart, candidates, k, method, _config(query.validated_data))
        return Response({"chart": chart.pk, "method": method, "k": k, "matches": best})

    def _stored_matches(self, request: Request, chart: Chart, query: dict[str, Any]) -> dict[str, Any]:
        run_id = query.get("run")
        with service_errors():
            if run_id is not None:
                jobs.visible_job(request.user, run_id)  # a job the caller may not see is a 404
        # The list shown: that run's, else the chart's latest (of ``method`` when asked for).
        method = query["method"] if "method" in request.query_params else None
        if run_id is not None:
            first = services.stored_matches(request.user, chart=chart, run_id=run_id).first()
            which = None if first is None else (first["method"], first["config_hash"])
        else:
            latest = services.latest_match_list(chart, method)
            which = None if latest is None else (latest.method, latest.config_hash)
        picked: list[dict[str, Any]] = []
        if which is not None:
            rows = services.stored_matches(request.user, chart=chart, run_id=run_id, of_list=which)
            picked = list(rows[: query["k"]] if "k" in request.query_params else rows)
        return {
            "chart": chart.pk,
            "stored": True,
            "method": None if which is None else which[0],
            "k": len(picked),
            "run": picked[0]["run"] if picked else run_id,
            "computed_at": max((m["computed_at"] for m in picked), default=None),
            "matches": [{"rank": m["position"], "chart": m["partner"], "score": m["score"]} for m in picked],
        }


class SynastryView(APIView):
    """Synastry aspects between two stored charts (p1 from ``chart_a``, p2 from ``chart_b``)."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(parameters=[s.SynastryQuerySerializer], responses=s.AspectsResponseSerializer)
    def get(self, request: Request) -> Response:
        query = s.SynastryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        with service_errors():
            charts = services.visible_charts_by_field(
                request.user, {field: query.validated_data[field] for field in ("chart_a", "chart_b")}
            )
            a, b = charts["chart_a"], charts["chart_b"]
            result = services.synastry_aspects(a, b, _config(query.validated_data))
        return Response({"chart_a": a.pk, "chart_b": b.pk, **_aspects_response(result)})


class InlineSynastryView(APIView):
    """Synastry between two position sets sent in the request (nothing is stored)."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(request=s.InlineSynastrySerializer, responses=s.AspectsResponseSerializer)
    def post(self, request: Request) -> Response:
        body = s.InlineSynastrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        a, b = body.validated_data["a"], body.validated_data["b"]
        with service_errors():
            result = services.inline_synastry(
                a["points"],
                a["longitudes"],
                b["longitudes"],
                a.get("speeds"),
                b.get("speeds"),
                _config(body.validated_data),
            )
        return Response(_aspects_response(result))


class EstimateView(APIView):
    """The memory plan of a batch computation, without running it."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ComputeRateThrottle]

    @extend_schema(request=s.EstimateSerializer, responses=s.EstimateResponseSerializer)
    def post(self, request: Request) -> Response:
        body = s.EstimateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with service_errors():
            plan = services.estimate(
                data["num_charts1"],
                data.get("num_charts2"),
                data["num_planets"],
                data["operation"],
                data["method"],
                data.get("working_memory_mb"),
            )
        return Response(plan)


class ConfigurationView(APIView):
    """Aspects, orb presets, points and scoring methods this server knows."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=s.ConfigurationSerializer)
    def get(self, request: Request) -> Response:
        return Response(services.describe_configuration())


class MetricsPermission(permissions.BasePermission):
    """Staff, or a caller presenting ``ASPECTS["METRICS_TOKEN"]`` as a bearer token (a Prometheus scraper)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        header = request.headers.get("Authorization", "")
        return services.may_read_metrics(request.user, header[7:] if header.startswith("Bearer ") else None)


class PrometheusRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, dict) and "detail" in data:  # an error (403, 429): its message, not a dict's repr
            return f"{data['detail']}\n".encode()
        return str(data).encode()


class MetricsView(APIView):
    """Request and engine metrics in Prometheus' text format (every worker's, in multi-process mode)."""

    permission_classes = [MetricsPermission]
    renderer_classes = [PrometheusRenderer]

    @extend_schema(responses={(200, "text/plain"): str})
    def get(self, request: Request) -> HttpResponse:
        body, content_type = services.metrics_exposition()
        return HttpResponse(body, content_type=content_type)


class MetricsSummaryView(APIView):
    """The same metrics as JSON, with this process's cache figures per level."""

    permission_classes = [MetricsPermission]

    @extend_schema(responses=dict[str, Any])
    def get(self, request: Request) -> Response:
        return Response(services.monitoring_summary())


JOB_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The job's id.")


class JobViewSet(viewsets.ViewSet):
    """Distributed batch jobs: POST answers 202 with the job's URL in Location; GET reports status and progress;
    DELETE cancels. Only the job's owner (or staff) sees a job."""

    permission_classes = [permissions.IsAuthenticated]

    def get_throttles(self) -> list[Any]:
        return [ComputeRateThrottle()] if self.action in ("create", "destroy") else super().get_throttles()

    def _get(self, request: Request, pk: str | None) -> BatchRun:
        with service_errors():
            return jobs.visible_job(request.user, pk)

    def _body(self, request: Request, run: BatchRun) -> dict[str, Any]:
        links = {"self": request.build_absolute_uri(reverse("aspects_api:job-detail", args=[run.pk]))}
        stored = jobs.stored_results(run)
        for kind in ("matches", "natal"):
            if stored[kind]:
                links[kind] = request.build_absolute_uri(reverse(f"aspects_api:job-{kind}", args=[run.pk]))
        if stored["transit_events"]:  # the stored events' own list, filtered to this job
            events = reverse("aspects_api:transit-events")
            links["transit_events"] = request.build_absolute_uri(f"{events}?{urlencode({'run': run.pk})}")
        return {**jobs.describe(run), "links": links, "output": stored["output"]}

    @extend_schema(
        parameters=[JOB_ID],
        responses={200: s.JobMatchesPageSerializer, 404: OpenApiResponse(description="No such job, or not yours.")},
    )
    @action(detail=True, methods=["get"])
    def matches(self, request: Request, pk: str | None = None) -> Response:
        """The match lists the job stored (top-k), chart by chart in rank order, a page at a time; partners the
        caller may not see are left out."""
        run = self._get(request, pk)
        paginator = ChartPagination()
        page = paginator.paginate_queryset(services.stored_matches(request.user, run_id=run.pk), request, view=self)
        fields = ("chart", "partner", "score", "method", "computed_at")
        rows = [{"rank": m["position"], **{f: m[f] for f in fields}} for m in page or []]
        return paginator.get_paginated_response(rows)

    @extend_schema(
        parameters=[JOB_ID],
        responses={200: s.JobNatalPageSerializer, 404: OpenApiResponse(description="No such job, or not yours.")},
    )
    @action(detail=True, methods=["get"])
    def natal(self, request: Request, pk: str | None = None) -> Response:
        """The natal results the job stored for its charts, under its orbs and aspects, a page of charts at a
        time (charts the caller may no longer see are left out)."""
        run = self._get(request, pk)
        paginator = ChartPagination()
        page = paginator.paginate_queryset(jobs.group_a(run), request, view=self)
        return paginator.get_paginated_response(jobs.natal_results(request.user, run, page or []))

    @extend_schema(responses=s.JobResultsSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response([self._body(request, run) for run in jobs.visible_jobs(request.user).order_by("-pk")[:100]])

    @extend_schema(
        request=s.JobRequestSerializer,
        responses={
            202: s.JobResultsSerializer,
            400: OpenApiResponse(
                s.QuotaErrorSerializer,
                description="A bad field, named ({field: [message]}), or a job over MAX_JOB_PAIRS, MAX_JOB_ROWS or "
                "MAX_JOB_SYNASTRY_PAIRS (then limit and maximum name the quota).",
            ),
            429: OpenApiResponse(
                s.QuotaErrorSerializer,
                description="MAX_ACTIVE_JOBS_PER_USER of the caller's jobs are pending or running.",
            ),
            503: OpenApiResponse(
                s.BrokerUnavailableSerializer,
                description="The broker could not take the job's blocks (down, or not answering within seconds): "
                "the job is marked failed. Retry-After says when to try again. Or jobs are switched off or have no "
                "Celery app or broker configured (no job field then: nothing was stored).",
            ),
        },
    )
    def create(self, request: Request) -> Response:
        body = s.JobRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with service_errors():
            run = jobs.submit(
                request.user,
                data["modes"],
                data.get("charts"),
                data.get("with_charts"),
                data.get("orbs"),
                data.get("aspects"),
                data["k"],
                data["method"],
                data.get("start"),
                data.get("end"),
                data.get("bodies"),
            )
        response = Response(self._body(request, run), status=status.HTTP_202_ACCEPTED)
        response["Location"] = response.data["links"]["self"]
        return response

    @extend_schema(parameters=[JOB_ID], responses=s.JobResultsSerializer)
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self._body(request, self._get(request, pk)))

    @extend_schema(parameters=[JOB_ID], responses={202: s.JobResultsSerializer})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the job: blocks not yet computed are skipped (what is stored stays)."""
        run = self._get(request, pk)
        jobs.cancel(run)
        return Response(self._body(request, run), status=status.HTTP_202_ACCEPTED)


@csrf_exempt  # it changes nothing; CSRF's HTML 403 would otherwise answer a DELETE with a session cookie
def not_found(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any other path under the app's prefix that ends in a slash: a JSON 404 like the API's own (Django's would
    be an HTML page; ``jobs/1.5/`` does not match the router's id pattern)."""
    return HttpResponse(b'{"detail":"Not found."}', status=status.HTTP_404_NOT_FOUND, content_type="application/json")
