"""Compatibility scores between two charts, per chart pair.

``"discepolo"`` reproduces kerykeion's RelationshipScoreFactory (Ciro Discepolo's method) exactly: synastry aspects
under kerykeion's default orbs, major aspects only, between the Sun, Moon, Venus, Mars and (when present) the
Ascendant of the two charts, plus 5 points when both Suns are in signs of the same quality:

======================================================  =====================
pair (either direction unless noted)                     points
======================================================  =====================
Sun–Sun conjunction, opposition, square                  11 if orb ≤ 2°, else 8
Sun–Sun sextile, trine                                   4
Sun–Moon conjunction                                     11 if orb ≤ 2°, else 8
Sun–Moon opposition, square, trine, sextile              4
Sun–Ascendant, Moon–Ascendant, Venus–Mars, any major     4
======================================================  =====================

``"weighted"`` is ours: every point pair of the two charts contributes
``w(p1) · w(p2) · h(aspect) · (1 − orb / orb_max)`` under the calculator's own orbs, where ``w`` weighs personal
points over generational ones (:data:`POINT_WEIGHTS`), ``h`` is positive for harmonious aspects and negative for
hard ones (:data:`ASPECT_HARMONY`), and exact aspects count fully, fading linearly to nothing at the orb's edge.
The sum is scaled by 100 / Σ w(p1)·w(p2), so it lies in [−100, 100] whatever the number of points. An orb below
a nanodegree makes an aspect exact-only: it counts fully when it occurs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .aspects import ASPECT_NAMES, KERYKEION_DEFAULT_ORBS, MAJOR_ASPECTS, AspectConfig
from .classify import (
    AMBIGUOUS,
    ANGLES,
    BUCKETS_PER_DEGREE,
    NO_ASPECT,
    OrbProfiles,
    _bucket_table,
    match_aspects,
    separation,
)
from .errors import FieldError
from .xp_ops import apply_into, astype, bool_as_int8, flatnonzero, mask_into, put, reshape, scaled_index_into, take_into

# "harmonic" is scored in :mod:`aspects_app.engine.harmonic` (features and matrix products).
SCORE_METHODS: tuple[str, ...] = ("discepolo", "weighted", "harmonic")


def score_dtype(method: str) -> type[np.int16] | type[np.float64]:
    """The dtype of a method's scores: kerykeion's are whole points, the weighted and harmonic ones fractions."""
    return np.int16 if method == "discepolo" else np.float64


DESTINY_SIGN_POINTS = 5
HIGH_PRECISION_ORB = 2.0
MAJOR_HIGH_PRECISION = 11
MAJOR_STANDARD = 8
MINOR_POINTS = 4

POINT_WEIGHTS: dict[str, float] = {
    "Sun": 1.0,
    "Moon": 1.0,
    "Venus": 0.9,
    "Mars": 0.8,
    "Ascendant": 0.8,
    "Mercury": 0.6,
    "Jupiter": 0.5,
    "Saturn": 0.5,
    "Medium_Coeli": 0.4,
    "Mean_Node": 0.4,
    "Uranus": 0.2,
    "Neptune": 0.2,
    "Pluto": 0.2,
}
DEFAULT_POINT_WEIGHT = 0.3  # a point this table does not know (a host's own column)
ASPECT_HARMONY: dict[str, float] = {
    "conjunction": 0.6,
    "semi-sextile": 0.2,
    "semi-square": -0.3,
    "sextile": 0.8,
    "quintile": 0.4,
    "square": -0.6,
    "trine": 1.0,
    "sesquiquadrate": -0.3,
    "biquintile": 0.3,
    "quincunx": -0.2,
    "opposition": -0.4,
}


def _code(name: str) -> int:
    return ASPECT_NAMES.index(name)


@dataclass(frozen=True)
class DiscepoloTerm:
    """One (point of A, point of B) pair and the points each aspect code earns it: (precise, standard)."""

    column_a: int
    column_b: int
    table: int  # which score table (sun_sun, sun_moon, any_major)


def _points_by_code(rule: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Points per aspect code (index code + 1, so NO_ASPECT maps to slot 0): orb ≤ 2° and otherwise."""
    precise = np.zeros(len(ASPECT_NAMES) + 1, dtype=np.int8)
    standard = np.zeros(len(ASPECT_NAMES) + 1, dtype=np.int8)
    for name in MAJOR_ASPECTS:
        slot = _code(name) + 1
        if rule == "sun_sun":
            high = name in ("conjunction", "opposition", "square")
            precise[slot] = MAJOR_HIGH_PRECISION if high else MINOR_POINTS
            standard[slot] = MAJOR_STANDARD if high else MINOR_POINTS
        elif rule == "sun_moon":
            high = name == "conjunction"
            precise[slot] = MAJOR_HIGH_PRECISION if high else MINOR_POINTS
            standard[slot] = MAJOR_STANDARD if high else MINOR_POINTS
        else:
            precise[slot] = standard[slot] = MINOR_POINTS
    return precise, standard


