"""Aspect patterns: a brute-force search over point triples, quadruples and subsets (itertools) on random charts,
hand-built charts with each pattern, synastry's both-charts rule, chunking, and bad input."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aspects_app.engine import (
    PATTERN_NAMES,
    AspectConfig,
    ChartPatterns,
    MemoryOptimizedVectorizedCalculator,
    natal_patterns,
    synastry_patterns,
)
from aspects_app.engine import patterns as patterns_module
from aspects_app.engine.errors import FieldError

from .helpers import CPU_BACKENDS

Key = tuple[int, str, Any]  # chart, pattern, members (a tuple; a frozenset for stellia, whose order is by longitude)
Aspect = Callable[[int, int], str | None]
Table = dict[tuple[int, int], str]

ALL = AspectConfig.preset("all")  # quincunx active: yods can form
DEFAULT = AspectConfig.preset("default")


def calculator(config: AspectConfig = DEFAULT, **options: Any) -> MemoryOptimizedVectorizedCalculator:
    return MemoryOptimizedVectorizedCalculator(config=config, backend="numpy", **options)


def names(count: int) -> list[str]:
    return [f"P{n}" for n in range(count)]


# -- brute force ---------------------------------------------------------------------------------------------------


def smallest_rotation(cycle: tuple[int, int, int, int]) -> tuple[int, ...]:
    """The same figure walked from its lowest point towards its lower neighbour."""
    turns = [cycle[k:] + cycle[:k] for k in range(4)]
    return min(min(t, (t[0], *t[:0:-1])) for t in turns)


def brute_force(table: Table, lon: Sequence[float], span: float | None, min_points: int) -> set[tuple[str, Any]]:
    """Every pattern of one chart: every role assignment of every triple and quadruple, every subset of points."""
    return figures(lambda p, q: table.get((p, q)), len(lon)) | stellia(lon, span, min_points)


def figures(aspect: Aspect, count: int) -> set[tuple[str, Any]]:
    return triple_figures(aspect, count) | quadruple_figures(aspect, count)


def triple_figures(aspect: Aspect, count: int) -> set[tuple[str, Any]]:
    found: set[tuple[str, Any]] = set()
    for p, q, r in itertools.combinations(range(count), 3):
        if aspect(p, q) == aspect(p, r) == aspect(q, r) == "trine":
            found.add(("grand-trine", (p, q, r)))
    for b1, b2, apex in itertools.permutations(range(count), 3):
        if b1 < b2 and aspect(b1, b2) == "opposition" and aspect(b1, apex) == aspect(b2, apex) == "square":
            found.add(("t-square", (b1, b2, apex)))
        if b1 < b2 and aspect(b1, b2) == "sextile" and aspect(b1, apex) == aspect(b2, apex) == "quincunx":
            found.add(("yod", (b1, b2, apex)))
    return found


def quadruple_figures(aspect: Aspect, count: int) -> set[tuple[str, Any]]:
    found: set[tuple[str, Any]] = set()
    for w, x, y, z in itertools.permutations(range(count), 4):
        sides = [aspect(w, x), aspect(x, y), aspect(y, z), aspect(z, w)]
        if aspect(w, y) == aspect(x, z) == "opposition":
            if sides == ["square"] * 4:
                found.add(("grand-cross", smallest_rotation((w, x, y, z))))
            if sides in (["sextile", "trine"] * 2, ["trine", "sextile"] * 2):
                found.add(("mystic-rectangle", smallest_rotation((w, x, y, z))))
        # w: the trine point opposite the tail z; x < y the other two.
        trine = aspect(w, x) == aspect(w, y) == aspect(x, y) == "trine"
        if x < y and trine and aspect(w, z) == "opposition" and aspect(z, x) == aspect(z, y) == "sextile":
            found.add(("kite", (w, x, y, z)))
    return found


def stellia(lon: Sequence[float], span: float | None, min_points: int) -> set[tuple[str, Any]]:
    count = len(lon)
    groups = []
    for size in range(min_points, count + 1):
        for group in itertools.combinations(range(count), size):
            if span is None:
                fits = len({lon[g] // 30 for g in group}) == 1
            else:
                fits = any(all((lon[g] - lon[start]) % 360 <= span for g in group) for start in group)
            if fits:
                groups.append(frozenset(group))
    return {("stellium", g) for g in groups if not any(g < other for other in groups)}


def lookup(records: list[dict[str, Any]], shift1: int = 0, shift2: int = 0) -> Table:
    table: Table = {}
    for r in records:
        table[(r["p1"] + shift1, r["p2"] + shift2)] = table[(r["p2"] + shift2, r["p1"] + shift1)] = r["aspect"]
    return table


def keys(found: ChartPatterns) -> list[Key]:
    """The engine's rows as brute-force keys, duplicates kept (each pattern must come once)."""
    out: list[Key] = []
    columns = (found.i.tolist(), found.pattern.tolist(), found.members.tolist(), found.size.tolist())
    for row, code, members, size in zip(*columns, strict=True):
        name, chosen = PATTERN_NAMES[code], tuple(members[:size])
        out.append((row, name, frozenset(chosen) if name == "stellium" else chosen))
    return out


