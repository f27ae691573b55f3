"""The plain data a picture is drawn from, and its validation.

Nothing here knows Django: a view (or a notebook) passes point names, longitudes, retrograde flags, house cusps
and aspects, e.g. ``AspectHits.to_records(point_names=True)`` of the engine, and gets a checked :class:`Chart`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import numpy as np
import numpy.typing as npt

from ..engine.aspects import ASPECT_ANGLES
from ..engine.errors import FieldError

# An aspect as given: (p1, p2, aspect[, orb]) or a mapping with those keys (and optionally "movement"), the
# engine's record shape. p1 and p2 are point names or indices into the chart's points.
AspectInput = Sequence[object] | Mapping[str, object]
MOVEMENTS = ("applying", "separating", "static")
# Lists or one-dimensional arrays, e.g. a row of ``compute_positions`` or of ``compute_houses(...).cusps``.
Degrees = Sequence[float] | npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class ChartData:
    """One chart as plain data. ``aspects`` are between this chart's own points (natal)."""

    points: Sequence[str] | npt.NDArray[np.str_]
    longitudes: Degrees
    retrograde: Sequence[bool] | npt.NDArray[np.bool_] | None = None
    cusps: Degrees | None = None  # the 12 house cusps in degrees, house 1 (Ascendant) first
    aspects: Sequence[AspectInput] = ()
    name: str = ""


@dataclass(frozen=True)
class SynastryData:
    """Two charts and the aspects between them: p1 names a point of ``a``, p2 a point of ``b``."""

    a: ChartData
    b: ChartData
    aspects: Sequence[AspectInput] = ()


@dataclass(frozen=True)
class AspectMark:
    p1: int
    p2: int
    aspect: str
    orb: float
    movement: str | None


@dataclass(frozen=True)
class Chart:
    """A checked chart: longitudes in [0, 360), one retrograde flag per point."""

    name: str
    points: tuple[str, ...]
    longitudes: tuple[float, ...]
    retrograde: tuple[bool, ...]
    cusps: tuple[float, ...] | None
    aspects: tuple[AspectMark, ...]

    @property
    def ascendant(self) -> float | None:
        return None if self.cusps is None else self.cusps[0]