RULES: tuple[str, ...] = ("sun_sun", "sun_moon", "any_major")


class DiscepoloScorer:
    """kerykeion's relationship score, table-driven and exact (ambiguous buckets resolved by the rule)."""

    def __init__(self, xp: Any, points: Sequence[str]) -> None:
        names = list(points)
        for required in ("Sun", "Moon", "Venus", "Mars"):
            if required not in names:
                raise FieldError("points", f"the discepolo score needs {required!r}; columns are {names}")
        col = names.index
        pairs = [("Sun", "Sun", 0), ("Sun", "Moon", 1), ("Moon", "Sun", 1), ("Venus", "Mars", 2), ("Mars", "Venus", 2)]
        if "Ascendant" in names:
            pairs += [
                ("Sun", "Ascendant", 2),
                ("Ascendant", "Sun", 2),
                ("Moon", "Ascendant", 2),
                ("Ascendant", "Moon", 2),
            ]
        self.terms = [DiscepoloTerm(col(a), col(b), table) for a, b, table in pairs]
        self.sun = col("Sun")
        profile = OrbProfiles.build(AspectConfig(orbs=dict(KERYKEION_DEFAULT_ORBS)), [("", "")])
        self.lo, self.hi = profile.lo[0], profile.hi[0]
        precision_breaks = np.concatenate([ANGLES - HIGH_PRECISION_ORB, ANGLES + HIGH_PRECISION_ORB])
        breakpoints = np.concatenate([self.lo, self.hi, precision_breaks])
        self.precise = np.stack([_points_by_code(rule)[0] for rule in RULES])
        self.standard = np.stack([_points_by_code(rule)[1] for rule in RULES])
        tables = np.stack([_bucket_table(breakpoints, partial(self._exact_np, table=t)) for t in range(3)])
        self.xp = xp
        self.tables = [xp.asarray(t) for t in tables]
        self.xp_lo, self.xp_hi = xp.asarray(self.lo), xp.asarray(self.hi)
        self.xp_precise, self.xp_standard = xp.asarray(self.precise), xp.asarray(self.standard)
        self.xp_angles = xp.asarray(ANGLES)

    def _exact_np(self, sep: np.ndarray[Any, Any], table: int) -> np.ndarray[Any, Any]:
        return np.asarray(self.exact(np, sep, table, self.lo, self.hi, self.precise, self.standard, ANGLES))

    @staticmethod
    def exact(xp: Any, sep: Any, table: int, lo: Any, hi: Any, precise: Any, standard: Any, angles: Any) -> Any:
        code = match_aspects(xp, sep, lo, hi)
        slot = astype(xp, code, np.intp) + 1
        orb = xp.abs(sep - angles[astype(xp, xp.maximum(code, 0), np.intp)])
        return xp.where(orb <= HIGH_PRECISION_ORB, precise[table, :][slot], standard[table, :][slot])

    @staticmethod
    def sun_quality(xp: Any, sun: Any) -> Any:
        """0 cardinal, 1 fixed, 2 mutable: the sign's index modulo 3."""
        return astype(xp, xp.floor(sun / 30.0), np.int8) % 3

    # Temporaries per chart pair: |Δλ| float64, bucket intp, points int8, running score int16, and a bool mask
    # (the ambiguity test, then the destiny test).
    CELL_BYTES = 8 + 8 + 1 + 2 + 1

    def score_into(self, pool: Any, lon_a: Any, lon_b: Any, out: Any) -> None:
        """Scores of every row of ``lon_a`` against every row of ``lon_b`` into ``out`` (rows_a, rows_b) int16."""
        xp = self.xp
        shape = (lon_a.shape[0], lon_b.shape[0])
        out[...] = 0
        with (
            pool.borrow(shape, np.float64) as a,
            pool.borrow(shape, np.intp) as index,
            pool.borrow(shape, np.int8) as points,
        ):
            for term in self.terms:
                apply_into(xp, xp.subtract, lon_a[:, term.column_a, None], lon_b[None, :, term.column_b], out=a)
                apply_into(xp, xp.abs, a, out=a)
                scaled_index_into(xp, a, BUCKETS_PER_DEGREE, index)
                take_into(xp, self.tables[term.table], index, points)
                ambiguous = flatnonzero(xp, points == AMBIGUOUS)
                if int(ambiguous.shape[0]):
                    sep = separation(xp, reshape(xp, a, (-1,))[ambiguous])
                    exact = self.exact(
                        xp, sep, term.table, self.xp_lo, self.xp_hi, self.xp_precise, self.xp_standard, self.xp_angles
                    )
                    put(xp, reshape(xp, points, (-1,)), ambiguous, astype(xp, exact, np.int8))
                apply_into(xp, xp.add, out, points, out=out)
            quality_a = self.sun_quality(xp, lon_a[:, self.sun])
            quality_b = self.sun_quality(xp, lon_b[:, self.sun])
            # bool viewed as int8 (same itemsize, 0/1) scaled into the points buffer: no int temporaries.
            same = bool_as_int8(xp, quality_a[:, None] == quality_b[None, :])
            apply_into(xp, xp.multiply, same, DESTINY_SIGN_POINTS, out=points)
            apply_into(xp, xp.add, out, points, out=out)


