"""Columnar aspect results: one NumPy array per field, converted to records or JSON on demand."""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .aspects import ASPECT_NAMES

MOVEMENTS: tuple[str, ...] = ("static", "applying", "separating")
STATIC, APPLYING, SEPARATING = 0, 1, 2

INDEX_DTYPE = np.int32  # chart indices: 2**31 charts per side is beyond any user base
CODE_DTYPE = np.uint8  # point, aspect and movement codes
# Bytes per hit in the result: i, j (int32), p1, p2, aspect (uint8), orb (float64), movement (uint8).
HIT_RESULT_BYTES = 4 + 4 + 1 + 1 + 1 + 8 + 1


_MAGIC = b"AHITS1"
_COLUMN_DTYPES = {
    "i": INDEX_DTYPE,
    "j": INDEX_DTYPE,
    "p1": CODE_DTYPE,
    "p2": CODE_DTYPE,
    "aspect": CODE_DTYPE,
    "orb": np.float64,
    "movement": CODE_DTYPE,
}


@dataclass(frozen=True)
class AspectHits:
    """Aspects found between points, one entry per (chart pair, point pair) that forms an aspect.

    ``i`` (and ``j`` for synastry; None for natal) index the charts; ``p1``/``p2`` index ``points``; ``aspect``
    indexes :data:`ASPECT_NAMES`; ``orb`` is ``|separation - angle|`` in degrees; ``movement`` indexes
    :data:`MOVEMENTS`. Entries are ordered by ``i``, then ``j``, then ``p1``, then ``p2``.
    """

    i: npt.NDArray[np.int32]
    j: npt.NDArray[np.int32] | None
    p1: npt.NDArray[np.uint8]
    p2: npt.NDArray[np.uint8]
    aspect: npt.NDArray[np.uint8]
    orb: npt.NDArray[np.float64]
    movement: npt.NDArray[np.uint8]
    points: tuple[str, ...]
    backend: str = "numpy"

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @property
    def kind(self) -> str:
        return "natal" if self.j is None else "synastry"

    @classmethod
    def empty(cls, points: Sequence[str], natal: bool, backend: str = "numpy") -> AspectHits:
        index = np.empty(0, dtype=INDEX_DTYPE)
        code = np.empty(0, dtype=CODE_DTYPE)
        return cls(
            i=index,
            j=None if natal else index.copy(),
            p1=code,
            p2=code.copy(),
            aspect=code.copy(),
            orb=np.empty(0, dtype=np.float64),
            movement=code.copy(),
            points=tuple(points),
            backend=backend,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[AspectHits], points: Sequence[str], natal: bool, backend: str) -> AspectHits:
        if not parts:
            return cls.empty(points, natal, backend)
        if len(parts) == 1:
            return parts[0]
        return cls(
            i=np.concatenate([p.i for p in parts]),
            j=None if natal else np.concatenate([p.j for p in parts if p.j is not None]),
            p1=np.concatenate([p.p1 for p in parts]),
            p2=np.concatenate([p.p2 for p in parts]),
            aspect=np.concatenate([p.aspect for p in parts]),
            orb=np.concatenate([p.orb for p in parts]),
            movement=np.concatenate([p.movement for p in parts]),
            points=tuple(points),
            backend=backend,
        )

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> AspectHits:
        """The entries picked by a boolean mask or index array (e.g. ``hits.select(hits.i == 3)``)."""
        return AspectHits(
            i=self.i[mask],
            j=None if self.j is None else self.j[mask],
            p1=self.p1[mask],
            p2=self.p2[mask],
            aspect=self.aspect[mask],
            orb=self.orb[mask],
            movement=self.movement[mask],
            points=self.points,
            backend=self.backend,
        )

    def split(self) -> dict[int | tuple[int, int], AspectHits]:
        """The hits of each chart (natal: key ``i``) or chart pair (synastry: key ``(i, j)``) on their own, with
        their indices reset to 0, as a single-chart computation would give them. Keys without hits are absent."""
        keys = self.i.astype(np.int64) if self.j is None else self.i.astype(np.int64) << 32 | self.j
        order = np.argsort(keys, kind="stable")
        distinct, starts = np.unique(keys[order], return_index=True)
        parts: dict[int | tuple[int, int], AspectHits] = {}
        for key, rows in zip(distinct.tolist(), np.split(order, starts[1:]), strict=True):
            part = self.select(rows)
            zeros = np.zeros(len(part), dtype=INDEX_DTYPE)
            part = dataclasses.replace(part, i=zeros, j=None if self.j is None else zeros)
            parts[key if self.j is None else (key >> 32, key & 0xFFFFFFFF)] = part
        return parts

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The columns as a dict of arrays (for ``np.savez`` or a DataFrame)."""
        columns: dict[str, npt.NDArray[Any]] = {"i": self.i}
        if self.j is not None:
            columns["j"] = self.j
        columns.update(p1=self.p1, p2=self.p2, aspect=self.aspect, orb=self.orb, movement=self.movement)
        return columns

    def to_records(self, point_names: bool = False) -> list[dict[str, Any]]:
        """One dict per hit: ``i`` (``j``), ``p1``, ``p2`` (indices, or names with ``point_names``), ``aspect``
        and ``movement`` names, ``orb`` in degrees."""
        aspect_names = np.asarray(ASPECT_NAMES, dtype=object)[self.aspect]
        movement_names = np.asarray(MOVEMENTS, dtype=object)[self.movement]
        if point_names:
            names = np.asarray(self.points, dtype=object)
            p1: list[Any] = names[self.p1].tolist()
            p2: list[Any] = names[self.p2].tolist()
        else:
            p1, p2 = self.p1.tolist(), self.p2.tolist()
        columns: dict[str, list[Any]] = {"i": self.i.tolist()}
        if self.j is not None:
            columns["j"] = self.j.tolist()
        columns.update(
            p1=p1,
            p2=p2,
            aspect=aspect_names.tolist(),
            orb=self.orb.tolist(),
            movement=movement_names.tolist(),
        )
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def to_json(self, point_names: bool = True) -> str:
        return json.dumps(self.to_records(point_names=point_names))

    def to_bytes(self) -> bytes:
        """A compact binary form (a JSON header, then the columns' raw bytes, zlib-compressed); no pickle."""
        columns = self.to_arrays()
        header = json.dumps({"points": list(self.points), "natal": self.j is None, "n": len(self)}).encode()
        body = zlib.compress(b"".join(np.ascontiguousarray(c).tobytes() for c in columns.values()), level=1)
        return _MAGIC + len(header).to_bytes(4, "little") + header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> AspectHits:
        if data[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not an AspectHits payload")
        start = len(_MAGIC) + 4
        end = start + int.from_bytes(data[len(_MAGIC) : start], "little")
        header = json.loads(data[start:end])
        body = zlib.decompress(data[end:])
        n = int(header["n"])
        names = ["i"] + ([] if header["natal"] else ["j"]) + ["p1", "p2", "aspect", "orb", "movement"]
        columns: dict[str, npt.NDArray[Any]] = {}
        offset = 0
        for name in names:
            dtype = np.dtype(_COLUMN_DTYPES[name])
            columns[name] = np.frombuffer(body, dtype=dtype, count=n, offset=offset)
            offset += n * dtype.itemsize
        return cls(
            i=columns["i"],
            j=columns.get("j"),
            p1=columns["p1"],
            p2=columns["p2"],
            aspect=columns["aspect"],
            orb=columns["orb"],
            movement=columns["movement"],
            points=tuple(header["points"]),
        )

    def counts_by_aspect(self) -> dict[str, int]:
        counts = np.bincount(self.aspect, minlength=len(ASPECT_NAMES))
        return {name: int(n) for name, n in zip(ASPECT_NAMES, counts, strict=True) if n}


class HitsBuilder:
    """Appends chunks of hit columns into preallocated result arrays, casting once on the way in.

    Writing each chunk straight into the result, rather than concatenating chunk arrays at the end, halves the
    memory traffic of building a large hit list and its peak. Capacity grows by half if the estimate was low.
    """

    def __init__(self, capacity: int, points: Sequence[str], natal: bool, backend: str) -> None:
        self.points = tuple(points)
        self.natal = natal
        self.backend = backend
        self.size = 0
        self._columns = self._allocate(max(int(capacity), 16))

    def _allocate(self, capacity: int) -> dict[str, npt.NDArray[Any]]:
        columns: dict[str, npt.NDArray[Any]] = {"i": np.empty(capacity, INDEX_DTYPE)}
        if not self.natal:
            columns["j"] = np.empty(capacity, INDEX_DTYPE)
        for name in ("p1", "p2", "aspect", "movement"):
            columns[name] = np.empty(capacity, CODE_DTYPE)
        columns["orb"] = np.empty(capacity, np.float64)
        return columns

    def append(self, **values: Any) -> None:
        """One chunk's columns (arrays of equal length, or scalars to broadcast)."""
        count = int(values["i"].shape[0])
        capacity = self._columns["i"].shape[0]
        if self.size + count > capacity:
            grown = self._allocate(max(capacity * 3 // 2, self.size + count))
            for name, column in self._columns.items():
                grown[name][: self.size] = column[: self.size]
            self._columns = grown
        end = self.size + count
        for name, column in self._columns.items():
            column[self.size : end] = values[name]
        self.size = end

    def build(self) -> AspectHits:
        columns = self._columns
        # Views keep the whole allocation alive: compact when more than a quarter would be wasted.
        compact = self.size < 0.75 * columns["i"].shape[0]

        def trim(column: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return column[: self.size].copy() if compact else column[: self.size]

        return AspectHits(
            i=trim(columns["i"]),
            j=None if self.natal else trim(columns["j"]),
            p1=trim(columns["p1"]),
            p2=trim(columns["p2"]),
            aspect=trim(columns["aspect"]),
            orb=trim(columns["orb"]),
            movement=trim(columns["movement"]),
            points=self.points,
            backend=self.backend,
        )
