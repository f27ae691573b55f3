"""Bad input to the engine is a ValueError that names the argument; the memory estimator's plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aspects_app.engine import (
    AspectConfig,
    MemoryOptimizedVectorizedCalculator,
    get_backend,
)

from .helpers import CPU_BACKENDS

GOOD = np.array([[10.0, 100.0, 200.0, 300.0, 45.0]])
GOOD_B = np.array([[20.0, 110.0, 210.0, 310.0, 55.0], [1.0, 2.0, 3.0, 4.0, 5.0]])


@pytest.fixture(params=CPU_BACKENDS)
def calc(request: pytest.FixtureRequest) -> MemoryOptimizedVectorizedCalculator:
    return MemoryOptimizedVectorizedCalculator(backend=request.param)


def with_value(row: int, col: int, value: float, base: np.ndarray[Any, Any] = GOOD_B) -> np.ndarray[Any, Any]:
    out = base.copy()
    out[row, col] = value
    return out


# -- longitudes ------------------------------------------------------------------------------------------------------

BAD_VALUES = [np.nan, np.inf, -np.inf, -1e-9, -10.0, 360.0, 360.5, 1e9]


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_longitudes_name_the_argument(calc: MemoryOptimizedVectorizedCalculator, value: float) -> None:
    bad = with_value(1, 2, value)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("lon_a", lambda: calc.synastry(bad, GOOD_B)),
        ("lon_b", lambda: calc.synastry(GOOD_B, bad)),
        ("lon", lambda: calc.natal(bad)),
        ("lon_a", lambda: calc.paired_synastry(bad, GOOD_B)),
        ("lon_b", lambda: calc.paired_synastry(GOOD_B, bad)),
        ("lon_a", lambda: calc.scores(bad, GOOD_B)),
        ("lon_b", lambda: calc.scores(GOOD_B, bad, method="weighted")),
        ("lon_a", lambda: calc.top_k(bad, k=1)),
        ("lon_b", lambda: calc.top_k(GOOD_B, bad, k=1)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=rf"^{name}\b"):
            call()


@pytest.mark.parametrize(
    "shape_value",
    [np.zeros(5), np.zeros((1, 2, 5)), np.zeros((2, 0)), 5.0, [[1.0, 2.0], [3.0]], "abc", None],
    ids=["1-D", "3-D", "no points", "scalar", "ragged", "string", "None"],
)
def test_bad_shapes_name_the_argument(calc: MemoryOptimizedVectorizedCalculator, shape_value: Any) -> None:
    with pytest.raises(ValueError, match=r"^lon_a\b"):
        calc.synastry(shape_value, GOOD_B)
    with pytest.raises(ValueError, match=r"^lon_b\b"):
        calc.synastry(GOOD_B, shape_value)
    with pytest.raises(ValueError, match=r"^lon\b"):
        calc.natal(shape_value)
    with pytest.raises(ValueError, match=r"^lon_a\b"):
        calc.scores(shape_value, GOOD_B)


def test_mismatched_point_counts(calc: MemoryOptimizedVectorizedCalculator) -> None:
    other = np.zeros((2, 4))
    for call in (
        lambda: calc.synastry(GOOD, other),
        lambda: calc.paired_synastry(GOOD, other[:1]),
        lambda: calc.scores(GOOD, other),
        lambda: calc.top_k(GOOD, other),
    ):
        with pytest.raises(ValueError, match=r"lon_a.*lon_b"):
            call()


def test_paired_synastry_needs_equal_chart_counts(calc: MemoryOptimizedVectorizedCalculator) -> None:
    with pytest.raises(ValueError, match=r"lon_a"):
        calc.paired_synastry(GOOD, GOOD_B)


def test_too_many_points(calc: MemoryOptimizedVectorizedCalculator) -> None:
    wide = np.zeros((1, 256))
    with pytest.raises(ValueError, match=r"lon"):
        calc.natal(wide, points=[f"P{n}" for n in range(256)])


@pytest.mark.parametrize("points", [["Sun"], ["Sun", "Moon", "Venus", "Mars", "Mars"], ["Sun", "Moon", "", "a", "b"]])
def test_bad_point_names(calc: MemoryOptimizedVectorizedCalculator, points: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^points"):
        calc.natal(GOOD, points=points)


def test_unnamed_columns_beyond_the_standard_points(calc: MemoryOptimizedVectorizedCalculator) -> None:
    with pytest.raises(ValueError, match=r"^points"):
        calc.natal(np.zeros((1, 14)))


# -- speeds ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "speed", [np.zeros((2, 4)), np.zeros((1, 5)), np.zeros(10), with_value(0, 0, np.nan), with_value(1, 4, np.inf)]
)
def test_bad_speeds(calc: MemoryOptimizedVectorizedCalculator, speed: np.ndarray[Any, Any]) -> None:
    with pytest.raises(ValueError, match=r"^speed_a\b"):
        calc.synastry(GOOD_B, GOOD_B, speed_a=speed)
    with pytest.raises(ValueError, match=r"^speed_b\b"):
        calc.synastry(GOOD_B, GOOD_B, speed_b=speed)
    with pytest.raises(ValueError, match=r"^speed\b"):
        calc.natal(GOOD_B, speed=speed)
    with pytest.raises(ValueError, match=r"^speed_b\b"):
        calc.paired_synastry(GOOD_B, GOOD_B, speed_b=speed)


# -- configuration ---------------------------------------------------------------------------------------------------


def test_unknown_aspect_names() -> None:
    with pytest.raises(ValueError, match=r"trin'"):
        AspectConfig.from_orbs({"trin": 8})
    with pytest.raises(ValueError, match=r"point_orbs.*semisquare"):
        AspectConfig.from_orbs({"trine": 8}, point_orbs={"Sun": {"semisquare": 2}})
    with pytest.raises(ValueError, match=r"^aspects.*quintile_"):
        AspectConfig().only(["trine", "quintile_"])
    assert AspectConfig().only(["trine", "square"]).active_aspects == ("square", "trine")


@pytest.mark.parametrize("orb", [-1.0, -1e-12, float("nan"), float("inf"), 90.0, 1e9, "8", None, True])
def test_bad_orbs(orb: Any) -> None:
    with pytest.raises(ValueError, match=r"^orbs.*trine"):
        AspectConfig.from_orbs({"trine": orb})
    with pytest.raises(ValueError, match=r"^point_orbs\['Sun'\].*trine"):
        AspectConfig.from_orbs({"square": 5}, point_orbs={"Sun": {"trine": orb}})


def test_no_active_aspect() -> None:
    with pytest.raises(ValueError, match=r"^orbs"):
        AspectConfig.from_orbs({})
    with pytest.raises(ValueError, match=r"^orbs"):
        AspectConfig().only([])


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match=r"^preset.*'minor'"):
        AspectConfig.preset("minor")


def test_unknown_point_in_point_orbs(calc: MemoryOptimizedVectorizedCalculator) -> None:
    config = AspectConfig.from_orbs({"trine": 8}, point_orbs={"Vulcan": {"trine": 10}})
    typo = MemoryOptimizedVectorizedCalculator(config=config, backend=calc.backend)
    for call in (
        lambda: typo.synastry(GOOD, GOOD),
        lambda: typo.natal(GOOD),
        lambda: typo.scores(GOOD, GOOD, method="weighted"),
    ):
        with pytest.raises(ValueError, match=r"^point_orbs.*Vulcan"):
            call()


def test_config_given_as_a_mapping_is_checked() -> None:
    with pytest.raises(ValueError, match=r"orbs"):
        MemoryOptimizedVectorizedCalculator(config={"trine": -1}, backend="numpy")


# -- calculator options ----------------------------------------------------------------------------------------------


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"^backend.*'tpu'"):
        get_backend("tpu")
    with pytest.raises(ValueError, match=r"^backend.*'tpu'"):
        MemoryOptimizedVectorizedCalculator(backend="tpu")


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "256", None, True])
def test_bad_working_memory(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^working_memory_mb"):
        MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=value)


@pytest.mark.parametrize("value", [0, -3, 2.5, "7", True])
def test_bad_chunk_size(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^chunk_size"):
        MemoryOptimizedVectorizedCalculator(backend="numpy", chunk_size=value)


def test_progress_must_be_callable() -> None:
    with pytest.raises(ValueError, match=r"^progress"):
        MemoryOptimizedVectorizedCalculator(backend="numpy", progress=42)  # type: ignore[arg-type]


def test_unknown_scoring_method(calc: MemoryOptimizedVectorizedCalculator) -> None:
    with pytest.raises(ValueError, match=r"^method.*'harmony'"):
        calc.scores(GOOD, GOOD, method="harmony")
    with pytest.raises(ValueError, match=r"^method.*'harmony'"):
        calc.top_k(GOOD, GOOD, method="harmony")
    with pytest.raises(ValueError, match=r"^method"):
        calc.estimate_memory_usage(10, 10, operation="scores", method="harmony")


@pytest.mark.parametrize("missing", ["Sun", "Moon", "Venus", "Mars"])
def test_discepolo_needs_the_four_bodies(calc: MemoryOptimizedVectorizedCalculator, missing: str) -> None:
    names = [n for n in ("Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter") if n != missing]
    lon = np.zeros((2, len(names)))
    with pytest.raises(ValueError, match=rf"^points.*'{missing}'"):
        calc.scores(lon, lon, points=names)
    with pytest.raises(ValueError, match=rf"^points.*'{missing}'"):
        calc.top_k(lon, points=names)
    # The weighted score has no such requirement.
    assert calc.scores(lon, lon, method="weighted", points=names).shape == (2, 2)


@pytest.mark.parametrize("operation", ["synastry", "natal", "paired", "scores", "weighted", "top_k"])
def test_budget_too_small_for_one_chart_pair(operation: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=1e-9)
    lon = np.zeros((3, 10))
    calls: dict[str, Callable[[], object]] = {
        "synastry": lambda: calc.synastry(lon, lon),
        "natal": lambda: calc.natal(lon),
        "paired": lambda: calc.paired_synastry(lon, lon),
        "scores": lambda: calc.scores(lon, lon),
        "weighted": lambda: calc.scores(lon, lon, method="weighted"),
        "top_k": lambda: calc.top_k(lon, k=2),
    }
    with pytest.raises(ValueError, match=r"^working_memory_mb"):
        calls[operation]()


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", None, True])
def test_bad_k(calc: MemoryOptimizedVectorizedCalculator, k: Any) -> None:
    with pytest.raises(ValueError, match=r"^k\b"):
        calc.top_k(GOOD_B, k=k)


def test_exclude_self_needs_one_population(calc: MemoryOptimizedVectorizedCalculator) -> None:
    # lon_a must be rows of lon_b (a block of one population, from row_offset on).
    with pytest.raises(ValueError, match=r"^exclude_self"):
        calc.top_k(GOOD_B, GOOD, k=1, exclude_self=True)
    with pytest.raises(ValueError, match=r"^exclude_self"):
        calc.top_k(GOOD, GOOD_B, k=1, exclude_self=True, row_offset=2)
    with pytest.raises(ValueError, match=r"^row_offset"):
        calc.top_k(GOOD, GOOD_B, k=1, row_offset=1)


def test_exclude_self_with_a_row_block_matches_the_whole_population(calc: MemoryOptimizedVectorizedCalculator) -> None:
    population = np.random.default_rng(5).uniform(0, 360, (30, 10))
    whole = calc.top_k(population, k=4, exclude_self=True)
    for start in (0, 7, 29):
        block = calc.top_k(population[start : start + 7], population, k=4, exclude_self=True, row_offset=start)
        np.testing.assert_array_equal(block.indices, whole.indices[start : start + 7])
        np.testing.assert_array_equal(block.scores, whole.scores[start : start + 7])


def test_calculate_large_batch_aspects_input(calc: MemoryOptimizedVectorizedCalculator) -> None:
    with pytest.raises(ValueError, match=r"^chart_pairs"):
        calc.calculate_large_batch_aspects([])
    with pytest.raises(ValueError, match=r"^chart_pairs"):
        calc.calculate_large_batch_aspects([(np.zeros(3), np.zeros(3)), (np.zeros(3), np.zeros(4))])
    with pytest.raises(ValueError, match=r"^lon_a"):
        calc.calculate_large_batch_aspects([(np.full(3, 400.0), np.zeros(3))])


# -- estimate_memory_usage -------------------------------------------------------------------------------------------

ESTIMATE_KEYS = ("unchunked_bytes", "chunked_bytes", "memory_savings_percent", "chunk_rows")


@pytest.mark.parametrize("operation", ["synastry", "natal", "scores", "top_k", "patterns"])
def test_estimate_keys(operation: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy")
    est = calc.estimate_memory_usage(num_charts1=1000, num_charts2=500, num_planets=10, operation=operation)
    for key in ESTIMATE_KEYS:
        assert key in est, key
    assert est["chunk_rows"] >= 1
    assert 0 <= est["chunked_bytes"] <= est["unchunked_bytes"]
    assert 0.0 <= est["memory_savings_percent"] < 100.0


def test_estimate_savings_for_a_large_top_k() -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=64)
    est = calc.estimate_memory_usage(num_charts1=4000, num_charts2=4000, num_planets=10, operation="top_k")
    assert est["chunked_bytes"] <= 64 * 2**20
    # One 4000 x 4000 broadcast of the score temporaries is ~600 MiB; 64 MiB chunks save close to 90% of it.
    assert est["memory_savings_percent"] > 85.0, est
    assert est["memory_savings_percent"] == pytest.approx(100 * (1 - est["chunked_bytes"] / est["unchunked_bytes"]))


@settings(max_examples=80, deadline=None)
@given(
    n1=st.integers(1, 10**6),
    n2=st.integers(1, 10**6),
    planets=st.integers(1, 13),
    operation=st.sampled_from(["synastry", "natal", "scores", "top_k"]),
    method=st.sampled_from(["discepolo", "weighted"]),
    budget_mb=st.floats(0.05, 4096),
)
def test_estimate_plan_is_sane(n1: int, n2: int, planets: int, operation: str, method: str, budget_mb: float) -> None:
    if operation in ("scores", "top_k") and method == "discepolo" and planets < 5:
        planets = 5
    if operation == "natal" and planets < 2:
        planets = 2
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=budget_mb)
    est = calc.estimate_memory_usage(n1, n2, planets, operation=operation, method=method)
    assert est["chunk_rows"] >= 1
    assert est["chunk_cols"] >= 1
    assert est["chunked_bytes"] <= est["unchunked_bytes"]
    assert est["chunked_bytes"] <= budget_mb * 2**20 + 1
    assert 0.0 <= est["memory_savings_percent"] < 100.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_charts1": 0}, "num_charts1"),
        ({"num_charts1": 10, "num_charts2": -1}, "num_charts2"),
        ({"num_charts1": 10, "num_planets": 0}, "num_planets"),
        ({"num_charts1": 10, "operation": "transit"}, "operation"),
    ],
)
def test_estimate_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}"):
        MemoryOptimizedVectorizedCalculator(backend="numpy").estimate_memory_usage(**kwargs)
