"""The transit track: interpolation within 0.1″ of direct positions, padding, stations, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aspects_app.ephemeris import compute_positions, supported_range, transit_track
from aspects_app.sky_track import DEFAULT_BODIES, TRACK_PADDING_DAYS, TRACK_STEP_DAYS

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 3, 1, tzinfo=UTC)


def test_hermite_interpolation_adds_under_a_tenth_of_an_arcsecond_at_midpoints() -> None:
    track = transit_track(START, END, bodies=[*DEFAULT_BODIES, "Mean_Node"])
    assert track.step_days == TRACK_STEP_DAYS
    midpoints = track.times[:-1] + (track.times[1:] - track.times[:-1]) // 2
    direct = compute_positions(midpoints, 0.0, 0.0, points=list(track.bodies)).longitudes
    interpolated = track.interpolate(midpoints)[0]
    error = np.abs((interpolated - direct + 180.0) % 360.0 - 180.0) * 3600.0
    assert error.max() < 0.1, dict(zip(track.bodies, error.max(axis=0).round(4), strict=True))


def test_track_is_padded_and_stations_have_zero_speed() -> None:
    track = transit_track(START, END)
    pad = np.timedelta64(int(TRACK_PADDING_DAYS * 86_400e6), "us")
    assert track.times[0] <= np.datetime64("2027-01-01T00:00:00", "us") - pad
    assert track.times[-1] >= np.datetime64("2027-03-01T00:00:00", "us") + pad
    assert track.station_times.shape[0] >= 2  # Mercury's February 2027 loop at least
    speeds = compute_positions(track.station_times, 0.0, 0.0, points=list(track.bodies)).speeds
    at_station = speeds[np.arange(track.station_times.shape[0]), track.station_bodies]
    assert np.abs(at_station).max() < 1e-5


@pytest.mark.parametrize(
    ("start", "end", "bodies", "field"),
    [
        (datetime(2027, 1, 1), END, None, "start"),
        (START, datetime(2027, 3, 1), None, "end"),
        (END, START, None, "end"),
        (START, START, None, "end"),
        (START, END, ["Ascendant"], "bodies"),
        (START, END, ["Sun", "Sun"], "bodies"),
        (START, END, "Sun", "bodies"),
        (datetime(1899, 1, 1, tzinfo=UTC), END, None, "start"),
        (START, datetime(2060, 1, 1, tzinfo=UTC), None, "end"),
    ],
)
def test_bad_input_names_the_argument(start: datetime, end: datetime, bodies: object, field: str) -> None:
    with pytest.raises(ValueError) as info:
        transit_track(start, end, bodies=bodies)  # type: ignore[arg-type]
    assert getattr(info.value, "field", None) == field


def test_range_ends_within_the_padding_of_de421_are_refused() -> None:
    first, _ = supported_range()
    with pytest.raises(ValueError):
        transit_track(first + timedelta(hours=1), first + timedelta(days=5))
    track = transit_track(first + timedelta(days=2), first + timedelta(days=5))
    assert len(track) > 10