# -- random charts -------------------------------------------------------------------------------------------------

# Near multiples of 30°, so that trines, squares, sextiles, oppositions and quincunxes (and the figures they make)
# are common; hundredths of a degree, so sums and differences stay close to exact.
grid_longitudes = st.tuples(st.integers(0, 11), st.integers(-150, 150)).map(lambda t: (t[0] * 30 + t[1] / 100) % 360)
spans = st.one_of(st.none(), st.integers(3, 40).map(lambda d: d + 0.005))


@st.composite
def charts(draw: st.DrawFn, max_points: int = 8) -> np.ndarray[Any, Any]:
    count = draw(st.integers(3, max_points))
    rows = draw(st.integers(1, 3))
    return np.array([[draw(grid_longitudes) for _ in range(count)] for _ in range(rows)])


@settings(max_examples=40, deadline=None)
@given(charts(), st.sampled_from([ALL, DEFAULT]), spans, st.integers(3, 4))
def test_natal_patterns_match_brute_force(lon: np.ndarray[Any, Any], config: AspectConfig, span: float | None,
                                          min_points: int) -> None:  # fmt: skip
    calc = calculator(config)
    points = names(lon.shape[1])
    found = calc.patterns(lon, points=points, stellium_span=span, stellium_min_points=min_points)
    hits = calc.natal(lon, points=points)
    expected: list[Key] = []
    for row in range(lon.shape[0]):
        table = lookup(hits.select(hits.i == row).to_records())
        chart = brute_force(table, lon[row].tolist(), span, min_points)
        expected += [(row, name, members) for name, members in chart]
    assert sorted(keys(found), key=repr) == sorted(expected, key=repr)


@settings(max_examples=25, deadline=None)
@given(charts(max_points=5), st.sampled_from([ALL, DEFAULT]), spans)
def test_synastry_patterns_match_brute_force_over_combined_points(
    lon: np.ndarray[Any, Any], config: AspectConfig, span: float | None
) -> None:
    calc = calculator(config)
    count = lon.shape[1]
    lon_a, lon_b = lon, np.roll(lon, 1, axis=0)[:, ::-1] + 0.5  # another chart per row, on the same grid
    lon_b %= 360
    points = names(count)
    found = calc.synastry_patterns(lon_a, lon_b, points=points, stellium_span=span)
    natal_a, natal_b = calc.natal(lon_a, points=points), calc.natal(lon_b, points=points)
    cross = calc.paired_synastry(lon_a, lon_b, points=points)
    expected: list[Key] = []
    for row in range(lon.shape[0]):
        table = lookup(natal_a.select(natal_a.i == row).to_records())
        table |= lookup(natal_b.select(natal_b.i == row).to_records(), count, count)
        table |= lookup(cross.select(cross.i == row).to_records(), 0, count)
        combined = [*lon_a[row].tolist(), *lon_b[row].tolist()]
        for name, members in brute_force(table, combined, span, 3):
            if min(members) < count <= max(members):  # both charts take part
                expected.append((row, name, members))
    assert sorted(keys(found), key=repr) == sorted(expected, key=repr)
    assert found.kind == "synastry" and found.points == tuple(points)


# -- hand-built charts ---------------------------------------------------------------------------------------------


def records(lon: Sequence[float], config: AspectConfig = DEFAULT, span: float | None = None) -> list[dict[str, Any]]:
    found = calculator(config).patterns([list(lon)], points=names(len(lon)), stellium_span=span)
    return found.to_records()


def rec(pattern: str, points: list[int]) -> dict[str, Any]:
    return {"i": 0, "pattern": pattern, "points": points}


def test_grand_trine() -> None:
    assert records([250.0, 10.0, 131.0]) == [rec("grand-trine", [0, 1, 2])]


def test_t_square_lists_the_opposition_then_the_apex() -> None:
    assert records([100.0, 190.0, 10.0]) == [rec("t-square", [1, 2, 0])]


