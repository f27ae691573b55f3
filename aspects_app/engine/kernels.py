"""Per-chunk kernels in the ``xp`` style: longitude differences in, reduced hits out.

A chunk's temporaries are borrowed from the pool; what leaves a kernel (hit columns) is a fresh array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .classify import AMBIGUOUS, ANGLES, BUCKETS_PER_DEGREE, NO_ASPECT, AspectClassifier, match_aspects, separation
from .hits import APPLYING, CODE_DTYPE, SEPARATING, STATIC
from .pool import ArrayPool
from .xp_ops import apply_into, astype, div_mod, flatnonzero, put, reshape, scaled_index_into, take_into
from .xp_ops import dtype as xp_dtype

# kerykeion's movement rule: look 0.001 day ahead; below these thresholds the aspect is static.
LOOKAHEAD_DAYS = 0.001
STATIC_RELATIVE_SPEED = 1e-9
STATIC_CHANGE = 1e-6

# Bytes of temporaries per cell (one point pair of one chart pair) while a hit chunk runs:
# |Δλ| float64 (8) + bucket index intp (8) + code int8 (1) + mask bool (1).
HIT_CELL_BYTES = 18
# Per hit while its columns are gathered, at the peak (the angle gather, or i and j split off the chart pair):
# chart pair, pair, orb and two more int64 or float64 arrays (8 bytes each), the code, the point codes (2).
HIT_BYTES = 6 * 8 + 1 + 2


@dataclass
class Layout:
    """Which point pairs a chunk's last axis holds: ``p1[n]``, ``p2[n]`` for pair ``n``."""

    p1: np.ndarray[Any, Any]
    p2: np.ndarray[Any, Any]

    @classmethod
    def all_pairs(cls, num_points: int) -> Layout:
        p1, p2 = np.divmod(np.arange(num_points * num_points), num_points)
        return cls(p1=p1.astype(np.intp), p2=p2.astype(np.intp))

    @classmethod
    def upper_pairs(cls, num_points: int) -> Layout:
        p1, p2 = np.triu_indices(num_points, k=1)
        return cls(p1=p1.astype(np.intp), p2=p2.astype(np.intp))

    @property
    def size(self) -> int:
        return int(self.p1.shape[0])


class HitKernel:
    """The classifier's tables moved to one backend, and the hit extraction that uses them."""

    def __init__(self, xp: Any, classifier: AspectClassifier, layout: Layout) -> None:
        self.xp = xp
        self.classifier = classifier
        self.layout = layout
        self.table = xp.asarray(classifier.table.ravel())
        self.pair_offset = None if classifier.single_profile else xp.asarray(classifier.pair_offset)
        self.pair_profile = xp.asarray(classifier.profiles.pair_profile)
        self.lo = xp.asarray(classifier.profiles.lo)
        self.hi = xp.asarray(classifier.profiles.hi)
        self.angles = xp.asarray(ANGLES)
        # uint8, like the result columns: gathers through them stay small.
        self.p1 = xp.asarray(layout.p1.astype(CODE_DTYPE))
        self.p2 = xp.asarray(layout.p2.astype(CODE_DTYPE))
        self.has_ambiguous = bool((classifier.table == AMBIGUOUS).any())

    def codes_into(self, a: Any, index: Any, codes: Any) -> None:
        """Table codes (maybe AMBIGUOUS) for ``a = |Δλ|`` of shape (..., pairs), written into ``codes``."""
        xp = self.xp
        # Casting the product straight into the integer buffer truncates, which is floor for a >= 0.
        scaled_index_into(xp, a, BUCKETS_PER_DEGREE, index)
        if self.pair_offset is not None:
            apply_into(xp, xp.add, index, self.pair_offset, out=index)
        take_into(xp, self.table, index, codes)

    def resolve(self, a: Any, codes: Any, pair: Any) -> Any:
        """Exact codes for 1-D aligned ``a``/``codes``/``pair`` whose table entries were ambiguous."""
        sep = separation(self.xp, a)
        if self.pair_offset is None:  # one profile: its bounds broadcast, no per-value gather
            return match_aspects(self.xp, sep, self.lo[0, :], self.hi[0, :])
        profile = self.pair_profile[pair]
        lo, hi = self.xp.take(self.lo, profile, axis=0), self.xp.take(self.hi, profile, axis=0)
        return match_aspects(self.xp, sep, lo, hi)

    def extract(self, pool: ArrayPool, a: Any, row_offset: int, col_offset: int) -> dict[str, Any]:
        """Hit columns from ``a = |Δλ|`` of shape (rows, cols, pairs); indices offset to the whole problem.

        ``a`` may be overwritten. Returned columns are fresh arrays on the backend, in their computing dtypes
        (the caller casts them once, into the result). Intermediates are dropped as soon as they are used, which
        keeps the per-hit peak at :data:`HIT_BYTES`.
        """
        xp = self.xp
        _rows, cols, pairs = a.shape
        with pool.borrow(a.shape, np.intp) as index, pool.borrow(a.shape, np.int8) as codes:
            self.codes_into(a, index, codes)
            with pool.borrow(a.shape, np.bool_) as mask:
                apply_into(xp, xp.not_equal, codes, NO_ASPECT, out=mask)
                flat = flatnonzero(xp, mask)
            hit_a = reshape(xp, a, (-1,))[flat]
            hit_code = reshape(xp, codes, (-1,))[flat]
        if self.has_ambiguous:
            ambiguous = xp.nonzero(hit_code == AMBIGUOUS)[0]
            if int(ambiguous.shape[0]):
                resolved = self.resolve(hit_a[ambiguous], hit_code[ambiguous], flat[ambiguous] % pairs)
                put(xp, hit_code, ambiguous, resolved)
                keep = xp.nonzero(hit_code != NO_ASPECT)[0]
                if int(keep.shape[0]) != int(hit_code.shape[0]):
                    flat, hit_a, hit_code = flat[keep], hit_a[keep], hit_code[keep]
        chart_pair, pair = div_mod(xp, flat, pairs)
        del flat
        orb = separation(xp, hit_a)
        del hit_a
        orb -= self.angles[hit_code]
        apply_into(xp, xp.abs, orb, out=orb)
        i, j = div_mod(xp, chart_pair, cols)
        del chart_pair
        i += row_offset
        j += col_offset
        return {"i": i, "j": j, "pair": pair, "aspect": hit_code, "orb": orb}


def movement(xp: Any, lon1: Any, lon2: Any, speed1: Any, speed2: Any, aspect: Any) -> Any:
    """kerykeion's applying/separating rule for aligned 1-D arrays; ``aspect`` holds aspect codes."""
    angle = xp.asarray(ANGLES)[astype(xp, aspect, np.intp)]
    now = xp.abs(separation(xp, xp.abs(lon1 - lon2)) - angle)
    ahead1 = xp.remainder(lon1 + speed1 * LOOKAHEAD_DAYS, 360.0)
    ahead2 = xp.remainder(lon2 + speed2 * LOOKAHEAD_DAYS, 360.0)
    later = xp.abs(separation(xp, xp.abs(ahead1 - ahead2)) - angle)
    code = xp_dtype(xp, CODE_DTYPE)
    result = xp.where(later < now, xp.asarray(APPLYING, dtype=code), xp.asarray(SEPARATING, dtype=code))
    static = (xp.abs(speed1 - speed2) < STATIC_RELATIVE_SPEED) | (xp.abs(later - now) < STATIC_CHANGE)
    return xp.where(static, xp.asarray(STATIC, dtype=code), result)
