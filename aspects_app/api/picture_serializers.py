"""Query parameters of the picture endpoints (``charts/{id}/wheel.svg`` and the others): the picture's size and
theme, the wheel's house system, and the aspect selection the natal and synastry endpoints take."""

from __future__ import annotations

from rest_framework import serializers

from ..houses import HOUSE_SYSTEMS
from ..pictures import MAX_SIZE, MIN_SIZE, THEMES
from .serializers import AspectSelectionSerializer, SynastryQuerySerializer

DEFAULT_SIZE = 600


class PictureQuerySerializer(AspectSelectionSerializer):
    size = serializers.IntegerField(
        min_value=MIN_SIZE, max_value=MAX_SIZE, default=DEFAULT_SIZE, help_text="Width and height in pixels."
    )
    theme = serializers.ChoiceField(choices=sorted(THEMES), default="light")


class WheelQuerySerializer(PictureQuerySerializer):
    houses = serializers.ChoiceField(
        choices=HOUSE_SYSTEMS,
        required=False,
        help_text="House system of the cusps drawn (default: the HOUSE_SYSTEM setting). A chart given by positions "
        "only has no houses.",
    )


class SynastryPictureQuerySerializer(PictureQuerySerializer, SynastryQuerySerializer):
    pass


class SynastryWheelQuerySerializer(WheelQuerySerializer, SynastryQuerySerializer):
    """``houses``: chart_a's, drawn inside; chart_b's ring has none."""
