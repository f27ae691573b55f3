"""House cusps (aspects_app.houses, via ephemeris.compute_houses) against Swiss Ephemeris, their geometry, inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from aspects_app.engine.errors import FieldError
from aspects_app.ephemeris import HouseCusps, compute_houses, compute_positions
from aspects_app.houses import HOUSE_SYSTEMS, houses_from_armc

SAMPLE = json.loads((Path(__file__).parent / "data" / "house_sample.json").read_text())
BIRTHS: list[dict[str, Any]] = SAMPLE["births"]
UNIX_EPOCH_JD = 2440587.5
WHEN = [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=birth["jd_ut"] - UNIX_EPOCH_JD) for birth in BIRTHS]
LAT = np.array([birth["lat"] for birth in BIRTHS])
LON = np.array([birth["lon"] for birth in BIRTHS])
ARCSEC = 1.0 / 3600.0
# Topocentric cusps stop being monotone from about |lat| 65° (Swiss Ephemeris gives them all the same).
TOPOCENTRIC_ORDERED_LAT = 64.0

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
charts = st.lists(
    st.tuples(
        st.floats(0.0, 360.0, exclude_max=True),  # ARMC
        st.floats(-90.0, 90.0),  # latitude
        st.floats(22.0, 24.5),  # obliquity (its range over ±10,000 years)
    ),
    min_size=1,
    max_size=8,
)
systems = st.sampled_from(HOUSE_SYSTEMS)


def circular_difference(a: Any, b: Any) -> NDArray[np.float64]:
    """|a − b| on the circle, degrees."""
    difference: NDArray[np.float64] = np.abs(np.mod(np.asarray(a) - np.asarray(b) + 180.0, 360.0) - 180.0)
    return difference


def from_rows(rows: list[tuple[float, float, float]], system: str) -> tuple[HouseCusps, NDArray[np.float64]]:
    armc, lat, eps = (np.array(column) for column in zip(*rows, strict=True))
    return houses_from_armc(armc, lat, eps, system), lat


def directed_arcs(houses: HouseCusps) -> NDArray[np.float64]:
    """(N, 12) arc of each house from its cusp to the next, in the chart's direction."""
    direction = np.where(houses.clockwise, -1.0, 1.0)[:, None]
    return np.mod(direction * (np.roll(houses.cusps, -1, axis=1) - houses.cusps), 360.0)


# About 100 m: closer to a pole the quadrant systems are undefined or ill-conditioned.
POLE_MARGIN = 1e-3


