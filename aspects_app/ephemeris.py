"""Chart positions for many charts at once: Sun…Pluto, mean lunar node, Ascendant and Midheaven.

Tropical, apparent geocentric, true ecliptic and equinox of date, as Swiss Ephemeris' default (what kerykeion
reports). Built on Skyfield with the DE421 file that the ``skyfield-data`` package ships and Skyfield's builtin
Delta T / leap-second tables, so nothing is ever downloaded.

Conventions, each chosen to match the reference (Swiss Ephemeris via kerykeion):

* Input instants are UTC and are used as UT1, as Swiss Ephemeris-based software does; TT then follows from
  Skyfield's Delta T. Since 1972 |UT1 − UTC| < 0.9 s (up to ~14″ in the angles); before, Skyfield's UTC (TAI − 10 s)
  is up to ~13 s off UT1 while civil time of the day kept to UT, so reading the input as UT1 is also the right call.
* Nutation is IAU 2000B (within ~1 mas of 2000A): Skyfield's default 2000A series costs more than everything
  else here together.
* Jupiter…Pluto are DE421's system barycentres (< 0.1″ from the bodies themselves).
* The mean node is Meeus' polynomial (mean equinox of date) plus the nutation in longitude.
* Ascendant: the ecliptic point on the eastern horizon; inside the polar circles, where that point can lie west
  of the MC, it is turned by 180° so that it is always 0–180° ahead of the MC, as Swiss Ephemeris does. At the
  poles themselves (lat ±90°) the formulas take their limit (Ascendant 0° or 180°) rather than failing.
* House cusps (:func:`compute_houses`, formulas in :mod:`aspects_app.houses`) rest on the same ARMC and true
  obliquity as the Ascendant and Midheaven (``_armc_and_obliquity``).
* Speeds (degrees/day) are central differences over ±``SPEED_STEP_DAYS``; the Ascendant's speed is taken before
  its 180° turn, so it stays the speed of a continuous curve.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skyfield.api import Loader, load_file
from skyfield.framelib import ecliptic_frame
from skyfield.nutationlib import iau2000b, mean_obliquity

from aspects_app.engine.aspects import STANDARD_POINTS
from aspects_app.engine.errors import FieldError
from aspects_app.engine.transits import TransitTrack
from aspects_app.houses import HouseCusps, check_system, houses_from_armc
from aspects_app.sky_track import build_transit_track

__all__ = [
    "SPEED_STEP_DAYS",
    "HouseCusps",
    "Positions",
    "compute_houses",
    "compute_positions",
    "local_to_utc",
    "supported_range",
    "transit_track",
]

FloatArray = NDArray[np.float64]

# A power of two: JD ± h is then exact in float64 for every JD in DE421's range (all in [2**21, 2**22), so
# their spacing is 2**-31 d), and 2h is exactly the step the difference spans. At ~21 s both the truncation
# error (h²/6·f‴, worst for Mercury) and the rounding noise (worst for the Moon) stay below 1e-7 °/day for the
# planets and the node, so a speed's sign is right except within that of a station. The angles race: the
# Ascendant's relative error is < 2e-6 up to 50° latitude and 1e-5 at 60°, but grows near the polar circles
# (~2e-3 at 66.3°), where its speed explodes.
SPEED_STEP_DAYS: Final = 2.0**-12

# Margin inside DE421's coverage: light time (Pluto < 0.3 d), Delta T and the speed step all reach back or
# forward from the requested instant.
_RANGE_MARGIN_DAYS: Final = 0.5
# Charts per internal batch: keeps the (3, 3, 3·chunk) rotation matrices small; larger batches are no faster.
_CHUNK: Final = 4096

_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_EPOCH_JD: Final = 2440587.5
_ONE_MICROSECOND: Final = timedelta(microseconds=1)
_MICROSECONDS_PER_DAY: Final = 86_400_000_000
_J2000_TT: Final = 2451545.0
_TENTH_MICROARCSEC_TO_DEG: Final = 1e-7 / 3600.0

# DE421 target for each planet; Jupiter…Pluto are barycentres because DE421 carries no body segment for them.
_BODIES: Final = {
    "Sun": "sun",
    "Moon": "moon",
    "Mercury": "mercury",
    "Venus": "venus",
    "Mars": "mars",
    "Jupiter": "jupiter barycenter",
    "Saturn": "saturn barycenter",
    "Uranus": "uranus barycenter",
    "Neptune": "neptune barycenter",
    "Pluto": "pluto barycenter",
}
_ANGLES: Final = ("Ascendant", "Medium_Coeli")
_SUN_RADIUS_AU: Final = 695_700.0 / 149_597_870.7  # IAU 2015 nominal solar radius
_SOFTENING: Final = 0.0425  # (core radius / R☉)², see _soften_solar_deflection


@dataclass(frozen=True, eq=False)
class Positions:
    """Longitudes and speeds of ``points`` (columns) for N charts (rows); arrays are read-only."""

    longitudes: FloatArray  # (N, P), degrees in [0, 360)
    speeds: FloatArray  # (N, P), degrees per day; negative = retrograde
    points: tuple[str, ...]

    @property
    def retrograde(self) -> NDArray[np.bool_]:
        """(N, P) True where the point moves backwards along the ecliptic."""
        return self.speeds < 0.0


@dataclass(frozen=True)
class _Sky:
    ephemeris: Any
    timescale: Any
    earth: Any
    targets: dict[str, Any]
    first_jd: float  # supported UT Julian dates, inclusive
    last_jd: float


@functools.cache
def _sky() -> _Sky:
    """Open DE421 from skyfield-data and build the builtin timescale, once per process."""
    with warnings.catch_warnings():
        # skyfield-data warns when its bundled finals2000A.all is stale; that file is never read here (the
        # timescale is Skyfield's builtin one) and DE421 does not expire.
        warnings.filterwarnings("ignore", message=r"The file .* (has expired|would expire)", category=RuntimeWarning)
        from skyfield_data import get_skyfield_data_path

        data_path = get_skyfield_data_path()
    path = os.path.join(data_path, "de421.bsp")
    if not os.path.isfile(path):
        raise RuntimeError(f"ephemeris: {path} is missing; reinstall the skyfield-data package")
    # load_file only opens the file: unlike Loader.__call__ it can never fall back to a download.
    ephemeris = load_file(path)
    timescale = Loader(data_path, verbose=False).timescale(builtin=True)
    segments = ephemeris.spk.segments
    first = max(segment.start_jd for segment in segments)
    last = min(segment.end_jd for segment in segments)
    return _Sky(
        ephemeris=ephemeris,
        timescale=timescale,
        earth=ephemeris["earth"],
        targets={name: ephemeris[target] for name, target in _BODIES.items()},
        first_jd=first + _RANGE_MARGIN_DAYS,
        last_jd=last - _RANGE_MARGIN_DAYS,
    )


def _jd_to_datetime(jd: float) -> datetime:
    return _UNIX_EPOCH + timedelta(days=jd - _UNIX_EPOCH_JD)


def supported_range() -> tuple[datetime, datetime]:
    """First and last UTC instants :func:`compute_positions` accepts (DE421's coverage less a safety margin).

    Whole seconds, rounded inwards, so both ends are accepted as given.
    """
    sky = _sky()
    first = _jd_to_datetime(sky.first_jd)
    last = _jd_to_datetime(sky.last_jd).replace(microsecond=0)
    if first.microsecond:
        first = first.replace(microsecond=0) + timedelta(seconds=1)
    return first, last


def _check_points(points: Sequence[str]) -> tuple[str, ...]:
    if isinstance(points, str):
        raise FieldError("points", f"expected a sequence of point names, got the string {points!r}")
    try:
        names = tuple(points)
    except TypeError:
        raise FieldError("points", f"expected a sequence of point names, got {type(points).__name__}") from None
    unknown = [name for name in names if name not in STANDARD_POINTS]
    if unknown:
        raise FieldError("points", f"unknown point(s) {unknown}; known points: {', '.join(STANDARD_POINTS)}")
    if len(set(names)) != len(names):
        raise FieldError("points", f"duplicate names in {list(names)}")
    return names


def _unix_microseconds(datetimes_utc: object) -> NDArray[np.int64]:
    """Microseconds since 1970-01-01 UTC for each instant (1-D)."""
    if isinstance(datetimes_utc, datetime | np.datetime64):
        datetimes_utc = [datetimes_utc]
    if isinstance(datetimes_utc, np.ndarray) and datetimes_utc.dtype.kind == "M":
        if datetimes_utc.ndim != 1:
            raise FieldError("datetimes_utc", f"expected a 1-D array, got shape {datetimes_utc.shape}")
        nat = np.isnat(datetimes_utc)
        if nat.any():
            raise FieldError("datetimes_utc", f"NaT at index {int(np.argmax(nat))}")
        return datetimes_utc.astype("datetime64[us]").astype(np.int64)
    if isinstance(datetimes_utc, str | bytes) or not isinstance(datetimes_utc, Iterable):
        raise FieldError(
            "datetimes_utc",
            "expected a sequence of timezone-aware datetimes or a numpy datetime64 array, "
            f"got {type(datetimes_utc).__name__}",
        )
    values = list(datetimes_utc)
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        out[i] = _one_unix_microsecond(i, value)
    return out


def _one_unix_microsecond(i: int, value: object) -> int:
    """Microseconds since 1970-01-01 UTC of the ``i``-th instant of a sequence."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise FieldError(
                "datetimes_utc",
                f"naive datetime {value.isoformat()} at index {i}; give it a timezone "
                "(e.g. tzinfo=datetime.timezone.utc)",
            )
        return (value - _UNIX_EPOCH) // _ONE_MICROSECOND
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise FieldError("datetimes_utc", f"NaT at index {i}")
        return int(value.astype("datetime64[us]").astype(np.int64))
    kind = "a date without a time" if isinstance(value, date) else type(value).__name__
    raise FieldError("datetimes_utc", f"expected a timezone-aware datetime at index {i}, got {kind}")


