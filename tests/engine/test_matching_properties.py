"""The engine's aspects, orbs and movements equal the pure-Python reference's exactly, on every backend and plan."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aspects_app.engine import (
    ASPECT_ANGLES,
    ASPECT_NAMES,
    STANDARD_POINTS,
    AspectConfig,
    MemoryOptimizedVectorizedCalculator,
)

from . import brute_force as bf
from .helpers import (
    CPU_BACKENDS,
    all_variants,
    array,
    assert_same_records,
    configs,
    draw_rows,
    draw_speeds,
    gpu_backend_or_skip,
)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_reference_aspect_table_is_the_engines() -> None:
    assert tuple(name for name, _ in bf.ASPECTS) == ASPECT_NAMES
    assert dict(bf.ASPECTS) == dict(ASPECT_ANGLES)


# -- properties, parametrised by backend so that the GPU runs the same checks ---------------------------------------


def synastry_property(backends: Sequence[str]) -> Callable[[], None]:
    @PROPERTY
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        p = data.draw(st.integers(1, 6), label="points")
        names = STANDARD_POINTS[:p]
        config = data.draw(configs(names), label="config")
        n = data.draw(st.integers(1, 4), label="rows a")
        m = data.draw(st.integers(1, 5), label="rows b")
        lon_a = data.draw(st.composite(lambda d: draw_rows(d, n, names, config))(), label="lon_a")
        lon_b = data.draw(st.composite(lambda d: draw_rows(d, m, names, config, lon_a))(), label="lon_b")
        speed_a = data.draw(st.composite(lambda d: draw_speeds(d, n, p))(), label="speed_a")
        speed_b = data.draw(st.composite(lambda d: draw_speeds(d, m, p))(), label="speed_b")
        expected = bf.synastry(lon_a, lon_b, config, names, speed_a, speed_b)
        for label, calc in all_variants(config, backends, n, m, names, "synastry"):
            hits = calc.synastry(array(lon_a), array(lon_b), array(speed_a), array(speed_b))
            assert_same_records(hits.to_records(), expected, label)

    return check


def natal_property(backends: Sequence[str]) -> Callable[[], None]:
    @PROPERTY
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        p = data.draw(st.integers(2, 7), label="points")
        names = STANDARD_POINTS[:p]
        config = data.draw(configs(names), label="config")
        n = data.draw(st.integers(1, 9), label="rows")
        lon = data.draw(st.composite(lambda d: draw_rows(d, n, names, config))(), label="lon")
        speed = data.draw(st.composite(lambda d: draw_speeds(d, n, p))(), label="speed")
        expected = bf.natal(lon, config, names, speed)
        for label, calc in all_variants(config, backends, n, 1, names, "natal"):
            hits = calc.natal(array(lon), array(speed))
            assert hits.j is None
            assert_same_records(hits.to_records(), expected, label)

    return check


def paired_property(backends: Sequence[str]) -> Callable[[], None]:
    @PROPERTY
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        p = data.draw(st.integers(1, 6), label="points")
        names = STANDARD_POINTS[:p]
        config = data.draw(configs(names), label="config")
        n = data.draw(st.integers(1, 9), label="pairs")
        lon_a = data.draw(st.composite(lambda d: draw_rows(d, n, names, config))(), label="lon_a")
        lon_b = data.draw(st.composite(lambda d: draw_rows(d, n, names, config, lon_a))(), label="lon_b")
        speed_a = data.draw(st.composite(lambda d: draw_speeds(d, n, p))(), label="speed_a")
        speed_b = data.draw(st.composite(lambda d: draw_speeds(d, n, p))(), label="speed_b")
        expected = bf.paired_synastry(lon_a, lon_b, config, names, speed_a, speed_b)
        # A paired chunk holds P*P point pairs of one chart pair: the synastry cell size.
        for label, calc in all_variants(config, backends, n, 1, names, "synastry"):
            hits = calc.paired_synastry(array(lon_a), array(lon_b), array(speed_a), array(speed_b))
            assert_same_records(hits.to_records(), expected, label)
            if speed_a is None and speed_b is None:
                pairs = [(np.array(x), np.array(y)) for x, y in zip(lon_a, lon_b, strict=True)]
                batch = calc.calculate_large_batch_aspects(pairs)
                assert_same_records(batch.to_records(), expected, f"{label} calculate_large_batch_aspects")

    return check


def test_synastry_matches_reference() -> None:
    synastry_property(CPU_BACKENDS)()


def test_natal_matches_reference() -> None:
    natal_property(CPU_BACKENDS)()


def test_paired_synastry_matches_reference() -> None:
    paired_property(CPU_BACKENDS)()


@pytest.mark.gpu
@pytest.mark.parametrize("prop", [synastry_property, natal_property, paired_property], ids=["syn", "natal", "paired"])
def test_gpu_matches_reference(prop: Callable[[Sequence[str]], Callable[[], None]]) -> None:
    backend = gpu_backend_or_skip()
    prop((backend,))()


# -- targeted cases ------------------------------------------------------------------------------------------------

BOUNDARY_CONFIG = AspectConfig.from_orbs({"conjunction": 2.5, "sextile": 0.25, "square": 0.0, "trine": 7.75})


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("l1", "l2", "aspect", "orb"),
    [
        (10.0, 12.5, "conjunction", 2.5),  # upper edge of the conjunction, inclusive
        (12.5, 10.0, "conjunction", 2.5),
        (1.25, 358.75, "conjunction", 2.5),  # across 0°
        (358.75, 1.25, "conjunction", 2.5),
        (0.0, 60.25, "sextile", 0.25),
        (300.0, 0.25, "sextile", 0.25),  # 60.25 through the wrap
        (0.0, 59.75, "sextile", 0.25),
        (100.0, 190.0, "square", 0.0),  # zero orb: only the exact angle
        (350.0, 80.0, "square", 0.0),
        (0.0, 127.75, "trine", 7.75),
        (200.0, 312.25, "trine", 7.75),
        (359.75, 232.0, "trine", 7.75),
    ],
)
def test_inclusive_boundaries(backend: str, l1: float, l2: float, aspect: str, orb: float) -> None:
    calc = MemoryOptimizedVectorizedCalculator(config=BOUNDARY_CONFIG, backend=backend)
    records = calc.synastry(np.array([[l1]]), np.array([[l2]])).to_records()
    assert records == [{"i": 0, "j": 0, "p1": 0, "p2": 0, "aspect": aspect, "orb": orb, "movement": "static"}]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("l1", "l2"),
    [(10.0, 12.5), (1.25, 358.75), (0.0, 60.25), (0.0, 59.75), (100.0, 190.0), (0.0, 127.75), (0.0, 112.25)],
)
def test_one_ulp_outside_the_orb_is_no_aspect(backend: str, l1: float, l2: float) -> None:
    calc = MemoryOptimizedVectorizedCalculator(config=BOUNDARY_CONFIG, backend=backend)
    sep = bf.separation(l1, l2)
    for outward in (math.nextafter(l2, math.inf), math.nextafter(l2, -math.inf)):
        if bf.separation(l1, outward) == sep:
            continue
        expected = bf.synastry([[l1]], [[outward]], BOUNDARY_CONFIG, ["Sun"])
        got = calc.synastry(np.array([[l1]]), np.array([[outward]])).to_records()
        assert_same_records(got, expected, f"{backend} {l1} vs {outward!r}")
    # ... and one of the two neighbours really is outside.
    outside = [
        bf.synastry([[l1]], [[x]], BOUNDARY_CONFIG, ["Sun"]) == []
        for x in (math.nextafter(l2, math.inf), math.nextafter(l2, -math.inf))
    ]
    assert any(outside)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_first_aspect_in_match_order_wins_when_orbs_overlap(backend: str) -> None:
    # Wide orbs: sep 40 lies in conjunction (±40), semi-sextile (±20), semi-square (±30), sextile (±20) ...
    config = AspectConfig.from_orbs({"opposition": 40, "trine": 40, "sextile": 20, "semi-square": 30})
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend=backend)
    lon_a = np.array([[0.0], [0.0], [0.0], [0.0]])
    lon_b = np.array([[40.0], [90.0], [150.0], [185.0]])
    records = calc.paired_synastry(lon_a, lon_b).to_records()
    got = {r["i"]: (r["aspect"], r["orb"]) for r in records}
    # Intervals: semi-square [15, 75], sextile [40, 80], trine [80, 160], opposition [140, 220].
    assert got == {
        0: ("semi-square", 5.0),  # 40 is in semi-square and sextile: semi-square comes first
        1: ("trine", 30.0),  # 90: past the sextile's 80, on the trine's lower side
        2: ("trine", 30.0),  # 150: trine and opposition overlap; trine comes first
        3: ("opposition", 5.0),  # 185 → separation 175
    }
    assert_same_records(records, bf.paired_synastry(lon_a, lon_b, config, STANDARD_POINTS[:1]), backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_point_orb_override_widens_only_its_pairs(backend: str) -> None:
    config = AspectConfig.from_orbs({"trine": 2}, point_orbs={"Sun": {"trine": 9}, "Moon": {"square": 3}})
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend=backend)
    lon = np.array([[0.0, 125.0, 249.0, 218.0]])  # Sun, Moon, Mercury, Venus
    records = calc.natal(lon).to_records(point_names=True)
    got = {(r["p1"], r["p2"]): (r["aspect"], r["orb"]) for r in records}
    assert got == {
        ("Sun", "Moon"): ("trine", 5.0),  # 125: inside the Sun's 9° trine, outside the base 2°
        ("Sun", "Mercury"): ("trine", 9.0),  # 111: the edge of the Sun's 9°, inclusive
        ("Moon", "Venus"): ("square", 3.0),  # 93: a square only the Moon's override switches on
    }  # Moon-Mercury (124) gets no Sun override: no trine at the base 2°
    assert_same_records(calc.natal(lon).to_records(), bf.natal(lon, config, STANDARD_POINTS[:4]), backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_equal_longitudes_are_exact_conjunctions(backend: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    lon = np.full((2, 3), 359.99999999999994)
    records = calc.natal(lon, speed=np.ones((2, 3))).to_records()
    assert len(records) == 6
    assert all(r["aspect"] == "conjunction" and r["orb"] == 0.0 and r["movement"] == "static" for r in records)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_sided_speeds_move_against_a_standing_chart(backend: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    lon_a, lon_b = np.array([[10.0]]), np.array([[15.0]])
    fast = np.array([[1.0]])
    # a moves towards b: applying; b moves away from a: separating; the other side stands still.
    assert calc.synastry(lon_a, lon_b, speed_a=fast).to_records()[0]["movement"] == "applying"
    assert calc.synastry(lon_a, lon_b, speed_b=fast).to_records()[0]["movement"] == "separating"
    assert calc.synastry(lon_a, lon_b, speed_a=fast, speed_b=fast).to_records()[0]["movement"] == "static"
    assert calc.synastry(lon_a, lon_b).to_records()[0]["movement"] == "static"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("n", "m"), [(2, 1), (1, 2), (3, 3)])
@pytest.mark.parametrize("side", ["a", "b"])
def test_one_sided_speeds_with_unequal_chart_counts(backend: str, n: int, m: int, side: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    lon_a, lon_b = np.full((n, 1), 10.0), np.full((m, 1), 15.0)
    speed_a = np.ones((n, 1)) if side == "a" else None
    speed_b = np.ones((m, 1)) if side == "b" else None
    records = calc.synastry(lon_a, lon_b, speed_a=speed_a, speed_b=speed_b).to_records()
    movement = "applying" if side == "a" else "separating"
    assert [(r["i"], r["j"], r["movement"]) for r in records] == [(i, j, movement) for i in range(n) for j in range(m)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_natal_with_a_single_point_has_no_pairs(backend: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    hits = calc.natal(np.array([[10.0], [20.0]]))
    assert len(hits) == 0
    assert hits.to_records() == []


def test_estimate_for_natal_with_a_single_point() -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy")
    est = calc.estimate_memory_usage(10, num_planets=1, operation="natal")
    assert est["chunk_rows"] >= 1
    assert est["unchunked_bytes"] == 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_tiny_budget_really_splits_columns(backend: str) -> None:
    """The column-blocked variant used by the properties does run in column blocks."""
    rows, cols, p = 3, 11, 4
    (_, base), *_, (_, tiny) = all_variants(None, (backend,), rows, cols, STANDARD_POINTS[:p], "synastry")
    plan = tiny.estimate_memory_usage(rows, cols, p, operation="synastry")
    assert plan["chunk_rows"] == 1 and plan["chunk_cols"] < cols
    rng = np.random.default_rng(7)
    lon_a, lon_b = rng.uniform(0, 360, (rows, p)), rng.uniform(0, 360, (cols, p))
    tiny.synastry(lon_a, lon_b)
    assert tiny.monitor.counters["chunks"] == plan["chunks"] > rows
    assert_same_records(
        tiny.synastry(lon_a, lon_b).to_records(), base.synastry(lon_a, lon_b).to_records(), f"{backend} tiny"
    )