def well_ordered(system: str, lat: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Charts whose cusps are in strict order: not topocentric's high latitudes, and nowhere within POLE_MARGIN of a
    pole, where the horizon is the equator and cusps coincide or round apart (found by hypothesis: Regiomontanus
    cusps 1-4 at one longitude at latitude 90, ARMC 0; Alcabitius arcs that do not close within 1e-6° of it)."""
    off_pole = np.abs(lat) < 90.0 - POLE_MARGIN
    if system == "topocentric":
        return off_pole & (np.abs(lat) <= TOPOCENTRIC_ORDERED_LAT)
    return off_pole


# -- Swiss Ephemeris reference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", HOUSE_SYSTEMS)
def test_every_system_reproduces_swiss_ephemeris_within_one_arcsecond(system: str) -> None:
    houses = compute_houses(WHEN, LAT, LON, system=system)
    assert houses.system == system
    assert houses.cusps.shape == (len(BIRTHS), 12)
    for i, birth in enumerate(BIRTHS):
        reference = birth["houses"][system]
        undefined = "error" in reference
        assert houses.fallback[i] == undefined, (i, birth["lat"])
        # Where Swiss Ephemeris refuses the system, the chart must carry its Porphyry cusps.
        expected = birth["houses"]["porphyry"] if undefined else reference
        assert circular_difference(houses.cusps[i], expected["cusps"]).max() < ARCSEC, (i, birth["lat"])
        assert circular_difference(houses.asc[i], expected["asc"]) < ARCSEC, i
        assert circular_difference(houses.mc[i], expected["mc"]) < ARCSEC, i


def test_the_reference_covers_southern_polar_and_undefined_charts() -> None:
    """Guards the test above: the sample must exercise the cases it is meant to."""
    polar = np.abs(LAT) > 66.6
    assert (LAT < -66.6).any() and (LAT > 66.6).any() and (LAT < 0).sum() >= 10
    undefined = np.array(["error" in birth["houses"]["placidus"] for birth in BIRTHS])
    assert np.array_equal(undefined, polar)
    assert compute_houses(WHEN, LAT, LON, system="regiomontanus").clockwise.any()


def test_angles_are_the_ephemeris_ascendant_and_midheaven() -> None:
    """One ARMC and obliquity feed both: cusps 1 and 10 cannot drift from compute_positions' angles."""
    angles = compute_positions(WHEN, LAT, LON, points=["Ascendant", "Medium_Coeli"]).longitudes
    for system in ("porphyry", "placidus", "regiomontanus"):
        houses = compute_houses(WHEN, LAT, LON, system=system)
        assert circular_difference(houses.asc, angles[:, 0]).max() < 1e-9
        # Clockwise charts report the turned MC (the IC), as Swiss Ephemeris does.
        mc = np.where(houses.clockwise, angles[:, 1] + 180.0, angles[:, 1])
        assert circular_difference(houses.mc, mc).max() < 1e-9
        assert circular_difference(houses.cusps[:, 0], houses.asc).max() < 1e-9
        assert circular_difference(houses.cusps[:, 9], houses.mc).max() < 1e-9


# -- latitudes, ordering, the 0°/360° seam ----------------------------------------------------------------------


@pytest.mark.parametrize("system", ["placidus", "koch"])
def test_fallback_starts_exactly_at_the_polar_circle(system: str) -> None:
    eps = 23.44
    lat = np.array([90.0 - eps - 1e-9, 90.0 - eps, -(90.0 - eps - 1e-9), -(90.0 - eps), 89.0, -90.0, 90.0])
    houses = houses_from_armc(np.full(lat.shape, 123.0), lat, np.full(lat.shape, eps), system)
    assert houses.fallback.tolist() == [False, True, False, True, True, True, True]
    porphyry = houses_from_armc(np.full(lat.shape, 123.0), lat, np.full(lat.shape, eps), "porphyry")
    assert np.array_equal(houses.cusps[houses.fallback], porphyry.cusps[houses.fallback])


@PROPERTY
@given(charts, systems)
def test_southern_charts_mirror_northern_ones(rows: list[tuple[float, float, float]], system: str) -> None:
    """Latitude −φ with ARMC + 180° is the same sky seen from the antipode: every cusp turns by 180°."""
    # At a pole the horizon is the equator and the cusps are undefined (the 1e-10° step back, as swehouse.c takes,
    # meets tan φ ~ 6e11). Alcabitius stays ill-conditioned nearby, through the Ascendant's semi-arc: rounding
    # gives the two sides 0.34° apart at the pole, 3e-4° at 1e-4° from it, 4e-8° at 0.01°, 1.5e-9° at 0.1°.
    margin = 0.1 if system == "alcabitius" else 1e-6
    assume(all(abs(lat) < 90.0 - margin for _, lat, _ in rows))
    north, lat = from_rows(rows, system)
    south, _ = from_rows([(armc + 180.0, -lat, eps) for armc, lat, eps in rows], system)
    assert np.array_equal(north.fallback, south.fallback)
    assert np.array_equal(north.clockwise, south.clockwise)
    # Whole signs jump by 30° where rounding puts the Ascendant on the other side of a sign boundary.
    clear = circular_difference(np.mod(north.asc + 15.0, 30.0), 15.0) > 1e-6
    rows_to_check = clear if system == "whole_sign" else np.ones(lat.shape, dtype=bool)
    assert circular_difference(south.cusps[rows_to_check], north.cusps[rows_to_check] + 180.0).max(initial=0) < 1e-6


@PROPERTY
@given(charts, systems)
def test_cusps_are_ordered_and_houses_fill_the_circle(rows: list[tuple[float, float, float]], system: str) -> None:
    houses, lat = from_rows(rows, system)
    assert ((houses.cusps >= 0.0) & (houses.cusps < 360.0)).all()
    ordered = well_ordered(system, lat)
    arcs = directed_arcs(houses)[ordered]
    assert (arcs > 0.0).all()
    assert np.allclose(arcs.sum(axis=1), 360.0, atol=1e-9)
    # Clockwise houses only where Swiss Ephemeris turns the chart.
    if system not in ("regiomontanus", "campanus", "topocentric"):
        assert not houses.clockwise.any()


@pytest.mark.parametrize("system", HOUSE_SYSTEMS)
def test_mc_at_the_seam(system: str) -> None:
    """ARMC at and around 0°/360° puts the MC on the seam: cusps stay in [0, 360) and in order."""
    tiny = 1e-12
    armc = np.array([0.0, tiny, 360.0 - tiny, 360.0, -tiny, 180.0])
    lat = np.array([0.0, 40.0, -40.0, 51.5, 60.0, -33.9])
    houses = houses_from_armc(armc, lat, np.full(armc.shape, 23.44), system)
    assert ((houses.cusps >= 0.0) & (houses.cusps < 360.0)).all()
    assert circular_difference(houses.mc, [0.0, 0.0, 0.0, 0.0, 0.0, 180.0]).max() < 1e-9
    arcs = directed_arcs(houses)
    assert (arcs > 0.0).all() and np.allclose(arcs.sum(axis=1), 360.0)


# -- properties of single systems -------------------------------------------------------------------------------


@PROPERTY
@given(charts)
def test_equal_houses_are_30_degrees_apart_from_the_ascendant(rows: list[tuple[float, float, float]]) -> None:
    houses, _ = from_rows(rows, "equal")
    expected = houses.asc[:, None] + 30.0 * np.arange(12)
    assert circular_difference(houses.cusps, expected).max() < 1e-9


@PROPERTY
@given(charts, systems)
def test_opposite_cusps_are_180_degrees_apart(rows: list[tuple[float, float, float]], system: str) -> None:
    houses, _ = from_rows(rows, system)
    assert circular_difference(houses.cusps[:, 6:], houses.cusps[:, :6] + 180.0).max() < 1e-9


@PROPERTY
@given(charts)
def test_whole_sign_cusps_are_sign_boundaries_from_the_ascendant_sign(rows: list[tuple[float, float, float]]) -> None:
    houses, _ = from_rows(rows, "whole_sign")
    assert (np.mod(houses.cusps, 30.0) == 0.0).all()
    assert np.array_equal(houses.cusps[:, 0], np.floor(houses.asc / 30.0) * 30.0)
    assert circular_difference(np.diff(houses.cusps, axis=1), 30.0).max() == 0.0


# -- house_of ---------------------------------------------------------------------------------------------------


def house_by_scan(cusps: NDArray[np.float64], clockwise: bool, longitude: float) -> int:
    """The cusp most recently passed, walking from cusp 1 in the chart's direction (well-ordered charts)."""
    direction = -1.0 if clockwise else 1.0
    passed = 1
    for k in range(12):
        if (direction * (cusps[k] - cusps[0])) % 360.0 <= (direction * (longitude - cusps[0])) % 360.0:
            passed = k + 1
    return passed


@PROPERTY
@given(charts, systems, st.lists(st.floats(-720.0, 720.0), min_size=1, max_size=6))
def test_house_of_agrees_with_a_per_point_scan(
    rows: list[tuple[float, float, float]], system: str, extra: list[float]
) -> None:
    houses, lat = from_rows(rows, system)
    n = len(rows)
    # Every cusp itself (it opens its house), points just after each cusp, and arbitrary longitudes.
    points = np.hstack((houses.cusps, houses.cusps + 1e-6, np.tile(extra, (n, 1))))
    found = houses.house_of(points)
    assert found.shape == points.shape and found.dtype == np.int8
    assert ((found >= 1) & (found <= 12)).all()
    if system != "topocentric":  # its cusps may coincide or cross at high latitudes
        ordered = well_ordered(system, lat)  # a house of no width (cusps coinciding at a pole) holds no point
        assert np.array_equal(found[ordered, :12], np.tile(np.arange(1, 13), (int(ordered.sum()), 1)))
    # Within rounding of a cusp the two frames may round apart: compare arbitrary points clear of every cusp.
    clear = circular_difference(points[:, :, None], houses.cusps[:, None, :]).min(axis=2) > 1e-9
    clear[:, :12] = True
    for i in np.flatnonzero(well_ordered(system, lat)):
        expected = [house_by_scan(houses.cusps[i], bool(houses.clockwise[i]), float(p)) for p in points[i]]
        assert found[i][clear[i]].tolist() == np.array(expected)[clear[i]].tolist()


def test_house_of_with_clockwise_houses() -> None:
    """A polar Regiomontanus chart turned by Swiss Ephemeris: houses advance with decreasing longitude."""
    houses = compute_houses(WHEN, LAT, LON, system="regiomontanus")
    i = int(np.argmax(houses.clockwise))
    one = HouseCusps(
        cusps=houses.cusps[i : i + 1],
        system="regiomontanus",
        fallback=houses.fallback[i : i + 1],
        asc=houses.asc[i : i + 1],
        mc=houses.mc[i : i + 1],
        clockwise=houses.clockwise[i : i + 1],
    )
    just_before_cusps = one.cusps + 1e-6  # clockwise, "before" a cusp is at a larger longitude
    assert one.house_of(just_before_cusps).tolist() == [[12, *range(1, 12)]]
    assert one.house_of(one.cusps - 1e-6).tolist() == [list(range(1, 13))]


# -- input --------------------------------------------------------------------------------------------------------


def test_results_are_read_only_and_empty_input_is_fine() -> None:
    houses = compute_houses(WHEN[:3], LAT[:3], LON[:3], system="koch")
    for array in (houses.cusps, houses.fallback, houses.asc, houses.mc, houses.clockwise):
        assert not array.flags.writeable
    empty = compute_houses([], [], [], system="equal")
    assert empty.cusps.shape == (0, 12) and empty.fallback.shape == (0,)
    assert empty.house_of(np.empty((0, 3))).shape == (0, 3)


def test_scalars_broadcast_and_datetime64_reads_as_utc() -> None:
    when = np.array(["2000-01-01T12:00:00", "2020-06-21T00:00:00"], dtype="datetime64[s]")
    aware = [datetime(2000, 1, 1, 12, tzinfo=UTC), datetime(2020, 6, 21, tzinfo=UTC)]
    houses = compute_houses(when, 51.5, -0.1, system="campanus")
    assert np.array_equal(houses.cusps, compute_houses(aware, [51.5, 51.5], [-0.1, -0.1], system="campanus").cusps)
    assert compute_houses(aware, 51.5, -0.1).system == "placidus"


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"system": "vedic"}, "system", "valid systems: placidus, koch"),
        ({"system": None}, "system", "unknown house system"),
        ({"lat": [float("nan")]}, "lat", "not a finite number"),
        ({"lat": [91.0]}, "lat", "outside"),
        ({"lon": [-180.5]}, "lon", "outside"),
        ({"lat": [10.0, 20.0]}, "lat", "2 values for 1 datetimes"),
        ({"datetimes_utc": [datetime(2000, 1, 1)]}, "datetimes_utc", "naive datetime"),
        ({"datetimes_utc": [datetime(1890, 1, 1, tzinfo=UTC)]}, "datetimes_utc", "outside the ephemeris' range"),
        ({"datetimes_utc": "2000-01-01"}, "datetimes_utc", "expected a sequence"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, Any], field: str, message: str) -> None:
    arguments: dict[str, Any] = {"datetimes_utc": [datetime(2000, 1, 1, tzinfo=UTC)], "lat": [10.0], "lon": [20.0]}
    with pytest.raises(FieldError) as error:
        compute_houses(**(arguments | kwargs))
    assert error.value.field == field
    assert message in str(error.value)


