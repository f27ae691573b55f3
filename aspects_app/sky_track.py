"""The transit track: the transiting bodies' longitudes and speeds sampled over a range, with their stations.

Sampling: every ``TRACK_STEP_DAYS`` = 0.25 day from ``start − TRACK_PADDING_DAYS`` to past ``end +
TRACK_PADDING_DAYS``. Between samples the engine interpolates with cubic Hermite polynomials from the positions
and the speeds; their error is at most h⁴/384 · max|L⁗|. The Moon's largest fourth derivative (its ~6.3°, 4.9-day
and 9.6-day terms) stays below ~0.1°/day⁴, so the bound is ~0.0039/384 · 0.1° ≈ 1e-6° (0.004″) for h = 0.25 d,
far under the 0.1″ required; the planets' are smaller. ``tests/test_sky_track.py`` measures it against direct
positions at every midpoint (what it finds: under 0.01″). Speeds come from the ephemeris' central differences,
good to ~1e-7 °/day, which adds under h·1e-7/4 ° to the interpolant.

Stations (a body's speed changing sign between two samples) are refined by bisection on the ephemeris' own speed
to ~2e-7 day, and become knots of the interpolant with zero speed, so that the engine splits the track there.

This module builds the track from a positions function handed in by :mod:`aspects_app.ephemeris` (which
re-exports :func:`transit_track`), so that it depends on the engine only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
from numpy.typing import NDArray

from aspects_app.engine.errors import FieldError
from aspects_app.engine.transit_events import US_PER_DAY
from aspects_app.engine.transits import TRACK_BODIES, TransitTrack

__all__ = ["DEFAULT_BODIES", "TRACK_PADDING_DAYS", "TRACK_STEP_DAYS", "build_transit_track"]

TRACK_STEP_DAYS: Final = 0.25
# A few samples beyond each end, so that stations and passes just outside [start, end] are seen.
TRACK_PADDING_DAYS: Final = 1.0
DEFAULT_BODIES: tuple[str, ...] = TRACK_BODIES[:10]  # Sun … Pluto
# Bisection steps on a station's 0.25-day interval: 2**-20 of it is ~0.02 s.
_STATION_STEPS: Final = 20

PositionsAt = Callable[[NDArray[np.datetime64], tuple[str, ...]], tuple[NDArray[np.float64], NDArray[np.float64]]]


def _moment(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise FieldError(name, f"expected a timezone-aware datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise FieldError(name, f"naive datetime {value.isoformat()}; give it a timezone (e.g. tzinfo=UTC)")
    return value.astimezone(UTC)


def _bodies(bodies: Sequence[str] | None) -> tuple[str, ...]:
    if bodies is None:
        return DEFAULT_BODIES
    if isinstance(bodies, str):
        raise FieldError("bodies", f"expected a sequence of body names, got the string {bodies!r}")
    names = tuple(bodies)
    unknown = [name for name in names if name not in TRACK_BODIES]
    if unknown:
        raise FieldError("bodies", f"unknown body(ies) {unknown}; known: {', '.join(TRACK_BODIES)}")
    if not names:
        raise FieldError("bodies", "at least one body is required")
    if len(set(names)) != len(names):
        raise FieldError("bodies", f"duplicate names in {list(names)}")
    return names


def _as_datetime64(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.replace(tzinfo=None), "us")


def build_transit_track(
    start: datetime,
    end: datetime,
    bodies: Sequence[str] | None,
    positions: PositionsAt,
    supported: tuple[datetime, datetime],
) -> TransitTrack:
    """The track of ``bodies`` over [``start``, ``end``), from ``positions(times, bodies) -> (lon, speed)``;
    ``supported`` is the ephemeris' range, which must hold the padded track."""
    first = _moment("start", start)
    last = _moment("end", end)
    names = _bodies(bodies)
    if last <= first:
        raise FieldError("end", f"end {last.isoformat()} must be after start {first.isoformat()}")
    pad = timedelta(days=TRACK_PADDING_DAYS)
    for field, moment, inside in (
        ("start", first, first - pad >= supported[0]),
        ("end", last, last + pad <= supported[1]),
    ):
        if not inside:
            raise FieldError(
                field,
                f"{moment.isoformat()} is too close to or outside the ephemeris' range "
                f"{supported[0].isoformat()} to {supported[1].isoformat()} (DE421, less {TRACK_PADDING_DAYS:g} day)",
            )
    step_us = int(TRACK_STEP_DAYS * US_PER_DAY)
    origin = _as_datetime64(first - pad)
    span_us = int((last - first + 2 * pad) / timedelta(microseconds=1))
    times = origin + np.arange(-(-span_us // step_us) + 1, dtype=np.int64) * np.timedelta64(step_us, "us")
    lon, speed = positions(times, names)
    s_times, s_bodies, s_lon = _stations(times, speed, names, positions)
    return TransitTrack.from_samples(
        times, lon, speed, names, start=_as_datetime64(first), end=_as_datetime64(last),
        stations=(s_times, s_bodies, s_lon),
    )  # fmt: skip


def _stations(
    times: NDArray[np.datetime64], speed: NDArray[np.float64], names: tuple[str, ...], positions: PositionsAt
) -> tuple[NDArray[np.datetime64], NDArray[np.intp], NDArray[np.float64]]:
    """Moments where a body's speed is zero, bisected on the ephemeris for all stations at once."""
    rows, cols = np.nonzero(np.sign(speed[:-1]) * np.sign(speed[1:]) <= 0)
    # A sample exactly at zero would show up in two intervals; keep the first.
    keep = np.ones(rows.shape[0], bool)
    keep[1:] = ~((rows[1:] == rows[:-1] + 1) & (cols[1:] == cols[:-1]) & (speed[rows[1:], cols[1:]] == 0))
    rows, cols = rows[keep], cols[keep]
    low = times[rows].astype(np.int64)
    high = times[rows + 1].astype(np.int64)
    low_sign = np.sign(speed[rows, cols])
    if rows.size:
        for _ in range(_STATION_STEPS):
            middle = (low + high) // 2
            _, spd = positions(middle.astype("datetime64[us]"), names)
            same = np.sign(spd[np.arange(rows.shape[0]), cols]) == low_sign
            low = np.where(same, middle, low)
            high = np.where(same, high, middle)
    moments = ((low + high) // 2).astype("datetime64[us]")
    lon = positions(moments, names)[0][np.arange(rows.shape[0]), cols] if rows.size else np.empty(0)
    return moments, cols.astype(np.intp), lon
