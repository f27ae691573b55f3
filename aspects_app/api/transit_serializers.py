"""Requests and answers of the transit endpoints: one chart's transits computed on request, and the stored events
of batch runs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..engine.aspects import ASPECT_NAMES
from ..engine.transit_events import SIGNS, SKY_EVENT_KINDS
from ..engine.transits import TRACK_BODIES
from ..models import TransitEvent
from ..services import MAX_TRANSIT_DAYS
from .serializers import AspectSelectionSerializer, RejectUnknownFields
from .transit_fields import MAX_CHART_ID, BodyListField, MomentField


class TransitQuerySerializer(RejectUnknownFields, AspectSelectionSerializer):
    start = MomentField(help_text="Start of the range (UTC), included.")
    end = MomentField(help_text=f"End of the range (UTC), excluded; at most {MAX_TRANSIT_DAYS} days after start.")
    bodies = BodyListField(required=False, help_text="Transiting bodies (comma-separated; default Sun … Pluto).")


class TransitEventSerializer(serializers.Serializer[Any]):
    point = serializers.CharField(help_text="The natal point.")
    body = serializers.ChoiceField(choices=TRACK_BODIES, help_text="The transiting body.")
    aspect = serializers.ChoiceField(choices=ASPECT_NAMES)
    exact = serializers.DateTimeField(help_text="When the body stands exactly at natal point ± aspect angle.")
    starts = serializers.DateTimeField(
        allow_null=True, help_text="When this pass enters the orb; null when that lies outside the range."
    )
    ends = serializers.DateTimeField(
        allow_null=True, help_text="When this pass leaves the orb; null when that lies outside the range."
    )
    retrograde = serializers.BooleanField(help_text="The body's direction at the exact moment.")


class SkyEventSerializer(serializers.Serializer[Any]):
    body = serializers.ChoiceField(choices=TRACK_BODIES)
    kind = serializers.ChoiceField(choices=SKY_EVENT_KINDS, help_text="A sign ingress or a station.")
    time = serializers.DateTimeField()
    longitude = serializers.FloatField()
    sign = serializers.ChoiceField(choices=SIGNS, help_text="The sign entered (ingress) or stood in (station).")
    retrograde = serializers.BooleanField(help_text="Direction after a station, and at an ingress.")


class TransitsResponseSerializer(serializers.Serializer[Any]):
    chart = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    bodies = serializers.ListField(child=serializers.CharField())
    orbs = serializers.DictField(child=serializers.FloatField())
    cached = serializers.BooleanField(help_text="Served from a cache level.")
    # A declared field, not Field.source: the serializer's metaclass takes it out of the class attributes.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["local", "shared", "computed"],
        help_text="Where the result came from: in-process cache, shared cache, or the engine.",
    )
    events = TransitEventSerializer(many=True, help_text="By natal point, aspect, body, then time.")
    sky = SkyEventSerializer(many=True, help_text="The bodies' sign ingresses and stations in the range.")


class TransitEventsQuerySerializer(RejectUnknownFields, serializers.Serializer[Any]):
    chart = serializers.IntegerField(
        min_value=1, max_value=MAX_CHART_ID, required=False, help_text="Only this chart's events."
    )
    run = serializers.IntegerField(
        min_value=1,
        max_value=MAX_CHART_ID,
        required=False,
        help_text="Only the events this job stored (a job the caller may not see: 404).",
    )
    start = MomentField(required=False, help_text="Events exact at or after this moment.")
    end = MomentField(required=False, help_text="Events exact before this moment.")
    page = serializers.IntegerField(min_value=1, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "start" in attrs and "end" in attrs and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["must be after start"]})
        return attrs


class StoredTransitEventSerializer(serializers.ModelSerializer[TransitEvent]):
    class Meta:
        model = TransitEvent
        fields = ["chart", "point", "body", "aspect", "exact", "starts", "ends", "retrograde", "config_hash", "run"]


class TransitEventsPageSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = StoredTransitEventSerializer(many=True)
