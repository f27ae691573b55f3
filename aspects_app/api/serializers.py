"""Request validation and response shapes of the API. Every error names its field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, available_timezones

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import ephemeris, services
from ..conf import get_config
from ..engine.aspects import ASPECT_NAMES, ORB_PRESETS, STANDARD_POINTS
from ..engine.backend import BACKEND_NAMES
from ..engine.calculator import OPERATIONS
from ..engine.errors import FieldError
from ..engine.hits import MOVEMENTS
from ..engine.scoring import SCORE_METHODS
from ..engine.validation import MAX_POINTS
from ..engine.zodiac import ELEMENTS, MODALITIES, SIGN_NAMES, zodiac_positions
from ..houses import HOUSE_SYSTEMS, HouseCusps
from ..models import Chart
from ..services import ChartInput
from .transit_fields import MAX_CHART_ID, BodyListField, MomentField

MAX_K = 100


def finite(value: float, field: str = "value") -> float:
    if not math.isfinite(value):
        raise serializers.ValidationError(f"{field} must be a finite number")
    return value


# Orbs in responses are rounded to this many decimals (1e-10°, far below the ephemeris' precision): differences
# of longitudes carry binary noise (120.3 − 120 = 0.30000000000001137) that means nothing to a reader.
ORB_DECIMALS = 10


def display_aspects(aspects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aspect records as the API shows them: orbs rounded to :data:`ORB_DECIMALS`."""
    return [{**record, "orb": round(float(record["orb"]), ORB_DECIMALS)} for record in aspects]


# A request body naming a field the serializer does not know is a 400 naming it, not silently ignored (a misspelt
# ``is_publc`` would otherwise store a private chart). Read-only fields are known (and ignored), so a client may
# send back what it read. (Comments, not a docstring: the schema would show it as every body's description.)
class RejectUnknownFields:
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = cast(serializers.Serializer[Any], self).fields
            unknown = sorted(str(name) for name in data if name not in known)
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return cast(Any, super()).to_internal_value(data)


