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
from .zodiac import SIGN_NAMES

INDEX_DTYPE = np.int32
CODE_DTYPE = np.uint8
TIME_DTYPE = np.dtype("datetime64[us]")
NAT = np.datetime64("NaT", "us")
US_PER_DAY = 86_400_000_000

SKY_EVENT_KINDS: tuple[str, ...] = ("ingress", "station")
# Ingresses name the sign entered as chart payloads name signs.
SIGNS: tuple[str, ...] = SIGN_NAMES


def days_to_datetime64(t0_us: int, days: npt.NDArray[np.float64]) -> npt.NDArray[np.datetime64]:
    """Days since ``t0_us`` (microseconds since the epoch) as datetime64[us], NaN as NaT."""
    out = np.empty(days.shape, TIME_DTYPE)
    write_moments(out, t0_us, days)
    return out


def write_moments(out: npt.NDArray[np.datetime64], t0_us: int, days: npt.NDArray[np.float64]) -> None:
    """``out[...] = days_to_datetime64(t0_us, days)``, in one pass over a scaled copy, no other temporaries."""
    micro = out.view(np.int64)
    missing = np.isnan(days)
    scaled = days * US_PER_DAY
    np.rint(scaled, out=scaled)
    scaled[missing] = 0.0
    micro[...] = scaled
    micro += t0_us
    micro[missing] = NAT.astype(np.int64)


def _empty_without_huge_pages(capacity: int, dtype: Any) -> npt.NDArray[Any]:
    """``np.empty`` without NumPy's transparent-huge-page advice (which it gives every array of 4 MiB or more).
    With the kernel's THP defrag on "madvise", the advice makes each first touch of a large fresh result compact
    memory: 3.9 s instead of 0.5 s for 1.4 GB on the development VM. Falls back to plain ``np.empty`` where NumPy
    lacks the switch."""
    core = getattr(np, "_core", None)
    toggle = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if toggle is None:
        return np.empty(capacity, dtype)
    previous = toggle(False)
    try:
        return np.empty(capacity, dtype)
    finally:
        toggle(previous)


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


class TransitEventsBuilder:
    """Appends chunks of events into preallocated result columns, casting (and turning days into datetimes) on
    the way in: writing each chunk straight into the result, rather than concatenating chunk columns at the end,
    halves the memory a large run touches. Capacity grows by half when the estimate was low."""

    def __init__(self, capacity: int, points: Sequence[str], bodies: Sequence[str], backend: str, t0_us: int) -> None:
        self.points = tuple(points)
        self.bodies = tuple(bodies)
        self.backend = backend
        self.t0_us = t0_us
        self.size = 0
        self._columns = self._allocate(max(int(capacity), 16))

    @staticmethod
    def _allocate(capacity: int) -> dict[str, npt.NDArray[Any]]:
        columns: dict[str, npt.NDArray[Any]] = {"i": _empty_without_huge_pages(capacity, INDEX_DTYPE)}
        for name in ("point", "body", "aspect"):
            columns[name] = _empty_without_huge_pages(capacity, CODE_DTYPE)
        for name in ("exact", "starts", "ends"):
            columns[name] = _empty_without_huge_pages(capacity, TIME_DTYPE)
        columns["retrograde"] = _empty_without_huge_pages(capacity, np.bool_)
        return columns

    def append(self, days: dict[str, npt.NDArray[np.float64]], **values: npt.NDArray[Any]) -> None:
        """One chunk's columns: ``days`` holds ``exact``/``starts``/``ends`` as days since ``t0_us`` (NaN: none),
        ``values`` the others, all of one length."""
        count = int(days["exact"].shape[0])
        capacity = self._columns["i"].shape[0]
        if self.size + count > capacity:
            grown = self._allocate(max(capacity * 3 // 2, self.size + count))
            for name, column in self._columns.items():
                grown[name][: self.size] = column[: self.size]
            self._columns = grown
        end = self.size + count
        for name, column in self._columns.items():
            if name in days:
                write_moments(column[self.size : end], self.t0_us, days[name])
            else:
                column[self.size : end] = values[name]
        self.size = end

    def build(self) -> TransitEvents:
        columns = self._columns
        # Views keep the whole allocation alive: compact when more than a quarter would be wasted.
        compact = self.size < 0.75 * columns["i"].shape[0]
        trimmed = {name: c[: self.size].copy() if compact else c[: self.size] for name, c in columns.items()}
        return TransitEvents(**trimmed, points=self.points, bodies=self.bodies, backend=self.backend)


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
