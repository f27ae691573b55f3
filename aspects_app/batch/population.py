"""A batch run's charts as arrays: ids, point names, longitudes and speeds, loaded in id batches."""

from __future__ import annotations

from collections import Counter
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


@dataclass(frozen=True)
class PointSetSplit:
    """A selection narrowed to the charts with the run's point set; the others are skipped, not an error."""

    points: tuple[str, ...]
    group_a: list[int]
    group_b: list[int] | None
    skipped: list[int]  # ascending; in group A or B


def points_of(ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Each chart's point names, loaded in id batches."""
    found: dict[int, tuple[str, ...]] = {}
    for batch in id_batches(ids):
        for pk, points in Chart.objects.filter(pk__in=batch).values_list("pk", "points"):
            found[pk] = tuple(points)
    return found


def split_by_points(group_a: Sequence[int], group_b: Sequence[int] | None) -> PointSetSplit:
    """The run's point set is the most common one in group A (ties: the lowest chart id's); charts of either
    group with another point set are skipped, so one odd chart does not abort a run. A group B none of whose
    charts has that point set is a :class:`FieldError` on ``group_b`` (nothing would be computed)."""
    points_a = points_of(group_a)
    counts = Counter(points_a[i] for i in group_a if i in points_a)
    if not counts:  # every chart deleted since the selection: load_population names them
        return PointSetSplit((), list(group_a), None if group_b is None else list(group_b), [])
    # Counter keeps first-seen order for equal counts, and group A is ascending: ties go to the lowest id.
    points = counts.most_common(1)[0][0]
    kept_a = [i for i in group_a if points_a.get(i, points) == points]
    skipped = set(group_a) - set(kept_a)
    kept_b: list[int] | None = None
    if group_b is not None:
        points_b = points_of(group_b)
        kept_b = [i for i in group_b if points_b.get(i, points) == points]
        if group_b and not kept_b:
            kinds = sorted(set(points_b.values()))
            raise FieldError("group_b", f"points {list(kinds[0])} differ from group A's {list(points)}")
        skipped |= set(group_b) - set(kept_b)
    return PointSetSplit(points, kept_a, kept_b, sorted(skipped))


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