class NumberField(serializers.FloatField):
    """A float that is not a boolean: DRF's FloatField takes ``true`` as 1.0."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            raise serializers.ValidationError("a number, not a boolean")
        return super().to_internal_value(data)


class LongitudeField(NumberField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0.0, max_value=360.0, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        value = finite(super().to_internal_value(data), "longitude")
        if value >= 360.0:
            raise serializers.ValidationError("longitudes must lie in [0, 360)")
        return value


class SpeedField(NumberField):
    def to_internal_value(self, data: Any) -> float:
        return finite(super().to_internal_value(data), "speed")


class PositionsSerializer(RejectUnknownFields, serializers.Serializer[Any]):
    """Positions given by the host instead of birth data."""

    points = serializers.ListField(
        child=serializers.CharField(max_length=64),
        min_length=1,
        max_length=MAX_POINTS,
        required=False,
        help_text="Names of the columns; default: a prefix of the standard points of the same length.",
    )
    longitudes = serializers.ListField(child=LongitudeField(), min_length=1, max_length=MAX_POINTS)
    speeds = serializers.ListField(child=SpeedField(), max_length=MAX_POINTS, required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "longitudes" not in attrs:  # a PATCH makes nested fields optional; positions come whole or not at all
            raise serializers.ValidationError({"longitudes": "required whenever position_input is given"})
        count = len(attrs["longitudes"])
        points = attrs.get("points")
        if points is None:
            if count > len(STANDARD_POINTS):
                raise serializers.ValidationError({"points": f"name the {count} columns"})
            attrs["points"] = list(STANDARD_POINTS[:count])
        elif len(points) != count:
            raise serializers.ValidationError({"points": f"{len(points)} names for {count} longitudes"})
        elif len(set(points)) != len(points):
            raise serializers.ValidationError({"points": "names must be unique"})
        speeds = attrs.get("speeds")
        if speeds is not None and len(speeds) != count:
            raise serializers.ValidationError({"speeds": f"{len(speeds)} speeds for {count} longitudes"})
        return attrs


class BirthDateTimeField(serializers.DateTimeField):
    """A datetime as given: with a UTC offset, or naive (local time, resolved with the chart's ``time_zone``)."""

    def enforce_timezone(self, value: datetime) -> datetime:
        return value


def birth_moment(value: datetime, time_zone: str | None, fold: int | None = None) -> datetime:
    """``value`` in UTC; a naive (local) value needs ``time_zone``, and ``fold`` when that wall-clock time fell in
    a DST gap or fold there."""
    if timezone.is_naive(value):
        if not time_zone:
            raise serializers.ValidationError(
                {"birth_datetime": "give a UTC offset (e.g. +02:00), or a time_zone for local time"}
            )
        try:
            return ephemeris.local_to_utc(value, time_zone, fold)
        except FieldError as exc:
            field = "fold" if exc.field == "fold" else "birth_datetime"
            raise serializers.ValidationError({field: exc.message}) from exc
        except OverflowError as exc:
            raise serializers.ValidationError({"birth_datetime": "outside the supported range of dates"}) from exc
    try:
        return value.astimezone(ZoneInfo("UTC"))
    except OverflowError as exc:  # e.g. year 1 with an eastern offset falls before year 1 in UTC
        raise serializers.ValidationError({"birth_datetime": "outside the supported range of dates"}) from exc


BIRTH_FIELDS = ("birth_datetime", "latitude", "longitude")


class ChartSerializer(RejectUnknownFields, serializers.ModelSerializer[Chart]):
    """A chart. Create it from birth data (positions are computed) or from ``position_input``, never both."""

    birth_datetime = BirthDateTimeField(required=False, allow_null=True)
    latitude = NumberField(required=False, allow_null=True, min_value=-90.0, max_value=90.0)
    longitude = NumberField(required=False, allow_null=True, min_value=-180.0, max_value=180.0)
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    fold = serializers.ChoiceField(
        choices=[0, 1],
        required=False,
        write_only=True,
        help_text="Only for a local birth_datetime that the time_zone skipped (DST gap) or showed twice (fold), "
        "which is otherwise refused: as in PEP 495, 0 is the first pass of a fold (in a gap: the offset before "
        "the change) and 1 the second (in a gap: the offset after).",
    )
    positions = serializers.SerializerMethodField()
    houses = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    position_input = PositionsSerializer(
        required=False, write_only=True, source="*", help_text="Positions instead of birth data."
    )

    class Meta:
        model = Chart
        fields = [
            "id",
            "name",
            "is_public",
            "owner",
            "birth_datetime",
            "latitude",
            "longitude",
            "time_zone",
            "fold",
            "positions",
            "houses",
            "position_input",
            "positions_hash",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "positions_hash", "created_at", "updated_at"]

    @extend_schema_field(
        {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "lon": {"type": "number"},
                    "speed": {"type": "number", "nullable": True},
                    "sign": {"type": "string", "enum": list(SIGN_NAMES)},
                    "sign_degree": {"type": "number", "description": "Degrees within the sign, [0, 30)."},
                    "dms": {"type": "string", "description": "Degree within the sign as text: 12°34′56″ Leo."},
                    "element": {"type": "string", "enum": list(ELEMENTS)},
                    "modality": {"type": "string", "enum": list(MODALITIES)},
                    "retrograde": {"type": "boolean", "description": "Speed below zero (false without speeds)."},
                    "house": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 12,
                        "description": "Only when the chart has houses (birth data).",
                    },
                },
                "required": ["lon", "speed", "sign", "sign_degree", "dms", "element", "modality", "retrograde"],
            },
        }
    )
    def get_positions(self, chart: Chart) -> dict[str, dict[str, Any]]:
        # A row that could not have been saved by the app (written around it, say with raw SQL) shows no
        # positions rather than failing the whole page.
        if chart.positions_problem() is not None:
            return {}
        longitudes, speeds = chart.longitude_array, chart.speed_array
        zodiac = zodiac_positions(longitudes[None, :], None if speeds is None else speeds[None, :], chart.points)
        houses = self._houses(chart)
        numbers = None if houses is None else houses.house_of(longitudes[None, :])[0].tolist()
        signs, dms = zodiac.sign_names()[0].tolist(), zodiac.dms_text()[0].tolist()
        elements, modalities = zodiac.element[0].tolist(), zodiac.modality[0].tolist()
        positions: dict[str, dict[str, Any]] = {}
        for n, (name, lon) in enumerate(zip(chart.points, longitudes.tolist(), strict=True)):
            point: dict[str, Any] = {
                "lon": float(lon),
                "speed": None if speeds is None else float(speeds[n]),
                "sign": signs[n],
                "sign_degree": float(zodiac.degree[0, n]),
                "dms": dms[n],
                "element": ELEMENTS[elements[n]],
                "modality": MODALITIES[modalities[n]],
                "retrograde": bool(zodiac.retrograde[0, n]),
            }
            if numbers is not None:
                point["house"] = numbers[n]
            positions[name] = point
        return positions

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "description": "House cusps (null for a chart given by positions: houses need birth data).",
            "properties": {
                "system": {"type": "string", "enum": list(HOUSE_SYSTEMS)},
                "cusps": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 12,
                    "maxItems": 12,
                    "description": "Longitudes opening houses 1 to 12, degrees.",
                },
                "fallback": {
                    "type": "boolean",
                    "description": "The system is undefined here (Placidus, Koch in polar latitudes): Porphyry's.",
                },
            },
            "required": ["system", "cusps", "fallback"],
        }
    )
    def get_houses(self, chart: Chart) -> dict[str, Any] | None:
        houses = self._houses(chart)
        if houses is None:
            return None
        return {"system": houses.system, "cusps": houses.cusps[0].tolist(), "fallback": bool(houses.fallback[0])}

    def _houses(self, chart: Chart) -> HouseCusps | None:
        """The chart's cusps in the requested system (context ``house_system``; None: the setting's), looked up
        once per chart: a list view hands over a page's, computed together (context ``chart_houses``)."""
        context = cast(dict[str, Any], self.context)  # the view's dict (typed as a Mapping by the stubs)
        known: dict[int, HouseCusps | None] = context.setdefault("chart_houses", {})
        if chart.pk is None or chart.pk not in known:
            found = services.chart_houses(chart, self.context.get("house_system"))
            if chart.pk is None:
                return found
            known[chart.pk] = found
        return known[chart.pk]

    def get_owner(self, chart: Chart) -> str | None:
        return None if chart.owner is None else chart.owner.get_username()

    def validate_latitude(self, value: float | None) -> float | None:
        return None if value is None else finite(value, "latitude")

    def validate_longitude(self, value: float | None) -> float | None:
        return None if value is None else finite(value, "longitude")

    def validate_time_zone(self, value: str) -> str:
        if value and value not in _time_zones():
            raise serializers.ValidationError(f"unknown IANA time zone {value!r}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_positions = "longitudes" in attrs
        given = [f for f in BIRTH_FIELDS if attrs.get(f) is not None]
        if has_positions and given:
            # Positions not computed from the stored birth data would contradict it.
            raise serializers.ValidationError(
                {"position_input": f"give birth data or position_input, not both (got {', '.join(given)})"}
            )
        if attrs.get("birth_datetime") is not None:
            time_zone = attrs.get("time_zone", getattr(self.instance, "time_zone", ""))
            attrs["birth_datetime"] = birth_moment(attrs["birth_datetime"], time_zone, attrs.pop("fold", None))
        attrs.pop("fold", None)
        birth = [attrs.get(f) for f in BIRTH_FIELDS]
        if self.instance is None and not has_positions:
            missing = [f for f, v in zip(BIRTH_FIELDS, birth, strict=True) if v is None]
            if missing:
                raise serializers.ValidationError({f: "required unless position_input is given" for f in missing})
        return attrs


def chart_input(data: dict[str, Any]) -> ChartInput:
    """A validated chart payload as the services' input."""
    has_positions = "longitudes" in data
    return ChartInput(
        name=data.get("name", ""),
        is_public=data.get("is_public", False),
        birth_datetime=data.get("birth_datetime"),
        latitude=data.get("latitude"),
        longitude=data.get("longitude"),
        time_zone=data.get("time_zone", ""),
        points=tuple(data["points"]) if has_positions else None,
        longitudes=tuple(data["longitudes"]) if has_positions else None,
        speeds=tuple(data["speeds"]) if has_positions and data.get("speeds") is not None else None,
    )


@lru_cache(maxsize=1)
def _time_zones() -> set[str]:
    return available_timezones()


class BulkChartSerializer(RejectUnknownFields, serializers.Serializer[Any]):
    # many=True hands min_length to the ListSerializer (the stubs do not know it); minItems in the schema too.
    charts = ChartSerializer(many=True, min_length=1)  # type: ignore[call-arg]

    def validate_charts(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = get_config().max_charts_per_request
        if not value:
            raise serializers.ValidationError("at least one chart is required")
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} charts per request, got {len(value)}")
        return value


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(ORB_PRESETS)},
            {
                "type": "object",
                "minProperties": 1,
                # Aspect names only, each at most once (OpenAPI 3.0 has no propertyNames).
                "properties": {
                    name: {"type": "number", "minimum": 0, "maximum": 90, "exclusiveMaximum": True}
                    for name in ASPECT_NAMES
                },
                "additionalProperties": False,
            },
        ]
    }
)
class OrbsField(serializers.JSONField):
    """An orb preset name (``default``, ``all``) or an object {aspect: orb in degrees}."""

    # The stubs type a JSONField's value as an object or a list; JSON also has strings (a preset name here).
    def to_internal_value(self, data: Any) -> str | dict[str, float]:  # type: ignore[override]
        value = data
        if isinstance(data, str) and data.lstrip().startswith("{"):  # an object sent in a query string
            try:
                value = json.loads(data)
            except ValueError as exc:
                raise serializers.ValidationError(f"not valid JSON: {exc}") from exc
        if isinstance(value, str):
            if value not in ORB_PRESETS:
                raise serializers.ValidationError(f"unknown preset {value!r}; presets: {', '.join(ORB_PRESETS)}")
            return value
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("a preset name or a non-empty object {aspect: orb}")
        for name, orb in value.items():
            if name not in ASPECT_NAMES:
                raise serializers.ValidationError(f"unknown aspect {name!r}")
            if isinstance(orb, bool) or not isinstance(orb, int | float) or not math.isfinite(orb):
                raise serializers.ValidationError(f"orb of {name!r} must be a finite number")
            if not 0 <= orb < 90:
                raise serializers.ValidationError(f"orb of {name!r} must be in [0, 90)")
        return {str(k): float(v) for k, v in value.items()}


