"""Transit tracks for requests, cut from a few cached two-year windows of the sky.

Building a track costs ~0.5 s per year of sky (the ephemeris, four samples a day); searching it for one chart
costs milliseconds. Every request's sky is the same, so this process keeps the tracks of whole windows — the two
calendar years from 1 January of the request's start, which hold any range of up to a year with its padding — and
cuts each request's track out of one: the samples within [start − padding, end + padding] and the stations among
them. The cut has the same sampling step and interpolant error as :func:`aspects_app.ephemeris.transit_track`'s
track of the same range; only the sample grid's origin differs (midnight UTC instead of ``start``), which moves
the moments by the interpolant's error (< 0.01″ of arc).

A range whose window would leave the ephemeris, or longer than a window holds, is built directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from . import ephemeris
from .engine import SkyEvents, sky_events
from .engine.transits import TransitTrack
from .sky_track import DEFAULT_BODIES, TRACK_PADDING_DAYS

# Windows kept per process (each a few hundred KiB: 2 years × 4 samples a day × 11 bodies × 2 values).
MAX_WINDOWS = 8
# A window spans two calendar years plus these days, so that a range of up to WINDOW_HOLDS_DAYS starting in its
# first year fits with its padding.
_WINDOW_EXTRA_DAYS = 3
WINDOW_HOLDS_DAYS = 366


@dataclass(frozen=True)
class _Window:
    track: TransitTrack
    sky: SkyEvents  # the window's ingresses and stations, found once


_windows: OrderedDict[tuple[int, tuple[str, ...]], _Window] = OrderedDict()
_lock = threading.Lock()


def track_for(start: datetime, end: datetime, bodies: Sequence[str] | None = None) -> TransitTrack:
    """The track of ``bodies`` (default Sun … Pluto) over [``start``, ``end``), aware datetimes, cut from a cached
    window when one holds it; errors as :func:`aspects_app.ephemeris.transit_track`'s (``ValueError`` naming
    ``start``, ``end`` or ``bodies``)."""
    names = DEFAULT_BODIES if bodies is None else tuple(bodies)
    if not _fits_a_window(start, end):
        return ephemeris.transit_track(start, end, bodies)
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    window = _window(first.year, names)
    if window is None:
        return ephemeris.transit_track(start, end, bodies)
    return _cut(window.track, first, last)


def sky_for(track: TransitTrack) -> SkyEvents:
    """:func:`~aspects_app.engine.sky_events` of ``track``, taken from its window's (found once per window) when
    the track was cut from a cached one."""
    start = track.start.astype("datetime64[us]").item().replace(tzinfo=UTC)
    with _lock:
        window = _windows.get((start.year, track.bodies))
    if window is None or not window.track.times[0] <= track.times[0] <= track.times[-1] <= window.track.times[-1]:
        return sky_events(track)
    sky = window.sky
    kept = (sky.time >= track.start) & (sky.time < track.end)
    return SkyEvents(
        sky.body[kept], sky.kind[kept], sky.time[kept], sky.longitude[kept], sky.sign[kept], sky.retrograde[kept],
        sky.bodies,
    )  # fmt: skip


def _fits_a_window(start: datetime, end: datetime) -> bool:
    # Anything odd (naive datetimes, end before start) goes to the direct build, which names the problem.
    if not (isinstance(start, datetime) and isinstance(end, datetime)):
        return False
    if start.utcoffset() is None or end.utcoffset() is None or end <= start:
        return False
    return end - start <= timedelta(days=WINDOW_HOLDS_DAYS)


def _window(year: int, bodies: tuple[str, ...]) -> _Window | None:
    """The cached window of two calendar years from 1 January ``year``; None when it would leave the ephemeris
    (the caller then builds the range itself)."""
    key = (year, bodies)
    with _lock:
        found = _windows.get(key)
        if found is not None:
            _windows.move_to_end(key)
            return found
    begin = datetime(year, 1, 1, tzinfo=UTC)
    finish = datetime(year + 2, 1, 1, tzinfo=UTC) + timedelta(days=_WINDOW_EXTRA_DAYS)
    first, last = ephemeris.supported_range()
    pad = timedelta(days=TRACK_PADDING_DAYS)
    if begin - pad < first or finish + pad > last:
        return None
    # Built outside the lock: two threads may build the same window once each, which is harmless.
    track = ephemeris.transit_track(begin, finish, bodies)
    window = _Window(track, sky_events(track))
    with _lock:
        _windows[key] = window
        _windows.move_to_end(key)
        while len(_windows) > MAX_WINDOWS:
            _windows.popitem(last=False)
    return window


def _cut(window: TransitTrack, start: datetime, end: datetime) -> TransitTrack:
    """The window's samples covering [start − padding, end + padding] and its stations strictly inside them."""
    pad = np.timedelta64(int(TRACK_PADDING_DAYS * 86_400_000_000), "us")
    first = _datetime64(start)
    last = _datetime64(end)
    times = window.times
    low = max(int(np.searchsorted(times, first - pad, side="right")) - 1, 0)
    high = min(int(np.searchsorted(times, last + pad, side="left")), len(times) - 1)
    kept = slice(low, high + 1)
    inside = (window.station_times > times[low]) & (window.station_times < times[high])
    return TransitTrack.from_samples(
        times[kept],
        window.longitudes[kept],
        window.speeds[kept],
        window.bodies,
        start=first,
        end=last,
        stations=(window.station_times[inside], window.station_bodies[inside], window.station_longitudes[inside]),
    )


def _datetime64(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def clear() -> None:
    """Forget the cached windows (tests; a process that wants its memory back)."""
    with _lock:
        _windows.clear()