def test_grand_cross_walks_the_figure_and_holds_four_t_squares() -> None:
    # 0: 10°, 1: 190°, 2: 100°, 3: 280°: around the figure 0, 2, 1, 3.
    assert records([10.0, 190.0, 100.0, 280.0]) == [
        rec("t-square", [0, 1, 2]),
        rec("t-square", [0, 1, 3]),
        rec("t-square", [2, 3, 0]),
        rec("t-square", [2, 3, 1]),
        rec("grand-cross", [0, 2, 1, 3]),
    ]


def test_yod_needs_the_quincunx_active() -> None:
    assert records([210.0, 0.0, 60.5], ALL) == [rec("yod", [1, 2, 0])]
    assert records([210.0, 0.0, 60.5], DEFAULT) == []


def test_kite_also_reports_its_grand_trine() -> None:
    # 120°, 180° (tail), 0° (opposite the tail), 240°.
    assert records([120.0, 180.0, 0.0, 240.0]) == [rec("grand-trine", [0, 2, 3]), rec("kite", [2, 0, 3, 1])]


def test_mystic_rectangle() -> None:
    # 180°, 0°, 240°, 60°: around the figure 180, 240, 0, 60 (sextile, trine, sextile, trine).
    assert records([180.0, 0.0, 240.0, 60.0]) == [rec("mystic-rectangle", [0, 2, 1, 3])]


def test_stellium_by_sign_and_by_degree() -> None:
    lon = [29.9, 1.0, 5.0, 30.5, 200.0]
    assert records(lon) == [rec("stellium", [1, 2, 0])]  # Aries only: 30.5° is Taurus
    assert records(lon, span=30.0) == [rec("stellium", [1, 2, 0, 3])]
    assert records(lon, span=4.0) == []


def test_stellium_by_degree_crosses_zero_aries_and_reports_maximal_groups_once() -> None:
    lon = [355.0, 2.0, 8.0, 100.0, 14.0]
    assert records(lon, span=15.0) == [rec("stellium", [0, 1, 2]), rec("stellium", [1, 2, 4])]
    assert records(lon, span=20.0) == [rec("stellium", [0, 1, 2, 4])]
    # Every point in one arc: the whole chart, once, from the arc's start.
    assert records([10.0, 12.0, 11.0], span=359.5) == [rec("stellium", [0, 2, 1])]


def test_synastry_reports_only_patterns_with_both_charts() -> None:
    calc = calculator()
    # a's own grand trine is left out; b's own stellium (Gemini) too; each b point is a kite's tail on it.
    found = calc.synastry_patterns([[0.0, 120.0, 240.0]], [[60.0, 61.0, 62.0]], points=["Sun", "Moon", "Venus"])
    assert found.to_records(point_names=True) == [
        {"i": 0, "pattern": "kite", "points": ["Venus", "Sun", "Moon", tail], "sides": ["a", "a", "a", "b"]}
        for tail in ("Sun", "Moon", "Venus")
    ]
    assert found.to_records()[0]["points"] == [2, 0, 1, 0]
    assert found.members[0, :4].tolist() == [2, 0, 1, 3]


# -- many charts, chunks, backends ---------------------------------------------------------------------------------


def test_many_charts_equal_each_chart_on_its_own_in_any_chunking() -> None:
    lon = np.random.default_rng(7).uniform(0, 360, (60, 10))
    whole = calculator(ALL).patterns(lon, stellium_span=12.0)
    assert {"grand-trine", "t-square", "kite", "yod", "stellium"} <= set(whole.counts_by_pattern())
    for options in ({"chunk_size": 1}, {"chunk_size": 7}, {"working_memory_mb": 0.05}):
        chunked = calculator(ALL, **options).patterns(lon, stellium_span=12.0)
        assert chunked.to_records() == whole.to_records(), options
    hits = calculator(ALL).natal(lon)
    assert natal_patterns(hits, lon, 12.0, rows_per_chunk=3).to_records() == whole.to_records()
    for row in range(lon.shape[0]):
        alone = calculator(ALL).patterns(lon[row : row + 1], stellium_span=12.0).to_records()
        assert [{**r, "i": row} for r in alone] == whole.select(whole.i == row).to_records()


def test_synastry_in_chunks_equals_whole() -> None:
    rng = np.random.default_rng(3)
    lon_a, lon_b = rng.uniform(0, 360, (30, 8)), rng.uniform(0, 360, (30, 8))
    whole = calculator().synastry_patterns(lon_a, lon_b)
    assert len(whole) > 0
    assert calculator(chunk_size=4).synastry_patterns(lon_a, lon_b).to_records() == whole.to_records()
    calc = calculator()
    direct = synastry_patterns(
        calc.natal(lon_a), calc.natal(lon_b), calc.paired_synastry(lon_a, lon_b), lon_a, lon_b, rows_per_chunk=5
    )
    assert direct.to_records() == whole.to_records()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_backend_finds_the_same_patterns(backend: str) -> None:
    lon = np.random.default_rng(11).uniform(0, 360, (12, 10))
    reference = calculator(ALL).patterns(lon)
    found = MemoryOptimizedVectorizedCalculator(config=ALL, backend=backend).patterns(lon)
    assert found.to_records() == reference.to_records()