def _coordinates(field: str, values: ArrayLike, n: int, limit: float) -> FloatArray:
    """``values`` as n floats in [−limit, limit]; a scalar is broadcast."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "iuf":
        raise FieldError(field, f"expected real numbers, got {raw.dtype} values")
    array = raw.astype(np.float64)
    if array.ndim > 1:
        raise FieldError(field, f"expected a number or a 1-D sequence, got shape {array.shape}")
    if array.ndim == 1 and array.shape[0] != n:
        raise FieldError(field, f"{array.shape[0]} values for {n} datetimes")
    flat = array.reshape(-1)
    bad = ~np.isfinite(flat)
    if bad.any():
        i = int(np.argmax(bad))
        raise FieldError(field, f"not a finite number at index {i} ({flat[i]})")
    outside = np.abs(flat) > limit
    if outside.any():
        i = int(np.argmax(outside))
        raise FieldError(field, f"{flat[i]} at index {i} is outside [−{limit:g}, {limit:g}] degrees")
    return np.broadcast_to(array, (n,)).copy() if array.ndim == 0 else array


def _norm360(degrees: FloatArray) -> FloatArray:
    out = np.mod(degrees, 360.0)
    # mod of a tiny negative number rounds to 360.0 itself.
    out[out >= 360.0] = 0.0
    return out


def _central(values: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Split [v(t−h), v(t), v(t+h)] into (value at t, speed); differences wrap into (−180, 180]."""
    step = values[2 * n :] - values[:n]
    step = 180.0 - np.mod(180.0 - step, 360.0)
    return _norm360(values[n : 2 * n]), step / (2.0 * SPEED_STEP_DAYS)


