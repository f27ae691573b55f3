"""Signs, degrees within the sign, elements, modalities and retrograde flags: kerykeion's sample, the text form's
rounding at sign and minute boundaries, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aspects_app.engine import ELEMENTS, MODALITIES, SIGN_NAMES, zodiac_positions
from aspects_app.engine.errors import FieldError
from aspects_app.engine.zodiac import SIGN_ABBREVIATIONS

from .helpers import longitudes

SAMPLE = json.loads((Path(__file__).parent.parent / "data" / "kerykeion_sample.json").read_text())


def sample_bodies() -> tuple[list[str], np.ndarray[Any, Any], np.ndarray[Any, Any], list[dict[str, Any]]]:
    """Every recorded body of every chart (planets, nodes, angles) as one row per chart."""
    first = SAMPLE["charts"][0]
    names = [*first["planets"], *first["nodes"], *first["angles"]]
    bodies = [{**c["planets"], **c["nodes"], **c["angles"]} for c in SAMPLE["charts"]]
    lon = np.array([[b[n]["lon"] for n in names] for b in bodies])
    speed = np.array([[b[n]["speed"] for n in names] for b in bodies])
    return names, lon, speed, bodies


def test_signs_qualities_and_retrograde_agree_with_kerykeion() -> None:
    names, lon, speed, bodies = sample_bodies()
    found = zodiac_positions(lon, speed, points=names)
    for row, recorded in enumerate(bodies):
        for col, name in enumerate(names):
            expected = recorded[name]
            assert SIGN_ABBREVIATIONS[found.sign[row, col]] == expected["sign"], (row, name)
            assert MODALITIES[found.modality[row, col]].capitalize() == expected["quality"], (row, name)
            assert bool(found.retrograde[row, col]) == expected["retrograde"], (row, name)
    assert found.retrograde.any() and not found.retrograde.all()  # the sample has both, so the check has teeth


@pytest.mark.parametrize(
    ("lon", "text"),
    [
        (0.0, "0°00′00″ Aries"),
        (120 + 12 + 34 / 60 + 56 / 3600, "12°34′56″ Leo"),
        (120 + 12 + 34 / 60 + 56.4 / 3600, "12°34′56″ Leo"),
        (120 + 12 + 34 / 60 + 56.6 / 3600, "12°34′57″ Leo"),
        (10 + 59 / 60 + 59.7 / 3600, "11°00′00″ Aries"),  # 59.7″ rounds up and carries into the minute and degree
        (29.9999999, "29°59′59″ Aries"),  # never 30° or the next sign: capped at the sign's last second
        (math.nextafter(30.0, 0.0), "29°59′59″ Aries"),
        (30.0, "0°00′00″ Taurus"),
        (math.nextafter(360.0, 0.0), "29°59′59″ Pisces"),
    ],
)
def test_text_rounds_to_the_second_without_leaving_the_sign(lon: float, text: str) -> None:
    assert zodiac_positions([[lon]]).dms_text()[0, 0] == text


@settings(max_examples=60, deadline=None)
@given(st.lists(longitudes, min_size=1, max_size=6))
def test_degree_minutes_seconds_rebuild_the_longitude(values: list[float]) -> None:
    found = zodiac_positions([values], points=[f"P{n}" for n in range(len(values))])
    degrees, minutes, seconds = found.dms()
    for col, lon in enumerate(values):
        sign = int(found.sign[0, col])
        assert sign == min(int(lon // 30), 11)
        assert 0 <= degrees[0, col] < 30 and 0 <= minutes[0, col] < 60 and 0 <= seconds[0, col] < 60
        assert 0.0 <= found.degree[0, col] < 30.0
        rebuilt = sign * 30 + degrees[0, col] + minutes[0, col] / 60 + seconds[0, col] / 3600
        assert abs(rebuilt - lon) <= 1.0 / 3600  # half a second of rounding, or up to one at the cap
        assert ELEMENTS[found.element[0, col]] == ("fire", "earth", "air", "water")[sign % 4]
        assert found.sign_names()[0, col] == SIGN_NAMES[sign]


def test_records_are_one_per_point_chart_by_chart() -> None:
    found = zodiac_positions([[100.0, 200.0], [300.0, 15.5]], [[1.0, -0.2], [None, 0.0]], points=["Sun", "Moon"])
    records = found.to_records()
    assert len(found) == 2 and len(records) == 4
    assert records[1] == {
        "i": 0,
        "point": "Moon",
        "lon": 200.0,
        "sign": "Libra",
        "degree": pytest.approx(20.0),
        "dms": "20°00′00″ Libra",
        "element": "air",
        "modality": "cardinal",
        "retrograde": True,
    }
    assert records[2]["sign"] == "Aquarius" and records[2]["modality"] == "fixed" and records[2]["retrograde"] is False
    assert records[3]["element"] == "fire" and records[3]["retrograde"] is False  # speed 0 is not retrograde
    assert [r["point"] for r in found.to_records(point_names=False)] == [0, 1, 0, 1]


def test_without_speeds_nothing_is_retrograde() -> None:
    assert not zodiac_positions([[10.0, 20.0, 30.0]]).retrograde.any()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lon": [[float("nan")]]}, "lon"),
        ({"lon": [[360.0]]}, "lon"),
        ({"lon": [10.0, 20.0]}, "lon"),
        ({"lon": [[10.0, 20.0]], "speed": [[1.0]]}, "speed"),
        ({"lon": [[10.0]], "speed": [[float("inf")]]}, "speed"),
        ({"lon": [[10.0]], "speed": [["fast"]]}, "speed"),
        ({"lon": [[10.0, 20.0]], "points": ["Sun"]}, "points"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as raised:
        zodiac_positions(**kwargs)
    assert raised.value.field == field
    assert isinstance(raised.value, ValueError)
