"""Requests and answers of the aspect-pattern endpoints (``charts/{id}/patterns/``, ``synastry/patterns/``)."""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..engine.patterns import PATTERN_NAMES, SIDES
from .serializers import AspectSelectionSerializer, NumberField, RejectUnknownFields, SynastryQuerySerializer


@extend_schema_field(
    {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 360, "exclusiveMaximum": True}
)
class StelliumSpanField(NumberField):
    """Degrees in (0, 360): a stellium is 3+ points within that arc; absent, 3+ points in one sign."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)  # the bounds are exclusive: checked below

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if not math.isfinite(value) or not 0.0 < value < 360.0:
            raise serializers.ValidationError("degrees in (0, 360); leave it out for stellia by sign")
        return value


_SPAN_HELP = "Stellia: 3+ points within this many degrees (0 < span < 360); default: 3+ points in one sign."


class PatternQuerySerializer(RejectUnknownFields, AspectSelectionSerializer):
    stellium_span = StelliumSpanField(help_text=_SPAN_HELP)


class SynastryPatternQuerySerializer(RejectUnknownFields, SynastryQuerySerializer):
    stellium_span = StelliumSpanField(help_text=_SPAN_HELP)


class PatternSerializer(serializers.Serializer[Any]):
    pattern = serializers.ChoiceField(choices=PATTERN_NAMES)
    points = serializers.ListField(
        child=serializers.CharField(), help_text="The points, in the pattern's member order (docs/patterns.md)."
    )


class SynastryPatternSerializer(PatternSerializer):
    sides = serializers.ListField(
        child=serializers.ChoiceField(choices=SIDES), help_text="The chart of each point: a (chart_a) or b."
    )


class _PatternsHead(serializers.Serializer[Any]):
    points = serializers.ListField(child=serializers.CharField())
    orbs = serializers.DictField(child=serializers.FloatField())
    stellium_span = serializers.FloatField(allow_null=True, help_text="null: stellia by sign.")
    cached = serializers.BooleanField()
    # A declared field, not Field.source: the serializer's metaclass takes it out of the class attributes.
    source = serializers.CharField(  # type: ignore[assignment]
        help_text="The cache level that answered (local, shared), or computed."
    )


class ChartPatternsResponseSerializer(_PatternsHead):
    chart = serializers.IntegerField()
    patterns = PatternSerializer(many=True)


class SynastryPatternsResponseSerializer(_PatternsHead):
    chart_a = serializers.IntegerField()
    chart_b = serializers.IntegerField()
    patterns = SynastryPatternSerializer(many=True, help_text="Only patterns with points of both charts.")
