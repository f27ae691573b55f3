"""Transits for many charts at once: when each transiting body stands exactly at natal ± aspect angle.

The sky is the same for every chart; only the targets differ. So the track (:class:`TransitTrack`: sampled
longitudes and daily speeds of the transiting bodies) is inverted once (:class:`Inversion`): each body's samples
are unwrapped, split at its stations into monotone segments, and every segment gets a stretch of one sorted
key axis. A target then passes in segment ``g`` once for each ``x + 360k`` inside the segment's range (a count
from two ceilings), the sample interval holding each pass is one ``searchsorted`` on the key axis, and the
moment is the root of the cubic Hermite interpolant of that interval (safeguarded Newton). Orb entries and exits
are found the same way, walking across stations while the body stays within the orb.

All the per-chart work is written against an array namespace ``xp`` (NumPy, CuPy, or the array API standard),
as the rest of the engine; the inversion itself is small and built once with NumPy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from . import xp_ops
from .aspects import ASPECT_ANGLES, ASPECT_NAMES, STANDARD_POINTS, AspectConfig
from .errors import FieldError
from .transit_events import (
    CODE_DTYPE,
    SKY_EVENT_KINDS,
    TIME_DTYPE,
    US_PER_DAY,
    SkyEvents,
    TransitEvents,
    TransitEventsBuilder,
    days_to_datetime64,
)

FloatArray = npt.NDArray[np.float64]

# Predictive orbs for transits, as kerykeion 6's transit defaults: the five major aspects at 3°. Natal orbs
# (10° conjunctions) would keep a slow planet "in aspect" for years.
TRANSIT_ORBS: Mapping[str, float] = MappingProxyType(
    {"conjunction": 3.0, "sextile": 3.0, "square": 3.0, "trine": 3.0, "opposition": 3.0}
)
# Bodies a track may carry: the planets and the mean node (the angles depend on a place, not on the sky).
TRACK_BODIES: tuple[str, ...] = STANDARD_POINTS[:11]

# Newton iterations stop once every residual is below this (degrees, ~4e-7″), or after MAX_NEWTON_STEPS.
_RESIDUAL_DEG: Final = 1e-10
_MAX_NEWTON_STEPS: Final = 60
# Station knots closer than this (days) to a sample replace it.
_SAME_KNOT_DAYS: Final = 1e-9


@dataclass(frozen=True, eq=False)
class TransitTrack:
    """Longitudes and daily speeds (T, Q) of the bodies ``bodies`` at ``times`` (T,) UTC, covering the
    requested [``start``, ``end``) with some padding, and the bodies' stations (moments of zero speed) with
    their longitudes. Arrays are read-only. Build one with ``aspects_app.ephemeris.transit_track`` or, for
    synthetic skies, :meth:`from_samples`."""

    times: npt.NDArray[np.datetime64]  # (T,) datetime64[us], increasing
    longitudes: FloatArray  # (T, Q) degrees in [0, 360)
    speeds: FloatArray  # (T, Q) degrees per day
    bodies: tuple[str, ...]
    start: np.datetime64
    end: np.datetime64
    station_times: npt.NDArray[np.datetime64]  # (S,) datetime64[us]
    station_bodies: npt.NDArray[np.intp]  # (S,) column of the body
    station_longitudes: FloatArray  # (S,)
    step_days: float = 0.0  # the sampling step, for the record
    _inversion: list[Inversion] = field(default_factory=list, repr=False)

    @classmethod
    def from_samples(
        cls,
        times: Any,
        longitudes: Any,
        speeds: Any,
        bodies: Sequence[str],
        start: Any = None,
        end: Any = None,
        stations: tuple[Any, Any, Any] | None = None,
    ) -> TransitTrack:
        """A track from samples. ``stations`` = (times, body columns, longitudes); when None they are found as
        the zeros of the interpolant's derivative between samples whose speeds change sign. ``start``/``end``
        default to the first and last sample."""
        stamp = _times("times", times)
        if stamp.shape[0] < 2:
            raise FieldError("times", f"a track needs at least two samples, got {stamp.shape[0]}")
        if (np.diff(stamp.astype(np.int64)) <= 0).any():
            raise FieldError("times", "sample times must be strictly increasing")
        names = tuple(bodies)
        lon = _samples("longitudes", longitudes, (stamp.shape[0], len(names)))
        if ((lon < 0) | (lon >= 360)).any():
            raise FieldError("longitudes", "longitudes must lie in [0, 360)")
        spd = _samples("speeds", speeds, lon.shape)
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise FieldError("bodies", f"expected distinct non-empty names, got {list(names)}")
        first = stamp[0] if start is None else _times("start", start)[0]
        last = stamp[-1] if end is None else _times("end", end)[0]
        if not last > first:
            raise FieldError("end", "end must be after start")
        if first < stamp[0] or last > stamp[-1]:
            raise FieldError("start" if first < stamp[0] else "end", "[start, end] must lie within the samples")
        s_times, s_bodies, s_lon = (
            _hermite_stations(stamp, lon, spd) if stations is None else _given_stations(stations, len(names))
        )
        for array in (stamp, lon, spd, s_times, s_bodies, s_lon):
            array.setflags(write=False)
        step = float(np.median(np.diff(stamp.astype(np.int64)))) / US_PER_DAY
        return cls(stamp, lon, spd, names, first, last, s_times, s_bodies, s_lon, step)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def inversion(self) -> Inversion:
        """The track inverted once (knots split at stations, a sorted key axis), kept with the track."""
        if not self._inversion:
            self._inversion.append(Inversion.build(self))
        return self._inversion[0]

    def interpolate(self, times: Any) -> tuple[FloatArray, FloatArray]:
        """Longitudes and speeds (len(times), Q) by cubic Hermite interpolation of the samples (stations
        included), the values every search here uses."""
        inv = self.inversion()
        t = (_times("times", times).astype(np.int64) - inv.t0_us) / US_PER_DAY
        lon = np.empty((t.shape[0], len(self.bodies)))
        spd = np.empty_like(lon)
        for q in range(len(self.bodies)):
            lon[:, q], spd[:, q] = inv.evaluate(q, t)
        return np.mod(lon, 360.0), spd


def _given_stations(
    stations: tuple[Any, Any, Any], bodies: int
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.intp], FloatArray]:
    s_times = _times("stations", stations[0])
    s_bodies = np.asarray(stations[1], dtype=np.intp).reshape(-1)
    s_lon = np.asarray(stations[2], dtype=np.float64).reshape(-1)
    if not s_times.shape == s_bodies.shape == s_lon.shape:
        raise FieldError("stations", "times, bodies and longitudes must have one entry per station")
    if ((s_bodies < 0) | (s_bodies >= bodies)).any():
        raise FieldError("stations", "station body columns must index the bodies")
    return s_times, s_bodies, s_lon


def _times(name: str, value: Any) -> npt.NDArray[np.datetime64]:
    array = np.atleast_1d(np.asarray(value))
    if array.dtype.kind != "M":
        raise FieldError(name, f"expected numpy datetime64 values (UTC), got {array.dtype}")
    if np.isnat(array).any():
        raise FieldError(name, "NaT is not a moment")
    return array.astype(TIME_DTYPE).reshape(-1)


def _samples(name: str, value: Any, shape: tuple[int, int]) -> FloatArray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise FieldError(name, f"expected real numbers, got {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim == 1 and shape[1] == 1:
        array = array.reshape(-1, 1)
    if array.shape != shape:
        raise FieldError(name, f"expected shape {shape} (samples, bodies), got {array.shape}")
    if not np.isfinite(array).all():
        raise FieldError(name, "values must be finite")
    return array.copy()


def _hermite_pieces(h: FloatArray, l0: FloatArray, l1: FloatArray, v0: FloatArray, v1: FloatArray) -> tuple[
    FloatArray, FloatArray, FloatArray
]:  # fmt: skip
    """Coefficients c1, c2, c3 of L(s) = l0 + s(c1 + s(c2 + s c3)), s in [0, 1], for pieces of length h."""
    dl = l1 - l0
    c1 = h * v0
    c2 = 3 * dl - 2 * c1 - h * v1
    c3 = -2 * dl + c1 + h * v1
    return c1, c2, c3


def _hermite_stations(
    stamp: npt.NDArray[np.datetime64], lon: FloatArray, spd: FloatArray
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.intp], FloatArray]:
    """Zeros of the interpolant's derivative where the sampled speed changes sign (a quadratic per piece)."""
    t = (stamp.astype(np.int64) - stamp[0].astype(np.int64)) / US_PER_DAY
    out_t: list[float] = []
    out_q: list[int] = []
    out_l: list[float] = []
    for q in range(lon.shape[1]):
        unwrapped = np.unwrap(lon[:, q], period=360.0)
        v = spd[:, q]
        for k in np.flatnonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0):
            h = t[k + 1] - t[k]
            c1, c2, c3 = (float(c[0]) for c in _hermite_pieces(
                np.array([h]), unwrapped[k : k + 1], unwrapped[k + 1 : k + 2], v[k : k + 1], v[k + 1 : k + 2]
            ))  # fmt: skip
            roots = np.roots([3 * c3, 2 * c2, c1]) if abs(c3) > 1e-300 else np.roots([2 * c2, c1])
            real = [r.real for r in roots if abs(r.imag) < 1e-12 and -1e-9 <= r.real <= 1 + 1e-9]
            s = min(max(real[0], 0.0), 1.0) if real else float(-v[k] / (v[k + 1] - v[k]))
            out_t.append(t[k] + s * h)
            out_q.append(q)
            out_l.append(float(np.mod(unwrapped[k] + s * (c1 + s * (c2 + s * c3)), 360.0)))
    times = stamp[0] + np.round(np.asarray(out_t, dtype=np.float64) * US_PER_DAY).astype("timedelta64[us]")
    return times.astype(TIME_DTYPE), np.asarray(out_q, dtype=np.intp), np.asarray(out_l, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Inversion:
    """A track split into monotone segments on one sorted key axis (NumPy arrays; see the module docstring).

    Knots: times ``t`` (days since ``t0_us``), unwrapped longitudes ``lon``, speeds ``speed``, and ``key``: in
    segment ``g`` (knots ``first[g]..last[g]``, a station knot appearing at the end of one segment and the start
    of the next) ``key = offset[g] + direction[g] * (lon - base[g])``, increasing over the whole axis. ``lo``/``hi``
    are each segment's longitudes at its ends clipped to the track's [start, end) (``lo`` where it starts in
    time), ``t_lo``/``t_hi`` the matching times.

    The searches work on the key axis: a longitude ``x`` of segment ``g`` has key ``shift[g] + direction[g] * x``
    (``q_lo``/``q_hi``: the clipped ends'), and the knot interval ``k`` (from knot ``k`` to ``k + 1`` of one
    segment) holds the cubic ``K(s) = piece_key[k] + s(d1 + s(d2 + s d3))``, s in [0, 1], increasing, over
    ``t[k] + s * piece_h[k]``; ``piece_inv_span`` is ``1 / (K(1) - K(0))`` (0 for a flat piece) and
    ``piece_a0``/``piece_a1`` are ``(K(1) - K(0)) / K'(0 or 1) - 1`` (clipped to [-1, 1]): the inverse's
    relative slopes at the ends, for Newton's first guess (the inverse's cubic Hermite interpolant).

    ``bucket_*`` replace most sorted searches on the key axis by a table look-up: segment ``g``'s keys are cut
    into buckets of equal width (about two per knot interval; ``bucket_scale[g]`` is one over the width) from
    ``bucket_base[g]``, numbered from ``bucket_offset[g]``; a bucket holding at most one knot gives the search's
    answer from ``bucket_first`` (knots at or below the bucket) and that knot's key ``bucket_key``; the few
    others (``bucket_dense``: where a body slows down towards a station) are searched.
    """

    t0_us: int
    t_start: float
    t_end: float
    t: FloatArray
    lon: FloatArray
    speed: FloatArray
    key: FloatArray
    body: npt.NDArray[np.intp]
    direction: FloatArray
    first: npt.NDArray[np.intp]
    last: npt.NDArray[np.intp]
    base: FloatArray
    offset: FloatArray
    lo: FloatArray
    hi: FloatArray
    t_lo: FloatArray
    t_hi: FloatArray
    body_first: npt.NDArray[np.bool_]  # the segment is its body's first within [start, end)
    body_last: npt.NDArray[np.bool_]
    body_knots: tuple[tuple[FloatArray, FloatArray, FloatArray], ...]  # per body: t, lon, speed
    shift: FloatArray
    q_lo: FloatArray
    q_hi: FloatArray
    piece_h: FloatArray
    piece_key: FloatArray
    piece_d1: FloatArray
    piece_d2: FloatArray
    piece_d3: FloatArray
    piece_inv_span: FloatArray
    piece_a0: FloatArray
    piece_a1: FloatArray
    bucket_base: FloatArray
    bucket_scale: FloatArray
    bucket_offset: npt.NDArray[np.int64]
    bucket_first: npt.NDArray[np.int64]
    bucket_key: FloatArray
    bucket_dense: npt.NDArray[np.bool_]

    @property
    def segments(self) -> int:
        return int(self.body.shape[0])

    def evaluate(self, q: int, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Body ``q``'s interpolated unwrapped longitude and speed at times ``t`` (days since t0)."""
        return _evaluate_knots(self.body_knots[q], t)

    @classmethod
    def build(cls, track: TransitTrack) -> Inversion:
        t0_us = int(track.times[0].astype(np.int64))
        t_grid = (track.times.astype(np.int64) - t0_us) / US_PER_DAY
        t_start = float(int(track.start.astype(np.int64)) - t0_us) / US_PER_DAY
        t_end = float(int(track.end.astype(np.int64)) - t0_us) / US_PER_DAY
        station_t = (track.station_times.astype(np.int64) - t0_us) / US_PER_DAY
        knots: list[tuple[FloatArray, FloatArray, FloatArray]] = []
        seg_rows: list[tuple[int, float, int, int]] = []  # body, direction, first, last (global knot indices)
        all_t: list[FloatArray] = []
        all_l: list[FloatArray] = []
        all_v: list[FloatArray] = []
        count = 0
        for q in range(len(track.bodies)):
            grid_l = np.unwrap(track.longitudes[:, q], period=360.0)
            grid_v = track.speeds[:, q].copy()
            mine = np.flatnonzero(track.station_bodies == q)
            st = station_t[mine]
            order = np.argsort(st)
            st = st[order]
            # A station's longitude, unwrapped next to the samples around it.
            near = np.interp(st, t_grid, grid_l)
            sl = near + (180.0 - np.mod(180.0 - (track.station_longitudes[mine][order] - near), 360.0))
            keep = np.ones(t_grid.shape[0], dtype=bool)
            for ts in st:
                keep &= np.abs(t_grid - ts) > _SAME_KNOT_DAYS
            kt = np.concatenate((t_grid[keep], st))
            kl = np.concatenate((grid_l[keep], sl))
            kv = np.concatenate((grid_v[keep], np.zeros_like(st)))
            order = np.argsort(kt, kind="stable")
            kt, kl, kv = kt[order], kl[order], kv[order]
            knots.append((kt, kl, kv))
            is_station = np.concatenate((np.zeros(int(keep.sum()), bool), np.ones(st.shape[0], bool)))[order]
            cuts = [0, *np.flatnonzero(is_station).tolist(), kt.shape[0] - 1]
            for a, b in itertools.pairwise(cuts):
                if b <= a:
                    continue
                # Duplicate the station knot at both segments' ends, so each segment's knots are contiguous.
                all_t.append(kt[a : b + 1])
                all_l.append(kl[a : b + 1])
                all_v.append(kv[a : b + 1])
                sense = 1.0 if kl[b] > kl[a] or (kl[b] == kl[a] and kv[a : b + 1].sum() >= 0) else -1.0
                seg_rows.append((q, sense, count, count + b - a))
                count += b - a + 1
        t = np.concatenate(all_t)
        lon = np.concatenate(all_l)
        speed = np.concatenate(all_v)
        body = np.array([r[0] for r in seg_rows], dtype=np.intp)
        direction = np.array([r[1] for r in seg_rows])
        first = np.array([r[2] for r in seg_rows], dtype=np.intp)
        last = np.array([r[3] for r in seg_rows], dtype=np.intp)
        # Keep the segments that overlap [start, end), clipped to it.
        t_lo = np.maximum(t[first], t_start)
        t_hi = np.minimum(t[last], t_end)
        inside = t_hi > t_lo
        body, first, last = body[inside], first[inside], last[inside]
        direction, t_lo, t_hi = direction[inside], t_lo[inside], t_hi[inside]
        lo = np.array([_evaluate_knots(knots[q], np.array([x]))[0][0] for q, x in zip(body, t_lo, strict=True)])
        hi = np.array([_evaluate_knots(knots[q], np.array([x]))[0][0] for q, x in zip(body, t_hi, strict=True)])
        # Station knots were unwrapped per body, the evaluation too: lo/hi sit on the knots' unwrapped axis.
        base = lon[first]
        span = np.abs(lon[last] - base)
        offset = np.concatenate(([0.0], np.cumsum(span + 1.0)[:-1]))
        key = np.full(t.shape[0], -np.inf)
        for g in range(body.shape[0]):
            rows = slice(int(first[g]), int(last[g]) + 1)
            # Clip against rounding: a monotone segment's keys must not decrease.
            key[rows] = np.maximum.accumulate(offset[g] + direction[g] * (lon[rows] - base[g]))
        key = np.maximum.accumulate(key)  # knots of dropped segments take their neighbour's key
        body_first = np.ones(body.shape[0], bool)
        body_first[1:] = body[1:] != body[:-1]
        body_last = np.ones(body.shape[0], bool)
        body_last[:-1] = body[:-1] != body[1:]
        shift = offset - direction * base
        pieces = _key_pieces(t, lon, speed, direction, shift, first, last)
        return cls(
            t0_us, t_start, t_end, t, lon, speed, key, body, direction, first, last, base, offset,
            lo, hi, t_lo, t_hi, body_first, body_last, tuple(knots),
            shift, shift + direction * lo, shift + direction * hi, *pieces, *_key_buckets(key, first, last),
        )  # fmt: skip


def _key_buckets(key: FloatArray, first: npt.NDArray[np.intp], last: npt.NDArray[np.intp]) -> tuple[
    FloatArray, FloatArray, npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray, npt.NDArray[np.bool_]
]:  # fmt: skip
    """The bucket tables of :class:`Inversion`. Each bucket's bounds are widened by a millionth of its width, so
    that a query's bucket computed with rounding still brackets the search's answer."""
    base = key[first]
    intervals = np.maximum(last - first, 1)
    count = 2 * intervals + 1  # one more for a query at the segment's last key
    width = (key[last] - base) / (2 * intervals)
    scale = np.divide(1.0, width, out=np.zeros_like(width), where=width > 0)
    offset = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    segment = np.repeat(np.arange(first.shape[0]), count)
    j = np.arange(int(count.sum())) - offset[segment]
    margin = 1e-6 * width[segment] + 1e-9
    lower = base[segment] + j * width[segment]
    at_or_below = np.searchsorted(key, lower - margin, side="right")  # knots <= any query in the bucket
    below_next = np.searchsorted(key, lower + width[segment] + margin, side="left")  # knots < any query past it
    dense = below_next - at_or_below > 1
    inside = np.minimum(at_or_below, key.shape[0] - 1)
    bucket_key = np.where(at_or_below < key.shape[0], key[inside], np.inf)
    return base, scale, offset, at_or_below.astype(np.int64), bucket_key, dense


def _evaluate_knots(knots: tuple[FloatArray, FloatArray, FloatArray], t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The Hermite interpolant of one body's knots (t, lon, speed) and its derivative at times ``t``."""
    kt, kl, kv = knots
    k = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, kt.shape[0] - 2)
    h = kt[k + 1] - kt[k]
    s = (t - kt[k]) / h
    c1, c2, c3 = _hermite_pieces(h, kl[k], kl[k + 1], kv[k], kv[k + 1])
    return kl[k] + s * (c1 + s * (c2 + s * c3)), (c1 + s * (2 * c2 + 3 * s * c3)) / h


def _key_pieces(
    t: FloatArray, lon: FloatArray, speed: FloatArray, direction: FloatArray, shift: FloatArray,
    first: npt.NDArray[np.intp], last: npt.NDArray[np.intp],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:  # fmt: skip
    """Per knot interval, the cubic on the key axis (see :class:`Inversion`): computed once here, so that a search
    gathers its pass's numbers instead of building them from the knots. Intervals that cross from one segment
    into the next (or lie in dropped segments) are never searched and stay zero."""
    sense = np.zeros(t.shape[0])
    key_shift = np.zeros(t.shape[0])
    for g in range(first.shape[0]):
        sense[first[g] : last[g]] = direction[g]
        key_shift[first[g] : last[g]] = shift[g]
    h = np.zeros(t.shape[0])
    h[:-1] = np.diff(t)
    c1, c2, c3 = _hermite_pieces(h[:-1], lon[:-1], lon[1:], speed[:-1], speed[1:])
    d = [np.append(sense[:-1] * c, 0.0) for c in (c1, c2, c3)]
    span = d[0] + d[1] + d[2]
    inv_span = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    # A slope of zero (a station's end) or a flat piece: no useful guess, which the clip keeps harmless.
    end_slopes = (d[0], d[0] + 2 * d[1] + 3 * d[2])
    a0, a1 = (np.clip(np.divide(span, v, out=np.ones_like(v), where=v > 0) - 1.0, -1.0, 1.0) for v in end_slopes)
    return h, key_shift + sense * lon, d[0], d[1], d[2], inv_span, a0, a1


@dataclass(frozen=True)
class Targets:
    """The aspect targets searched for each (natal point, side): an angle offset, the aspect's code and, per
    body, the orb (negative: inactive for that point and body)."""

    offsets: FloatArray  # (S,) degrees added to the natal longitude
    codes: npt.NDArray[np.uint8]  # (S,)
    orbs: FloatArray  # (P, S, Q)

    @classmethod
    def build(cls, config: AspectConfig, points: Sequence[str], bodies: Sequence[str]) -> Targets:
        offsets: list[float] = []
        codes: list[int] = []
        for name in config.active_aspects:
            angle = ASPECT_ANGLES[name]
            for sign in (1.0, -1.0) if 0.0 < angle < 180.0 else (1.0,):
                offsets.append(sign * angle)
                codes.append(ASPECT_NAMES.index(name))
        orbs = np.full((len(points), len(offsets), len(bodies)), -1.0)
        for p, point in enumerate(points):
            for s, code in enumerate(codes):
                for q, body in enumerate(bodies):
                    orb = config.orb_for(ASPECT_NAMES[code], point, body)
                    if orb is not None:
                        orbs[p, s, q] = orb
        return cls(np.asarray(offsets), np.asarray(codes, dtype=np.uint8), orbs)

    @property
    def sides(self) -> int:
        return int(self.offsets.shape[0])


# On the CPU, a chunk's charts are searched in blocks whose estimated temporaries fit this (a few MiB really): the
# grid and event columns then stay in the caches and in memory already mapped. Measured on the 2-core development
# machine, 2,000 chart-years: 1.7x the events/s of whole 256 MiB chunks; 16 to 64 MiB are alike.
CPU_BLOCK_MB: Final = 32
# Events are searched in blocks of at most this many on the CPU (a block of charts above holds ~50,000), bounding
# the searches' temporaries (~25 float64 arrays of a block); a GPU takes a chunk's events at once. Measured: 65,536
# gives ~1.15x the events/s of 16,384 (fewer NumPy calls per event), 131,072 the same as 65,536.
EVENT_BLOCK: Final = 1 << 16
# Newton steps taken by every pass, unguarded, from the inverse's Hermite guess (see Inversion; within ~1e-5°
# for 99.99% of passes). One step leaves all but ~1 pass in 8,000 below _RESIDUAL_DEG (measured on a year of
# the ten planets, 11 aspects); those (next to stations, where the cubic flattens) go on in the safeguarded loop.
_FAST_NEWTON_STEPS: Final = 1
# A floor for the slope in the unguarded steps: a piece's slope is >= 0, and 0 only at a station's end.
_MIN_SLOPE: Final = 1e-300


@dataclass(frozen=True)
class DeviceInversion:
    """The inversion's arrays in the namespace ``xp``, moved once per operation."""

    xp: Any
    key: Any
    direction: Any
    first: Any
    last: Any
    shift: Any
    q_lo: Any
    q_hi: Any
    lo: Any
    hi: Any
    body: Any
    body_first: Any
    body_last: Any
    t: Any
    piece_h: Any
    piece_key: Any
    piece_d1: Any
    piece_d2: Any
    piece_d3: Any
    piece_inv_span: Any
    piece_a0: Any
    piece_a1: Any
    bucket_base: Any
    bucket_scale: Any
    bucket_offset: Any
    bucket_first: Any
    bucket_key: Any
    bucket_dense: Any

    @classmethod
    def move(cls, xp: Any, inv: Inversion, asarray: Callable[[Any], Any]) -> DeviceInversion:
        return cls(
            xp, *(asarray(getattr(inv, name)) for name in (
                "key", "direction", "first", "last", "shift", "q_lo", "q_hi", "lo", "hi", "body", "body_first",
                "body_last", "t", "piece_h", "piece_key", "piece_d1", "piece_d2", "piece_d3", "piece_inv_span",
                "piece_a0", "piece_a1",
                "bucket_base", "bucket_scale", "bucket_offset", "bucket_first", "bucket_key", "bucket_dense",
            ))
        )  # fmt: skip


def _take(xp: Any, table: Any, index: Any) -> Any:
    if xp is np:  # indices are in range by construction: no bounds check
        return np.take(table, index, mode="clip")
    return xp.take(table, index) if xp_ops.numpy_like(xp) else xp.take(table, xp.reshape(index, (-1,)))


def _cumsum(xp: Any, x: Any) -> Any:
    return xp.cumsum(x) if xp_ops.numpy_like(xp) else xp.cumulative_sum(x)


def locate(dev: DeviceInversion, segment: Any, value: Any) -> Any:
    """Times (days since t0) at which the interpolated longitude of segment ``segment`` equals ``value`` (aligned
    1-D arrays; each value must lie within its segment's range)."""
    xp = dev.xp
    return solve(dev, segment, _take(xp, dev.shift, segment) + _take(xp, dev.direction, segment) * value)


def solve(dev: DeviceInversion, segment: Any, query: Any) -> Any:
    """Times (days since t0) at which segment ``segment`` reaches key ``query`` (aligned 1-D arrays, each query
    within its segment's keys): the knot interval from one sorted search, then Newton on the interval's cubic
    from the chord's guess. Each pass's result depends on its own inputs only, not on the others in the call."""
    xp = dev.xp
    k = xp.clip(search_keys(dev, segment, query) - 1, _take(xp, dev.first, segment), _take(xp, dev.last, segment) - 1)
    residual0 = _take(xp, dev.piece_key, k) - query
    d1 = _take(xp, dev.piece_d1, k)
    d2 = _take(xp, dev.piece_d2, k)
    d3 = _take(xp, dev.piece_d3, k)
    twice_d2 = 2.0 * d2
    thrice_d3 = 3.0 * d3
    chord = xp.clip(-residual0 * _take(xp, dev.piece_inv_span, k), 0.0, 1.0)
    rest = 1.0 - chord
    bend = _take(xp, dev.piece_a0, k) * rest - _take(xp, dev.piece_a1, k) * chord
    s = xp.clip(chord + chord * rest * bend, 0.0, 1.0)
    for _ in range(_FAST_NEWTON_STEPS):
        f = residual0 + s * (d1 + s * (d2 + s * d3))
        slope = d1 + s * (twice_d2 + s * thrice_d3)
        s = xp.clip(s - f / xp.maximum(slope, _MIN_SLOPE), 0.0, 1.0)
    off = xp.abs(residual0 + s * (d1 + s * (d2 + s * d3))) > _RESIDUAL_DEG
    if bool(xp.any(off)):
        s[off] = _safeguarded_newton(xp, residual0[off], d1[off], d2[off], d3[off], s[off])
    return _take(xp, dev.t, k) + s * _take(xp, dev.piece_h, k)


def search_keys(dev: DeviceInversion, segment: Any, query: Any) -> Any:
    """``searchsorted(key, query, side="right")`` for queries within their segments' keys, from the bucket
    tables (see :class:`Inversion`), searching only the queries in dense buckets."""
    xp = dev.xp
    scaled = (query - _take(xp, dev.bucket_base, segment)) * _take(xp, dev.bucket_scale, segment)
    bucket = xp_ops.astype(xp, xp.maximum(scaled, 0.0), np.int64) + _take(xp, dev.bucket_offset, segment)
    above = xp_ops.astype(xp, _take(xp, dev.bucket_key, bucket) <= query, np.int64)  # the bucket's knot, if any
    found = _take(xp, dev.bucket_first, bucket) + above
    dense = _take(xp, dev.bucket_dense, bucket)
    if bool(xp.any(dense)):
        found[dense] = xp_ops.astype(xp, xp.searchsorted(dev.key, query[dense], side="right"), np.int64)
    return found


def _safeguarded_newton(xp: Any, residual0: Any, d1: Any, d2: Any, d3: Any, s: Any) -> Any:
    """Roots in [0, 1] of the increasing cubics residual0 + s(d1 + s(d2 + s d3)) from ``s``: Newton, bisecting
    the bracket whenever a step would leave it, until every residual is below _RESIDUAL_DEG."""
    low = xp.zeros_like(s)
    high = xp.ones_like(s)
    for _ in range(_MAX_NEWTON_STEPS):
        f = residual0 + s * (d1 + s * (d2 + s * d3))
        # A converged root stops moving, so each result depends on its own pass only, not on its chunk.
        moving = xp.abs(f) > _RESIDUAL_DEG
        if not bool(xp.any(moving)):
            break
        below = f < 0  # the root is later in the interval
        low = xp.where(below, s, low)
        high = xp.where(below, high, s)
        slope = d1 + s * (2 * d2 + 3 * s * d3)
        safe_slope = xp.where(slope == 0, xp.ones_like(slope), slope)
        step = s - f / safe_slope
        bad = (slope == 0) | (step <= low) | (step >= high)
        s = xp.where(moving, xp.where(bad, 0.5 * (low + high), step), s)
    return s


def _orb_exit(dev: DeviceInversion, segment: Any, query: Any, u: Any, orb: Any, forward: bool) -> Any:
    """When a pass (segment ``segment``, key ``query``, ``u`` = direction × longitude) leaves its orb going
    forward (or backward) in time; NaN when the body stays within the orb up to the end (start) of the track's
    range. Mostly in the pass's own segment, at key ``query ± orb``; the others walk across stations."""
    xp = dev.xp
    if forward:
        exit_query = query + orb
        across = exit_query >= _take(xp, dev.q_hi, segment)
    else:
        exit_query = query - orb
        across = exit_query <= _take(xp, dev.q_lo, segment)
    if not bool(xp.any(across)):
        return solve(dev, segment, exit_query)
    current = segment + 0  # a copy to write the walked passes into
    few = segment[across]
    value = _take(xp, dev.direction, few) * u[across]
    current[across], exit_query[across], stays = _walk(dev, few, value, orb[across], forward)
    times = solve(dev, current, exit_query)
    missing = xp.zeros(times.shape, dtype=xp.bool)
    missing[across] = stays
    return xp.where(missing, xp.full_like(times, xp.nan), times)


def _walk(dev: DeviceInversion, segment: Any, value: Any, orb: Any, forward: bool) -> tuple[Any, Any, Any]:
    """For passes at longitude ``value`` in ``segment`` whose orb reaches past the segment's end (start): the
    segment where the body leaves ``value ± orb`` going forward (backward), walking across stations, the key
    there, and whether it stays within the orb up to the range's end (start) instead (key: a valid dummy)."""
    xp = dev.xp
    current = segment
    pending = xp.ones(value.shape, dtype=xp.bool)
    exit_value = xp.zeros_like(value)
    bound_table = dev.hi if forward else dev.lo
    stop_table = dev.body_last if forward else dev.body_first
    for _ in range(int(dev.body.shape[0]) + 1):
        if not bool(xp.any(pending)):
            break
        bound = _take(xp, bound_table, current)
        below = bound < value - orb
        above = bound > value + orb
        leaves = pending & (below | above)
        exit_value = xp.where(leaves & below, value - orb, xp.where(leaves, value + orb, exit_value))
        pending = pending & ~leaves
        stuck = pending & _take(xp, stop_table, current)
        pending = pending & ~stuck
        current = xp.where(pending, current + (1 if forward else -1), current)
        exit_value = xp.where(stuck, xp.full_like(value, xp.nan), exit_value)
    stays = xp.isnan(exit_value)
    exit_value = xp.where(stays, _take(xp, bound_table, current), exit_value)
    return current, _take(xp, dev.shift, current) + _take(xp, dev.direction, current) * exit_value, stays


@dataclass(frozen=True)
class ChunkEvents:
    """One chunk's events as NumPy columns (times in days since the inversion's t0; NaN: none); ``target`` is
    the flat (chart in the chunk, point, side) index."""

    target: npt.NDArray[np.int64]
    body: npt.NDArray[np.int64]
    exact: FloatArray
    starts: FloatArray
    ends: FloatArray
    retrograde: npt.NDArray[np.bool_]


def search_chunk(
    dev: DeviceInversion, natal: Any, targets: Targets, orbs_dev: Any, offsets_dev: Any, to_numpy: Callable[[Any], Any]
) -> ChunkEvents:
    """Every exact pass, with its orb window, of each segment's body over every target of ``natal`` (n, P)."""
    xp = dev.xp
    n, p = natal.shape
    sides = targets.sides
    g_count = int(dev.body.shape[0])
    # Targets (n, P, S) on the circle, then a (target, segment) grid flattened as (n, P, S, G).
    x = xp.remainder(xp.reshape(natal, (n, p, 1)) + xp.reshape(offsets_dev, (1, 1, sides)), 360.0)
    x = xp.reshape(x, (n * p * sides, 1))
    direction = xp.reshape(dev.direction, (1, g_count))
    y = direction * x  # targets on each segment's increasing axis u = direction * lon
    u_from = direction * xp.reshape(dev.lo, (1, g_count))
    u_to = direction * xp.reshape(dev.hi, (1, g_count))
    first_k = xp.ceil((u_from - y) / 360.0)
    counts = xp.ceil((u_to - y) / 360.0) - first_k
    orb_grid = xp.reshape(xp.take(orbs_dev, xp.reshape(dev.body, (-1,)), axis=2), (p * sides, g_count))
    active = xp.reshape(orb_grid >= 0, (1, p * sides, g_count))
    counts = xp.reshape(xp.where(active, xp.reshape(counts, (n, p * sides, g_count)), 0.0), (-1,))
    counts = xp_ops.astype(xp, xp.clip(counts, 0.0, None), np.int64)
    run_ends = _cumsum(xp, counts)
    total = int(run_ends[-1]) if run_ends.shape[0] else 0
    if xp is np:
        cell = np.repeat(np.arange(counts.shape[0]), counts)
    else:  # CuPy's repeat takes no array of counts: the cell of event e is the first run ending after e
        cell = xp.searchsorted(run_ends, xp.arange(total, dtype=run_ends.dtype), side="right")
    rank = xp_ops.astype(xp, xp.arange(total, dtype=xp.int64) - _take(xp, run_ends - counts, cell), np.float64)
    segment = cell % g_count
    target = cell // g_count  # flat (chart, point, side)
    u = _take(xp, xp.reshape(y, (-1,)), cell) + 360.0 * (_take(xp, xp.reshape(first_k, (-1,)), cell) + rank)
    query = u + _take(xp, dev.shift, segment)  # the key of longitude direction * u
    orb = _take(xp, xp.reshape(orb_grid, (-1,)), (target % (p * sides)) * g_count + segment)
    exact, starts, ends = np.empty(total), np.empty(total), np.empty(total)
    block = total if xp_ops.numpy_like(xp) and xp is not np else EVENT_BLOCK
    for a in range(0, total, max(block, 1)):
        b = min(a + block, total)
        seg, q = segment[a:b], query[a:b]
        exact[a:b] = to_numpy(solve(dev, seg, q))
        starts[a:b] = to_numpy(_orb_exit(dev, seg, q, u[a:b], orb[a:b], forward=False))
        ends[a:b] = to_numpy(_orb_exit(dev, seg, q, u[a:b], orb[a:b], forward=True))
    return ChunkEvents(
        target=to_numpy(target),
        body=to_numpy(_take(xp, dev.body, segment)),
        exact=exact,
        starts=starts,
        ends=ends,
        retrograde=to_numpy(_take(xp, dev.direction, segment) < 0),
    )


def append_chunk(builder: TransitEventsBuilder, chunk: ChunkEvents, targets: Targets, offset: int, points: int) -> None:
    """A chunk's columns into ``builder``, chart indices shifted by the chunk's first row."""
    sides = targets.sides
    point_side = chunk.target % (points * sides)
    builder.append(
        {"exact": chunk.exact, "starts": chunk.starts, "ends": chunk.ends},
        i=chunk.target // (points * sides) + offset,
        point=point_side // sides,
        body=chunk.body,
        aspect=targets.codes[point_side % sides],
        retrograde=chunk.retrograde,
    )


def expected_events(inv: Inversion, targets: Targets) -> float:
    """Events per chart on average over natal longitudes: each active (point, side, segment) passes once per
    360° its body covers in the segment."""
    covered = np.abs(inv.hi - inv.lo) / 360.0
    return float(np.sum(np.where(targets.orbs[:, :, inv.body] >= 0, covered, 0.0)))


def bytes_per_chart(inv: Inversion, targets: Targets, points: int) -> float:
    """Temporaries per chart: the (target, segment) grid (~12 float64 per cell) and the events' columns (~24
    float64 each: indices, keys, orbs, the three moments and the results' columns; tracemalloc's peak is ~21),
    events bounded by the distance each body covers (360° per pass per target, plus one per segment). The
    searches themselves run in blocks of EVENT_BLOCK passes, at most ~13 MiB whatever the chunk."""
    cells = points * targets.sides * inv.segments
    covered = float(np.sum(np.abs(inv.hi - inv.lo)))
    events = points * targets.sides * (covered / 360.0 + inv.segments)
    return cells * 12 * 8 + events * 24 * 8


def sky_events(track: TransitTrack) -> SkyEvents:
    """The bodies' sign ingresses and stations within the track's [start, end), from the same inversion."""
    inv = track.inversion()
    bodies: list[npt.NDArray[np.intp]] = []
    kinds: list[npt.NDArray[np.intp]] = []
    times: list[FloatArray] = []
    longitudes: list[FloatArray] = []
    retro: list[npt.NDArray[np.bool_]] = []
    dev = DeviceInversion.move(np, inv, np.asarray)
    for g in range(inv.segments):
        low, high = sorted((inv.lo[g], inv.hi[g]))
        d = inv.direction[g]
        # Cusps 30k crossed in the segment, half-open at its end in time as every search here.
        cusps = np.arange(np.ceil(low / 30.0), np.floor(high / 30.0) + 1) * 30.0
        cusps = cusps[cusps != inv.hi[g]]
        if cusps.size:
            bodies.append(np.full(cusps.shape, inv.body[g]))
            kinds.append(np.zeros(cusps.shape, np.intp))
            times.append(locate(dev, np.full(cusps.shape, g), cusps))
            longitudes.append(cusps)
            retro.append(np.full(cusps.shape, d < 0))
    inside = (track.station_times >= track.start) & (track.station_times < track.end)
    s_t = (track.station_times[inside].astype(np.int64) - inv.t0_us) / US_PER_DAY
    s_q = track.station_bodies[inside]
    if s_t.size:
        bodies.append(s_q)
        kinds.append(np.ones(s_t.shape, np.intp))
        times.append(s_t)
        longitudes.append(track.station_longitudes[inside])
        # Direction after the station: the opposite of the speed just before it.
        before = np.array([inv.evaluate(int(q), np.array([t - 1e-3]))[1][0] for q, t in zip(s_q, s_t, strict=True)])
        retro.append(before > 0)
    if not bodies:
        empty = np.empty(0)
        return SkyEvents(
            np.empty(0, CODE_DTYPE), np.empty(0, CODE_DTYPE), np.empty(0, TIME_DTYPE), empty,
            np.empty(0, CODE_DTYPE), np.empty(0, bool), track.bodies,
        )  # fmt: skip
    body = np.concatenate(bodies)
    kind = np.concatenate(kinds)
    time = np.concatenate(times)
    lon = np.mod(np.concatenate(longitudes), 360.0)
    retrograde = np.concatenate(retro)
    order = np.lexsort((time, body))
    sign = np.floor(lon / 30.0).astype(np.intp) % 12
    # An ingress while retrograde enters the sign below the cusp.
    sign = np.where((kind == 0) & retrograde, (sign - 1) % 12, sign)
    assert len(SKY_EVENT_KINDS) == 2
    return SkyEvents(
        body[order].astype(CODE_DTYPE), kind[order].astype(CODE_DTYPE), days_to_datetime64(inv.t0_us, time[order]),
        lon[order], sign[order].astype(CODE_DTYPE), retrograde[order], track.bodies,
    )  # fmt: skip


def run_transits(
    xp: Any,
    asarray: Callable[[Any], Any],
    to_numpy: Callable[[Any], Any],
    plan_rows: Callable[[float], Any],
    drive: Callable[[Any, Callable[[slice, slice], None]], None],
    natal: FloatArray,
    track: TransitTrack,
    config: AspectConfig,
    points: Sequence[str],
    backend: str,
) -> TransitEvents:
    """The calculator's ``transits``: targets from ``config``, charts in chunks planned by ``plan_rows(bytes per
    chart)`` and run through ``drive(plan, reduce)``; each chunk's events are brought to NumPy at once."""
    inv = track.inversion()
    targets = Targets.build(config, points, track.bodies)
    if not targets.sides:
        return TransitEvents.empty(points, track.bodies, backend)
    dev = DeviceInversion.move(xp, inv, asarray)
    orbs_dev = asarray(targets.orbs)
    offsets_dev = asarray(targets.offsets)
    # Real charts scatter around the average (each cell passes once more or less); a low guess grows by half.
    capacity = int(1.1 * expected_events(inv, targets) * natal.shape[0]) + 1024
    builder = TransitEventsBuilder(capacity, points, track.bodies, backend, inv.t0_us)

    per_chart = bytes_per_chart(inv, targets, len(points))
    # A GPU takes each planned chunk at once; the CPU goes through it in smaller blocks of charts (see CPU_BLOCK_MB).
    step = 1 << 62 if xp_ops.numpy_like(xp) and xp is not np else max(1, int(CPU_BLOCK_MB * 2**20 // per_chart))

    def reduce(rows: slice, _cols: slice) -> None:
        for first in range(rows.start, rows.stop, step):
            block = slice(first, min(first + step, rows.stop))
            chunk = search_chunk(dev, asarray(natal[block]), targets, orbs_dev, offsets_dev, to_numpy)
            append_chunk(builder, chunk, targets, first, len(points))

    drive(plan_rows(per_chart), reduce)
    return builder.build()
