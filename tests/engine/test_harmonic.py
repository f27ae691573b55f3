"""The harmonic score: equal to its double sum, F·G on every backend and plan, exact top-k, its properties."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aspects_app.engine import STANDARD_POINTS, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.errors import FieldError
from aspects_app.engine.harmonic import (
    DEFAULT_HARMONICS,
    GRID_SCALE,
    PROBE_COLUMNS,
    HarmonicConfig,
    round_to_grid,
    select_top_k_pruned,
)
from aspects_app.engine.topk import select_top_k

from . import brute_force as bf
from .helpers import CPU_BACKENDS, Matrix, all_variants, longitudes

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT = HarmonicConfig()


@st.composite
def populations(draw: st.DrawFn, max_a: int = 5, max_b: int = 8) -> tuple[tuple[str, ...], Matrix, Matrix]:
    """Column names (any standard points, any order), rows a, rows b with repeated rows (exact ties)."""
    names = tuple(draw(st.lists(st.sampled_from(STANDARD_POINTS), unique=True, min_size=1, max_size=8)))
    row = st.lists(longitudes, min_size=len(names), max_size=len(names))
    lon_a = draw(st.lists(row, min_size=1, max_size=max_a))
    distinct = draw(st.lists(row, min_size=1, max_size=max(1, max_b // 2)))
    lon_b = [list(distinct[draw(st.integers(0, len(distinct) - 1))]) for _ in range(draw(st.integers(1, max_b)))]
    return names, lon_a, lon_b


def reference(lon_a: Matrix, lon_b: Matrix, names: Sequence[str], config: HarmonicConfig = DEFAULT) -> Matrix:
    weights = config.pair_weights(names).tolist()
    return [[bf.harmonic_score(ra, rb, config.harmonics, weights) for rb in lon_b] for ra in lon_a]


def calculator(backend: str = "numpy", **options: object) -> MemoryOptimizedVectorizedCalculator:
    return MemoryOptimizedVectorizedCalculator(backend=backend, **options)  # type: ignore[arg-type]


# -- scores ------------------------------------------------------------------------------------------------------


@PROPERTY
@given(data=populations())
def test_scores_equal_the_double_sum_and_f_dot_g_under_every_backend_and_plan(
    data: tuple[tuple[str, ...], Matrix, Matrix],
) -> None:
    names, lon_a, lon_b = data
    a, b = np.array(lon_a), np.array(lon_b)
    expected = np.array(reference(lon_a, lon_b, names))
    for label, calc in all_variants(None, CPU_BACKENDS, len(lon_a), len(lon_b), names, "scores", "harmonic"):
        scores = calc.scores(a, b, method="harmonic", points=names)
        assert scores.dtype == np.float64, label
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-9, err_msg=label)
        features_a = calc.harmonic_features(a, side="a", points=names)
        features_b = calc.harmonic_features(b, side="b", points=names)
        assert features_a.shape == (len(lon_a), 2 * len(DEFAULT_HARMONICS) * len(names)), label
        # Scores are F·G rounded to multiples of 2⁻³⁰ (so that equal charts tie whatever BLAS's blocking).
        np.testing.assert_allclose(features_a @ features_b.T, scores, rtol=0, atol=0.5 / GRID_SCALE + 1e-12)
        assert np.all(scores * GRID_SCALE == np.round(scores * GRID_SCALE)), label


@PROPERTY
@given(data=populations(max_a=4, max_b=4))
def test_symmetric_weights_give_a_symmetric_score(data: tuple[tuple[str, ...], Matrix, Matrix]) -> None:
    names, lon_a, lon_b = data
    calc = calculator()
    forward = calc.scores(np.array(lon_a), np.array(lon_b), method="harmonic", points=names)
    backward = calc.scores(np.array(lon_b), np.array(lon_a), method="harmonic", points=names)
    np.testing.assert_allclose(forward, backward.T, rtol=0, atol=1e-9)


@PROPERTY
@given(data=populations(max_a=4, max_b=4), turn=st.floats(-720.0, 720.0))
def test_rotating_both_charts_by_one_angle_leaves_the_score(
    data: tuple[tuple[str, ...], Matrix, Matrix], turn: float
) -> None:
    names, lon_a, lon_b = data
    calc = calculator()
    a, b = np.array(lon_a), np.array(lon_b)
    rotated_a, rotated_b = (a + turn) % 360.0, (b + turn) % 360.0
    rotated_a[rotated_a >= 360.0] = 0.0  # % can round up to 360 for tiny negative values
    rotated_b[rotated_b >= 360.0] = 0.0
    before = calc.scores(a, b, method="harmonic", points=names)
    after = calc.scores(rotated_a, rotated_b, method="harmonic", points=names)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-9)


@PROPERTY
@given(
    data=populations(max_a=3, max_b=3),
    harmonics=st.dictionaries(
        st.integers(1, 24), st.floats(-5.0, 5.0).filter(lambda c: c == 0 or abs(c) > 1e-6), min_size=1, max_size=5
    ).filter(lambda h: any(h.values())),
    emphasis=st.floats(0.01, 10.0),
)
def test_scores_stay_within_100_under_any_configuration(
    data: tuple[tuple[str, ...], Matrix, Matrix], harmonics: dict[int, float], emphasis: float
) -> None:
    names, lon_a, lon_b = data
    config = HarmonicConfig(harmonics=harmonics, pair_emphasis={(names[0], names[-1]): emphasis})
    scores = calculator(harmonic=config).scores(np.array(lon_a), np.array(lon_b), method="harmonic", points=names)
    assert np.all(np.abs(scores) <= 100.0)
    np.testing.assert_allclose(scores, reference(lon_a, lon_b, names, config), rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_extremes_reach_plus_and_minus_100(backend: str) -> None:
    names = ("Sun", "Moon", "Venus")
    trine = HarmonicConfig(harmonics={3: 1.0})
    square = HarmonicConfig(harmonics={4: -1.0})
    together = np.zeros((1, 3))
    apart = np.full((1, 3), 120.0)
    assert calculator(backend, harmonic=trine).scores(together, apart, "harmonic", names)[0, 0] == pytest.approx(100)
    assert calculator(backend, harmonic=square).scores(together, together, "harmonic", names)[0, 0] == pytest.approx(
        -100
    )


def test_default_coefficients_reward_harmonious_and_punish_hard_aspects() -> None:
    names = ("Sun", "Moon")
    calc = calculator()
    base = np.array([[10.0, 200.0]])

    def score_at(offset: float) -> float:
        return float(calc.scores(base, (base + offset) % 360.0, "harmonic", names)[0, 0])

    assert score_at(120.0) > 0 > score_at(90.0)
    assert all(c > 0 for h, c in DEFAULT_HARMONICS.items() if h in (1, 3, 5, 6))
    assert all(c < 0 for h, c in DEFAULT_HARMONICS.items() if h in (2, 4, 8))


def test_cross_pairs_and_personal_points_weigh_more() -> None:
    weights = DEFAULT.pair_weights(("Sun", "Moon", "Venus", "Mars", "Pluto"))
    assert weights[0, 1] > weights[0, 0] > weights[4, 4]  # Sun–Moon > Sun–Sun > Pluto–Pluto
    assert weights[2, 3] > weights[2, 2]  # Venus–Mars > Venus–Venus
    np.testing.assert_array_equal(weights, weights.T)


def test_float32_stays_within_its_documented_error() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 360, (60, 13)), rng.uniform(0, 360, (700, 13))
    exact = calculator().scores(a, b, method="harmonic")
    single = calculator(harmonic=HarmonicConfig(dtype="float32"))
    assert single.harmonic_features(a).dtype == np.float32
    assert np.abs(single.scores(a, b, method="harmonic") - exact).max() < 1e-4  # docs/harmonic.md: below 1e-4
    top = single.top_k(a, b, k=10, method="harmonic")
    assert np.abs(top.scores - np.take_along_axis(exact, top.indices, axis=1)).max() < 1e-4


# -- top-k -------------------------------------------------------------------------------------------------------


@PROPERTY
@given(data=populations(max_a=6, max_b=9), exclude_self=st.booleans(), extra_k=st.integers(-8, 3))
def test_top_k_equals_brute_force_under_every_backend_and_plan(
    data: tuple[tuple[str, ...], Matrix, Matrix], exclude_self: bool, extra_k: int
) -> None:
    names, lon_a, lon_b = data
    a, b = np.array(lon_a), np.array(lon_b)
    exclude = exclude_self and len(lon_b) >= len(lon_a)
    candidates = len(lon_b) - (1 if exclude else 0)
    k = max(1, candidates + extra_k)
    runs = all_variants(None, CPU_BACKENDS, len(lon_a), len(lon_b), names, "top_k", "harmonic")
    scores = runs[0][1].scores(a, b, method="harmonic", points=names)
    # Exclusion pairs row r with column r, as exclude_self does when a's rows are b's first rows.
    indices, values = bf.top_k(scores.tolist(), k, exclude_self=exclude)
    for label, calc in runs:
        top = calc.top_k(a, b, k=k, method="harmonic", points=names, exclude_columns=(
            np.arange(len(lon_a)) if exclude else None
        ))  # fmt: skip
        assert top.indices.tolist() == indices, label
        # BLAS sums in an order that depends on the block shape; scores are rounded to 2**-30, so two plans can
        # land one rounding step apart near a boundary (docs/harmonic.md), never more.
        np.testing.assert_allclose(top.scores, values, rtol=0, atol=2.0**-29, err_msg=label)


def _brute_top_k(scores: npt.NDArray[np.float64], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Best first, ties to the lower column: a stable sort of the negated scores."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("k", [1, 10, 50])
def test_pruned_selection_equals_brute_force_with_ties_and_adversarial_orders(k: int) -> None:
    rng = np.random.default_rng(k)
    cols = 3 * PROBE_COLUMNS
    random = rng.standard_normal((7, cols))
    quantised = np.round(random * 2) / 2  # many exact ties, at and around the k-th
    rising = np.tile(np.linspace(-1, 1, cols), (3, 1))  # the probe is all below the answer: dense fallback
    duplicates = np.repeat(rng.standard_normal((2, 1)), cols, axis=1)  # every column ties
    for products in (random, quantised, rising, duplicates):
        scores = round_to_grid(np, products.copy())
        index, values = select_top_k_pruned(np, products.copy(), k)  # the products are overwritten
        expected_index, expected_values = _brute_top_k(scores, k)
        np.testing.assert_array_equal(index, expected_index)
        np.testing.assert_array_equal(values, expected_values)
        dense_index, _ = select_top_k(np, scores, k)
        np.testing.assert_array_equal(dense_index, expected_index)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_top_k_over_many_columns_with_exclusion_equals_brute_force(backend: str) -> None:
    rng = np.random.default_rng(11)
    cols = PROBE_COLUMNS + 900 if backend != "array_api_strict" else 600
    lon = rng.uniform(0, 360, (cols, 10))
    lon[5] = lon[3]  # a duplicate: the tie goes to the lower index
    rows = lon[:40]
    calc = calculator(backend, working_memory_mb=2.0)  # several row chunks, column blocks for the last rows
    scores = calc.scores(rows, lon, method="harmonic")
    np.fill_diagonal(scores[:, :40], -np.inf)
    expected_index, expected_values = _brute_top_k(scores, 10)
    top = calc.top_k(rows, lon, k=10, method="harmonic", exclude_self=True)
    np.testing.assert_array_equal(top.indices, expected_index)
    np.testing.assert_array_equal(top.scores, expected_values)
    blocked = calculator(backend, working_memory_mb=64 * cols / 2**20)  # two rows' worth: column blocks too
    again = blocked.top_k(rows, lon, k=10, method="harmonic", exclude_self=True)
    np.testing.assert_array_equal(again.indices, expected_index)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_top_k_ties_go_to_the_lower_index(backend: str) -> None:
    chart = np.random.default_rng(3).uniform(0, 360, (1, 10))
    top = calculator(backend, chunk_size=1).top_k(chart, np.repeat(chart, 12, axis=0), k=5, method="harmonic")
    assert top.indices.tolist() == [[0, 1, 2, 3, 4]]


# -- configuration and bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "options"),
    [
        ("harmonics", {"harmonics": {}}),
        ("harmonics", {"harmonics": {0: 1.0}}),
        ("harmonics", {"harmonics": {2.5: 1.0}}),
        ("harmonics", {"harmonics": {3: float("nan")}}),
        ("harmonics", {"harmonics": {3: 0.0}}),
        ("point_weights", {"point_weights": {"Sun": -1.0}}),
        ("pair_emphasis", {"pair_emphasis": {("Sun", "Moon"): -2.0}}),
        ("dtype", {"dtype": "float16"}),
    ],
)
def test_bad_configuration_names_its_field(field: str, options: dict[str, object]) -> None:
    with pytest.raises(FieldError) as error:
        HarmonicConfig(**options)  # type: ignore[arg-type]
    assert error.value.field == field


def test_bad_side_and_all_zero_weights_name_their_field() -> None:
    calc = calculator()
    lon = np.zeros((2, 4))
    with pytest.raises(FieldError) as side:
        calc.harmonic_features(lon, side="c")
    assert side.value.field == "side"
    with pytest.raises(FieldError) as lon_error:
        calc.harmonic_features(np.full((2, 4), np.nan))
    assert lon_error.value.field == "lon"
    zero = calculator(harmonic=HarmonicConfig(point_weights={"Sun": 0.0}))
    with pytest.raises(FieldError) as weights:
        zero.scores(lon[:, :1], lon[:, :1], method="harmonic")
    assert weights.value.field == "point_weights"
    with pytest.raises(FieldError) as harmonic:
        calculator(harmonic={"harmonics": {3: 1.0}})  # a mapping is not a configuration
    assert harmonic.value.field == "harmonic"


def test_memory_estimate_is_the_plan_harmonic_runs() -> None:
    calc = calculator(working_memory_mb=1.0)
    estimate = calc.estimate_memory_usage(500, 2000, 10, operation="top_k", method="harmonic")
    assert estimate["chunk_rows"] * 2000 * estimate["bytes_per_chart_pair"] <= 2**20
    chunks: list[int] = []
    calc.progress = lambda done, total: chunks.append(done)
    rng = np.random.default_rng(0)
    calc.top_k(rng.uniform(0, 360, (500, 10)), rng.uniform(0, 360, (2000, 10)), k=3, method="harmonic")
    assert len(chunks) == estimate["chunks"]