def _number(value: object, field: str) -> float:
    """A finite float from an int, a float or a NumPy scalar (never a bool or a numeric string)."""
    if isinstance(value, bool | str | bytes) or not isinstance(value, SupportsFloat):
        raise FieldError(field, f"must be a number of degrees, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FieldError(field, f"must be finite, not {number!r}")
    return number


def _degrees(value: object, field: str) -> float:
    return _number(value, field) % 360.0


def _sequence(value: object, field: str) -> Sequence[object]:
    """A list, a tuple or a one-dimensional NumPy array (what the engine and the ephemeris hand out)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise FieldError(field, f"must be one-dimensional, not of shape {value.shape}")
        items: list[object] = value.tolist()
        return items
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise FieldError(field, "must be a list")
    return value


def _points(value: object, field: str) -> tuple[str, ...]:
    names = _sequence(value, field)
    if not names:
        raise FieldError(field, "must name at least one point")
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise FieldError(f"{field}[{k}]", "must be a non-empty name")
    if len(set(names)) != len(names):
        raise FieldError(field, "must not repeat a name")
    return tuple(str(name) for name in names)


def _retrograde(value: object, count: int, field: str) -> tuple[bool, ...]:
    if value is None:
        return (False,) * count
    flags = _sequence(value, field)
    if len(flags) != count:
        raise FieldError(field, f"must hold {count} flags, one per point, not {len(flags)}")
    if not all(isinstance(flag, bool) for flag in flags):
        raise FieldError(field, "must hold true or false only")
    return tuple(bool(flag) for flag in flags)


def _cusps(value: object, field: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    cusps = _sequence(value, field)
    if len(cusps) != 12:
        raise FieldError(field, f"must hold 12 house cusps, not {len(cusps)}")
    return tuple(_degrees(c, f"{field}[{k}]") for k, c in enumerate(cusps))


def _point_index(value: object, points: Sequence[str], field: str) -> int:
    if isinstance(value, str):
        if value not in points:
            raise FieldError(field, f"unknown point {value!r}")
        return points.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(points):
        return value
    raise FieldError(field, f"must be a point name or an index below {len(points)}, not {value!r}")


def _fields(raw: object, field: str) -> tuple[object, object, object, object, object]:
    """p1, p2, aspect, orb (None when absent), movement (None when absent) of one aspect as given."""
    if isinstance(raw, Mapping):
        missing = [key for key in ("p1", "p2", "aspect") if key not in raw]
        if missing:
            raise FieldError(field, f"lacks {', '.join(missing)}")
        return raw["p1"], raw["p2"], raw["aspect"], raw.get("orb"), raw.get("movement")
    items = _sequence(raw, field)
    if len(items) not in (3, 4):
        raise FieldError(field, "must be (p1, p2, aspect) or (p1, p2, aspect, orb)")
    return items[0], items[1], items[2], items[3] if len(items) == 4 else None, None


def separation_orb(lon1: float, lon2: float, aspect: str) -> float:
    """``|separation − angle|``, the separation folded into [0°, 180°] as the engine does."""
    separation = abs(lon1 - lon2) % 360.0
    separation = min(separation, 360.0 - separation)
    return abs(separation - ASPECT_ANGLES[aspect])


def check_aspects(
    raw: object,
    points_a: Sequence[str],
    lon_a: Sequence[float],
    points_b: Sequence[str] | None,
    lon_b: Sequence[float],
    field: str,
) -> tuple[AspectMark, ...]:
    """Check aspects between ``points_a`` and ``points_b`` (``None``: natal, within ``points_a``)."""
    natal = points_b is None
    second = points_a if points_b is None else points_b
    seen: set[tuple[int, int]] = set()
    marks = []
    for k, item in enumerate(_sequence(raw, field)):
        where = f"{field}[{k}]"
        p1_raw, p2_raw, aspect, orb_raw, movement = _fields(item, where)
        p1 = _point_index(p1_raw, points_a, f"{where}.p1")
        p2 = _point_index(p2_raw, second, f"{where}.p2")
        if not isinstance(aspect, str) or aspect not in ASPECT_ANGLES:
            raise FieldError(f"{where}.aspect", f"unknown aspect {aspect!r}")
        if movement is not None:
            # kerykeion writes "Applying"; the engine "applying".
            movement = movement.lower() if isinstance(movement, str) else movement
            if movement not in MOVEMENTS:
                raise FieldError(f"{where}.movement", f"must be one of {', '.join(MOVEMENTS)}")
        pair = (min(p1, p2), max(p1, p2)) if natal else (p1, p2)
        if natal and p1 == p2:
            raise FieldError(where, "joins a point to itself")
        if pair in seen:
            raise FieldError(where, "repeats a point pair (one aspect per pair)")
        seen.add(pair)
        if orb_raw is None:
            orb = separation_orb(lon_a[p1], lon_b[p2], aspect)
        else:
            orb = _number(orb_raw, f"{where}.orb")
            if not 0.0 <= orb <= 180.0:
                raise FieldError(f"{where}.orb", "must be between 0 and 180 degrees")
        marks.append(AspectMark(p1, p2, aspect, orb, movement if isinstance(movement, str) else None))
    return tuple(marks)


def check_chart(data: object, field: str = "chart") -> Chart:
    """A checked :class:`Chart` from :class:`ChartData`; bad input raises ``FieldError`` naming the field."""
    if not isinstance(data, ChartData):
        raise FieldError(field, "must be a ChartData")
    points = _points(data.points, f"{field}.points")
    raw_longitudes = _sequence(data.longitudes, f"{field}.longitudes")
    if len(raw_longitudes) != len(points):
        raise FieldError(f"{field}.longitudes", f"must hold {len(points)} values, one per point")
    longitudes = tuple(_degrees(v, f"{field}.longitudes[{k}]") for k, v in enumerate(raw_longitudes))
    if not isinstance(data.name, str):
        raise FieldError(f"{field}.name", "must be text")
    aspects = check_aspects(data.aspects, points, longitudes, None, longitudes, f"{field}.aspects")
    return Chart(
        name=data.name.strip(),
        points=points,
        longitudes=longitudes,
        retrograde=_retrograde(data.retrograde, len(points), f"{field}.retrograde"),
        cusps=_cusps(data.cusps, f"{field}.cusps"),
        aspects=aspects,
    )


def check_synastry(data: object, field: str = "synastry") -> tuple[Chart, Chart, tuple[AspectMark, ...]]:
    if not isinstance(data, SynastryData):
        raise FieldError(field, "must be a SynastryData")
    a = check_chart(data.a, f"{field}.a")
    b = check_chart(data.b, f"{field}.b")
    cross = check_aspects(data.aspects, a.points, a.longitudes, b.points, b.longitudes, f"{field}.aspects")
    return a, b, cross