def _aspect_list(value: Any) -> list[str]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise serializers.ValidationError("a non-empty list of aspect names")
    unknown = [n for n in names if n not in ASPECT_NAMES]
    if unknown:
        raise serializers.ValidationError(f"unknown aspect(s) {unknown}; known: {', '.join(ASPECT_NAMES)}")
    return [str(n) for n in names]


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "string",
                "description": "comma-separated aspect names",
                "pattern": "^{name}(,{name})*$".format(name="(" + "|".join(ASPECT_NAMES) + ")"),
            },
            {"type": "array", "items": {"type": "string", "enum": list(ASPECT_NAMES)}, "minItems": 1},
        ]
    }
)
class AspectListField(serializers.Field[list[str], Any, list[str], Any]):
    """Aspect names as a list, or comma-separated in a query string."""

    def to_internal_value(self, data: Any) -> list[str]:
        return _aspect_list(data)

    def to_representation(self, value: list[str]) -> list[str]:
        return value


class AspectSelectionSerializer(serializers.Serializer[Any]):
    orbs = OrbsField(required=False, help_text="Preset name (default, all) or {aspect: orb}.")
    aspects = AspectListField(required=False, help_text="Only these aspects (comma-separated in a query).")


class ChartHousesQuerySerializer(serializers.Serializer[Any]):
    houses = serializers.ChoiceField(
        choices=HOUSE_SYSTEMS,
        required=False,
        help_text="House system of the payload's houses and house numbers (default: the HOUSE_SYSTEM setting); "
        "another system than the stored one is computed on request.",
    )


