"""Aspect patterns (grand trine, T-square, grand cross, yod, kite, mystic rectangle, stellium) of many charts at once.

The search reads the aspects the engine already found (an :class:`~aspects_app.engine.hits.AspectHits`, so the
orbs and the one-aspect-per-pair rule are the :class:`~aspects_app.engine.aspects.AspectConfig`'s), lays a chunk
of charts out as an (n, P, P) aspect-code matrix, gathers the codes of every point triple and quadruple
(``itertools.combinations`` index arrays, the same for every chart) and tests each pattern's role assignments
with boolean array operations: no Python loop runs per chart. Stellia come from the longitudes. See
docs/patterns.md for the definitions and the synastry rule.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from . import validation
from .aspects import ASPECT_NAMES
from .errors import FieldError
from .hits import INDEX_DTYPE, AspectHits

PATTERN_NAMES: tuple[str, ...] = (
    "grand-trine",
    "t-square",
    "grand-cross",
    "yod",
    "kite",
    "mystic-rectangle",
    "stellium",
)
GRAND_TRINE, T_SQUARE, GRAND_CROSS, YOD, KITE, MYSTIC_RECTANGLE, STELLIUM = range(len(PATTERN_NAMES))

NO_ASPECT = 255  # the code matrix's entry for a pair of points without an aspect (and for a point with itself)
PAD = -1  # ``members`` entries past a pattern's size
_CODE = {name: code for code, name in enumerate(ASPECT_NAMES)}
SEXTILE, SQUARE, TRINE, QUINCUNX, OPPOSITION = (
    _CODE[n] for n in ("sextile", "square", "trine", "quincunx", "opposition")
)
DEFAULT_STELLIUM_MIN_POINTS = 3
SIDES = ("a", "b")

MemberArray = npt.NDArray[np.int16]


@dataclass(frozen=True)
class StelliumRule:
    """Stellia are maximal groups of at least ``min_points`` points in one sign (``span`` None) or within an arc
    of ``span`` degrees (first to last point, inclusive; the arc may cross 0° Aries)."""

    span: float | None = None
    min_points: int = DEFAULT_STELLIUM_MIN_POINTS

    @classmethod
    def make(cls, span: Any, min_points: Any) -> StelliumRule:
        if span is not None:
            if isinstance(span, bool) or not isinstance(span, int | float | np.number) or not np.isfinite(span):
                raise FieldError("stellium_span", f"expected None (by sign) or degrees in (0, 360), got {span!r}")
            if not 0 < float(span) < 360:
                raise FieldError("stellium_span", f"expected None (by sign) or degrees in (0, 360), got {span!r}")
            span = float(span)
        if isinstance(min_points, bool) or not isinstance(min_points, int | np.integer) or min_points < 3:
            raise FieldError("stellium_min_points", f"expected an integer >= 3, got {min_points!r}")
        return cls(span, int(min_points))


@dataclass(frozen=True)
class ChartPatterns:
    """Patterns found, one row each: ``i`` (chart, or pair for synastry), ``pattern`` (index into
    :data:`PATTERN_NAMES`), ``members`` (M, width) point indices padded with −1, ``size`` (points in the pattern).

    Members are in a fixed order per pattern (docs/patterns.md): grand trine sorted; T-square and yod the two
    base points sorted, then the apex; grand cross and mystic rectangle around the figure from the lowest index,
    towards its lower neighbour; kite the trine point opposite the tail, the other two sorted, then the tail;
    stellium by longitude from the start of its arc. For synastry (``sides == 2``) index ``q < P`` is chart a's
    point ``q`` and ``q >= P`` chart b's point ``q − P``, where P = ``len(points)``. Rows are ordered by chart,
    pattern, then members.
    """

    i: npt.NDArray[np.int32]
    pattern: npt.NDArray[np.uint8]
    members: MemberArray
    size: npt.NDArray[np.uint8]
    points: tuple[str, ...]
    sides: int = 1

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @property
    def kind(self) -> str:
        return "natal" if self.sides == 1 else "synastry"

    @classmethod
    def empty(cls, points: Sequence[str], sides: int = 1) -> ChartPatterns:
        return cls(
            i=np.empty(0, INDEX_DTYPE),
            pattern=np.empty(0, np.uint8),
            members=np.empty((0, 4), np.int16),
            size=np.empty(0, np.uint8),
            points=tuple(points),
            sides=sides,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[ChartPatterns], points: Sequence[str], sides: int = 1) -> ChartPatterns:
        if not parts:
            return cls.empty(points, sides)
        width = max(part.members.shape[1] for part in parts)
        members = [np.pad(p.members, ((0, 0), (0, width - p.members.shape[1])), constant_values=PAD) for p in parts]
        return cls(
            i=np.concatenate([p.i for p in parts]),
            pattern=np.concatenate([p.pattern for p in parts]),
            members=np.concatenate(members),
            size=np.concatenate([p.size for p in parts]),
            points=tuple(points),
            sides=sides,
        )

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> ChartPatterns:
        """The rows picked by a boolean mask or index array (e.g. ``found.select(found.i == 3)``)."""
        return ChartPatterns(
            i=self.i[mask],
            pattern=self.pattern[mask],
            members=self.members[mask],
            size=self.size[mask],
            points=self.points,
            sides=self.sides,
        )

    def named(self, name: str) -> ChartPatterns:
        """The rows of one pattern."""
        if name not in PATTERN_NAMES:
            raise FieldError("name", f"unknown pattern {name!r}; known: {', '.join(PATTERN_NAMES)}")
        return self.select(self.pattern == PATTERN_NAMES.index(name))

    def counts_by_pattern(self) -> dict[str, int]:
        counts = np.bincount(self.pattern, minlength=len(PATTERN_NAMES))
        return {name: int(n) for name, n in zip(PATTERN_NAMES, counts, strict=True) if n}

    def to_records(self, point_names: bool = False) -> list[dict[str, Any]]:
        """One dict per pattern: ``i``, ``pattern`` (name), ``points`` (indices within their chart, or names with
        ``point_names``); synastry adds ``sides``, the chart (``"a"``/``"b"``) of each point."""
        count = len(self.points)
        names = np.asarray(self.points, dtype=object)
        records: list[dict[str, Any]] = []
        for i, code, row, size in zip(
            self.i.tolist(), self.pattern.tolist(), self.members.tolist(), self.size.tolist(), strict=True
        ):
            members = row[:size]
            own = [m % count for m in members]
            record: dict[str, Any] = {
                "i": i,
                "pattern": PATTERN_NAMES[code],
                "points": names[own].tolist() if point_names else own,
            }
            if self.sides == 2:
                record["sides"] = [SIDES[m // count] for m in members]
            records.append(record)
        return records


# -- index tables ------------------------------------------------------------------------------------------------


# Index tables are kept for this many point counts (each count has a triples' and a quadruples' table): charts
# may have any number of points, and a table near the budget's limit holds a few hundred MiB.
KEPT_POINT_COUNTS = 8


@lru_cache(maxsize=2 * KEPT_POINT_COUNTS)
def _combinations(num_points: int, k: int) -> npt.NDArray[np.intp]:
    """(C(P, k), k) point indices, each row ascending."""
    rows = list(itertools.combinations(range(num_points), k))
    return np.asarray(rows, dtype=np.intp).reshape(len(rows), k)


# A quadruple's three ways to split into two diagonals, as the cycle around the figure (positions 0..3 of the
# ascending quadruple), starting at position 0 towards its lower neighbour: diagonals are (w, y) and (x, z).
_CYCLES: tuple[tuple[int, int, int, int], ...] = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2))
# Kite roles (opposed trine point, the other two ascending, tail) over the quadruple's positions.
_KITE_ROLES: tuple[tuple[int, int, int, int], ...] = tuple(
    (o, u, v, t)
    for o, t in itertools.permutations(range(4), 2)
    for u, v in [tuple(q for q in range(4) if q not in (o, t))]
)
# Triple roles (base, base, apex) for the patterns with an apex.
_APEX_ROLES: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (0, 2, 1), (1, 2, 0))


def bytes_per_chart(num_points: int) -> float:
    """Temporaries of the search per chart: the code matrix, the triples' and quadruples' gathered codes and
    their boolean tests, and the stellium comparison, with room for the masks of one pattern at a time."""
    # Counted, not listed: the budget check must stay cheap for the charts it refuses (C(255, 4) is 1.7e8).
    triples, quads = math.comb(num_points, 3), math.comb(num_points, 4)
    return float(2 * num_points**2 + 24 * triples + 40 * quads + 24 * num_points**2 + 64)


# -- the search --------------------------------------------------------------------------------------------------


class PatternSearch:
    """The patterns of a set of charts, one chunk of charts at a time (:meth:`chunk`), for the calculator's
    chunk driver; :func:`natal_patterns` and :func:`synastry_patterns` run it whole.

    ``codes(rows)`` gives the (n, Q, Q) aspect-code matrix of those charts and ``lon`` the (N, Q) longitudes,
    where Q is P (natal) or 2P (synastry: a's points, then b's). Synastry keeps only patterns with points of both.
    """

    def __init__(
        self,
        pair_codes: Any,
        lon: npt.NDArray[np.float64],
        points: tuple[str, ...],
        stellium: StelliumRule,
        sides: int,
    ) -> None:
        self._pair_codes = pair_codes
        self.lon = lon
        self.points = points
        self.stellium = stellium
        self.sides = sides
        self.parts: list[ChartPatterns] = []

    @property
    def num_charts(self) -> int:
        return int(self.lon.shape[0])

    def chunk(self, rows: slice, _cols: slice | None = None) -> None:
        """Find the patterns of charts ``rows`` and keep them (the chunk driver's reduce function)."""
        codes = self._pair_codes(rows)
        found = list(_figures(codes)) + list(_stellia(self.lon[rows], self.stellium))
        part = _assemble(found, rows.start, self.points, self.sides)
        if self.sides == 2:
            part = _both_sides(part, len(self.points))
        self.parts.append(part)

    def result(self) -> ChartPatterns:
        return ChartPatterns.concatenate(self.parts, self.points, self.sides)


Found = tuple[int, npt.NDArray[np.intp], MemberArray]  # pattern code, chart rows in the chunk, members


def _figures(codes: npt.NDArray[np.uint8]) -> Iterator[Found]:
    """The aspect figures of a chunk: every pattern but stellia."""
    num_points = codes.shape[1]
    if num_points >= 3:
        yield from _triple_figures(codes, _combinations(num_points, 3))
    if num_points >= 4:
        yield from _quadruple_figures(codes, _combinations(num_points, 4))


class _PairTests:
    """For every pair of positions (r, s) of the combinations, the (n, C) codes of that point pair, and each
    ``code ==`` test on them computed once (kite and rectangle roles reuse the same tests many times)."""

    def __init__(self, codes: npt.NDArray[np.uint8], combos: npt.NDArray[np.intp]) -> None:
        k = combos.shape[1]
        self._codes = {(r, s): codes[:, combos[:, r], combos[:, s]] for r in range(k) for s in range(r + 1, k)}
        self._tests: dict[tuple[int, int, int], npt.NDArray[np.bool_]] = {}

    def __call__(self, r: int, s: int, code: int) -> npt.NDArray[np.bool_]:
        key = (min(r, s), max(r, s), code)
        test = self._tests.get(key)
        if test is None:
            test = self._tests[key] = self._codes[key[:2]] == code
        return test


def _hits(mask: npt.NDArray[np.bool_], combos: npt.NDArray[np.intp], order: Sequence[int], code: int) -> Found:
    rows, cols = np.nonzero(mask)
    return code, rows, combos[cols][:, list(order)].astype(np.int16)


def _triple_figures(codes: npt.NDArray[np.uint8], triples: npt.NDArray[np.intp]) -> Iterator[Found]:
    is_ = _PairTests(codes, triples)
    trine = is_(0, 1, TRINE) & is_(0, 2, TRINE) & is_(1, 2, TRINE)
    yield _hits(trine, triples, (0, 1, 2), GRAND_TRINE)
    for base1, base2, apex in _APEX_ROLES:
        t_square = is_(base1, base2, OPPOSITION) & is_(base1, apex, SQUARE)
        t_square &= is_(base2, apex, SQUARE)
        yield _hits(t_square, triples, (base1, base2, apex), T_SQUARE)
        yod = is_(base1, base2, SEXTILE) & is_(base1, apex, QUINCUNX)
        yod &= is_(base2, apex, QUINCUNX)
        yield _hits(yod, triples, (base1, base2, apex), YOD)


def _quadruple_figures(codes: npt.NDArray[np.uint8], quads: npt.NDArray[np.intp]) -> Iterator[Found]:
    is_ = _PairTests(codes, quads)
    for w, x, y, z in _CYCLES:
        diagonals = is_(w, y, OPPOSITION) & is_(x, z, OPPOSITION)
        if not diagonals.any():
            continue
        cross = diagonals & is_(w, x, SQUARE) & is_(x, y, SQUARE)
        cross &= is_(y, z, SQUARE) & is_(z, w, SQUARE)
        yield _hits(cross, quads, (w, x, y, z), GRAND_CROSS)
        # Opposite sides of the rectangle alike: sextile, trine, sextile, trine around it (from either side).
        sextile_first = is_(w, x, SEXTILE) & is_(y, z, SEXTILE)
        sextile_first &= is_(x, y, TRINE) & is_(z, w, TRINE)
        trine_first = is_(w, x, TRINE) & is_(y, z, TRINE)
        trine_first &= is_(x, y, SEXTILE) & is_(z, w, SEXTILE)
        yield _hits(diagonals & (sextile_first | trine_first), quads, (w, x, y, z), MYSTIC_RECTANGLE)
    for opposed, u, v, tail in _KITE_ROLES:
        kite = is_(opposed, tail, OPPOSITION) & is_(tail, u, SEXTILE) & is_(tail, v, SEXTILE)
        kite &= is_(opposed, u, TRINE) & is_(opposed, v, TRINE) & is_(u, v, TRINE)
        yield _hits(kite, quads, (opposed, u, v, tail), KITE)


def _stellia(lon: npt.NDArray[np.float64], rule: StelliumRule) -> Iterator[Found]:
    """Maximal stellia of a chunk, from the points in longitude order.

    Every group of points that fits the rule is a run of consecutive points in that (circular) order, starting at
    its first point, so it suffices to count, for each start k, how many points from k on fit (``reach``): the run
    at k is maximal unless the run at k − 1 covers it (``reach[k − 1] > reach[k]``). By sign, runs stop at the
    sign's end and do not wrap (Pisces to Aries crosses a sign boundary).
    """
    charts, count = lon.shape
    if count < rule.min_points:
        return
    order = np.argsort(lon, axis=1, kind="stable")
    ordered = np.take_along_axis(lon, order, axis=1)
    later = np.arange(count)[None, :] >= np.arange(count)[:, None]  # [k, m]: m at or after k
    if rule.span is None:
        sign = np.floor_divide(ordered, 30.0)
        # Points of one sign are consecutive in longitude order: count those from k on in k's sign.
        reach = ((sign[:, None, :] == sign[:, :, None]) & later).sum(axis=2)
        starts = np.ones((charts, count), dtype=bool)
        starts[:, 1:] = sign[:, 1:] != sign[:, :-1]
        found = starts & (reach >= rule.min_points)
    else:
        # Unwrapped: position k + j (j < P) is the j-th point after k, 360° higher once past the circle's end.
        unwrapped = np.concatenate([ordered, ordered + 360.0], axis=1)
        offsets = np.arange(count)[None, :] + np.arange(count)[:, None]  # [k, j] = k + j
        ahead = unwrapped[:, offsets] - ordered[:, :, None]
        reach = (ahead <= rule.span).sum(axis=2)
        covered = np.roll(reach, 1, axis=1) > reach
        found = ~covered & (reach >= rule.min_points)
        # When every point fits one arc, several starts reach them all: report the circle's group once.
        full = reach == count
        first_full = np.cumsum(full, axis=1) == 1
        found &= ~full | (first_full & full)
    rows, starts_at = np.nonzero(found)
    if rows.size == 0:
        return
    sizes = reach[rows, starts_at]
    width = int(sizes.max())
    steps = np.arange(width)
    positions = (starts_at[:, None] + steps[None, :]) % count
    members = np.where(steps[None, :] < sizes[:, None], order[rows[:, None], positions], PAD)
    yield STELLIUM, rows, members.astype(np.int16)


def _assemble(found: Sequence[Found], offset: int, points: tuple[str, ...], sides: int) -> ChartPatterns:
    """One chunk's finds as rows ordered by chart, pattern, members."""
    found = [f for f in found if f[1].size]
    if not found:
        return ChartPatterns.empty(points, sides)
    width = max(4, *(members.shape[1] for _, _, members in found))
    members = np.concatenate([np.pad(m, ((0, 0), (0, width - m.shape[1])), constant_values=PAD) for _, _, m in found])
    charts = np.concatenate([rows for _, rows, _ in found]) + offset
    codes = np.concatenate([np.full(rows.size, code, np.uint8) for code, rows, _ in found])
    order = np.lexsort((*members.T[::-1], codes, charts))
    members = members[order]
    return ChartPatterns(
        i=charts[order].astype(INDEX_DTYPE),
        pattern=codes[order],
        members=members,
        size=(members != PAD).sum(axis=1).astype(np.uint8),
        points=points,
        sides=sides,
    )


def _both_sides(part: ChartPatterns, count: int) -> ChartPatterns:
    """Synastry's rule: a pattern counts only when it has points of both charts."""
    real = part.members != PAD
    of_a = (real & (part.members < count)).any(axis=1)
    of_b = (real & (part.members >= count)).any(axis=1)
    return part.select(of_a & of_b)


# -- code matrices from hits -------------------------------------------------------------------------------------


def _rows_of(hits: AspectHits, rows: slice) -> AspectHits:
    """The hits of charts ``rows`` (hits are ordered by chart)."""
    lo, hi = np.searchsorted(hits.i, [rows.start, rows.stop])
    return hits.select(np.arange(lo, hi))


def _fill(codes: npt.NDArray[np.uint8], hits: AspectHits, start: int, shift1: int, shift2: int) -> None:
    """Write ``hits`` (chart indices from ``start``) into both halves of the symmetric code matrix."""
    chart = hits.i.astype(np.intp) - start
    p1 = hits.p1.astype(np.intp) + shift1
    p2 = hits.p2.astype(np.intp) + shift2
    codes[chart, p1, p2] = hits.aspect
    codes[chart, p2, p1] = hits.aspect


def natal_code_matrix(hits: AspectHits, rows: slice) -> npt.NDArray[np.uint8]:
    """(n, P, P) aspect codes of charts ``rows``: :data:`NO_ASPECT` where a pair has none, symmetric."""
    count = len(hits.points)
    codes = np.full((rows.stop - rows.start, count, count), NO_ASPECT, dtype=np.uint8)
    _fill(codes, _rows_of(hits, rows), rows.start, 0, 0)
    return codes


def synastry_code_matrix(
    natal_a: AspectHits, natal_b: AspectHits, cross: AspectHits, rows: slice
) -> npt.NDArray[np.uint8]:
    """(n, 2P, 2P) aspect codes of pairs ``rows`` over a's points then b's: natal aspects in the diagonal
    blocks, synastry aspects between them."""
    count = len(natal_a.points)
    codes = np.full((rows.stop - rows.start, 2 * count, 2 * count), NO_ASPECT, dtype=np.uint8)
    _fill(codes, _rows_of(natal_a, rows), rows.start, 0, 0)
    _fill(codes, _rows_of(natal_b, rows), rows.start, count, count)
    _fill(codes, _rows_of(cross, rows), rows.start, 0, count)
    return codes


# -- entry points ------------------------------------------------------------------------------------------------


def _check_natal_hits(name: str, hits: Any, lon: npt.NDArray[np.float64]) -> AspectHits:
    if not isinstance(hits, AspectHits) or hits.j is not None:
        raise FieldError(name, f"expected the natal AspectHits of the charts (calc.natal), got {type(hits).__name__}")
    if len(hits.points) != lon.shape[1]:
        raise FieldError(name, f"{len(hits.points)} points but the longitudes have {lon.shape[1]} columns")
    if len(hits) and (int(hits.i.max()) >= lon.shape[0] or bool(np.any(np.diff(hits.i) < 0))):
        raise FieldError(name, f"hits must be ordered by chart and index charts 0..{lon.shape[0] - 1}")
    return hits


def natal_search(
    hits: Any, lon: Any, stellium_span: Any = None, stellium_min_points: Any = DEFAULT_STELLIUM_MIN_POINTS
) -> PatternSearch:
    """A search over the charts ``lon`` (N, P) with their natal aspects ``hits`` (validated)."""
    longitudes = validation.longitudes("lon", lon)
    natal = _check_natal_hits("hits", hits, longitudes)
    rule = StelliumRule.make(stellium_span, stellium_min_points)
    return PatternSearch(lambda rows: natal_code_matrix(natal, rows), longitudes, natal.points, rule, sides=1)


def synastry_search(
    natal_a: Any,
    natal_b: Any,
    cross: Any,
    lon_a: Any,
    lon_b: Any,
    stellium_span: Any = None,
    stellium_min_points: Any = DEFAULT_STELLIUM_MIN_POINTS,
) -> PatternSearch:
    """A search over chart pairs (``lon_a[n]``, ``lon_b[n]``) with each side's natal aspects and the pairs'
    synastry aspects ``cross`` (``calc.paired_synastry``: i == j == n)."""
    a = validation.longitudes("lon_a", lon_a)
    b = validation.longitudes("lon_b", lon_b)
    validation.same_points("lon_a", a, "lon_b", b)
    if a.shape[0] != b.shape[0]:
        raise FieldError("lon_b", f"{b.shape[0]} charts but lon_a has {a.shape[0]}; pairs need equal counts")
    hits_a = _check_natal_hits("natal_a", natal_a, a)
    hits_b = _check_natal_hits("natal_b", natal_b, b)
    if not isinstance(cross, AspectHits) or cross.j is None:
        raise FieldError("cross", f"expected the pairs' synastry AspectHits, got {type(cross).__name__}")
    if cross.points != hits_a.points or hits_b.points != hits_a.points:
        raise FieldError("cross", "natal_a, natal_b and cross must name the same points")
    if len(cross) and (bool(np.any(cross.i != cross.j)) or int(cross.i.max()) >= a.shape[0]):
        raise FieldError("cross", "expected paired synastry hits (calc.paired_synastry: i == j, one per pair)")
    if len(cross) and bool(np.any(np.diff(cross.i) < 0)):
        raise FieldError("cross", "hits must be ordered by pair")
    rule = StelliumRule.make(stellium_span, stellium_min_points)
    combined = np.concatenate([a, b], axis=1)
    return PatternSearch(
        lambda rows: synastry_code_matrix(hits_a, hits_b, cross, rows), combined, hits_a.points, rule, sides=2
    )


def _run(search: PatternSearch, rows_per_chunk: int | None) -> ChartPatterns:
    size = validation.positive_int("rows_per_chunk", rows_per_chunk, allow_none=True)
    step = size or max(1, int(64 * 2**20 // bytes_per_chart(search.lon.shape[1])))
    for start in range(0, search.num_charts, step):
        search.chunk(slice(start, min(start + step, search.num_charts)))
    return search.result()


def natal_patterns(
    hits: AspectHits,
    lon: Any,
    stellium_span: float | None = None,
    stellium_min_points: int = DEFAULT_STELLIUM_MIN_POINTS,
    rows_per_chunk: int | None = None,
) -> ChartPatterns:
    """The patterns of every chart of ``lon`` (N, P) from its natal aspects ``hits`` (``calc.natal(lon)``)."""
    return _run(natal_search(hits, lon, stellium_span, stellium_min_points), rows_per_chunk)


def synastry_patterns(
    natal_a: AspectHits,
    natal_b: AspectHits,
    cross: AspectHits,
    lon_a: Any,
    lon_b: Any,
    stellium_span: float | None = None,
    stellium_min_points: int = DEFAULT_STELLIUM_MIN_POINTS,
    rows_per_chunk: int | None = None,
) -> ChartPatterns:
    """The patterns of the combined points of each pair (``lon_a[n]``, ``lon_b[n]``) that have points of both."""
    search = synastry_search(natal_a, natal_b, cross, lon_a, lon_b, stellium_span, stellium_min_points)
    return _run(search, rows_per_chunk)