class WeightedScorer:
    """The weighted harmony score described in the module docstring, under the calculator's orbs."""

    def __init__(self, xp: Any, points: Sequence[str], hit_kernel: Any) -> None:
        self.xp = xp
        self.kernel = hit_kernel  # a HitKernel over all point pairs
        weight = np.array([POINT_WEIGHTS.get(n, DEFAULT_POINT_WEIGHT) for n in points])
        pair_weight = np.outer(weight, weight).ravel()
        self.scale = 100.0 / float(pair_weight.sum())
        harmony = np.array([ASPECT_HARMONY[n] for n in ASPECT_NAMES])
        profiles = hit_kernel.classifier.profiles
        orb_max = ANGLES - profiles.lo  # (profiles, 11); inf where inactive
        # h / orb_max per (profile, code), flattened. An orb below a nanodegree is an exact-only aspect: it counts
        # fully (slope 0) rather than dividing by next to nothing.
        usable = np.isfinite(orb_max) & (orb_max > 1e-9)
        slope = np.divide(harmony, orb_max, out=np.zeros_like(orb_max), where=usable)
        count = len(ASPECT_NAMES)
        self.slope = xp.asarray(slope.ravel())
        self.harmony = xp.asarray(np.tile(harmony, profiles.count))
        self.pair_weight = xp.asarray(pair_weight)
        offsets = profiles.pair_profile * count
        self.profile_offset = xp.asarray(offsets) if offsets.any() else None

    # Temporaries per point pair: |Δλ| float64 (the caller's), bucket index then code intp, code int8, hit
    # mask, one float64 work array.
    CELL_BYTES = 8 + 8 + 1 + 1 + 8

    def score_into(self, pool: Any, a: Any, out: Any) -> None:
        """Scores from ``a = |Δλ|`` of shape (rows, cols, pairs) into ``out`` (rows, cols); ``a`` is overwritten."""
        xp = self.xp
        kernel = self.kernel
        with (
            pool.borrow(a.shape, np.intp) as code,
            pool.borrow(a.shape, np.int8) as codes,
            pool.borrow(a.shape, np.bool_) as hit,
            pool.borrow(a.shape, np.float64) as work,
        ):
            kernel.codes_into(a, code, codes)
            if kernel.has_ambiguous:
                flat_codes = reshape(xp, codes, (-1,))
                ambiguous = xp.nonzero(flat_codes == AMBIGUOUS)[0]
                if int(ambiguous.shape[0]):
                    pair = ambiguous % a.shape[-1]
                    resolved = kernel.resolve(reshape(xp, a, (-1,))[ambiguous], flat_codes[ambiguous], pair)
                    put(xp, flat_codes, ambiguous, resolved)
            apply_into(xp, xp.not_equal, codes, NO_ASPECT, out=hit)
            apply_into(xp, xp.maximum, codes, 0, out=code)  # NO_ASPECT reads code 0; masked out at the end
            # a becomes the orb: |min(a, 360 - a) - angle|.
            apply_into(xp, xp.subtract, 360.0, a, out=work)
            apply_into(xp, xp.minimum, a, work, out=a)
            take_into(xp, kernel.angles, code, work)
            apply_into(xp, xp.subtract, a, work, out=a)
            apply_into(xp, xp.abs, a, out=a)
            if self.profile_offset is not None:
                apply_into(xp, xp.add, code, self.profile_offset, out=code)
            # (h - slope · orb) · w(p1) · w(p2), zero where no aspect.
            take_into(xp, self.slope, code, work)
            apply_into(xp, xp.multiply, a, work, out=a)
            take_into(xp, self.harmony, code, work)
            apply_into(xp, xp.subtract, work, a, out=work)
            apply_into(xp, xp.multiply, work, self.pair_weight, out=work)
            mask_into(xp, work, hit, out=work)
            apply_into(xp, xp.sum, work, axis=-1, out=out)
            out *= self.scale
            # Summation rounding can overshoot the bound by an ulp.
            apply_into(xp, xp.clip, out, -100.0, 100.0, out=out)
