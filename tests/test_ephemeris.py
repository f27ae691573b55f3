"""aspects_app.ephemeris against the kerykeion (Swiss Ephemeris) reference, its conventions and its input checks."""

from __future__ import annotations

import json
import socket
import urllib.request
import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skyfield.iokit
from numpy.typing import ArrayLike

from aspects_app import ephemeris
from aspects_app.engine.aspects import STANDARD_POINTS
from aspects_app.ephemeris import Positions, compute_positions, supported_range

SAMPLE = json.loads((Path(__file__).parent / "data" / "kerykeion_sample.json").read_text())
CHARTS: list[dict[str, Any]] = SAMPLE["charts"]
WHEN = [datetime.fromisoformat(chart["birth"]["utc_datetime"]) for chart in CHARTS]
LAT = np.array([chart["birth"]["lat"] for chart in CHARTS])
LON = np.array([chart["birth"]["lon"] for chart in CHARTS])

ARCSEC = 1.0 / 3600.0
MAX_ERROR_ARCSEC = 10.0
# Speed tolerances, degrees/day: the reference's planets come from Moshier's series (the Moon's speed differs
# from DE421's by up to ~2.5e-4); the angles' from Swiss Ephemeris' analytic derivative.
SPEED_TOLERANCE = {name: 1e-3 for name in STANDARD_POINTS} | {"Ascendant": 1e-2, "Medium_Coeli": 1e-2}


def reference(chart: dict[str, Any], point: str) -> dict[str, Any]:
    if point == "Mean_Node":
        return dict(chart["nodes"]["Mean_North_Lunar_Node"])
    if point in ("Ascendant", "Medium_Coeli"):
        return dict(chart["angles"][point])
    return dict(chart["planets"][point])


def reference_column(point: str, key: str) -> np.ndarray:
    return np.array([reference(chart, point)[key] for chart in CHARTS])


