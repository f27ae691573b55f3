"""House cusps for many charts at once, from the sidereal angle of the meridian (ARMC), the latitude and the obliquity.

Every formula follows Swiss Ephemeris' ``swehouse.c`` (``CalcH``), so that the cusps agree with it (the reference,
``tests/data/house_sample.json``, is ``swe.houses_ex``); ``docs/houses.md`` lists the systems and the measured
agreement. All angles are degrees. :func:`aspects_app.ephemeris.compute_houses` turns instants and places into the
ARMC and the true obliquity (the same ones its Ascendant and Midheaven use) and calls :func:`houses_from_armc`, so
this module depends on the engine only.

Conventions, each Swiss Ephemeris' own:

* Inside the polar circles (|lat| ≥ 90° − obliquity) the eastern horizon point can trail the MC. Porphyry, equal,
  whole-sign, Alcabitius and Morinus then take the Ascendant as that point + 180° (cusps counter-clockwise as
  usual); Regiomontanus, Campanus and topocentric turn the Ascendant *and* the MC by 180°, so their houses run
  clockwise (``HouseCusps.clockwise``). Topocentric cusps there need not even be monotone: the system is not
  meant for those latitudes, and Swiss Ephemeris gives them anyway.
* Placidus and Koch are undefined inside the polar circles (Placidus also where its iteration does not converge,
  next to them): the chart gets Porphyry's cusps and ``fallback`` is set. Nothing is raised, no latitude clamped.
* At the poles themselves the latitude is taken 1e-10° short of ±90°, where every formula is finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aspects_app.engine.errors import FieldError

__all__ = ["HOUSE_SYSTEMS", "HouseCusps", "check_system", "houses_from_armc"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

HOUSE_SYSTEMS: Final = (
    "placidus",
    "koch",
    "porphyry",
    "regiomontanus",
    "campanus",
    "equal",
    "whole_sign",
    "alcabitius",
    "morinus",
    "topocentric",
)

# Swiss Ephemeris' VERY_SMALL: the pole offset and the "declination is zero" test of its Placidus iteration.
_VERY_SMALL: Final = 1e-10
# Placidus' iteration stops when a cusp moves less than this (0.01″) and gives up after this many steps, exactly as
# swehouse.c does, so the two agree on the cusps and on which charts fall back.
_PLACIDUS_TOLERANCE: Final = 1.0 / 360000.0
_PLACIDUS_MAX_STEPS: Final = 100
# house_of compares every point with every cusp; rows per block keep that (rows, P, 12) array near 32 MiB.
_HOUSE_OF_BLOCK_ELEMENTS: Final = 1 << 22

# Cusps 11, 12, 2, 3 (the ones a quadrant system computes; the rest are opposite) in that column order.
_QUADRANT_OFFSETS: Final = np.array([30.0, 60.0, 120.0, 150.0])
_PLACIDUS_DIVISORS: Final = np.array([3.0, 1.5, 1.5, 3.0])


@dataclass(frozen=True, eq=False)
class HouseCusps:
    """House cusps of N charts in one system; arrays are read-only.

    ``cusps[:, k - 1]`` is the ecliptic longitude (degrees in [0, 360), tropical, of date) that opens house k.
    ``asc`` and ``mc`` are the Ascendant and Midheaven as Swiss Ephemeris reports them with this system (they are
    cusps 1 and 10 for every quadrant system; inside the polar circles see the module notes). ``fallback`` marks the
    charts where the system is undefined and the cusps are Porphyry's. ``clockwise`` marks the charts whose houses
    run clockwise (Regiomontanus, Campanus and topocentric inside the polar circles with the MC below the horizon).
    """

    cusps: FloatArray  # (N, 12)
    system: str
    fallback: BoolArray  # (N,)
    asc: FloatArray  # (N,)
    mc: FloatArray  # (N,)
    clockwise: BoolArray  # (N,)

    def house_of(self, longitudes: ArrayLike) -> NDArray[np.int8]:
        """House numbers 1..12 of ``longitudes`` (N, P), degrees, row i in chart i.

        House k is the half-open arc from cusp k to cusp k + 1 (12 to 1) in the chart's direction: a point exactly
        on a cusp is in the house that cusp opens. Where arcs overlap (only topocentric cusps in polar latitudes,
        which wind round the circle more than once) the lowest-numbered house containing the point wins; where
        rounding leaves a point within an ulp outside every arc, it goes to the arc it misses by least.
        """
        points = np.asarray(longitudes)
        if points.dtype.kind not in "iuf":
            raise FieldError("longitudes", f"expected real numbers, got {points.dtype} values")
        n = self.cusps.shape[0]
        if points.ndim != 2 or points.shape[0] != n:
            raise FieldError("longitudes", f"expected shape ({n}, P), one row per chart, got {points.shape}")
        points = points.astype(np.float64)
        if not np.isfinite(points).all():
            raise FieldError("longitudes", "not a finite number")
        houses = np.empty(points.shape, dtype=np.int8)
        rows = max(1, _HOUSE_OF_BLOCK_ELEMENTS // max(1, 12 * points.shape[1]))
        for start in range(0, n, rows):
            block = slice(start, start + rows)
            houses[block] = _house_numbers(self.cusps[block], self.clockwise[block], points[block])
        return houses


def _house_numbers(cusps: FloatArray, clockwise: BoolArray, points: FloatArray) -> NDArray[np.int8]:
    direction = np.where(clockwise, -1.0, 1.0)[:, None]
    arcs = np.mod(direction * (np.roll(cusps, -1, axis=1) - cusps), 360.0)  # (n, 12)
    offsets = np.mod(direction[:, :, None] * (points[:, :, None] - cusps[:, None, :]), 360.0)  # (n, P, 12)
    excess = offsets - arcs[:, None, :]
    inside = excess < 0.0
    house = np.where(inside.any(axis=2), np.argmax(inside, axis=2), np.argmin(excess, axis=2))
    return np.asarray(house + 1, dtype=np.int8)


def check_system(system: object) -> str:
    """``system`` if it names a house system, else ``FieldError`` naming ``system`` and listing the valid ones."""
    if not isinstance(system, str) or system not in HOUSE_SYSTEMS:
        raise FieldError("system", f"unknown house system {system!r}; valid systems: {', '.join(HOUSE_SYSTEMS)}")
    return system


# -- spherical helpers (degrees) ----------------------------------------------------------------------------------


def _norm360(degrees: FloatArray) -> FloatArray:
    out = np.mod(degrees, 360.0)
    # mod of a tiny negative number rounds to 360.0 itself.
    return np.where(out >= 360.0, 0.0, out)


def _signed_difference(a: FloatArray, b: FloatArray) -> FloatArray:
    """a − b folded into [−180, 180), as swe_difdeg2n."""
    difference = _norm360(a - b)
    return np.where(difference >= 180.0, difference - 360.0, difference)


def _sin(x: FloatArray) -> FloatArray:
    return np.sin(np.radians(x))


def _cos(x: FloatArray) -> FloatArray:
    return np.cos(np.radians(x))


def _tan(x: FloatArray) -> FloatArray:
    return np.tan(np.radians(x))


def _ecliptic_crossing(x: FloatArray, pole_height: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray) -> FloatArray:
    """Longitude where the ecliptic meets the great circle of ``pole_height`` that crosses the equator at right
    ascension ``x`` (Swiss Ephemeris' Asc1; its four quadrant cases are this one atan2)."""
    return _norm360(np.degrees(np.arctan2(_sin(x), cos_eps * _cos(x) - _tan(pole_height) * sin_eps)))


def _equator_to_ecliptic(right_ascension: FloatArray, cos_eps: FloatArray) -> FloatArray:
    """Longitude of the equator's point at ``right_ascension`` (declination 0)."""
    return _norm360(np.degrees(np.arctan2(_sin(right_ascension) * cos_eps, _cos(right_ascension))))


# -- systems: each returns cusps 11, 12, 2, 3 as (n, 4) ------------------------------------------------------------


def _placidus(
    armc: FloatArray, lat: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray
) -> tuple[FloatArray, BoolArray]:
    """Placidus' cusps by swehouse.c's fixed-point iteration on the pole height, all charts and cusps at once, and
    whether each chart converged. Each cusp stops on its own when its step is under 0.01″ (from the second step on);
    one that takes 100 steps, or meets an undefined arcsine, fails its chart, as in Swiss Ephemeris."""
    tan_lat = _tan(lat)[:, None]
    tan_eps = (sin_eps / cos_eps)[:, None]
    sin_e, cos_e = sin_eps[:, None], cos_eps[:, None]
    rectasc = _norm360(armc[:, None] + _QUADRANT_OFFSETS)
    with np.errstate(invalid="ignore"):
        a = np.degrees(np.arcsin(tan_lat * tan_eps))
        initial_pole = np.degrees(np.arctan(_sin(a / _PLACIDUS_DIVISORS) / tan_eps))
    cusps = _ecliptic_crossing(rectasc, initial_pole, sin_e, cos_e)
    n = armc.shape[0]
    shape = (n, 4)
    tan_lat, sin_e, cos_e = (np.broadcast_to(v, shape).ravel() for v in (tan_lat, sin_e, cos_e))
    divisors = np.broadcast_to(_PLACIDUS_DIVISORS, shape).ravel()
    rectasc, cusps = rectasc.ravel(), cusps.ravel()

    def declination_tangent(longitude: FloatArray, active: NDArray[np.intp]) -> FloatArray:
        return np.tan(np.arcsin(sin_e[active] * _sin(longitude)))

    failed = np.zeros(n * 4, dtype=bool)
    active = np.arange(n * 4)
    # A cusp at declination 0 is the equator's point at rectasc itself (the pole height is then 0/0).
    on_equator = np.abs(declination_tangent(cusps, active)) < _VERY_SMALL
    cusps[on_equator] = rectasc[on_equator]
    active = active[~on_equator]
    with np.errstate(invalid="ignore"):
        # Steps 1..99: swehouse.c counts even a cusp that settles on its 100th step as a failure.
        for step in range(1, _PLACIDUS_MAX_STEPS):
            if active.size == 0:
                break
            previous = cusps[active]
            tan_dec = declination_tangent(previous, active)
            on_equator = np.abs(tan_dec) < _VERY_SMALL
            pole = np.degrees(
                np.arctan(_sin(np.degrees(np.arcsin(tan_lat[active] * tan_dec)) / divisors[active]) / tan_dec)
            )
            current = _ecliptic_crossing(rectasc[active], pole, sin_e[active], cos_e[active])
            current = np.where(on_equator, rectasc[active], current)
            cusps[active] = current
            done = on_equator
            if step > 1:
                done = done | (np.abs(_signed_difference(current, previous)) < _PLACIDUS_TOLERANCE)
            active = active[~done]
    failed[active] = True
    failed |= ~np.isfinite(cusps)
    converged = np.logical_not(failed.reshape(shape).any(axis=1))
    return cusps.reshape(shape), converged


def _koch(armc: FloatArray, lat: FloatArray, mc: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray) -> FloatArray:
    sin_a = np.clip(_sin(mc) * sin_eps / _cos(lat), -1.0, 1.0)
    cos_a = np.sqrt(1.0 - sin_a * sin_a)
    c = np.degrees(np.arctan(_tan(lat) / cos_a))
    ad3 = np.degrees(np.arcsin(_sin(c) * sin_a)) / 3.0
    shifts = np.stack((30.0 - 2.0 * ad3, 60.0 - ad3, 120.0 + ad3, 150.0 + 2.0 * ad3), axis=1)
    return _ecliptic_crossing(armc[:, None] + shifts, lat[:, None], sin_eps[:, None], cos_eps[:, None])


def _pole_height_system(
    armc: FloatArray, lat: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray, near: float, far: float
) -> FloatArray:
    """Regiomontanus and topocentric: cusps where circles of pole height atan(tan(lat)·factor) cross the equator
    30° and 60° from the meridian (``near`` is the factor for cusps 11 and 3, ``far`` for 12 and 2)."""
    tan_lat = _tan(lat)
    fh_near = np.degrees(np.arctan(tan_lat * near))
    fh_far = np.degrees(np.arctan(tan_lat * far))
    poles = np.stack((fh_near, fh_far, fh_far, fh_near), axis=1)
    return _ecliptic_crossing(armc[:, None] + _QUADRANT_OFFSETS, poles, sin_eps[:, None], cos_eps[:, None])


def _campanus(armc: FloatArray, lat: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray) -> FloatArray:
    """Prime vertical divided into 30° parts, projected from the north and south points onto the ecliptic."""
    sin_lat, cos_lat = _sin(lat), _cos(lat)
    fh1 = np.degrees(np.arcsin(sin_lat / 2.0))
    fh2 = np.degrees(np.arcsin(np.sqrt(3.0) / 2.0 * sin_lat))
    # arctan of ±inf is ±90°, swehouse.c's value for cos(lat) = 0.
    with np.errstate(divide="ignore"):
        xh1 = np.degrees(np.arctan(np.sqrt(3.0) / cos_lat))
        xh2 = np.degrees(np.arctan(1.0 / np.sqrt(3.0) / cos_lat))
    x = armc[:, None] + 90.0 + np.stack((-xh1, -xh2, xh2, xh1), axis=1)
    poles = np.stack((fh1, fh2, fh2, fh1), axis=1)
    return _ecliptic_crossing(x, poles, sin_eps[:, None], cos_eps[:, None])


def _alcabitius(
    armc: FloatArray, lat: FloatArray, asc: FloatArray, sin_eps: FloatArray, cos_eps: FloatArray
) -> FloatArray:
    """The Ascendant's semi-diurnal and semi-nocturnal arcs trisected on the equator, along hour circles."""
    declination = np.degrees(np.arcsin(_sin(asc) * sin_eps))
    semi_diurnal = np.degrees(np.arccos(np.clip(-_tan(lat) * _tan(declination), -1.0, 1.0)))
    sd3, sn3 = semi_diurnal / 3.0, (180.0 - semi_diurnal) / 3.0
    rectasc = armc[:, None] + np.stack((sd3, 2.0 * sd3, 180.0 - 2.0 * sn3, 180.0 - sn3), axis=1)
    # Pole height 0: the hour circle at that right ascension.
    return _ecliptic_crossing(rectasc, np.zeros_like(rectasc), sin_eps[:, None], cos_eps[:, None])


def _porphyry(asc: FloatArray, mc: FloatArray) -> FloatArray:
    """Quadrants between the (eastern) Ascendant and the MC trisected along the ecliptic."""
    quarter = _signed_difference(asc, mc)  # MC → Asc, the fourth quadrant's size
    thirds = np.stack(
        (
            mc + quarter / 3.0,
            mc + 2.0 * quarter / 3.0,
            asc + (180.0 - quarter) / 3.0,
            asc + 2.0 * (180.0 - quarter) / 3.0,
        ),
        axis=1,
    )
    return _norm360(thirds)


def _assemble(first: FloatArray, tenth: FloatArray, quadrant: FloatArray) -> FloatArray:
    """12 cusps from cusps 1, 10 and (11, 12, 2, 3); 4..9 are opposite 10..3."""
    eastern = np.column_stack((first, quadrant[:, 2], quadrant[:, 3]))  # 1, 2, 3
    southern = np.column_stack((tenth, quadrant[:, 0], quadrant[:, 1]))  # 10, 11, 12
    return _norm360(np.column_stack((eastern, southern + 180.0, eastern + 180.0, southern)))


@dataclass(frozen=True)
class _Sky:
    """One batch of charts' angles, shared by every system."""

    armc: FloatArray
    lat: FloatArray
    sin_eps: FloatArray
    cos_eps: FloatArray
    polar: BoolArray  # inside a polar circle: |lat| >= 90° − obliquity
    mc: FloatArray
    horizon_east: FloatArray  # the ecliptic's point on the eastern horizon
    trails: BoolArray  # that point trails the MC (only inside the polar circles)
    asc: FloatArray  # horizon_east, turned by 180° where it trails


def _angles(field: str, values: ArrayLike, n: int | None, low: float, high: float) -> FloatArray:
    """``values`` as a 1-D float array (a scalar broadcast to ``n``) inside [low, high]; FieldError naming ``field``."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "iuf" or raw.ndim > 1:
        raise FieldError(field, f"expected a number or a 1-D sequence of real numbers, got {raw.dtype} {raw.shape}")
    array = raw.astype(np.float64)
    if array.ndim == 0:
        array = np.full(1 if n is None else n, float(array))
    elif n is not None and array.shape[0] != n:
        raise FieldError(field, f"{array.shape[0]} values for {n} ARMC values")
    bad = ~np.isfinite(array) | (array < low) | (array > high)
    if bad.any():
        i = int(np.argmax(bad))
        raise FieldError(field, f"{array[i]} at index {i} is not a finite number in [{low:g}, {high:g}] degrees")
    return array


def _sky(armc: ArrayLike, lat: ArrayLike, obliquity: ArrayLike) -> _Sky:
    th = _norm360(_angles("armc", armc, None, -np.inf, np.inf))
    n = th.shape[0]
    # At the poles themselves, 1e-10° short of them (as swehouse.c): every formula stays finite.
    latitude = np.clip(_angles("lat", lat, n, -90.0, 90.0), -90.0 + _VERY_SMALL, 90.0 - _VERY_SMALL)
    eps = _angles("obliquity", obliquity, n, 0.0, 45.0)
    sin_eps, cos_eps = _sin(eps), _cos(eps)
    mc = _norm360(np.degrees(np.arctan2(_sin(th), _cos(th) * cos_eps)))
    horizon_east = _ecliptic_crossing(th + 90.0, latitude, sin_eps, cos_eps)
    trails = _signed_difference(horizon_east, mc) < 0.0
    return _Sky(
        armc=th,
        lat=latitude,
        sin_eps=sin_eps,
        cos_eps=cos_eps,
        polar=np.abs(latitude) >= 90.0 - eps,
        mc=mc,
        horizon_east=horizon_east,
        trails=trails,
        asc=np.where(trails, _norm360(horizon_east + 180.0), horizon_east),
    )


def _with_fallback(sky: _Sky, system: str) -> HouseCusps:
    """Porphyry, and Placidus and Koch with Porphyry where they are undefined."""
    cusps = _assemble(sky.asc, sky.mc, _porphyry(sky.asc, sky.mc))
    fallback = np.zeros(cusps.shape[0], dtype=bool)
    asc = sky.asc
    if system != "porphyry":
        rows = np.flatnonzero(~sky.polar)
        armc, lat, sin_eps, cos_eps = sky.armc[rows], sky.lat[rows], sky.sin_eps[rows], sky.cos_eps[rows]
        if system == "placidus":
            quadrant, converged = _placidus(armc, lat, sin_eps, cos_eps)
            rows, quadrant = rows[converged], quadrant[converged]
        else:
            quadrant = _koch(armc, lat, sky.mc[rows], sin_eps, cos_eps)
        cusps[rows] = _assemble(sky.horizon_east[rows], sky.mc[rows], quadrant)
        fallback = np.ones(cusps.shape[0], dtype=bool)
        fallback[rows] = False
        asc = np.where(fallback, sky.asc, sky.horizon_east)
    return _result(system, cusps, fallback, asc, sky.mc, np.zeros_like(fallback))


def _turning_at_poles(sky: _Sky, system: str) -> HouseCusps:
    """Regiomontanus, Campanus and topocentric: polar charts with the MC below the horizon turn by 180°."""
    if system == "campanus":
        quadrant = _campanus(sky.armc, sky.lat, sky.sin_eps, sky.cos_eps)
    elif system == "regiomontanus":
        quadrant = _pole_height_system(sky.armc, sky.lat, sky.sin_eps, sky.cos_eps, 0.5, np.sqrt(3.0) / 2.0)
    else:  # topocentric (Polich-Page)
        quadrant = _pole_height_system(sky.armc, sky.lat, sky.sin_eps, sky.cos_eps, 1.0 / 3.0, 2.0 / 3.0)
    cusps = _assemble(sky.horizon_east, sky.mc, quadrant)
    clockwise = sky.polar & sky.trails
    cusps = np.where(clockwise[:, None], _norm360(cusps + 180.0), cusps)
    asc = np.where(clockwise, sky.asc, sky.horizon_east)
    mc = np.where(clockwise, _norm360(sky.mc + 180.0), sky.mc)
    return _result(system, cusps, np.zeros_like(clockwise), asc, mc, clockwise)


def _from_ascendant_or_equator(sky: _Sky, system: str) -> HouseCusps:
    """Equal, whole-sign, Alcabitius and Morinus: counter-clockwise everywhere, with the turned Ascendant."""
    if system == "equal":
        cusps = _norm360(sky.asc[:, None] + 30.0 * np.arange(12))
    elif system == "whole_sign":
        cusps = _norm360((sky.asc - np.mod(sky.asc, 30.0))[:, None] + 30.0 * np.arange(12))
    elif system == "alcabitius":
        cusps = _assemble(sky.asc, sky.mc, _alcabitius(sky.armc, sky.lat, sky.asc, sky.sin_eps, sky.cos_eps))
    else:  # morinus: equator points ARMC + 30°·(k − 10) taken straight to the ecliptic (cusp 10 is not the MC)
        cusps = _equator_to_ecliptic(sky.armc[:, None] + 30.0 * (np.arange(1, 13) - 10), sky.cos_eps[:, None])
    none = np.zeros(cusps.shape[0], dtype=bool)
    return _result(system, cusps, none, sky.asc, sky.mc, none)


def _result(
    system: str, cusps: FloatArray, fallback: BoolArray, asc: FloatArray, mc: FloatArray, clockwise: BoolArray
) -> HouseCusps:
    # Own, read-only copies: some inputs are views of one another (asc of the shared sky, for one).
    cusps, asc, mc = (np.array(a, dtype=np.float64) for a in (cusps, asc, mc))
    fallback, clockwise = (np.array(a, dtype=np.bool_) for a in (fallback, clockwise))
    for array in (cusps, fallback, asc, mc, clockwise):
        array.setflags(write=False)
    return HouseCusps(cusps=cusps, system=system, fallback=fallback, asc=asc, mc=mc, clockwise=clockwise)


def houses_from_armc(armc: ArrayLike, lat: ArrayLike, obliquity: ArrayLike, system: str) -> HouseCusps:
    """Cusps of ``system`` for N charts given the ARMC (apparent sidereal time · 15 + east longitude), the
    geographic latitude and the true obliquity, degrees, N each or a number for all (as swe_houses_armc).
    FieldError, naming the argument, for an unknown system, values that are not finite or out of range (lat beyond
    ±90°, obliquity outside [0°, 45°]) and mismatched lengths."""
    system = check_system(system)
    sky = _sky(armc, lat, obliquity)
    if system in ("porphyry", "placidus", "koch"):
        return _with_fallback(sky, system)
    if system in ("regiomontanus", "campanus", "topocentric"):
        return _turning_at_poles(sky, system)
    return _from_ascendant_or_equator(sky, system)
