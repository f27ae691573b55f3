"""Exact aspect matching through a lookup table on the raw longitude difference.

The matching rule (first active aspect in match order with ``angle - orb <= sep <= angle + orb``) is a
piecewise-constant function of ``a = |λ1 - λ2|`` in [0°, 360°), where ``sep = min(a, 360 - a)``. Cutting [0°, 360°)
into buckets a power of two wide makes ``floor(a * BUCKETS_PER_DEGREE)`` exact in floating point, so a bucket that
no breakpoint comes near has one answer for all its values, read from a table in one gather. The few values that
land in a bucket holding a breakpoint (a few percent) are resolved by the rule itself, evaluated with the same
floating-point operations as a scalar implementation would: results are identical, not approximate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .aspects import ASPECT_ANGLES, ASPECT_NAMES, AspectConfig

# A power of two, so a * 32 is exact and bucket membership too. 32 per degree keeps a profile's table at 11.5 KiB
# (in L1/L2) and the ambiguous buckets near breakpoints under 1% of random separations.
BUCKETS_PER_DEGREE = 32.0
NUM_BUCKETS = int(360 * BUCKETS_PER_DEGREE) + 1  # +1: the top bucket catches a == 360 - ulp rounding up
# Breakpoints within this margin of a bucket make it ambiguous. sep = 360 - a rounds by < 1e-13°, far below it.
_MARGIN = 1e-9
NO_ASPECT = -1
AMBIGUOUS = -2

ANGLES = np.array([ASPECT_ANGLES[n] for n in ASPECT_NAMES], dtype=np.float64)


def separation(xp: Any, a: Any) -> Any:
    """Angular separation in [0°, 180°] from ``a = |λ1 - λ2|`` with both longitudes in [0°, 360°)."""
    return xp.minimum(a, 360.0 - a)


@dataclass(frozen=True)
class OrbProfiles:
    """Interval bounds per orb profile; a profile is one distinct set of orbs among the point pairs.

    ``lo``/``hi`` have shape (profiles, 11) in match order; an inactive aspect has ``lo = inf``, so it never
    matches. ``pair_profile`` maps each point pair of the layout to its profile.
    """

    lo: np.ndarray[Any, np.dtype[np.float64]]
    hi: np.ndarray[Any, np.dtype[np.float64]]
    pair_profile: np.ndarray[Any, np.dtype[np.intp]]

    @classmethod
    def build(cls, config: AspectConfig, pairs: Sequence[tuple[str, str]]) -> OrbProfiles:
        profiles: dict[tuple[float | None, ...], int] = {}
        pair_profile = np.empty(len(pairs), dtype=np.intp)
        for n, (p1, p2) in enumerate(pairs):
            orbs = tuple(config.orb_for(name, p1, p2) for name in ASPECT_NAMES)
            pair_profile[n] = profiles.setdefault(orbs, len(profiles))
        lo = np.full((len(profiles), len(ASPECT_NAMES)), np.inf)
        hi = np.full((len(profiles), len(ASPECT_NAMES)), -np.inf)
        for orbs, index in profiles.items():
            for k, orb in enumerate(orbs):
                if orb is not None:
                    # Computed once, in float64, exactly as a scalar `angle - orb <= sep` would compute it.
                    lo[index, k] = ANGLES[k] - orb
                    hi[index, k] = ANGLES[k] + orb
        return cls(lo=lo, hi=hi, pair_profile=pair_profile)

    @property
    def count(self) -> int:
        return int(self.lo.shape[0])


def match_aspects(xp: Any, sep: Any, lo: Any, hi: Any) -> Any:
    """The rule itself: aspect codes (or NO_ASPECT) for separations ``sep`` against per-value bounds (n, 11)."""
    code = xp.full(sep.shape, NO_ASPECT, dtype=xp.int8)
    # Reverse order so that the first aspect in match order is written last and wins.
    for k in range(lo.shape[-1] - 1, -1, -1):
        inside = (sep >= lo[..., k]) & (sep <= hi[..., k])
        code = xp.where(inside, xp.asarray(k, dtype=xp.int8), code)
    return code


def _bucket_table(
    breakpoints: np.ndarray[Any, Any], value_at: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]
) -> np.ndarray[Any, Any]:
    """One table row: ``value_at`` of each bucket's midpoint, or AMBIGUOUS near any breakpoint (sep-space)."""
    starts = np.arange(NUM_BUCKETS, dtype=np.float64) / BUCKETS_PER_DEGREE
    ends = starts + 1.0 / BUCKETS_PER_DEGREE
    mids = separation(np, (starts + ends) / 2.0)
    row = value_at(mids).astype(np.int8)
    finite = breakpoints[np.isfinite(breakpoints)]
    # A breakpoint at sep = b sits at a = b and at a = 360 - b.
    at = np.concatenate([finite, 360.0 - finite])
    for point in at:
        near = (starts - _MARGIN <= point) & (point <= ends + _MARGIN)
        row[near] = AMBIGUOUS
    return row


def _match_np(sep: np.ndarray[Any, Any], lo: np.ndarray[Any, Any], hi: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(match_aspects(np, sep, lo, hi))


class AspectClassifier:
    """Aspect codes for many longitude differences at once, exactly, on any backend."""

    def __init__(self, profiles: OrbProfiles) -> None:
        self.profiles = profiles
        table = np.empty((profiles.count, NUM_BUCKETS), dtype=np.int8)
        for index in range(profiles.count):
            lo, hi = profiles.lo[index], profiles.hi[index]
            breakpoints = np.concatenate([lo, hi])
            table[index] = _bucket_table(breakpoints, partial(_match_np, lo=lo, hi=hi))
        self.table = table
        # Index offsets into the flattened table, per pair of the layout (all zero for a single profile).
        self.pair_offset = (profiles.pair_profile * NUM_BUCKETS).astype(np.intp)
        self.single_profile = profiles.count == 1