def test_result_helpers() -> None:
    found = calculator().patterns([[250.0, 10.0, 130.0], [100.0, 190.0, 10.0]])
    assert len(found) == 2 and found.kind == "natal"
    assert found.counts_by_pattern() == {"grand-trine": 1, "t-square": 1}
    assert found.named("t-square").to_records(point_names=True) == [
        {"i": 1, "pattern": "t-square", "points": ["Moon", "Mercury", "Sun"]}
    ]
    assert len(found.select(np.array([], dtype=np.intp))) == 0
    assert len(calculator().patterns([[0.0, 1.0]])) == 0  # too few points for any figure


def test_a_chart_of_many_points_is_refused_by_the_budget_without_listing_its_quadruples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 255 points (the most a chart may have): C(255, 4) = 172 million quadruples, ~15 GB as Python tuples. The
    # budget check counts them: such a chart is a prompt error on the budget (a 400), not a worker that lists
    # them all first and runs out of memory (GET charts/{id}/patterns/ of a 240-point pair took 48 s to refuse).
    listed: list[int] = []
    original = patterns_module._combinations

    def recorded(num_points: int, k: int) -> Any:
        listed.append(num_points)
        if num_points > 100:  # not listed here either: the current code would take minutes and ~15 GB
            raise AssertionError(f"listed the {k}-combinations of {num_points} points")
        return original(num_points, k)

    monkeypatch.setattr(patterns_module, "_combinations", recorded)
    lon = np.random.default_rng(1).uniform(0, 360, (1, 255))
    with pytest.raises(FieldError) as refused:
        calculator(working_memory_mb=256).patterns(lon, points=names(255))
    assert refused.value.field == "working_memory_mb"
    with pytest.raises(FieldError):
        calculator(working_memory_mb=256).synastry_patterns(lon[:, :120], lon[:, 120:240], points=names(120))
    assert not listed


def test_index_tables_are_kept_for_a_few_point_counts_only() -> None:
    # Charts may have any number of points: one table per count ever seen, kept for good, grew without bound
    # (a few hundred MiB each near the budget's limit).
    rng = np.random.default_rng(5)
    for count in range(4, 40):
        calculator().patterns(rng.uniform(0, 360, (1, count)), points=names(count))
    assert patterns_module._combinations.cache_info().currsize <= 2 * patterns_module.KEPT_POINT_COUNTS


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lon": [[0.0, 400.0, 10.0]]}, "lon"),
        ({"lon": [[0.0, 10.0, 20.0]], "points": ["Sun"]}, "points"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_span": 0}, "stellium_span"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_span": 360}, "stellium_span"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_span": "wide"}, "stellium_span"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_span": True}, "stellium_span"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_min_points": 2}, "stellium_min_points"),
        ({"lon": [[0.0, 10.0, 20.0]], "stellium_min_points": 3.0}, "stellium_min_points"),
    ],
)
def test_bad_pattern_input_names_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(FieldError) as raised:
        calculator().patterns(**kwargs)
    assert raised.value.field == field


def test_bad_synastry_and_hits_input_names_the_argument() -> None:
    calc = calculator()
    lon = np.array([[0.0, 120.0, 240.0], [10.0, 20.0, 30.0]])
    natal = calc.natal(lon)
    cross = calc.paired_synastry(lon, lon)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: calc.synastry_patterns(lon, lon[:1]), "lon_b"),
        (lambda: calc.synastry_patterns(lon, lon[:, :2]), "lon_a"),
        (lambda: natal_patterns(cross, lon), "hits"),
        (lambda: natal_patterns(natal, lon[:, :2]), "hits"),
        (lambda: natal_patterns(natal, lon[:1]), "hits"),
        (lambda: natal_patterns(natal, lon, rows_per_chunk=0), "rows_per_chunk"),
        (lambda: synastry_patterns(natal, natal, natal, lon, lon), "cross"),
        (lambda: synastry_patterns(natal, natal, calc.synastry(lon, lon), lon, lon), "cross"),
        (lambda: synastry_patterns(natal, cross, cross, lon, lon), "natal_b"),
        (lambda: calc.patterns(lon).named("kites"), "name"),
    ]
    for call, field in cases:
        with pytest.raises(FieldError) as raised:
            call()
        assert raised.value.field == field