class SynastryQuerySerializer(AspectSelectionSerializer):
    chart_a = serializers.IntegerField(min_value=1, max_value=MAX_CHART_ID)
    chart_b = serializers.IntegerField(min_value=1, max_value=MAX_CHART_ID)


class InlinePositionsSerializer(PositionsSerializer):
    pass


class InlineSynastrySerializer(RejectUnknownFields, AspectSelectionSerializer):
    a = InlinePositionsSerializer()
    b = InlinePositionsSerializer()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["a"]["points"] != attrs["b"]["points"]:
            raise serializers.ValidationError({"b": "must have the same points as a"})
        return attrs


class ScoresRequestSerializer(RejectUnknownFields, AspectSelectionSerializer):
    charts = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_CHART_ID), min_length=1)
    method = serializers.ChoiceField(choices=SCORE_METHODS, default="discepolo")

    def validate_charts(self, value: list[int]) -> list[int]:
        limit = get_config().max_charts_per_request
        if len(value) > limit:
            raise serializers.ValidationError(f"at most {limit} charts per request, got {len(value)}")
        return value


class MatchesQuerySerializer(AspectSelectionSerializer):
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=10)
    method = serializers.ChoiceField(choices=SCORE_METHODS, default="discepolo")


class EstimateSerializer(RejectUnknownFields, serializers.Serializer[Any]):
    num_charts1 = serializers.IntegerField(min_value=1, max_value=10**9)
    num_charts2 = serializers.IntegerField(min_value=1, max_value=10**9, required=False, allow_null=True)
    num_planets = serializers.IntegerField(min_value=1, max_value=MAX_POINTS, default=10)
    operation = serializers.ChoiceField(choices=OPERATIONS, default="synastry")
    method = serializers.ChoiceField(choices=SCORE_METHODS, default="discepolo")
    working_memory_mb = NumberField(min_value=1.0, max_value=1024.0 * 1024.0, required=False)

    def validate_working_memory_mb(self, value: float) -> float:
        return finite(value, "working_memory_mb")