def _apparent(observer: Any, target: Any, deflectors: tuple[int, ...] = (10,)) -> FloatArray:
    """Apparent geocentric ICRS position (3, n) in au: light time, the Sun's deflection, aberration.

    Only the Sun deflects, as in Swiss Ephemeris; Jupiter and Saturn (Skyfield's other defaults) move nothing
    by more than a few mas away from their own discs and would double the cost.
    """
    return np.asarray(observer.observe(target).apparent(deflectors=deflectors).xyz.au, dtype=np.float64)


def _soften_solar_deflection(xyz: FloatArray, sun: FloatArray, t: Any, earth: Any, target: Any) -> FloatArray:
    """Correct the Sun's light deflection for a planet seen through the solar disc.

    Skyfield treats the Sun as a point mass, whose deflection grows as 1/b without bound as the line of sight
    passes the centre (minutes of arc within a few arcseconds of it). A ray through the disc only feels the mass
    inside its impact parameter b, and Swiss Ephemeris scales the deflection by that fraction from a solar
    model. Here a softened point mass stands in for it: m(b) = b²(1 + c)/(b² + c), b in solar radii, c = 0.0425
    (a ~0.2 R☉ core), within 0.03 of that profile (< 0.25″ in position); being continuous at the limb, it keeps
    speeds smooth. Rare (a planet behind the disc), so the undeflected positions are recomputed only there.
    """
    distance = np.sqrt(np.einsum("i...,i...->...", xyz, xyz))
    sun_distance = np.sqrt(np.einsum("i...,i...->...", sun, sun))
    cos_sep = np.einsum("i...,i...->...", xyz, sun) / (distance * sun_distance)
    radius = _SUN_RADIUS_AU / sun_distance  # the disc's angular radius, radians
    # The point-mass deflection pushes the image outwards, so look a little beyond the limb.
    behind = (distance > sun_distance) & (cos_sep > np.cos(1.01 * radius))
    if not behind.any():
        return xyz
    rows = np.flatnonzero(behind)
    plain = _apparent(earth.at(t[rows]), target, deflectors=())
    plain_cos = np.einsum("i...,i...->...", plain, sun[:, rows]) / (
        np.sqrt(np.einsum("i...,i...->...", plain, plain)) * sun_distance[rows]
    )
    b2 = np.square(np.arccos(np.clip(plain_cos, -1.0, 1.0)) / radius[rows])
    mass = np.where(b2 < 1.0, b2 * (1.0 + _SOFTENING) / (b2 + _SOFTENING), 1.0)
    out = xyz.copy()
    out[:, rows] = plain + mass * (xyz[:, rows] - plain)
    return out


