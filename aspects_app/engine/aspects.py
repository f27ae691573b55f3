"""The aspect table, point names and :class:`AspectConfig` (which aspects are active, with which orbs)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import FieldError

# Match order is ascending angle, as kerykeion iterates it: the first active aspect whose interval holds the
# separation wins, so overlapping orbs resolve towards the smaller angle.
ASPECT_ANGLES: Mapping[str, float] = MappingProxyType(
    {
        "conjunction": 0.0,
        "semi-sextile": 30.0,
        "semi-square": 45.0,
        "sextile": 60.0,
        "quintile": 72.0,
        "square": 90.0,
        "trine": 120.0,
        "sesquiquadrate": 135.0,
        "biquintile": 144.0,
        "quincunx": 150.0,
        "opposition": 180.0,
    }
)
ASPECT_NAMES: tuple[str, ...] = tuple(ASPECT_ANGLES)
MAJOR_ASPECTS: frozenset[str] = frozenset({"conjunction", "sextile", "square", "trine", "opposition"})

# kerykeion's default active aspects and orbs (its DEFAULT_ACTIVE_ASPECTS).
KERYKEION_DEFAULT_ORBS: Mapping[str, float] = MappingProxyType(
    {"conjunction": 10.0, "opposition": 10.0, "trine": 8.0, "sextile": 6.0, "square": 5.0, "quintile": 1.0}
)
# kerykeion's default set with every minor aspect switched on at a 1° orb.
KERYKEION_ALL_ORBS: Mapping[str, float] = MappingProxyType(
    {
        **KERYKEION_DEFAULT_ORBS,
        "semi-sextile": 1.0,
        "semi-square": 1.0,
        "sesquiquadrate": 1.0,
        "biquintile": 1.0,
        "quincunx": 1.0,
    }
)
ORB_PRESETS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"default": KERYKEION_DEFAULT_ORBS, "all": KERYKEION_ALL_ORBS}
)

# The points the ephemeris computes, in column order. Arrays whose columns are not named default to a prefix of
# this list (10 columns: the planets; 13: planets, node and angles).
STANDARD_POINTS: tuple[str, ...] = (
    "Sun",
    "Moon",
    "Mercury",
    "Venus",
    "Mars",
    "Jupiter",
    "Saturn",
    "Uranus",
    "Neptune",
    "Pluto",
    "Mean_Node",
    "Ascendant",
    "Medium_Coeli",
)


def resolve_points(points: Sequence[str] | None, num_points: int) -> tuple[str, ...]:
    """Names of the ``num_points`` columns: ``points`` when given (checked), else the standard prefix."""
    if points is None:
        if num_points > len(STANDARD_POINTS):
            raise FieldError(
                "points",
                f"{num_points} columns but no names given; pass points=[...] for more than "
                f"{len(STANDARD_POINTS)} columns",
            )
        return STANDARD_POINTS[:num_points]
    names = tuple(points)
    if len(names) != num_points:
        raise FieldError("points", f"{len(names)} names given for {num_points} columns")
    if len(set(names)) != len(names):
        raise FieldError("points", f"duplicate names in {list(names)}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise FieldError("points", f"names must be non-empty strings, got {name!r}")
    return names


def _check_orb(where: str, name: str, orb: object) -> float:
    if name not in ASPECT_ANGLES:
        raise FieldError(where, f"unknown aspect {name!r}; known aspects: {', '.join(ASPECT_NAMES)}")
    if isinstance(orb, bool) or not isinstance(orb, int | float):
        raise FieldError(where, f"orb of {name!r} must be a number, got {orb!r}")
    value = float(orb)
    if not math.isfinite(value) or value < 0:
        raise FieldError(where, f"orb of {name!r} must be a finite number >= 0, got {orb!r}")
    if value >= 90:
        # Wider than 90° an aspect would swallow the opposite side of the circle; certainly a unit mistake.
        raise FieldError(where, f"orb of {name!r} must be below 90 degrees, got {orb!r}")
    return value


@dataclass(frozen=True, eq=True)
class AspectConfig:
    """Active aspects with their orbs, plus optional per-point orb overrides.

    ``orbs`` maps aspect name → orb in degrees; aspects absent from it are inactive. ``point_orbs`` maps a point
    name → {aspect name → orb}: for a pair of points the orb of an aspect is the larger of the two points' orbs,
    each point falling back to ``orbs``. An override may also switch on an aspect that ``orbs`` leaves out, for
    pairs involving that point.
    """

    orbs: Mapping[str, float] = field(default_factory=lambda: dict(KERYKEION_DEFAULT_ORBS))
    point_orbs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.orbs, Mapping):
            raise FieldError("orbs", f"expected a mapping of aspect name to orb, got {type(self.orbs).__name__}")
        orbs = {name: _check_orb("orbs", name, orb) for name, orb in self.orbs.items()}
        point_orbs: dict[str, dict[str, float]] = {}
        for point, overrides in self.point_orbs.items():
            if not isinstance(point, str) or not point:
                raise FieldError("point_orbs", f"point names must be non-empty strings, got {point!r}")
            if not isinstance(overrides, Mapping):
                raise FieldError("point_orbs", f"[{point!r}]: expected a mapping of aspect name to orb")
            point_orbs[point] = {n: _check_orb(f"point_orbs[{point!r}]", n, o) for n, o in overrides.items()}
        if not orbs and not any(point_orbs.values()):
            raise FieldError("orbs", "at least one aspect must be active")
        # Canonical (match) order, so equal configurations compare and hash equal.
        object.__setattr__(self, "orbs", MappingProxyType({n: orbs[n] for n in ASPECT_NAMES if n in orbs}))
        object.__setattr__(
            self,
            "point_orbs",
            MappingProxyType({p: MappingProxyType(dict(sorted(o.items()))) for p, o in sorted(point_orbs.items())}),
        )

    @classmethod
    def from_orbs(
        cls, orbs: Mapping[str, float], point_orbs: Mapping[str, Mapping[str, float]] | None = None
    ) -> AspectConfig:
        return cls(orbs=dict(orbs), point_orbs=dict(point_orbs or {}))

    @classmethod
    def preset(cls, name: str) -> AspectConfig:
        """``"default"`` (kerykeion's defaults) or ``"all"`` (every aspect; minors at 1°)."""
        if name not in ORB_PRESETS:
            raise FieldError("preset", f"unknown orb preset {name!r}; known: {', '.join(ORB_PRESETS)}")
        return cls(orbs=dict(ORB_PRESETS[name]))

    def only(self, aspects: Iterable[str]) -> AspectConfig:
        """The same orbs restricted to ``aspects`` (a selection from a request, say)."""
        wanted = list(aspects)
        for name in wanted:
            if name not in ASPECT_ANGLES:
                raise FieldError("aspects", f"unknown aspect {name!r}; known aspects: {', '.join(ASPECT_NAMES)}")
        keep = set(wanted)
        return AspectConfig(
            orbs={n: o for n, o in self.orbs.items() if n in keep},
            point_orbs={p: {n: o for n, o in ov.items() if n in keep} for p, ov in self.point_orbs.items()},
        )

    @property
    def active_aspects(self) -> tuple[str, ...]:
        """Every aspect that can match for some pair of points, in match order."""
        names = set(self.orbs).union(*(o.keys() for o in self.point_orbs.values()))
        return tuple(n for n in ASPECT_NAMES if n in names)

    def orb_for(self, aspect: str, point1: str | None = None, point2: str | None = None) -> float | None:
        """The orb of ``aspect`` between two points, or None when it is inactive for them."""
        candidates = [self.orbs.get(aspect)]
        for point in (point1, point2):
            if point is not None and point in self.point_orbs:
                candidates.append(self.point_orbs[point].get(aspect))
        present = [c for c in candidates if c is not None]
        return max(present) if present else None

    def check_points(self, points: Sequence[str]) -> None:
        """Overrides that name a point the arrays do not have are almost certainly typos."""
        unknown = sorted(set(self.point_orbs) - set(points))
        if unknown:
            raise FieldError("point_orbs", f"unknown point(s) {unknown}; the arrays' points are {list(points)}")

    def to_dict(self) -> dict[str, object]:
        return {"orbs": dict(self.orbs), "point_orbs": {p: dict(o) for p, o in self.point_orbs.items()}}

    def __hash__(self) -> int:
        return hash(self.config_hash())

    def config_hash(self) -> str:
        """A stable digest of the configuration (cache keys and persisted results rest on it)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