# -- responses (for the schema) --------------------------------------------------------------------------------


class AspectSerializer(serializers.Serializer[Any]):
    p1 = serializers.CharField(help_text="Point of the first chart.")
    p2 = serializers.CharField(help_text="Point of the second chart (natal: the same chart).")
    aspect = serializers.ChoiceField(choices=ASPECT_NAMES)
    orb = serializers.FloatField(help_text=f"|separation − angle| in degrees, rounded to {ORB_DECIMALS} decimals.")
    movement = serializers.ChoiceField(choices=MOVEMENTS)


class AspectsResponseSerializer(serializers.Serializer[Any]):
    points = serializers.ListField(child=serializers.CharField())
    orbs = serializers.DictField(child=serializers.FloatField())
    cached = serializers.BooleanField(help_text="Served from a cache level or a persisted result.")
    # A declared field, not Field.source: the serializer's metaclass takes it out of the class attributes.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["local", "shared", "database", "computed"],
        help_text="Where the result came from: in-process cache, shared cache, database, or the engine.",
    )
    aspects = AspectSerializer(many=True)


class ScoreSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    score = serializers.FloatField()


class ScoresResponseSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    method = serializers.CharField()
    scores = ScoreSerializer(many=True)


class MatchSerializer(ScoreSerializer):
    rank = serializers.IntegerField()


class MatchesResponseSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    method = serializers.CharField()
    k = serializers.IntegerField()
    matches = MatchSerializer(many=True)


class EstimateResponseSerializer(serializers.Serializer[Any]):
    operation = serializers.ChoiceField(choices=OPERATIONS)
    backend = serializers.ChoiceField(choices=BACKEND_NAMES)
    chunk_rows = serializers.IntegerField()
    chunk_cols = serializers.IntegerField()
    chunks = serializers.IntegerField()
    unchunked_bytes = serializers.IntegerField()
    chunked_bytes = serializers.IntegerField()
    memory_savings_percent = serializers.FloatField()
    result_bytes = serializers.IntegerField()
    expected_hit_fraction = serializers.FloatField(allow_null=True)
    fits = serializers.BooleanField(
        help_text="Whether working_memory_mb holds one chart pair; when false the plan is the one at the minimum."
    )
    minimum_working_memory_mb = serializers.FloatField(help_text="The budget (MiB) that holds one chart pair.")


class ConfigurationSerializer(serializers.Serializer[Any]):
    aspects = serializers.ListField(child=serializers.DictField())
    orb_presets = serializers.DictField(child=serializers.DictField(child=serializers.FloatField()))
    default_orbs = serializers.DictField(child=serializers.FloatField())
    points = serializers.ListField(child=serializers.CharField())
    score_methods = serializers.ListField(child=serializers.CharField())
    engine_version = serializers.CharField()
    max_charts_per_request = serializers.IntegerField()


class JobRequestSerializer(RejectUnknownFields, AspectSelectionSerializer):
    """A distributed batch job over charts the caller can see."""

    modes = serializers.ListField(
        child=serializers.ChoiceField(choices=["natal", "synastry", "top-k", "transits"]), min_length=1
    )
    # Transits (a mode of its own): the range, exact moments in [start, end), and the transiting bodies.
    start = MomentField(required=False, help_text="Transits: start of the range (UTC), included.")
    end = MomentField(required=False, help_text="Transits: end of the range (UTC), excluded.")
    bodies = BodyListField(required=False, help_text="Transits: the transiting bodies (default Sun … Pluto).")
    charts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_CHART_ID),
        required=False,
        help_text="Group A (default: your charts).",
    )
    with_charts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_CHART_ID),
        required=False,
        help_text="Group B (default: within group A).",
    )
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=10)
    method = serializers.ChoiceField(choices=SCORE_METHODS, default="discepolo")


class JobSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed", "cancelled", "interrupted"])
    modes = serializers.ListField(child=serializers.CharField())
    progress = serializers.DictField()
    blocks = serializers.DictField()
    pairs_computed = serializers.IntegerField()
    hits = serializers.IntegerField()
    rows_written = serializers.IntegerField()
    skipped_charts = serializers.IntegerField(help_text="Charts left out: another point set than the run's.")
    backend = serializers.CharField()
    backend_note = serializers.CharField(help_text="Why the backend used is not the one asked for, if it is not.")
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    links = serializers.DictField(
        child=serializers.CharField(),
        help_text="self; once a job that stores rows is done, its results by mode: matches (top-k), natal, "
        "transit_events (transits: transit-events/?run=ID).",
    )


class BrokerUnavailableSerializer(serializers.Serializer[Any]):
    """The 503 of a job the broker could not take: the job exists, marked failed, and can be resumed."""

    detail = serializers.CharField()
    job = serializers.IntegerField(help_text="The failed job's id.")


# -- stored results and job quotas -----------------------------------------------------------------------------


class StoredMatchesQuerySerializer(MatchesQuerySerializer):
    """The matches query, with the stored lists (batch top-k runs) besides the live computation."""

    stored = serializers.BooleanField(
        default=False, help_text="Read the stored list of a batch top-k run instead of computing (1 or 0)."
    )
    run = serializers.IntegerField(
        min_value=1,
        max_value=MAX_CHART_ID,  # a larger id names no row (SQLite raised OverflowError on it)
        required=False,
        help_text="With stored=1: the list of this job (default: the latest list).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "run" in attrs and not attrs["stored"]:
            raise serializers.ValidationError({"run": "only with stored=1"})
        return attrs


class StoredMatchesResponseSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    stored = serializers.BooleanField(help_text="Always true: read from a batch run's stored list.")
    method = serializers.CharField(allow_null=True, help_text="The list's scoring method (null: none stored).")
    k = serializers.IntegerField(help_text="Partners answered.")
    run = serializers.IntegerField(allow_null=True, help_text="The job (batch run) that stored the list.")
    computed_at = serializers.DateTimeField(allow_null=True)
    matches = MatchSerializer(many=True, help_text="Rank among the partners the caller may see.")


class StoredMatchSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    rank = serializers.IntegerField(help_text="Rank among the partners the caller may see (1 is the best).")
    partner = serializers.IntegerField()
    score = serializers.FloatField()
    method = serializers.CharField()
    computed_at = serializers.DateTimeField()


class StoredNatalSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    computed_at = serializers.DateTimeField()
    aspects = AspectSerializer(many=True)


class _PageSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class JobMatchesPageSerializer(_PageSerializer):
    results = StoredMatchSerializer(many=True)


class JobNatalPageSerializer(_PageSerializer):
    results = StoredNatalSerializer(many=True, help_text="Group A's charts the caller may see, a page at a time.")


class JobOutputSerializer(serializers.Serializer[Any]):
    """A file run's output: where it is written (the file is not served)."""

    path = serializers.CharField()
    format = serializers.CharField()
    complete = serializers.BooleanField()


class JobsUnavailableSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()


class QuotaErrorSerializer(serializers.Serializer[Any]):
    """A job over a quota (400: ``charts`` says why; 429: ``detail``), naming the ASPECTS key and its value."""

    charts = serializers.ListField(child=serializers.CharField(), required=False)
    detail = serializers.CharField(required=False)
    # Absent from a 429 for failed logins, which the same operation can answer.
    limit = serializers.CharField(required=False, help_text="The ASPECTS key, e.g. MAX_JOB_PAIRS.")
    maximum = serializers.IntegerField(required=False)


class JobResultsSerializer(JobSerializer):
    """A job with where its results are: ``links`` (matches, natal, transit_events: fetchable URLs) and a file
    run's ``output``."""

    output = JobOutputSerializer(allow_null=True)
