"""The engine reproduces kerykeion 5.12.10's aspects, movements and relationship scores on recorded positions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aspects_app.engine import (
    ASPECT_ANGLES,
    ASPECT_NAMES,
    AspectConfig,
    AspectHits,
    MemoryOptimizedVectorizedCalculator,
)

from . import brute_force as bf
from .helpers import CPU_BACKENDS

DATA = Path(__file__).resolve().parent.parent / "data" / "kerykeion_sample.json"
ORB_TOL = 1e-6


@cache
def sample() -> dict[str, Any]:
    with DATA.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def planets() -> list[str]:
    names: list[str] = sample()["settings"]["planets"]
    return names


def score_points() -> list[str]:
    return [*planets(), "Ascendant"]


def chart_columns(field: str, points: Sequence[str]) -> npt.NDArray[np.float64]:
    """(30, len(points)) ``lon`` or ``speed`` of every chart, planets from ``planets`` and angles from ``angles``."""
    rows = []
    for chart in sample()["charts"]:
        bodies = {**chart["planets"], **chart["angles"]}
        rows.append([bodies[name][field] for name in points])
    return np.array(rows, dtype=np.float64)


def chart_index() -> dict[int, int]:
    return {chart["id"]: row for row, chart in enumerate(sample()["charts"])}


def orb_set(key: str) -> dict[str, float]:
    return {item["name"]: float(item["orb"]) for item in sample()["settings"][key]}


ORB_SETS = {"default": ("natal_aspects", "synastry_aspects"), "all": ("natal_aspects_all", "synastry_aspects_all")}


def by_key(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for record in records:
        key = (record["p1"], record["p2"], record["aspect"])
        assert key not in out, f"duplicate aspect {key}"
        out[key] = record
    return out


def assert_matches_reference(
    got: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]], label: str, movement: bool = True
) -> None:
    got_keys, expected_keys = by_key(got), by_key(expected)
    missing, extra = sorted(set(expected_keys) - set(got_keys)), sorted(set(got_keys) - set(expected_keys))
    assert not missing and not extra, f"{label}: missing {missing}, extra {extra}"
    for key, ref in expected_keys.items():
        mine = got_keys[key]
        assert abs(mine["orb"] - ref["orb"]) <= ORB_TOL, f"{label} {key}: orb {mine['orb']} vs {ref['orb']}"
        if movement:
            assert mine["movement"] == ref["movement"].lower(), (
                f"{label} {key}: {mine['movement']} vs {ref['movement']}"
            )


def records_of(hits: AspectHits, row: int) -> list[dict[str, Any]]:
    return hits.select(hits.i == row).to_records(point_names=True)


# -- the sample describes the rules the engine implements ---------------------------------------------------------


def test_sample_settings_are_the_engines() -> None:
    settings = sample()["settings"]
    table = [(d["name"], float(d["degree"])) for d in settings["aspect_definitions_in_match_order"]]
    assert table == [(name, ASPECT_ANGLES[name]) for name in ASPECT_NAMES]
    assert orb_set("default_active_aspects") == dict(AspectConfig.preset("default").orbs)
    assert orb_set("all_active_aspects") == dict(AspectConfig.preset("all").orbs)
    assert orb_set("default_active_aspects") == bf.KERYKEION_DEFAULT_ORBS
    constants = settings["relationship_score"]["constants"]
    assert constants["DESTINY_SIGN_POINTS"] == bf.DESTINY_SIGN_POINTS
    assert constants["HIGH_PRECISION_ORBIT_THRESHOLD"] == bf.HIGH_PRECISION_ORBIT_THRESHOLD
    assert constants["MAJOR_ASPECT_POINTS_HIGH_PRECISION"] == bf.MAJOR_ASPECT_POINTS_HIGH_PRECISION
    assert constants["MAJOR_ASPECT_POINTS_STANDARD"] == bf.MAJOR_ASPECT_POINTS_STANDARD
    assert constants["MINOR_ASPECT_POINTS"] == bf.MINOR_ASPECT_POINTS
    assert set(settings["relationship_score"]["major_aspects"]) == bf.MAJOR_ASPECTS
    assert len(sample()["charts"]) == 30
    assert len(sample()["pairs"]) == 21


# -- aspects -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("preset", ["default", "all"])
def test_natal_aspects(backend: str, preset: str) -> None:
    key = ORB_SETS[preset][0]
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.preset(preset), backend=backend)
    lon, speed = chart_columns("lon", planets()), chart_columns("speed", planets())
    hits = calc.natal(lon, speed, points=planets())
    for row, chart in enumerate(sample()["charts"]):
        assert_matches_reference(records_of(hits, row), chart[key], f"chart {chart['id']} {key}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("preset", ["default", "all"])
def test_synastry_aspects(backend: str, preset: str) -> None:
    key = ORB_SETS[preset][1]
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.preset(preset), backend=backend)
    lon, speed = chart_columns("lon", planets()), chart_columns("speed", planets())
    index = chart_index()
    rows_a = [index[pair["a"]] for pair in sample()["pairs"]]
    rows_b = [index[pair["b"]] for pair in sample()["pairs"]]
    hits = calc.paired_synastry(lon[rows_a], lon[rows_b], speed[rows_a], speed[rows_b], points=planets())
    full = calc.synastry(lon, lon, speed, speed, points=planets())
    for row, pair in enumerate(sample()["pairs"]):
        label = f"pair {pair['id']} ({pair['a']}, {pair['b']}) {key}"
        assert_matches_reference(records_of(hits, row), pair[key], label)
        # The all-against-all run holds the same pair at (a, b).
        mask = (full.i == rows_a[row]) & (full.j == rows_b[row])
        assert_matches_reference(full.select(mask).to_records(point_names=True), pair[key], f"{label} in synastry")


def test_brute_force_reproduces_the_reference() -> None:
    """The reference implementation itself agrees with kerykeion (so agreeing with it means something)."""
    lon, speed = chart_columns("lon", planets()), chart_columns("speed", planets())
    names = planets()
    for preset, (natal_key, synastry_key) in ORB_SETS.items():
        config = AspectConfig.preset(preset)
        for row, chart in enumerate(sample()["charts"]):
            mine = bf.natal(lon[row : row + 1], config, names, speed[row : row + 1])
            named = [dict(r, p1=names[r["p1"]], p2=names[r["p2"]]) for r in mine]
            assert_matches_reference(named, chart[natal_key], f"reference chart {chart['id']}")
        index = chart_index()
        for pair in sample()["pairs"]:
            a, b = index[pair["a"]], index[pair["b"]]
            mine = bf.synastry(lon[a : a + 1], lon[b : b + 1], config, names, speed[a : a + 1], speed[b : b + 1])
            named = [dict(r, p1=names[r["p1"]], p2=names[r["p2"]]) for r in mine]
            assert_matches_reference(named, pair[synastry_key], f"reference pair {pair['id']}")


# -- relationship score ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_discepolo_scores(backend: str) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    points = score_points()
    lon = chart_columns("lon", points)
    scores = calc.scores(lon, lon, method="discepolo", points=points)
    assert scores.shape == (30, 30)
    index = chart_index()
    for pair in sample()["pairs"]:
        a, b = index[pair["a"]], index[pair["b"]]
        expected = pair["relationship_score"]["score_value"]
        assert int(scores[a, b]) == expected, f"pair {pair['id']} ({pair['a']}, {pair['b']})"
        assert bf.discepolo_score(lon[a], lon[b], points) == expected, f"reference, pair {pair['id']}"
    # Every chart pair, not only the 21 recorded ones, agrees with the reference implementation.
    assert scores.tolist() == bf.discepolo_scores(lon, lon, points)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("k", [1, 5, 29, 30, 50])
def test_top_k_over_the_sample(backend: str, exclude_self: bool, k: int) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    points = score_points()
    lon = chart_columns("lon", points)
    scores = calc.scores(lon, lon, points=points)
    top = calc.top_k(lon, k=k, points=points, exclude_self=exclude_self)
    indices, values = bf.top_k(scores.tolist(), k, exclude_self=exclude_self)
    assert top.indices.tolist() == indices
    assert top.scores.tolist() == values
