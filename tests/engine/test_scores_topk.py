"""Scores and top-k matching: equal to the reference, independent of chunking and backend, deterministic under ties."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aspects_app.engine import STANDARD_POINTS, AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.scoring import ASPECT_HARMONY, DEFAULT_POINT_WEIGHT, POINT_WEIGHTS

from . import brute_force as bf
from .helpers import CPU_BACKENDS, Matrix, all_variants, array, configs, draw_rows

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT = AspectConfig.preset("default")
REQUIRED = ("Sun", "Moon", "Venus", "Mars")


@st.composite
def score_points(draw: st.DrawFn) -> tuple[str, ...]:
    """Column names for scoring: the four required points, maybe the Ascendant and others, in any order."""
    optional = [p for p in STANDARD_POINTS if p not in REQUIRED]
    extra = draw(st.lists(st.sampled_from(optional), unique=True, max_size=4))
    names = list(REQUIRED) + extra
    return tuple(draw(st.permutations(names)))


@st.composite
def populations(draw: st.DrawFn, max_a: int = 5, max_b: int = 8) -> tuple[tuple[str, ...], Matrix, Matrix]:
    """Points, chart rows a, chart rows b; b's values sit near aspects (and orb edges) of a's, with repeated rows."""
    names = draw(score_points())
    n = draw(st.integers(1, max_a))
    m = draw(st.integers(1, max_b))
    lon_a = draw_rows(draw, n, names, DEFAULT)
    distinct = draw_rows(draw, max(1, m // 2), names, DEFAULT, lon_a)
    # Repeats make equal scores (ties) certain, for every method.
    lon_b = [list(distinct[draw(st.integers(0, len(distinct) - 1))]) for _ in range(m)]
    return names, lon_a, lon_b


def weighted_reference(lon_a: Matrix, lon_b: Matrix, config: AspectConfig, names: Sequence[str]) -> list[list[float]]:
    return [
        [bf.weighted_score(ra, rb, config, names, POINT_WEIGHTS, DEFAULT_POINT_WEIGHT, ASPECT_HARMONY) for rb in lon_b]
        for ra in lon_a
    ]


# -- scores --------------------------------------------------------------------------------------------------------


@PROPERTY
@given(data=populations())
def test_discepolo_scores_equal_reference_under_every_plan(data: tuple[tuple[str, ...], Matrix, Matrix]) -> None:
    names, lon_a, lon_b = data
    expected = bf.discepolo_scores(lon_a, lon_b, names)
    a, b = array(lon_a), array(lon_b)
    for label, calc in all_variants(None, CPU_BACKENDS, len(lon_a), len(lon_b), names, "scores"):
        scores = calc.scores(a, b, method="discepolo", points=names)
        assert scores.dtype == np.int16, label
        assert scores.tolist() == expected, label


@PROPERTY
@given(data=populations(), config_data=st.data())
def test_weighted_scores_equal_reference_and_do_not_depend_on_the_plan(
    data: tuple[tuple[str, ...], Matrix, Matrix], config_data: st.DataObject
) -> None:
    names, lon_a, lon_b = data
    config = config_data.draw(configs(names), label="config")
    expected = weighted_reference(lon_a, lon_b, config, names)
    a, b = array(lon_a), array(lon_b)
    runs = all_variants(config, CPU_BACKENDS, len(lon_a), len(lon_b), names, "scores", method="weighted")
    first = runs[0][1].scores(a, b, method="weighted", points=names)
    assert first.dtype == np.float64
    np.testing.assert_allclose(first, np.array(expected), rtol=1e-9, atol=1e-9)
    assert np.all((first >= -100.0) & (first <= 100.0))
    for label, calc in runs[1:]:
        scores = calc.scores(a, b, method="weighted", points=names)
        np.testing.assert_array_equal(scores, first, err_msg=label)


@settings(max_examples=100, deadline=None)
@given(
    names=score_points(),
    config_data=st.data(),
    rng_seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["uniform", "same", "trines", "squares"]),
)
def test_weighted_score_is_within_bounds(
    names: tuple[str, ...], config_data: st.DataObject, rng_seed: int, mode: str
) -> None:
    config = config_data.draw(configs(names))
    rng = np.random.default_rng(rng_seed)
    lon_a = rng.uniform(0, 360, (4, len(names)))
    if mode == "uniform":
        lon_b = rng.uniform(0, 360, (4, len(names)))
    else:  # every pair at one separation: all conjunctions, or as many trines / squares as geometry allows
        step = {"same": 0.0, "trines": 120.0, "squares": 90.0}[mode]
        lon_a = np.zeros((1, len(names)))
        lon_b = np.full((1, len(names)), step)
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    scores = calc.scores(lon_a, lon_b, method="weighted", points=names)
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= -100.0) & (scores <= 100.0))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weighted_extremes(backend: str) -> None:
    """All pairs exact trines score +100; all pairs exact squares score -60 (harmony of a square)."""
    names = ("Sun", "Moon", "Venus", "Mars")
    trine_config = AspectConfig.from_orbs({"trine": 5})
    calc = MemoryOptimizedVectorizedCalculator(config=trine_config, backend=backend)
    a, b = np.zeros((1, 4)), np.full((1, 4), 120.0)
    assert calc.scores(a, b, method="weighted", points=names)[0, 0] == pytest.approx(100.0)
    square_config = AspectConfig.from_orbs({"square": 0})
    calc = MemoryOptimizedVectorizedCalculator(config=square_config, backend=backend)
    b = np.full((1, 4), 270.0)
    assert calc.scores(a, b, method="weighted", points=names)[0, 0] == pytest.approx(100.0 * ASPECT_HARMONY["square"])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("orb", [0.0, 5.0])
def test_weighted_all_exact_trines_stay_within_100(backend: str, orb: float) -> None:
    """Every pair an exact trine is the maximum, 100, and rounding must not push it past the documented bound."""
    names = ("Sun", "Moon", "Mercury", "Venus", "Mars", "Mean_Node")
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs({"trine": orb}), backend=backend)
    score = calc.scores(np.zeros((1, 6)), np.full((1, 6), 120.0), method="weighted", points=names)[0, 0]
    assert score == pytest.approx(100.0)
    assert score <= 100.0, repr(score)


# -- top-k ---------------------------------------------------------------------------------------------------------


@PROPERTY
@given(
    data=populations(max_a=6, max_b=9),
    method=st.sampled_from(["discepolo", "weighted"]),
    self_match=st.booleans(),
    exclude_self=st.booleans(),
    extra_k=st.integers(-8, 3),
)
def test_top_k_equals_reference_ordering(
    data: tuple[tuple[str, ...], Matrix, Matrix], method: str, self_match: bool, exclude_self: bool, extra_k: int
) -> None:
    names, lon_a, lon_b_rows = data
    if self_match:
        lon_b: Matrix | None = None  # a against itself
        other = lon_a
    else:
        lon_b = lon_b_rows
        other = lon_b_rows
    exclude = exclude_self and len(other) == len(lon_a)
    candidates = len(other) - (1 if exclude else 0)
    k = max(1, candidates + extra_k)  # below, at and above the number of candidates
    a = array(lon_a)
    assert a is not None
    b = array(lon_b)
    runs = all_variants(DEFAULT, CPU_BACKENDS, len(lon_a), len(other), names, "top_k", method=method)
    scores = runs[0][1].scores(a, a if b is None else b, method=method, points=names)
    indices, values = bf.top_k(scores.tolist(), k, exclude_self=exclude)
    for label, calc in runs:
        top = calc.top_k(a, b, k=k, method=method, points=names, exclude_self=exclude)
        assert top.indices.shape == (len(lon_a), max(0, min(k, candidates))), label
        assert top.scores.dtype == (np.int16 if method == "discepolo" else np.float64), label
        assert top.indices.tolist() == indices, label
        assert top.scores.tolist() == values, label


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("method", ["discepolo", "weighted"])
def test_top_k_ties_go_to_the_lower_index(backend: str, method: str) -> None:
    rng = np.random.default_rng(3)
    chart = rng.uniform(0, 360, (1, 10))
    lon_b = np.repeat(chart, 12, axis=0)  # twelve identical candidates
    calc = MemoryOptimizedVectorizedCalculator(backend=backend, chunk_size=1)
    for k in (1, 5, 12, 20):
        top = calc.top_k(chart, lon_b, k=k, method=method)
        assert top.indices.tolist() == [list(range(min(k, 12)))]
        assert len(set(top.scores[0].tolist())) <= 1


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_top_k_column_blocks_equal_unchunked(backend: str) -> None:
    # Fewer charts on array_api_strict: its per-call checks make 40 x 40 one-cell chunks take half a minute.
    n = 16 if backend == "array_api_strict" else 40
    rng = np.random.default_rng(11)
    lon = rng.uniform(0, 360, (n, 11))
    whole = MemoryOptimizedVectorizedCalculator(backend=backend)
    cell = whole.estimate_memory_usage(n, n, 11, operation="top_k")["bytes_per_chart_pair"]
    for columns in (1, 3, 7):
        blocked = MemoryOptimizedVectorizedCalculator(backend=backend, working_memory_mb=cell * (columns + 0.5) / 2**20)
        plan = blocked.estimate_memory_usage(n, n, 11, operation="top_k")
        assert (plan["chunk_rows"], plan["chunk_cols"]) == (1, columns)
        for k, exclude in ((1, False), (6, True), (n - 1, True), (n, False)):
            expected = whole.top_k(lon, k=k, exclude_self=exclude)
            got = blocked.top_k(lon, k=k, exclude_self=exclude)
            np.testing.assert_array_equal(got.indices, expected.indices)
            np.testing.assert_array_equal(got.scores, expected.scores)
        np.testing.assert_array_equal(blocked.scores(lon, lon), whole.scores(lon, lon))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_top_k_lon_b_none_is_self_match(backend: str) -> None:
    rng = np.random.default_rng(5)
    lon = rng.uniform(0, 360, (15, 10))
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    for exclude in (False, True):
        implicit = calc.top_k(lon, k=4, exclude_self=exclude)
        explicit = calc.top_k(lon, lon, k=4, exclude_self=exclude)
        np.testing.assert_array_equal(implicit.indices, explicit.indices)
        np.testing.assert_array_equal(implicit.scores, explicit.scores)
    excluded = calc.top_k(lon, k=14, exclude_self=True)
    assert excluded.indices.shape == (15, 14)
    assert all(row not in excluded.indices[row].tolist() for row in range(15))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_top_k_caps_k_at_the_candidates(backend: str) -> None:
    rng = np.random.default_rng(9)
    lon_a, lon_b = rng.uniform(0, 360, (3, 10)), rng.uniform(0, 360, (4, 10))
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    top = calc.top_k(lon_a, lon_b, k=100)
    assert top.indices.shape == top.scores.shape == (3, 4)
    assert sorted(top.indices[0].tolist()) == [0, 1, 2, 3]
    one = calc.top_k(lon_a[:1], k=5, exclude_self=True)  # one chart against itself, excluded: no candidates
    assert one.indices.shape == (1, 0)
    records = calc.top_k(lon_a, lon_b, k=2).to_records()
    assert [(r["i"], r["rank"]) for r in records] == [(i, rank) for i in range(3) for rank in range(2)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_scores_independent_of_chunk_size_on_a_larger_population(backend: str) -> None:
    rng = np.random.default_rng(1)
    lon_a, lon_b = rng.uniform(0, 360, (37, 13)), rng.uniform(0, 360, (23, 13))
    reference = MemoryOptimizedVectorizedCalculator(backend=backend).scores(lon_a, lon_b)
    assert reference.tolist() == bf.discepolo_scores(lon_a, lon_b, STANDARD_POINTS)
    for method in ("discepolo", "weighted"):
        whole = MemoryOptimizedVectorizedCalculator(backend=backend).scores(lon_a, lon_b, method=method)
        for size in (1, 5, 37):
            calc = MemoryOptimizedVectorizedCalculator(backend=backend, chunk_size=size)
            np.testing.assert_array_equal(calc.scores(lon_a, lon_b, method=method), whole)
    assert math.isfinite(float(whole.sum()))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_discepolo_at_its_breakpoints(backend: str) -> None:
    """Sun, Moon, Venus, Mars and Ascendant of b at every major angle from a's, at the 2° precision edge and the orb
    edges (and one ulp either side); the Sun crossing sign boundaries."""
    names = ("Sun", "Moon", "Venus", "Mars", "Ascendant")
    base = [0.0, 200.0, 17.0, 305.0, 150.0]
    lon_a = [base, [29.999999999999996, 200.0, 17.0, 305.0, 150.0], [30.0, 100.0, 250.0, 5.0, 75.0]]
    lon_b: Matrix = []
    for angle in (0.0, 60.0, 90.0, 120.0, 180.0):
        for offset in (0.0, 1.75, 2.0, 6.0, 8.0, 10.0):
            for sign in (-1.0, 1.0):
                for steps in (-1, 0, 1):
                    value = (angle + sign * offset) % 360.0
                    for _ in range(abs(steps)):
                        value = math.nextafter(value, math.inf if steps > 0 else -math.inf)
                    value = min(max(value, 0.0), math.nextafter(360.0, 0.0))
                    for column in range(len(names)):
                        row = [(x + 90.0 + 7.3 * column) % 360.0 for x in base]
                        row[column] = value
                        lon_b.append(row)
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    scores = calc.scores(np.array(lon_a), np.array(lon_b), points=names)
    assert scores.tolist() == bf.discepolo_scores(lon_a, lon_b, names)
    assert len(set(scores.ravel().tolist())) > 5  # the grid does reach different rules


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("empty_side", ["a", "b"])
def test_empty_populations(backend: str, empty_side: str) -> None:
    """No charts on one side: an empty result of the right shape, or a ValueError naming that side (never an
    internal broadcasting error)."""
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    none, some = np.zeros((0, 10)), np.zeros((3, 10))
    lon_a, lon_b = (none, some) if empty_side == "a" else (some, none)
    rows, cols = lon_a.shape[0], lon_b.shape[0]
    checks: list[tuple[str, Callable[[], object], Callable[[Any], bool]]] = [
        ("scores", lambda: calc.scores(lon_a, lon_b), lambda r: r.shape == (rows, cols)),
        ("weighted", lambda: calc.scores(lon_a, lon_b, method="weighted"), lambda r: r.shape == (rows, cols)),
        ("top_k", lambda: calc.top_k(lon_a, lon_b, k=2), lambda r: r.indices.shape == (rows, min(2, cols))),
        ("synastry", lambda: calc.synastry(lon_a, lon_b), lambda r: r.to_records() == []),
        ("natal", lambda: calc.natal(none), lambda r: r.to_records() == []),
    ]
    for name, call, ok in checks:
        try:
            result = call()
        except ValueError as exc:
            assert str(exc).startswith(f"lon_{empty_side}"), f"{name}: {exc}"
        else:
            assert ok(result), f"{name}: {result!r}"


def test_exclude_columns_leaves_out_one_column_per_row() -> None:
    """Groups that share charts: each row drops the column of its own chart (−1: none), nothing else."""
    rng = np.random.default_rng(11)
    lon_a = rng.uniform(0, 360, (12, 10))
    lon_b = rng.uniform(0, 360, (40, 10))
    excluded = rng.integers(-1, 40, 12)
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=0.001)  # column blocks too
    best = calc.top_k(lon_a, lon_b, k=5, exclude_columns=excluded)
    scores = calc.scores(lon_a, lon_b)
    for row in range(12):
        candidates = [c for c in range(40) if c != excluded[row]]
        expected = sorted(candidates, key=lambda c: (-int(scores[row, c]), c))[:5]
        assert best.indices[row].tolist() == expected
    with pytest.raises(ValueError, match=r"^exclude_columns"):
        calc.top_k(lon_a, lon_b, k=5, exclude_columns=excluded[:3])
    with pytest.raises(ValueError, match=r"^exclude_columns"):
        calc.top_k(lon_a, lon_b, k=5, exclude_columns=np.full(12, 40))
