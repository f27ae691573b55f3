"""A batch run's charts as arrays: ids, point names, longitudes and speeds, loaded in id batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..engine.errors import FieldError
from ..models import Chart, id_batches


@dataclass(frozen=True)
class Population:
    ids: npt.NDArray[np.int64]
    points: tuple[str, ...]
    longitudes: npt.NDArray[np.float64]
    speeds: npt.NDArray[np.float64] | None


@dataclass(frozen=True)
class Block:
    """One row block of group A against all of group B, and how its pairs are counted."""

    rows: slice[int, int, None]
    a: Population
    b: Population
    within_one_group: bool  # each unordered pair once (synastry: j > i)


def load_population(ids: Sequence[int], field: str) -> Population:
    """Positions of ``ids`` as arrays, in the given order; a chart deleted meanwhile or with other points than
    the first is a :class:`FieldError` on ``field``."""
    rows: dict[int, tuple[list[str], bytes, bytes | None]] = {}
    for batch in id_batches(ids):
        for pk, points, lon, speed in Chart.objects.filter(pk__in=batch).values_list(
            "pk", "points", "longitudes", "speeds"
        ):
            rows[pk] = (points, bytes(lon), None if speed is None else bytes(speed))
    missing = [i for i in ids if i not in rows]
    if missing:
        raise FieldError(field, f"charts deleted since the run started: {missing[:20]}")
    points = tuple(rows[ids[0]][0])
    odd = [i for i in ids if tuple(rows[i][0]) != points]
    if odd:
        raise FieldError(field, f"charts {odd[:20]} have other points than chart {ids[0]} ({list(points)})")
    longitudes = np.frombuffer(b"".join(rows[i][1] for i in ids), dtype="<f8").reshape(len(ids), len(points))
    speeds = None
    if all(rows[i][2] is not None for i in ids):
        raw = b"".join(rows[i][2] or b"" for i in ids)
        speeds = np.frombuffer(raw, dtype="<f8").reshape(len(ids), len(points)).astype(np.float64)
    return Population(np.asarray(ids, dtype=np.int64), points, longitudes.astype(np.float64), speeds)