@pytest.mark.parametrize(
    "longitudes", [np.zeros(2), np.zeros((3, 2)), np.array([[0.0, np.nan], [1.0, 2.0]]), np.array([["a"], ["b"]])]
)
def test_house_of_refuses_bad_longitudes(longitudes: NDArray[Any]) -> None:
    houses = compute_houses(WHEN[:2], LAT[:2], LON[:2], system="equal")
    with pytest.raises(FieldError) as error:
        houses.house_of(longitudes)
    assert error.value.field == "longitudes"


@pytest.mark.parametrize(
    ("armc", "lat", "obliquity", "field"),
    [
        ([float("inf")], [10.0], [23.4], "armc"),
        ([[1.0]], [10.0], [23.4], "armc"),
        ([10.0], [-90.5], [23.4], "lat"),
        ([10.0, 20.0], [10.0], [23.4, 23.4], "lat"),
        ([10.0], [10.0], [float("nan")], "obliquity"),
        ([10.0], [10.0], [50.0], "obliquity"),
    ],
)
def test_houses_from_armc_refuses_bad_angles(armc: Any, lat: Any, obliquity: Any, field: str) -> None:
    with pytest.raises(FieldError) as error:
        houses_from_armc(armc, lat, obliquity, "porphyry")
    assert error.value.field == field
