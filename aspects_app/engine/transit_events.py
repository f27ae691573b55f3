"""Columnar transit results: one NumPy array per field, converted to records or JSON on demand (as AspectHits)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from .aspects import ASPECT_NAMES

INDEX_DTYPE = np.int32
CODE_DTYPE = np.uint8
TIME_DTYPE = np.dtype("datetime64[us]")
NAT = np.datetime64("NaT", "us")

SKY_EVENT_KINDS: tuple[str, ...] = ("ingress", "station")
SIGNS: tuple[str, ...] = (
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


def _aware(values: npt.NDArray[np.datetime64]) -> list[datetime | None]:
    """datetime64[us] values as aware UTC datetimes, NaT as None."""
    return [None if v is None else v.replace(tzinfo=UTC) for v in values.astype(object).tolist()]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class TransitEvents:
    """One entry per exact pass of a transiting body over a natal point's aspect target (natal ± angle).

    ``i`` indexes the charts, ``point`` the natal ``points``, ``body`` the track's ``bodies``, ``aspect``
    :data:`ASPECT_NAMES`. ``exact`` is the UTC moment of the pass; ``starts``/``ends`` bound the stretch of time
    around it during which the body stays within the orb of that target (shared by every pass of a retrograde
    loop that never leaves the orb), NaT where that bound lies outside the track's [start, end). ``retrograde``
    is the body's direction at the exact moment. Ordered by chart, point, aspect (then side of the circle), body
    and time.
    """

    i: npt.NDArray[np.int32]
    point: npt.NDArray[np.uint8]
    body: npt.NDArray[np.uint8]
    aspect: npt.NDArray[np.uint8]
    exact: npt.NDArray[np.datetime64]
    starts: npt.NDArray[np.datetime64]
    ends: npt.NDArray[np.datetime64]
    retrograde: npt.NDArray[np.bool_]
    points: tuple[str, ...]
    bodies: tuple[str, ...]
    backend: str = "numpy"

    _COLUMNS = ("i", "point", "body", "aspect", "exact", "starts", "ends", "retrograde")

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @classmethod
    def empty(cls, points: Sequence[str], bodies: Sequence[str], backend: str = "numpy") -> TransitEvents:
        code = np.empty(0, CODE_DTYPE)
        time = np.empty(0, TIME_DTYPE)
        return cls(
            np.empty(0, INDEX_DTYPE), code, code.copy(), code.copy(), time, time.copy(), time.copy(),
            np.empty(0, np.bool_), tuple(points), tuple(bodies), backend,
        )  # fmt: skip

    @classmethod
    def concatenate(
        cls, parts: Sequence[TransitEvents], points: Sequence[str], bodies: Sequence[str], backend: str
    ) -> TransitEvents:
        if not parts:
            return cls.empty(points, bodies, backend)
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls._COLUMNS}
        return cls(**columns, points=tuple(points), bodies=tuple(bodies), backend=backend)

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> TransitEvents:
        """The entries picked by a boolean mask or index array (e.g. ``events.select(events.i == 3)``)."""
        columns = {name: getattr(self, name)[mask] for name in self._COLUMNS}
        return TransitEvents(**columns, points=self.points, bodies=self.bodies, backend=self.backend)

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The columns as a dict of arrays (for ``np.savez`` or a DataFrame)."""
        return {name: getattr(self, name) for name in self._COLUMNS}

    def to_records(self, point_names: bool = True) -> list[dict[str, Any]]:
        """One dict per event: ``i``, ``point`` and ``body`` (names, or indices without ``point_names``),
        ``aspect`` (name), ``exact`` (aware UTC datetime), ``starts``/``ends`` (aware UTC datetimes or None),
        ``retrograde``."""
        if point_names:
            point: list[Any] = np.asarray(self.points, dtype=object)[self.point].tolist()
            body: list[Any] = np.asarray(self.bodies, dtype=object)[self.body].tolist()
        else:
            point, body = self.point.tolist(), self.body.tolist()
        columns: dict[str, list[Any]] = {
            "i": self.i.tolist(),
            "point": point,
            "body": body,
            "aspect": np.asarray(ASPECT_NAMES, dtype=object)[self.aspect].tolist(),
            "exact": _aware(self.exact),
            "starts": _aware(self.starts),
            "ends": _aware(self.ends),
            "retrograde": self.retrograde.tolist(),
        }
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def to_json(self, point_names: bool = True) -> str:
        """The records as JSON, datetimes in ISO 8601 with their UTC offset."""
        records = self.to_records(point_names=point_names)
        for record in records:
            for key in ("exact", "starts", "ends"):
                record[key] = _iso(record[key])
        return json.dumps(records)


@dataclass(frozen=True)
class SkyEvents:
    """Sign ingresses and stations of the track's bodies in its [start, end), ordered by body then time.

    ``kind`` indexes :data:`SKY_EVENT_KINDS`; ``sign`` is the sign entered (index into :data:`SIGNS`) for an
    ingress and the sign the body stands in for a station; ``retrograde`` is the direction after a station and
    at an ingress.
    """

    body: npt.NDArray[np.uint8]
    kind: npt.NDArray[np.uint8]
    time: npt.NDArray[np.datetime64]
    longitude: npt.NDArray[np.float64]
    sign: npt.NDArray[np.uint8]
    retrograde: npt.NDArray[np.bool_]
    bodies: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.body.shape[0])

    def to_records(self) -> list[dict[str, Any]]:
        names = np.asarray(self.bodies, dtype=object)
        columns: dict[str, list[Any]] = {
            "body": names[self.body].tolist(),
            "kind": np.asarray(SKY_EVENT_KINDS, dtype=object)[self.kind].tolist(),
            "time": _aware(self.time),
            "longitude": self.longitude.tolist(),
            "sign": np.asarray(SIGNS, dtype=object)[self.sign].tolist(),
            "retrograde": self.retrograde.tolist(),
        }
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]
