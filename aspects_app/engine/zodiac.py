"""Signs, degrees within the sign, elements, modalities and retrograde flags of many charts' points at once.

Tropical signs of 30° from 0° Aries. The text form rounds to the nearest arcsecond but never past the sign's last
second (29°59′59″): a point is written in the sign it is in, so the text never shows 60″, 60′ or 30°.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import validation
from .aspects import resolve_points
from .errors import FieldError

SIGN_NAMES: tuple[str, ...] = (
    "Aries",
    "Taurus",
    "Gemini",
    "Cancer",
    "Leo",
    "Virgo",
    "Libra",
    "Scorpio",
    "Sagittarius",
    "Capricorn",
    "Aquarius",
    "Pisces",
)
# kerykeion's three-letter sign codes ("Ari", "Tau", ...), for comparison with its payloads.
SIGN_ABBREVIATIONS: tuple[str, ...] = tuple(name[:3] for name in SIGN_NAMES)
# Both cycle through the signs in order: element = sign % 4, modality = sign % 3.
ELEMENTS: tuple[str, ...] = ("fire", "earth", "air", "water")
MODALITIES: tuple[str, ...] = ("cardinal", "fixed", "mutable")

SIGN_DEGREES = 30.0
_LAST_ARCSECOND = 30 * 3600 - 1


@dataclass(frozen=True)
class ZodiacPositions:
    """Columnar zodiac data of (charts, points) longitudes: every array is (N, P).

    ``sign`` indexes :data:`SIGN_NAMES`; ``degree`` is the degree within the sign, [0, 30); ``retrograde`` is
    ``speed < 0`` (False everywhere when no speeds were given). Elements and modalities follow from the sign.
    """

    lon: npt.NDArray[np.float64]
    sign: npt.NDArray[np.uint8]
    degree: npt.NDArray[np.float64]
    retrograde: npt.NDArray[np.bool_]
    points: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.sign.shape[0])

    @property
    def element(self) -> npt.NDArray[np.uint8]:
        """Indices into :data:`ELEMENTS`."""
        return self.sign % 4

    @property
    def modality(self) -> npt.NDArray[np.uint8]:
        """Indices into :data:`MODALITIES`."""
        return self.sign % 3

    def sign_names(self) -> npt.NDArray[np.object_]:
        return np.asarray(SIGN_NAMES, dtype=object)[self.sign]

    def dms(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Degrees, minutes and seconds within the sign, rounded to the nearest arcsecond and capped at the
        sign's last one (so never 60″ or 30°)."""
        seconds = np.minimum(np.rint(self.degree * 3600.0).astype(np.int64), _LAST_ARCSECOND)
        return seconds // 3600, seconds // 60 % 60, seconds % 60

    def dms_text(self) -> npt.NDArray[np.object_]:
        """``"12°34′56″ Leo"`` for every point."""
        degrees, minutes, seconds = self.dms()
        names = self.sign_names()
        text = [
            f"{d}°{m:02d}′{s:02d}″ {name}"
            for d, m, s, name in zip(
                degrees.ravel().tolist(), minutes.ravel().tolist(), seconds.ravel().tolist(),
                names.ravel().tolist(), strict=True,
            )
        ]  # fmt: skip
        return np.asarray(text, dtype=object).reshape(self.sign.shape)

    def to_records(self, point_names: bool = True) -> list[dict[str, Any]]:
        """One dict per (chart, point), chart by chart: ``i``, ``point`` (name, or index without
        ``point_names``), ``lon``, ``sign``, ``degree`` (within the sign), ``dms`` (text), ``element``,
        ``modality``, ``retrograde``."""
        charts, count = self.sign.shape
        point_column: list[Any] = list(self.points) if point_names else list(range(count))
        columns: dict[str, list[Any]] = {
            "i": np.repeat(np.arange(charts), count).tolist(),
            "point": point_column * charts,
            "lon": self.lon.ravel().tolist(),
            "sign": self.sign_names().ravel().tolist(),
            "degree": self.degree.ravel().tolist(),
            "dms": self.dms_text().ravel().tolist(),
            "element": np.asarray(ELEMENTS, dtype=object)[self.element].ravel().tolist(),
            "modality": np.asarray(MODALITIES, dtype=object)[self.modality].ravel().tolist(),
            "retrograde": self.retrograde.ravel().tolist(),
        }
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def zodiac_positions(lon: Any, speed: Any = None, points: Sequence[str] | None = None) -> ZodiacPositions:
    """Sign, degree within the sign and retrograde flag of every point of ``lon`` (N, P) in degrees, [0, 360);
    ``speed`` (N, P) in degrees per day or None; a None (or NaN) entry is a point without a speed, not
    retrograde. Columns are named by ``points`` (default: the standard prefix)."""
    longitudes = validation.longitudes("lon", lon)
    speeds = _optional_speeds(speed, longitudes.shape)
    names = resolve_points(points, longitudes.shape[1])
    # divmod keeps quotient and remainder consistent: a longitude a hair below a cusp cannot come out as sign k
    # with a negative degree, nor as sign k - 1 with 30°.
    sign, degree = np.divmod(longitudes, SIGN_DEGREES)
    degree = np.clip(degree, 0.0, np.nextafter(SIGN_DEGREES, 0.0))
    retrograde = np.zeros(longitudes.shape, dtype=bool) if speeds is None else speeds < 0.0  # NaN < 0 is False
    return ZodiacPositions(
        lon=longitudes,
        sign=np.clip(sign, 0, 11).astype(np.uint8),
        degree=degree,
        retrograde=retrograde,
        points=names,
    )


def _optional_speeds(speed: Any, shape: tuple[int, ...]) -> npt.NDArray[np.float64] | None:
    """Speeds with None entries allowed (payloads carry None where a point has no speed): they become NaN."""
    if speed is None:
        return None
    try:
        array = np.asarray(speed, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FieldError("speed", f"not a numeric array ({exc})") from exc
    if array.shape != shape:
        raise FieldError("speed", f"shape {array.shape} does not match the longitudes' shape {shape}")
    if np.isinf(array).any():
        row, col = np.argwhere(np.isinf(array))[0]
        raise FieldError("speed", f"speeds must be finite or None; found {array[row, col]} at [{row}, {col}]")
    return array
