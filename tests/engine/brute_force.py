"""A pure-Python reference for the engine: scalar loops over plain floats, written from the documented rules.

Nothing here uses NumPy in its core; array inputs are turned into lists of Python floats first. Results have the
shape of :meth:`AspectHits.to_records` (``point_names=False``): point indices, aspect and movement names, orbs.
The floating-point operations are the ones the rules spell out, in the same order, so the engine's answers are
expected to agree bit for bit, not approximately.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# The aspect table in match order (docs/architecture.md), written out independently of the engine's copy.
ASPECTS: tuple[tuple[str, float], ...] = (
    ("conjunction", 0.0),
    ("semi-sextile", 30.0),
    ("semi-square", 45.0),
    ("sextile", 60.0),
    ("quintile", 72.0),
    ("square", 90.0),
    ("trine", 120.0),
    ("sesquiquadrate", 135.0),
    ("biquintile", 144.0),
    ("quincunx", 150.0),
    ("opposition", 180.0),
)
ANGLE_OF: dict[str, float] = dict(ASPECTS)

# kerykeion's movement rule.
LOOKAHEAD_DAYS = 0.001
STATIC_RELATIVE_SPEED = 1e-9
STATIC_CHANGE = 1e-6

# kerykeion's default active aspects and orbs (tests/data/kerykeion_sample.json → default_active_aspects).
KERYKEION_DEFAULT_ORBS: dict[str, float] = {
    "conjunction": 10.0,
    "opposition": 10.0,
    "trine": 8.0,
    "sextile": 6.0,
    "square": 5.0,
    "quintile": 1.0,
}
MAJOR_ASPECTS: frozenset[str] = frozenset({"conjunction", "opposition", "square", "trine", "sextile"})
# relationship_score.constants
DESTINY_SIGN_POINTS = 5
HIGH_PRECISION_ORBIT_THRESHOLD = 2.0
MAJOR_ASPECT_POINTS_HIGH_PRECISION = 11
MAJOR_ASPECT_POINTS_STANDARD = 8
MINOR_ASPECT_POINTS = 4
# The weighted score treats an orb at or below this as exact-only (scoring.WeightedScorer).
EXACT_ONLY_ORB = 1e-9

Record = dict[str, Any]
Matrix = list[list[float]]


class OrbSource(Protocol):
    """What the reference needs of an :class:`AspectConfig`: the orb of an aspect for a pair of points."""

    def orb_for(self, aspect: str, point1: str | None = None, point2: str | None = None) -> float | None: ...


class _FixedOrbs:
    """Orbs that do not depend on the points (kerykeion's own model)."""

    def __init__(self, orbs: Mapping[str, float]) -> None:
        self.orbs = dict(orbs)

    def orb_for(self, aspect: str, point1: str | None = None, point2: str | None = None) -> float | None:
        return self.orbs.get(aspect)


def to_matrix(values: Any) -> Matrix:
    """Rows of Python floats from a nested sequence or a 2-D array."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [[float(x) for x in row] for row in values]


def separation(l1: float, l2: float) -> float:
    """Angular separation in [0°, 180°] of two longitudes in [0°, 360°) (the engine's documented formula)."""
    return min(abs(l1 - l2), 360 - abs(l1 - l2))


def match(sep: float, orbs: OrbSource, point1: str, point2: str) -> tuple[str, float, float] | None:
    """The first active aspect in match order whose closed interval holds ``sep``: (name, angle, orb)."""
    for name, angle in ASPECTS:
        orb = orbs.orb_for(name, point1, point2)
        if orb is None:
            continue
        if angle - orb <= sep <= angle + orb:
            return name, angle, abs(sep - angle)
    return None


def movement(l1: float, l2: float, s1: float, s2: float, angle: float) -> str:
    """kerykeion's applying / separating / static rule, looking ``LOOKAHEAD_DAYS`` ahead."""
    cur = abs(separation(l1, l2) - angle)
    f1 = (l1 + s1 * LOOKAHEAD_DAYS) % 360
    f2 = (l2 + s2 * LOOKAHEAD_DAYS) % 360
    fut = abs(separation(f1, f2) - angle)
    if abs(s1 - s2) < STATIC_RELATIVE_SPEED or abs(fut - cur) < STATIC_CHANGE:
        return "static"
    return "applying" if fut < cur else "separating"


def _speeds(speed: Any, lon: Matrix) -> Matrix:
    """Speeds as rows of floats; a missing side stands still."""
    if speed is None:
        return [[0.0] * len(row) for row in lon]
    return to_matrix(speed)


def _pair_record(
    orbs: OrbSource,
    names: Sequence[str],
    l1: float,
    l2: float,
    s1: float,
    s2: float,
    p1: int,
    p2: int,
    moving: bool,
) -> Record | None:
    found = match(separation(l1, l2), orbs, names[p1], names[p2])
    if found is None:
        return None
    aspect, angle, orb = found
    move = movement(l1, l2, s1, s2, angle) if moving else "static"
    return {"p1": p1, "p2": p2, "aspect": aspect, "orb": orb, "movement": move}


def natal(lon: Any, orbs: OrbSource, names: Sequence[str], speed: Any = None) -> list[Record]:
    """Aspects within each chart, point pairs p1 < p2, ordered by (i, p1, p2)."""
    rows = to_matrix(lon)
    speeds = _speeds(speed, rows)
    out: list[Record] = []
    for i, (row, srow) in enumerate(zip(rows, speeds, strict=True)):
        for p1 in range(len(row)):
            for p2 in range(p1 + 1, len(row)):
                rec = _pair_record(orbs, names, row[p1], row[p2], srow[p1], srow[p2], p1, p2, speed is not None)
                if rec is not None:
                    out.append({"i": i, **rec})
    return out


def _synastry_pair(
    orbs: OrbSource,
    names: Sequence[str],
    row_a: list[float],
    row_b: list[float],
    srow_a: list[float],
    srow_b: list[float],
    i: int,
    j: int,
    moving: bool,
) -> list[Record]:
    out: list[Record] = []
    for p1 in range(len(row_a)):
        for p2 in range(len(row_b)):
            rec = _pair_record(orbs, names, row_a[p1], row_b[p2], srow_a[p1], srow_b[p2], p1, p2, moving)
            if rec is not None:
                out.append({"i": i, "j": j, **rec})
    return out


def synastry(
    lon_a: Any, lon_b: Any, orbs: OrbSource, names: Sequence[str], speed_a: Any = None, speed_b: Any = None
) -> list[Record]:
    """Aspects between every chart of a (p1) and every chart of b (p2), ordered by (i, j, p1, p2)."""
    a, b = to_matrix(lon_a), to_matrix(lon_b)
    sa, sb = _speeds(speed_a, a), _speeds(speed_b, b)
    moving = speed_a is not None or speed_b is not None
    out: list[Record] = []
    for i in range(len(a)):
        for j in range(len(b)):
            out.extend(_synastry_pair(orbs, names, a[i], b[j], sa[i], sb[j], i, j, moving))
    return out


def paired_synastry(
    lon_a: Any, lon_b: Any, orbs: OrbSource, names: Sequence[str], speed_a: Any = None, speed_b: Any = None
) -> list[Record]:
    """Aspects between chart n of a and chart n of b only (``i == j == n``)."""
    a, b = to_matrix(lon_a), to_matrix(lon_b)
    sa, sb = _speeds(speed_a, a), _speeds(speed_b, b)
    moving = speed_a is not None or speed_b is not None
    out: list[Record] = []
    for n in range(len(a)):
        out.extend(_synastry_pair(orbs, names, a[n], b[n], sa[n], sb[n], n, n, moving))
    return out


# -- scores ------------------------------------------------------------------------------------------------------


def sun_quality(lon: float) -> int:
    """0 cardinal, 1 fixed, 2 mutable."""
    return int(lon // 30) % 3


def discepolo_score(chart_a: Sequence[float], chart_b: Sequence[float], names: Sequence[str]) -> int:
    """kerykeion's RelationshipScoreFactory on two charts whose columns are ``names``."""
    orbs = _FixedOrbs(KERYKEION_DEFAULT_ORBS)
    a = [float(x) for x in chart_a]
    b = [float(x) for x in chart_b]
    sun = list(names).index("Sun")
    score = DESTINY_SIGN_POINTS if sun_quality(a[sun]) == sun_quality(b[sun]) else 0
    for x, n1 in enumerate(names):
        for y, n2 in enumerate(names):
            found = match(separation(a[x], b[y]), orbs, n1, n2)
            if found is None or found[0] not in MAJOR_ASPECTS:
                continue
            aspect, _angle, orb = found
            precise = orb <= HIGH_PRECISION_ORBIT_THRESHOLD
            pair = {n1, n2}
            if n1 == n2 == "Sun":
                if aspect in ("conjunction", "opposition", "square"):
                    score += MAJOR_ASPECT_POINTS_HIGH_PRECISION if precise else MAJOR_ASPECT_POINTS_STANDARD
                else:
                    score += MINOR_ASPECT_POINTS
            elif pair == {"Sun", "Moon"}:
                if aspect == "conjunction":
                    score += MAJOR_ASPECT_POINTS_HIGH_PRECISION if precise else MAJOR_ASPECT_POINTS_STANDARD
                else:
                    score += MINOR_ASPECT_POINTS
            elif pair in ({"Sun", "Ascendant"}, {"Moon", "Ascendant"}, {"Venus", "Mars"}):
                score += MINOR_ASPECT_POINTS
    return score


def discepolo_scores(lon_a: Any, lon_b: Any, names: Sequence[str]) -> list[list[int]]:
    a, b = to_matrix(lon_a), to_matrix(lon_b)
    return [[discepolo_score(ra, rb, names) for rb in b] for ra in a]


def weighted_score(
    chart_a: Sequence[float],
    chart_b: Sequence[float],
    orbs: OrbSource,
    names: Sequence[str],
    point_weights: Mapping[str, float],
    default_weight: float,
    harmony: Mapping[str, float],
) -> float:
    """The engine's weighted score as its docstring defines it:
    100 · Σ w(p1)·w(p2)·h(aspect)·(1 − orb/orb_max) / Σ w(p1)·w(p2). An exact-only aspect counts fully; like the
    engine, an orb_max below a nanodegree counts as exact-only (rather than dividing by next to nothing)."""
    a = [float(x) for x in chart_a]
    b = [float(x) for x in chart_b]
    weights = [point_weights.get(n, default_weight) for n in names]
    total = 0.0
    norm = 0.0
    for x, n1 in enumerate(names):
        for y, n2 in enumerate(names):
            w = weights[x] * weights[y]
            norm += w
            found = match(separation(a[x], b[y]), orbs, n1, n2)
            if found is None:
                continue
            aspect, _angle, orb = found
            orb_max = orbs.orb_for(aspect, n1, n2)
            assert orb_max is not None
            fade = 1.0 - orb / orb_max if orb_max > EXACT_ONLY_ORB else 1.0
            total += w * harmony[aspect] * fade
    return 100.0 * total / norm


def top_k(
    scores: Sequence[Sequence[float]], k: int, exclude_self: bool = False
) -> tuple[list[list[int]], list[list[float]]]:
    """Per row, the k best columns: score descending, then column index ascending; optionally not the row's own."""
    indices: list[list[int]] = []
    values: list[list[float]] = []
    for r, row in enumerate(scores):
        row_values = [float(v) for v in row]
        candidates = [j for j in range(len(row_values)) if not (exclude_self and j == r)]
        candidates.sort(key=lambda j: (-row_values[j], j))
        chosen = candidates[:k]
        indices.append(chosen)
        values.append([row_values[j] for j in chosen])
    return indices, values


def harmonic_score(
    chart_a: Sequence[float],
    chart_b: Sequence[float],
    harmonics: Mapping[int, float],
    pair_weight: Sequence[Sequence[float]],
) -> float:
    """The harmonic score as its definition's double sum: 100 · Σ_h c_h Σ_pq W_pq cos(h(λa_p − λb_q)) divided by
    Σ_h |c_h| · Σ_pq |W_pq|, one cosine at a time."""
    total = 0.0
    for h, c in harmonics.items():
        for p, la in enumerate(chart_a):
            for q, lb in enumerate(chart_b):
                total += c * pair_weight[p][q] * math.cos(math.radians(h * (la - lb)))
    norm = sum(abs(c) for c in harmonics.values()) * sum(abs(w) for row in pair_weight for w in row)
    return 100.0 * total / norm