def _times(jd_ut: FloatArray) -> tuple[Any, FloatArray, FloatArray]:
    """Skyfield times for UT1 Julian dates, with their nutation (d_psi, d_eps in tenths of a micro-arcsecond)."""
    t = _sky().timescale.ut1_jd(jd_ut)
    d_psi, d_eps = iau2000b(t.tt)
    # Skyfield's documented-in-source hook for a cheaper nutation: its ecliptic frame and GAST then use 2000B.
    t._nutation_angles = (d_psi, d_eps)
    return t, d_psi, d_eps


def _armc_and_obliquity(t: Any, d_eps: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The local apparent sidereal angle (ARMC = GAST·15 + east longitude) and the true obliquity, degrees: what
    the Ascendant, the Midheaven and every house cusp are built on (as swe_houses: sidtime0 with true obliquity)."""
    armc = _norm360(np.asarray(t.gast, dtype=np.float64) * 15.0 + lon)
    obliquity = mean_obliquity(t.tdb) / 3600.0 + d_eps * _TENTH_MICROARCSEC_TO_DEG
    return armc, np.asarray(obliquity, dtype=np.float64)


def _compute_chunk(
    jd_ut: FloatArray, lat: FloatArray, lon: FloatArray, names: tuple[str, ...]
) -> tuple[FloatArray, FloatArray]:
    sky = _sky()
    n = jd_ut.shape[0]
    t, d_psi, d_eps = _times(np.concatenate((jd_ut - SPEED_STEP_DAYS, jd_ut, jd_ut + SPEED_STEP_DAYS)))

    series: dict[str, FloatArray] = {}
    planets = [name for name in names if name in _BODIES]
    if planets:
        observer = sky.earth.at(t)
        to_ecliptic = ecliptic_frame.rotation_at(t)
        # The Sun's own position is also needed to spot planets behind its disc.
        sun = _apparent(observer, sky.targets["Sun"]) if any(name != "Moon" for name in planets) else None
        for name in planets:
            if name == "Sun" and sun is not None:
                xyz = sun
            else:
                xyz = _apparent(observer, sky.targets[name])
                if sun is not None and name != "Moon":
                    xyz = _soften_solar_deflection(xyz, sun, t, sky.earth, sky.targets[name])
            ecliptic = np.einsum("ij...,j...->i...", to_ecliptic, xyz)
            series[name] = np.degrees(np.arctan2(ecliptic[1], ecliptic[0]))

    if "Mean_Node" in names:
        c = (t.tt - _J2000_TT) / 36525.0
        mean_node = 125.0445479 + c * (-1934.1362891 + c * (0.0020754 + c * (1.0 / 467441.0 - c / 60616000.0)))
        series["Mean_Node"] = mean_node + d_psi * _TENTH_MICROARCSEC_TO_DEG

    ascendant_flip: NDArray[np.bool_] | None = None
    if any(name in _ANGLES for name in names):
        armc, obliquity = _armc_and_obliquity(t, d_eps, np.tile(lon, 3))
        ramc, eps = np.radians(armc), np.radians(obliquity)
        sin_ramc, cos_ramc = np.sin(ramc), np.cos(ramc)
        mc = np.degrees(np.arctan2(sin_ramc, cos_ramc * np.cos(eps)))
        tan_lat = np.tan(np.radians(np.tile(lat, 3)))
        asc = np.degrees(np.arctan2(cos_ramc, -(sin_ramc * np.cos(eps) + tan_lat * np.sin(eps))))
        series["Medium_Coeli"] = mc
        series["Ascendant"] = asc
        # Only possible inside the polar circles: the eastern horizon point trails the MC.
        ascendant_flip = np.mod(asc[n : 2 * n] - mc[n : 2 * n], 360.0) > 180.0

    longitudes = np.empty((n, len(names)))
    speeds = np.empty((n, len(names)))
    for column, name in enumerate(names):
        longitudes[:, column], speeds[:, column] = _central(np.asarray(series[name], dtype=np.float64), n)
    if ascendant_flip is not None and "Ascendant" in names:
        column = names.index("Ascendant")
        longitudes[:, column] = _norm360(longitudes[:, column] + np.where(ascendant_flip, 180.0, 0.0))
    return longitudes, speeds


def _julian_days_ut(microseconds: NDArray[np.int64]) -> FloatArray:
    """UT Julian dates of instants given as Unix microseconds; FieldError for one outside :func:`supported_range`."""
    jd_ut = _UNIX_EPOCH_JD + microseconds / _MICROSECONDS_PER_DAY
    sky = _sky()
    outside = (jd_ut < sky.first_jd) | (jd_ut > sky.last_jd)
    if outside.any():
        i = int(np.argmax(outside))
        first, last = supported_range()
        raise FieldError(
            "datetimes_utc",
            f"{_jd_to_datetime(float(jd_ut[i])).isoformat(timespec='seconds')} at index {i} "
            f"is outside the ephemeris' range {first.isoformat(timespec='seconds')} to "
            f"{last.isoformat(timespec='seconds')} (DE421)",
        )
    return np.asarray(jd_ut, dtype=np.float64)


def compute_positions(
    datetimes_utc: Sequence[datetime] | NDArray[np.datetime64] | datetime | np.datetime64,
    lat: ArrayLike,
    lon: ArrayLike,
    points: Sequence[str] = STANDARD_POINTS,
) -> Positions:
    """Positions of ``points`` for N charts.

    ``datetimes_utc``: N timezone-aware datetimes, or a numpy datetime64 array (read as UTC); a single instant
    counts as one chart. ``lat``/``lon``: geographic degrees (north, east), a number or N of them. ``points``:
    names from ``STANDARD_POINTS``, in the column order wanted.

    Raises ValueError, naming the argument, for naive datetimes, instants outside :func:`supported_range`,
    coordinates that are not finite or out of range, mismatched lengths and unknown or duplicate point names.
    """
    names = _check_points(points)
    microseconds = _unix_microseconds(datetimes_utc)
    n = microseconds.shape[0]
    latitudes = _coordinates("lat", lat, n, 90.0)
    longitudes_geo = _coordinates("lon", lon, n, 180.0)
    longitudes = np.empty((n, len(names)))
    speeds = np.empty((n, len(names)))
    if n and names:
        jd_ut = _julian_days_ut(microseconds)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            longitudes[start:stop], speeds[start:stop] = _compute_chunk(
                jd_ut[start:stop], latitudes[start:stop], longitudes_geo[start:stop], names
            )
    longitudes.setflags(write=False)
    speeds.setflags(write=False)
    return Positions(longitudes=longitudes, speeds=speeds, points=names)


def compute_houses(
    datetimes_utc: Sequence[datetime] | NDArray[np.datetime64] | datetime | np.datetime64,
    lat: ArrayLike,
    lon: ArrayLike,
    system: str = "placidus",
) -> HouseCusps:
    """House cusps of ``system`` (one of :data:`aspects_app.houses.HOUSE_SYSTEMS`) for N charts.

    Arguments as :func:`compute_positions`. The cusps rest on the same apparent sidereal time and true obliquity as
    its Ascendant and Midheaven; the systems, their polar conventions and the Porphyry fallback are described in
    :mod:`aspects_app.houses` and ``docs/houses.md``. Raises ValueError, naming the argument, for an unknown system,
    naive datetimes, instants outside :func:`supported_range`, coordinates that are not finite or out of range and
    mismatched lengths.
    """
    system = check_system(system)
    microseconds = _unix_microseconds(datetimes_utc)
    n = microseconds.shape[0]
    latitudes = _coordinates("lat", lat, n, 90.0)
    longitudes_geo = _coordinates("lon", lon, n, 180.0)
    if n == 0:
        return houses_from_armc(np.empty(0), latitudes, np.empty(0), system)
    t, _, d_eps = _times(_julian_days_ut(microseconds))
    armc, obliquity = _armc_and_obliquity(t, d_eps, longitudes_geo)
    return houses_from_armc(armc, latitudes, obliquity, system)


# -- local birth times ------------------------------------------------------------------------------------------


def local_to_utc(local: datetime, time_zone: str, fold: int | None = None) -> datetime:
    """The UTC instant of the naive wall-clock time ``local`` in the IANA zone ``time_zone``.

    A wall-clock time that the zone skipped (a DST gap) or showed twice (a fold) has no single instant, so it is
    refused unless ``fold`` picks one, as PEP 495 defines it: in a fold, 0 is the first (earlier) pass and 1 the
    second; in a gap, 0 reads the time with the offset before the transition and 1 with the one after. Raises
    ``FieldError`` naming ``local`` (ambiguous or skipped, no ``fold``) or ``fold``.
    """
    if local.tzinfo is not None:
        raise FieldError("local", "expected a naive (wall-clock) datetime")
    if fold not in (None, 0, 1):
        raise FieldError("fold", f"must be 0 or 1, got {fold!r}")
    zone = ZoneInfo(time_zone)
    first, second = (local.replace(tzinfo=zone, fold=f) for f in (0, 1))
    if fold is None and first.utcoffset() != second.utcoffset():
        # Only an existing wall-clock time survives the round trip through UTC.
        skipped = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local
        kind = "does not exist (a DST gap)" if skipped else "happened twice (a DST fold)"
        raise FieldError(
            "local",
            f"{local.isoformat()} {kind} in {time_zone}: give fold 0 (the {'offset before' if skipped else 'first'} "
            f"{'the change' if skipped else 'pass'}) or 1 (the {'offset after' if skipped else 'second'}), "
            "or a UTC offset",
        )
    chosen = second if fold == 1 else first
    return chosen.astimezone(UTC)


def _body_positions(times: NDArray[np.datetime64], bodies: tuple[str, ...]) -> tuple[FloatArray, FloatArray]:
    """Geocentric positions (no place needed) for the transit track."""
    positions = compute_positions(times, 0.0, 0.0, points=bodies)
    return positions.longitudes, positions.speeds


def transit_track(start: datetime, end: datetime, bodies: Sequence[str] | None = None) -> TransitTrack:
    """The transiting bodies (default Sun … Pluto; also Mean_Node) over [start, end), aware datetimes: samples,
    step and accuracy as described in :mod:`aspects_app.sky_track`. ValueError naming the argument for naive
    datetimes, end not after start, a range outside DE421, unknown bodies."""
    return build_transit_track(start, end, bodies, _body_positions, supported_range())
