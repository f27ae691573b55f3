"""Query and body fields of the transit endpoints and transit jobs: moments (UTC) and transiting bodies. Kept apart
from :mod:`.serializers` so that the job request there and the transit serializers share them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import services
from ..engine.errors import FieldError
from ..engine.transits import TRACK_BODIES

# Ids past the databases' signed 64-bit integers cannot name a row (SQLite raises on them): no such chart.
MAX_CHART_ID = 2**63 - 1


@extend_schema_field(
    {
        "type": "string",
        "description": "ISO 8601 date or date-time; a date is midnight UTC, a time without an offset is UTC.",
        "example": "2027-01-01T00:00:00Z",
    }
)
class MomentField(serializers.Field[datetime, Any, str, Any]):
    """A moment as an aware UTC datetime. A query string's ``+`` often arrives decoded as a space
    (``…T00:00:00 01:00``); it is read as the offset it was meant to be."""

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"expected an ISO 8601 date or date-time, got {data!r}")
        text = data.strip()
        try:
            return services.parse_moment("value", text)
        except FieldError as exc:
            offset = text[19:]
            if " " not in offset:
                raise serializers.ValidationError(exc.message) from exc
        try:
            return services.parse_moment("value", text[:19] + offset.replace(" ", "+", 1))
        except FieldError as exc:
            raise serializers.ValidationError(f"expected an ISO 8601 date or date-time, got {data!r}") from exc

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "comma-separated body names"},
            {"type": "array", "items": {"type": "string", "enum": list(TRACK_BODIES)}, "minItems": 1},
        ]
    }
)
class BodyListField(serializers.Field[list[str], Any, list[str], Any]):
    """Transiting bodies as a list, or comma-separated in a query string (default Sun … Pluto)."""

    def to_internal_value(self, data: Any) -> list[str]:
        names = data.split(",") if isinstance(data, str) else data
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise serializers.ValidationError("a non-empty list of body names")
        unknown = [n for n in names if n not in TRACK_BODIES]
        if unknown:
            raise serializers.ValidationError(f"unknown body(ies) {unknown}; known: {', '.join(TRACK_BODIES)}")
        if len(set(names)) != len(names):
            raise serializers.ValidationError(f"duplicate names in {names}")
        return list(names)

    def to_representation(self, value: list[str]) -> list[str]:
        return value