def angular_difference(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """a − b in degrees, wrapped into [−180, 180)."""
    return np.asarray((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0, dtype=np.float64)


@pytest.fixture(scope="module")
def sample_positions() -> Positions:
    return compute_positions(WHEN, LAT, LON)


# --- against the reference ---------------------------------------------------------------------------------------


def test_every_sample_point_within_10_arcsec(sample_positions: Positions) -> None:
    worst = {
        point: float(
            np.max(np.abs(angular_difference(sample_positions.longitudes[:, j], reference_column(point, "lon"))))
        )
        / ARCSEC
        for j, point in enumerate(STANDARD_POINTS)
    }
    summary = ", ".join(f'{point} {error:.3f}"' for point, error in worst.items())
    assert max(worst.values()) < MAX_ERROR_ARCSEC, f"max error per point: {summary}"


def test_speeds_match_reference(sample_positions: Positions) -> None:
    worst = {
        point: float(np.max(np.abs(sample_positions.speeds[:, j] - reference_column(point, "speed"))))
        for j, point in enumerate(STANDARD_POINTS)
    }
    failing = {point: error for point, error in worst.items() if error > SPEED_TOLERANCE[point]}
    summary = ", ".join(f"{point} {error:.1e}" for point, error in worst.items())
    assert not failing, f"max speed error per point (°/day): {summary}"


def test_retrograde_flags_match_reference(sample_positions: Positions) -> None:
    for j, point in enumerate(STANDARD_POINTS):
        expected = reference_column(point, "retrograde").astype(bool)
        assert np.array_equal(sample_positions.retrograde[:, j], expected), point
    # The sample has retrograde planets, so the comparison above is not vacuous.
    assert sample_positions.retrograde[:, :10].any()


def test_shortcuts_agree_with_skyfields_default_recipe(sample_positions: Positions) -> None:
    """IAU 2000B nutation and Sun-only deflection move nothing by more than a few mas."""
    from skyfield.framelib import ecliptic_frame

    sky = ephemeris._sky()
    jd = np.array([(w - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1) + 2440587.5 for w in WHEN])
    t = sky.timescale.ut1_jd(jd)
    earth = sky.earth.at(t)
    for j, point in enumerate(STANDARD_POINTS[:10]):
        _, lon, _ = earth.observe(sky.targets[point]).apparent().frame_latlon(ecliptic_frame)
        difference = angular_difference(sample_positions.longitudes[:, j], lon.degrees)
        assert np.max(np.abs(difference)) < 0.01 * ARCSEC, point


# Swiss Ephemeris 2.10.03 (pyswisseph, Moshier as in the reference), calc_ut with FLG_SPEED, around stations:
# (planet, UTC, longitude, speed). The sign of the speed must come out the same on both sides.
STATIONS = [
    ("Mercury", "2000-02-21T11:46:24", 347.17823809923374, 0.0070800299700377305),
    ("Mercury", "2000-02-21T12:36:24", 347.17838133025737, 0.0011865844330518796),
    ("Mercury", "2000-02-21T12:56:24", 347.1783813287986, -0.0011704542799248628),
    ("Mercury", "2000-02-21T13:46:24", 347.17823811467457, -0.007062146302136627),
    ("Mars", "2003-07-29T07:26:28", 340.13378515140187, 9.746488418967491e-05),
    ("Mars", "2003-07-29T07:46:28", 340.13378517698055, -8.867970778915339e-05),
    ("Pluto", "1990-02-19T05:30:31", 227.78754509819848, 2.4487545797486455e-05),
    ("Pluto", "1990-02-19T07:30:31", 227.78754509494928, -2.49097218564383e-05),
]


@pytest.mark.parametrize(("point", "when", "lon", "speed"), STATIONS)
def test_speed_sign_near_stations(point: str, when: str, lon: float, speed: float) -> None:
    result = compute_positions(np.array([when], dtype="datetime64[s]"), 0.0, 0.0, points=[point])
    assert abs(angular_difference(result.longitudes[0, 0], lon)) < 2 * ARCSEC
    assert np.sign(result.speeds[0, 0]) == np.sign(speed)
    assert result.speeds[0, 0] == pytest.approx(speed, abs=2e-5)


# Planets seen through the solar disc, where a point-mass Sun would deflect their light by arcminutes; Swiss
# Ephemeris 2.10.03 as above. Mercury passes 0.001 solar radii from the centre.
BEHIND_THE_SUN = [
    ("Mercury", "1954-05-08T23:02:24", 47.79852937432336),
    ("Uranus", "1945-06-04T05:42:30", 73.22992284703024),
    ("Jupiter", "1949-01-01T03:34:00", 280.4066902421263),
    ("Neptune", "1920-08-03T23:31:12", 131.26983946403018),
]


@pytest.mark.parametrize(("point", "when", "lon"), BEHIND_THE_SUN)
def test_planet_behind_the_solar_disc(point: str, when: str, lon: float) -> None:
    result = compute_positions(np.array([when], dtype="datetime64[s]"), 0.0, 0.0, points=[point])
    assert abs(angular_difference(result.longitudes[0, 0], lon)) < 1 * ARCSEC


# Swiss Ephemeris 2.10.03 houses_ex2 inside the polar circles (Placidus falls back to Porphyry there), where the
# eastern horizon point can trail the MC and Swiss Ephemeris turns it by 180°: (UTC, lat, lon, ASC, MC).
POLAR = [
    ("1972-03-08T04:21:03", -88.01922470660172, -162.9599230807466, 181.99022382511677, 69.92020160018235),
    ("1962-10-24T04:53:36", 81.23389170807802, -139.81176820864232, 338.17584951206163, 323.373317065932),
    ("1940-10-19T06:22:22", 72.48783082398789, 179.4667795250366, 312.1604029408512, 300.43567974548614),
    ("2036-07-22T22:03:41", -81.99917982012592, 154.8661277933943, 191.12862929062553, 68.74115165209663),
]


@pytest.mark.parametrize(("when", "lat", "lon", "asc", "mc"), POLAR)
def test_polar_angles_follow_swiss_ephemeris(when: str, lat: float, lon: float, asc: float, mc: float) -> None:
    result = compute_positions(np.array([when], dtype="datetime64[s]"), lat, lon, points=["Ascendant", "Medium_Coeli"])
    assert abs(angular_difference(result.longitudes[0, 0], asc)) < 0.1 * ARCSEC
    assert abs(angular_difference(result.longitudes[0, 1], mc)) < 0.1 * ARCSEC


def test_ascendant_is_always_within_180_degrees_after_the_mc() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    when = rng.integers(-2_000_000_000, 2_500_000_000, n).astype("datetime64[s]")
    lat = np.concatenate([rng.uniform(-90.0, 90.0, n - 4), [90.0, -90.0, 66.56, -66.56]])
    result = compute_positions(when, lat, rng.uniform(-180.0, 180.0, n), points=["Ascendant", "Medium_Coeli"])
    assert np.all(np.isfinite(result.longitudes)) and np.all(np.isfinite(result.speeds))
    ahead = (result.longitudes[:, 0] - result.longitudes[:, 1]) % 360.0
    assert np.all(ahead <= 180.0)


def test_poles_give_the_limit_not_an_error() -> None:
    hours = [WHEN[0] + timedelta(hours=h) for h in range(0, 24, 3)]
    result = compute_positions(hours * 2, [90.0] * 8 + [-90.0] * 8, 0.0, points=["Ascendant", "Medium_Coeli"])
    # The horizon is the equator there, so the Ascendant is an equinox (the one after the MC) and stands still.
    asc = result.longitudes[:, 0]
    to_equinox = np.minimum(np.abs(angular_difference(asc, 0.0)), np.abs(angular_difference(asc, 180.0)))
    assert np.all(to_equinox < 1e-6)
    assert np.all(np.abs(result.speeds[:, 0]) < 1e-6)
    assert np.all((asc - result.longitudes[:, 1]) % 360.0 <= 180.0)


# --- shape, vectorisation and input forms -----------------------------------------------------------------------


def test_result_shape_range_and_read_only(sample_positions: Positions) -> None:
    assert sample_positions.points == STANDARD_POINTS
    for array in (sample_positions.longitudes, sample_positions.speeds):
        assert array.shape == (len(CHARTS), len(STANDARD_POINTS))
        assert array.dtype == np.float64
        assert not array.flags.writeable
    assert np.all((sample_positions.longitudes >= 0.0) & (sample_positions.longitudes < 360.0))
    with pytest.raises(ValueError):
        sample_positions.longitudes[0, 0] = 1.0


def test_vectorised_equals_per_chart(sample_positions: Positions) -> None:
    for i in range(len(CHARTS)):
        single = compute_positions([WHEN[i]], LAT[i], LON[i])
        np.testing.assert_allclose(single.longitudes[0], sample_positions.longitudes[i], rtol=0, atol=1e-9)
        np.testing.assert_allclose(single.speeds[0], sample_positions.speeds[i], rtol=0, atol=1e-7)


def test_chunked_batches_equal_one_batch(monkeypatch: pytest.MonkeyPatch, sample_positions: Positions) -> None:
    monkeypatch.setattr(ephemeris, "_CHUNK", 7)
    chunked = compute_positions(WHEN, LAT, LON)
    np.testing.assert_allclose(chunked.longitudes, sample_positions.longitudes, rtol=0, atol=1e-9)
    np.testing.assert_allclose(chunked.speeds, sample_positions.speeds, rtol=0, atol=1e-7)


def test_input_forms_agree(sample_positions: Positions) -> None:
    as_datetime64 = np.array([w.replace(tzinfo=None) for w in WHEN], dtype="datetime64[us]")
    berlin = timezone(timedelta(hours=1))
    as_local = [w.astimezone(berlin) for w in WHEN]
    for form in (as_datetime64, as_local, tuple(WHEN), np.array(WHEN, dtype=object)):
        result = compute_positions(form, list(LAT), tuple(LON))
        np.testing.assert_array_equal(result.longitudes, sample_positions.longitudes)
    one = compute_positions(WHEN[3], LAT[3], LON[3])
    np.testing.assert_array_equal(one.longitudes[0], sample_positions.longitudes[3])
    scalar_place = compute_positions(WHEN[:3], 52.52, 13.405)
    np.testing.assert_array_equal(
        scalar_place.longitudes, compute_positions(WHEN[:3], [52.52] * 3, [13.405] * 3).longitudes
    )


def test_points_subset_in_requested_order(sample_positions: Positions) -> None:
    wanted = ("Medium_Coeli", "Moon", "Pluto", "Mean_Node")
    result = compute_positions(WHEN, LAT, LON, points=wanted)
    assert result.points == wanted
    columns = [STANDARD_POINTS.index(name) for name in wanted]
    np.testing.assert_allclose(result.longitudes, sample_positions.longitudes[:, columns], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.speeds, sample_positions.speeds[:, columns], rtol=0, atol=1e-7)


@pytest.mark.parametrize("empty", [[], (), np.array([], dtype="datetime64[s]"), np.array([], dtype=object)], ids=repr)
def test_empty_input_returns_empty_arrays(empty: Any) -> None:
    result = compute_positions(empty, [], [])
    assert result.longitudes.shape == result.speeds.shape == (0, len(STANDARD_POINTS))
    assert compute_positions(empty, 0.0, 0.0, points=["Sun"]).longitudes.shape == (0, 1)


def test_supported_range_ends_are_accepted() -> None:
    first, last = supported_range()
    assert datetime(1899, 7, 29, tzinfo=UTC) <= first < datetime(1899, 7, 31, tzinfo=UTC)
    assert datetime(2053, 10, 7, tzinfo=UTC) < last <= datetime(2053, 10, 9, tzinfo=UTC)
    result = compute_positions([first, last], 0.0, 0.0)
    assert np.all(np.isfinite(result.longitudes)) and np.all(np.isfinite(result.speeds))


# --- errors ------------------------------------------------------------------------------------------------------

GOOD = datetime(1990, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"datetimes_utc": [datetime(1990, 1, 1, 12)]}, r"^datetimes_utc: naive datetime .* at index 0"),
        ({"datetimes_utc": [GOOD, datetime(1990, 1, 2)]}, r"^datetimes_utc: naive datetime .* at index 1"),
        ({"datetimes_utc": [datetime(1850, 1, 1, tzinfo=UTC)]}, r"^datetimes_utc: 1850-01-01.* outside"),
        ({"datetimes_utc": [datetime(1899, 7, 29, tzinfo=UTC)]}, r"^datetimes_utc: .* outside .*DE421"),
        ({"datetimes_utc": [datetime(2053, 10, 9, tzinfo=UTC)]}, r"^datetimes_utc: .* outside"),
        ({"datetimes_utc": np.array(["2100-01-01"], dtype="datetime64[D]")}, r"^datetimes_utc: 2100-01-01.* outside"),
        ({"datetimes_utc": np.array(["NaT"], dtype="datetime64[s]")}, r"^datetimes_utc: NaT at index 0"),
        ({"datetimes_utc": [date(1990, 1, 1)]}, r"^datetimes_utc: .*a date without a time"),
        ({"datetimes_utc": ["1990-01-01T00:00:00Z"]}, r"^datetimes_utc: expected a timezone-aware datetime"),
        ({"datetimes_utc": "1990-01-01T00:00:00Z"}, r"^datetimes_utc: expected a sequence"),
        ({"datetimes_utc": 2447893.0}, r"^datetimes_utc: expected a sequence"),
        ({"datetimes_utc": np.array([["1990-01-01"]], dtype="datetime64[s]")}, r"^datetimes_utc: expected a 1-D"),
        ({"lat": 90.5}, r"^lat: 90.5 at index 0 is outside \[−90, 90\]"),
        ({"lat": [-91.0]}, r"^lat: -91.0 at index 0 is outside"),
        ({"lat": float("nan")}, r"^lat: not a finite number"),
        ({"lat": [float("inf")]}, r"^lat: not a finite number"),
        ({"lat": "52.5"}, r"^lat: expected real numbers"),
        ({"lat": [1.0, 2.0]}, r"^lat: 2 values for 1 datetimes"),
        ({"lat": [[1.0]]}, r"^lat: expected a number or a 1-D sequence"),
        ({"lon": 180.5}, r"^lon: 180.5 at index 0 is outside \[−180, 180\]"),
        ({"lon": [-181.0]}, r"^lon: -181.0 at index 0 is outside"),
        ({"lon": float("-inf")}, r"^lon: not a finite number"),
        ({"lon": []}, r"^lon: 0 values for 1 datetimes"),
        ({"points": ["Sun", "Chiron"]}, r"^points: unknown point\(s\) \['Chiron'\]"),
        ({"points": ["Sun", "Sun"]}, r"^points: duplicate names"),
        ({"points": "Sun"}, r"^points: expected a sequence of point names, got the string"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"datetimes_utc": [GOOD], "lat": 10.0, "lon": 20.0} | kwargs
    with pytest.raises(ValueError, match=match):
        compute_positions(**arguments)


def test_mismatched_lengths_between_datetimes_and_places() -> None:
    with pytest.raises(ValueError, match=r"^lon: 2 values for 3 datetimes"):
        compute_positions([GOOD] * 3, [1.0, 2.0, 3.0], [1.0, 2.0])


def test_errors_name_the_first_offending_index() -> None:
    with pytest.raises(ValueError, match=r"^lat: 95.0 at index 2 "):
        compute_positions([GOOD] * 4, [0.0, 10.0, 95.0, 96.0], 0.0)


# --- offline -----------------------------------------------------------------------------------------------------


def test_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the ephemeris tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(skyfield.iokit, "download", refuse)
    # Load the ephemeris and timescale afresh, under the block, and see no stale-data warning on the way.
    ephemeris._sky.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute_positions(WHEN[:5], LAT[:5], LON[:5])
    assert result.longitudes.shape == (5, len(STANDARD_POINTS))
    assert not [w for w in caught if "skyfield" in str(w.filename) or "expire" in str(w.message)]


def test_ephemeris_is_loaded_once() -> None:
    assert ephemeris._sky() is ephemeris._sky()
