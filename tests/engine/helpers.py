"""Shared pieces of the engine tests: backends, calculator variants, Hypothesis strategies, record comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import strategies as st

from aspects_app.engine import (
    ASPECT_NAMES,
    AspectConfig,
    BackendUnavailable,
    MemoryOptimizedVectorizedCalculator,
    get_backend,
)

from . import brute_force as bf

MIB = 2**20
Matrix = list[list[float]]

# -- backends ----------------------------------------------------------------------------------------------------


def cpu_backends() -> tuple[str, ...]:
    """``numpy`` and ``array_api_strict`` (the namespace-neutral code path on a strict array API namespace, which
    rejects what CuPy or other libraries would; a dev dependency, so its absence fails loudly) always;
    ``cuda-emulated`` (the GPU's fused kernels compiled for the CPU) when a C++ compiler is here, so that the GPU
    code path is checked by every engine test (test_fused says so when it is not)."""
    get_backend("array_api_strict")
    names = ["numpy", "array_api_strict"]
    try:
        get_backend("cuda-emulated")
    except BackendUnavailable:  # no C++ compiler here
        return tuple(names)
    return (*names, "cuda-emulated")


def gpu_backend_or_skip() -> str:
    """``cupy`` when a CUDA device and CuPy are present, else skip the calling test with the reason."""
    try:
        get_backend("cupy")
    except BackendUnavailable as exc:
        pytest.skip(f"cupy backend unavailable: {exc}")
    return "cupy"


CPU_BACKENDS = cpu_backends()


# -- calculator variants -----------------------------------------------------------------------------------------


def variants(
    config: AspectConfig | None,
    backend: str,
    rows: int,
    cols: int,
    points: Sequence[str],
    operation: str,
    method: str = "discepolo",
) -> list[tuple[str, MemoryOptimizedVectorizedCalculator]]:
    """Calculators that must all give the same answer: default plan, chunk sizes 1 / 7 / all, and a working memory
    so small that a chunk holds two chart pairs (column blocks whenever ``cols`` > 2). Columns are ``points``."""
    names = tuple(points)

    def make(**options: Any) -> MemoryOptimizedVectorizedCalculator:
        return MemoryOptimizedVectorizedCalculator(config=config, backend=backend, points=names, **options)

    base = make()
    plan = base.estimate_memory_usage(max(rows, 1), max(cols, 1), len(names), operation=operation, method=method)
    tiny_mb = float(plan["bytes_per_chart_pair"]) * 2.5 / MIB
    out = [(f"{backend} default", base)]
    out += [(f"{backend} chunk_size={size}", make(chunk_size=size)) for size in (1, 7, max(rows, 1))]
    out.append((f"{backend} working_memory_mb={tiny_mb:.3g}", make(working_memory_mb=tiny_mb)))
    return out


def all_variants(
    config: AspectConfig | None,
    backends: Sequence[str],
    rows: int,
    cols: int,
    points: Sequence[str],
    operation: str,
    method: str = "discepolo",
) -> list[tuple[str, MemoryOptimizedVectorizedCalculator]]:
    return [v for b in backends for v in variants(config, b, rows, cols, points, operation, method)]


# -- strategies --------------------------------------------------------------------------------------------------

SPECIAL_LONGITUDES: tuple[float, ...] = (
    0.0,
    5e-324,
    1e-300,
    1e-12,
    0.25,
    30.0,
    89.99999999999999,
    90.0,
    179.99999999999997,
    180.0,
    180.00000000000003,
    270.0,
    359.75,
    359.9999999,
    math.nextafter(360.0, 0.0),
)

quarter_longitudes = st.integers(0, 359 * 4 + 3).map(lambda q: q / 4)
longitudes = st.one_of(
    st.floats(0.0, 360.0, exclude_max=True),
    quarter_longitudes,
    st.sampled_from(SPECIAL_LONGITUDES),
    st.floats(0.0, 1e-6),
    st.floats(359.999999, 360.0, exclude_max=True),
)
# Orbs: exact ones (quarters, so that boundaries are hit exactly), zero, wide overlapping ones, anything below 90.
orbs = st.one_of(
    st.just(0.0),
    st.integers(0, 48).map(lambda q: q / 4),
    st.integers(20, 40).map(float),
    st.floats(0.0, 89.75),
)
speeds_values = st.one_of(
    st.floats(-2.0, 20.0),
    st.sampled_from((0.0, 1.0, 0.9856, 13.2, -0.5, 1e-10, -1e-10, 360.98, -400.0)),
    st.floats(-400.0, 400.0),
)


@st.composite
def configs(draw: st.DrawFn, names: Sequence[str], overrides: bool = True) -> AspectConfig:
    """Random subsets of aspects with random orbs, plus (optionally) per-point overrides of the chart's points."""
    base = draw(st.dictionaries(st.sampled_from(ASPECT_NAMES), orbs, min_size=1, max_size=len(ASPECT_NAMES)))
    point_orbs: dict[str, dict[str, float]] = {}
    if overrides and draw(st.booleans()):
        point_orbs = draw(
            st.dictionaries(
                st.sampled_from(list(names)),
                st.dictionaries(st.sampled_from(ASPECT_NAMES), orbs, min_size=1, max_size=4),
                max_size=2,
            )
        )
    return AspectConfig.from_orbs(base, point_orbs=point_orbs)


def nudge(value: float, steps: int) -> float:
    """``value`` moved ``steps`` ulps (up when positive), kept inside [0, 360)."""
    direction = math.inf if steps > 0 else -math.inf
    for _ in range(abs(steps)):
        value = math.nextafter(value, direction)
    if value < 0.0:
        value = 0.0
    if value >= 360.0:
        value = math.nextafter(360.0, 0.0)
    return value


def near_aspect(draw: st.DrawFn, source: float, config: AspectConfig, p1: str, p2: str) -> float:
    """A longitude at (or a few ulps off) an edge or the centre of an aspect's orb from ``source``."""
    aspect = draw(st.sampled_from(ASPECT_NAMES))
    orb = config.orb_for(aspect, p1, p2)
    if orb is None or draw(st.booleans()):
        orb = draw(orbs)
    side = draw(st.sampled_from((-1.0, 0.0, 1.0, -1.0, 1.0)))
    sign = draw(st.sampled_from((-1.0, 1.0)))
    value = (source + sign * (bf.ANGLE_OF[aspect] + side * orb)) % 360.0
    steps = draw(st.sampled_from((0, 0, 0, 1, -1, 2, -2)))
    return nudge(value, steps)


def draw_rows(
    draw: st.DrawFn,
    rows: int,
    names: Sequence[str],
    config: AspectConfig,
    sources: Matrix | None = None,
) -> Matrix:
    """``rows`` charts of longitudes: each value drawn freely, or placed near an aspect from a value of ``sources``
    (any row) or from an earlier value of the same row."""
    out: Matrix = []
    for _ in range(rows):
        row: list[float] = []
        for p, name in enumerate(names):
            pool = [(v, names[q]) for q, v in enumerate(row)]
            if sources:
                pool += [(v, names[q]) for src in sources for q, v in enumerate(src)]
            if pool and draw(st.integers(0, 3)) > 0:
                value, other = draw(st.sampled_from(pool))
                row.append(near_aspect(draw, value, config, other, name))
            else:
                row.append(draw(longitudes))
            assert 0.0 <= row[p] < 360.0
        out.append(row)
    return out


def draw_speeds(draw: st.DrawFn, rows: int, cols: int) -> Matrix | None:
    if draw(st.booleans()):
        return None
    return [[draw(speeds_values) for _ in range(cols)] for _ in range(rows)]


def array(values: Matrix | None) -> npt.NDArray[np.float64] | None:
    return None if values is None else np.array(values, dtype=np.float64).reshape(len(values), -1)


# -- comparison --------------------------------------------------------------------------------------------------


def assert_same_records(got: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]], label: str) -> None:
    """Identical hit lists, in order; orbs compared bit for bit."""
    for n, (g, e) in enumerate(zip(got, expected, strict=False)):
        same_orb = float(g["orb"]).hex() == float(e["orb"]).hex()
        if dict(g, orb=None) != dict(e, orb=None) or not same_orb:
            raise AssertionError(f"{label}: hit {n} differs:\n  engine    {dict(g)}\n  reference {dict(e)}")
    if len(got) != len(expected):
        extra = list(got[len(expected) :])[:3] or list(expected[len(got) :])[:3]
        raise AssertionError(f"{label}: engine has {len(got)} hits, reference {len(expected)}; first extra {extra}")
