"""Transits: Swiss Ephemeris' exact moments and orb edges, brute force on the ephemeris and on synthetic skies
with retrograde loops, chunking and backends, bad input."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aspects_app.engine import ASPECT_NAMES, AspectConfig, MemoryOptimizedVectorizedCalculator, TransitEvents
from aspects_app.engine.transit_events import TransitEventsBuilder
from aspects_app.engine.transits import TRANSIT_ORBS, DeviceInversion, TransitTrack, search_keys, sky_events
from aspects_app.ephemeris import compute_positions, transit_track

from .helpers import CPU_BACKENDS

SAMPLE = json.loads((Path(__file__).parent.parent / "data" / "transit_sample.json").read_text())
JD_UNIX = 2440587.5
ARCSEC = 1.0 / 3600.0
# The sample's README: DE421 and Moshier differ by about 1.5″ (the Moon); the worst seen here is 1.504″.
REFERENCE_ARCSEC = 1.55
Key = tuple[int, int, int, str]


def _jd(times: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return times.astype("datetime64[us]").astype(np.int64) / 86_400e6 + JD_UNIX


@pytest.fixture(scope="module")
def sample_track() -> TransitTrack:
    return transit_track(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def sample_events(sample_track: TransitTrack) -> TransitEvents:
    config = AspectConfig.from_orbs({name: 1.0 for name, _ in SAMPLE["aspects"]})
    calc = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy")
    return calc.transits(np.array(SAMPLE["charts"]), sample_track, points=SAMPLE["points"])


def _by_key(events: TransitEvents, column: np.ndarray[Any, Any]) -> dict[Key, list[float]]:
    out: dict[Key, list[float]] = defaultdict(list)
    jd = _jd(column)
    for n in range(len(events)):
        if not np.isnat(column[n]):
            key = (int(events.i[n]), int(events.point[n]), int(events.body[n]), ASPECT_NAMES[events.aspect[n]])
            out[key].append(float(jd[n]))
    return out


def test_reproduces_swiss_ephemeris_exact_moments(sample_events: TransitEvents) -> None:
    points, bodies = SAMPLE["points"], SAMPLE["bodies"]
    assert sample_events.bodies == tuple(bodies)
    reference: dict[Key, list[tuple[float, float]]] = defaultdict(list)
    for e in SAMPLE["events"]:
        key = (e["i"], points.index(e["point"]), bodies.index(e["body"]), e["aspect"])
        reference[key].append((e["exact_jd"], e["speed"]))
    ours = _by_key(sample_events, sample_events.exact)
    assert len(sample_events) == len(SAMPLE["events"])
    assert set(ours) == set(reference)
    worst = 0.0
    for key, expected in reference.items():
        got = sorted(ours[key])
        assert len(got) == len(expected), key
        for moment, (jd, speed) in zip(got, sorted(expected), strict=True):
            worst = max(worst, abs(moment - jd) * abs(speed) / ARCSEC)
    assert worst < REFERENCE_ARCSEC


def test_orb_windows_match_swiss_ephemeris_edges(sample_events: TransitEvents) -> None:
    """Every 1° edge that bounds a window holding an exact pass is a start or end, and nothing else is."""
    points, bodies = SAMPLE["points"], SAMPLE["bodies"]
    edges: dict[Key, list[tuple[float, float]]] = defaultdict(list)
    for e in SAMPLE["orb_1deg_edges"]:
        edges[(e["i"], points.index(e["point"]), bodies.index(e["body"]), e["aspect"])].append(
            (e["edge_jd"], e["speed"])
        )
    exact = _by_key(sample_events, sample_events.exact)
    starts = _by_key(sample_events, sample_events.starts)
    ends = _by_key(sample_events, sample_events.ends)
    bounds = {key: set(starts.get(key, [])) | set(ends.get(key, [])) for key in edges}
    used_total = 0
    for key, found in edges.items():
        timeline = sorted([(jd, "edge", speed) for jd, speed in found] + [(jd, "exact", 0.0) for jd in exact[key]])
        used = [
            (jd, speed)
            for n, (jd, kind, speed) in enumerate(timeline)
            if kind == "edge" and any(0 <= m < len(timeline) and timeline[m][1] == "exact" for m in (n - 1, n + 1))
        ]
        got = sorted(bounds[key])
        assert len(got) == len(used), key
        for moment, (jd, speed) in zip(got, used, strict=True):
            assert abs(moment - jd) * abs(speed) / ARCSEC < REFERENCE_ARCSEC, key
        used_total += len(used)
    assert used_total > 200


# -- brute force on the ephemeris itself ---------------------------------------------------------------------------

Wrap = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def _wrap(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (x + 180.0) % 360.0 - 180.0


def _brute_force(
    lon_at: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]],
    t0: float,
    t1: float,
    targets: list[float],
    step: float,
) -> list[list[float]]:
    """Zeros of wrap(L(t) − target) for each target, by dense sampling and bisection (to 1e-9 day)."""
    t = np.arange(t0, t1, step)
    lon = lon_at(t)
    lo_parts, hi_parts, owner = [], [], []
    for n, target in enumerate(targets):
        f = _wrap(lon - target)
        cross = np.flatnonzero((np.sign(f[:-1]) != np.sign(f[1:])) & (np.abs(f[:-1] - f[1:]) < 180.0))
        lo_parts.append(t[cross])
        hi_parts.append(t[cross + 1])
        owner += [n] * cross.shape[0]
    lo, hi = np.concatenate(lo_parts), np.concatenate(hi_parts)
    goal = np.asarray(targets)[np.asarray(owner, dtype=int)]
    flo = _wrap(lon_at(lo) - goal)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        same = np.sign(_wrap(lon_at(mid) - goal)) == np.sign(flo)
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    out: list[list[float]] = [[] for _ in targets]
    for n, moment in zip(owner, (0.5 * (lo + hi)).tolist(), strict=True):
        out[n].append(moment)
    return [sorted(found) for found in out]


START_2027 = datetime(2027, 1, 1, tzinfo=UTC)
END_2027 = datetime(2027, 4, 1, tzinfo=UTC)
T0_US = int(np.datetime64("2027-01-01T00:00:00", "us").astype(np.int64))


def _ephemeris_lon(body: str) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]:
    def lon_at(days: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        times = (T0_US + np.round(days * 86_400e6).astype(np.int64)).astype("datetime64[us]")
        return compute_positions(times, 0.0, 0.0, points=[body]).longitudes[:, 0]

    return lon_at


def _days(times: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (times.astype("datetime64[us]").astype(np.int64) - T0_US) / 86_400e6


def test_brute_force_on_the_ephemeris_with_a_retrograde_triple_pass() -> None:
    """Mercury's retrograde loop of February 2027 passes a target three times; a target just inside the loop's
    turning point is passed twice near the station; Moon and Mars for random natal points."""
    track = transit_track(START_2027, END_2027, bodies=["Moon", "Mercury", "Mars"])
    stations = _days(track.station_times[track.station_bodies == 1])
    assert stations.shape[0] == 2  # Mercury turns retrograde and direct in range
    mercury = _ephemeris_lon("Mercury")
    turn_lon = float(mercury(stations[:1])[0])
    mid_loop = float(np.mean(mercury(stations)))
    rng = np.random.default_rng(7)
    natal = np.array([[mid_loop, turn_lon - 0.05, *rng.uniform(0, 360, 2)]])
    # 8° keeps Mercury in orb of the loop's middle from the first pass to the third (the loop is ~14° wide).
    config = AspectConfig.from_orbs({"conjunction": 8.0, "square": 2.0})
    events = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy").transits(
        natal, track, points=["Sun", "Moon", "Venus", "Mars"]
    )
    span = _days(np.array([np.datetime64("2027-04-01T00:00:00")]))[0]
    for q, body in enumerate(track.bodies):
        lon_at = _ephemeris_lon(body)
        step = 1 / 12 if body == "Moon" else 0.25
        keys = [(p, aspect, a) for p in range(natal.shape[1]) for aspect, a in (
            ("conjunction", 0.0), ("square", 90.0), ("square", -90.0))]  # fmt: skip
        found = _brute_force(lon_at, 0.0, span, [(natal[0, p] + a) % 360 for p, _, a in keys], step)
        expected: dict[tuple[int, str], list[float]] = defaultdict(list)
        for (p, aspect, _), moments in zip(keys, found, strict=True):
            expected[p, aspect] += moments
        for (p, aspect), truth in expected.items():
            mask = (events.point == p) & (events.body == q) & (events.aspect == ASPECT_NAMES.index(aspect))
            order = np.argsort(events.exact[mask])
            got = _days(events.exact[mask])[order]
            assert got.shape[0] == len(truth), (body, p, aspect)
            speeds = np.abs(track.interpolate(events.exact[mask])[1][:, q])[order]
            assert (np.abs(got - np.sort(truth)) * np.maximum(speeds, 1e-3) < 1.0 * ARCSEC).all()
    triple = events.select((events.body == 1) & (events.point == 0) & (events.aspect == 0))
    assert len(triple) == 3
    assert triple.retrograde.tolist() == [False, True, False]
    # The body never leaves the orb between the passes: one window shared by all three, its edges 8° away.
    assert len(set(triple.starts.tolist())) == 1 and len(set(triple.ends.tolist())) == 1
    edges = np.concatenate((triple.starts[:1], triple.ends[:1]))
    distance = np.abs(_wrap(mercury(_days(edges)) - natal[0, 0]))
    assert np.allclose(distance, 8.0, atol=1.0 * ARCSEC)
    near_station = events.select((events.body == 1) & (events.point == 1) & (events.aspect == 0))
    assert len(near_station) in (1, 3)


def test_tangent_at_a_station_is_reported_at_most_once() -> None:
    track = transit_track(START_2027, END_2027, bodies=["Mercury"])
    station_lon = track.station_longitudes[0]
    config = AspectConfig.from_orbs({"conjunction": 1.0})
    events = MemoryOptimizedVectorizedCalculator(config=config).transits(
        np.array([[station_lon]]), track, points=["Sun"]
    )
    near = np.abs(_days(events.exact) - _days(track.station_times[:1])[0]) < 1.0
    assert int(near.sum()) <= 1


# -- synthetic skies ---------------------------------------------------------------------------------------------

AMPLITUDE, PERIOD, DRIFT = 3.0, 40.0, 0.2


def _loop_lon(t: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.mod(100.0 + DRIFT * t + AMPLITUDE * np.sin(2 * np.pi * t / PERIOD), 360.0)


def _loop_track(start_day: float = 3.0, end_day: float = 197.0) -> TransitTrack:
    t = np.arange(0.0, 200.0 + 1e-9, 0.25)
    speed = DRIFT + AMPLITUDE * 2 * np.pi / PERIOD * np.cos(2 * np.pi * t / PERIOD)
    times = np.datetime64("2030-01-01T00:00:00", "us") + np.round(t * 86_400e6).astype("timedelta64[us]")
    origin = np.datetime64("2030-01-01T00:00:00", "us")
    return TransitTrack.from_samples(
        times, _loop_lon(t)[:, None], speed[:, None], ["Mars"],
        start=origin + np.timedelta64(int(start_day * 86_400e6), "us"),
        end=origin + np.timedelta64(int(end_day * 86_400e6), "us"),
    )  # fmt: skip


LOOP_TRACK = _loop_track()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 359.999), min_size=1, max_size=4), st.floats(0.5, 6.0))
def test_synthetic_retrograde_loops_against_brute_force(natal: list[float], orb: float) -> None:
    config = AspectConfig.from_orbs({"conjunction": orb})
    events = MemoryOptimizedVectorizedCalculator(config=config).transits(
        np.array([natal]), LOOP_TRACK, points=[f"P{n}" for n in range(len(natal))]
    )
    origin = np.datetime64("2030-01-01T00:00:00", "us").astype(np.int64)
    days = (events.exact.astype(np.int64) - origin) / 86_400e6
    extremes = _loop_lon(np.array(LOOP_TRACK.station_times.astype(np.int64) - origin) / 86_400e6)
    for p, x in enumerate(natal):
        if np.abs(_wrap(extremes - x)).min() < 1e-4:
            continue  # a tangent: one pass or two, both right
        expected = _brute_force(_loop_lon, 3.0, 197.0, [x], 0.05)[0]
        got = np.sort(days[events.point == p])
        assert len(got) == len(expected)
        assert np.allclose(got, expected, atol=1e-5)
        windows = events.select(events.point == p)
        for n in range(len(windows)):
            for column in (windows.starts, windows.ends):
                if not np.isnat(column[n]):
                    t = (column[n].astype(np.int64) - origin) / 86_400e6
                    assert abs(abs(_wrap(_loop_lon(np.array([t])) - x)[0]) - orb) < 1e-5


def test_windows_outside_the_range_are_nat() -> None:
    # Target where the body stands at the start: the window opened before the range.
    x = float(_loop_lon(np.array([3.0]))[0])
    config = AspectConfig.from_orbs({"conjunction": 1.0})
    events = MemoryOptimizedVectorizedCalculator(config=config).transits(np.array([[x]]), LOOP_TRACK, points=["Sun"])
    assert len(events) >= 1
    assert np.isnat(events.starts[0]) and not np.isnat(events.ends[0])


# -- chunking, backends, records ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_chunks_and_backends_give_identical_results(backend: str) -> None:
    rng = np.random.default_rng(3)
    natal = rng.uniform(0, 360, (9, 3))
    natal[:, 0] = rng.uniform(105.0, 135.0, 9)  # where the synthetic body roams: Sun conjunctions happen
    track = _loop_track()
    config = AspectConfig.from_orbs(dict(TRANSIT_ORBS), point_orbs={"Sun": {"conjunction": 5.0}})
    names = ["Sun", "Moon", "Venus"]
    reference = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy").transits(natal, track, names)
    progress: list[tuple[int, int]] = []
    for options in ({"chunk_size": 1}, {"chunk_size": 4}, {"working_memory_mb": 0.25}):
        calc = MemoryOptimizedVectorizedCalculator(
            config=config, backend=backend, progress=lambda d, t: progress.append((d, t)), **options
        )
        got = calc.transits(natal, track, names)
        for name, column in reference.to_arrays().items():
            np.testing.assert_array_equal(got.to_arrays()[name], column, err_msg=f"{backend} {options} {name}")
    assert progress[-1] == (9, 9)
    # The Sun's 5° conjunction orb applies to its windows, the others keep 3°.
    plain = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(dict(TRANSIT_ORBS))).transits(
        natal, track, names
    )
    sun = (reference.point == 0) & (reference.aspect == 0)
    assert len(plain) == len(reference)
    assert (reference.ends[sun] - reference.starts[sun] > plain.ends[sun] - plain.starts[sun]).any()
    np.testing.assert_array_equal(reference.ends[~sun], plain.ends[~sun])


def test_bucket_search_answers_as_the_sorted_search(sample_track: TransitTrack) -> None:
    """The key axis' bucket tables give searchsorted's answer for queries anywhere in their segments, at knots,
    at the segments' ends, and where a body slows down to its stations (the dense buckets)."""
    inv = sample_track.inversion()
    dev = DeviceInversion.move(np, inv, np.asarray)
    rng = np.random.default_rng(11)
    segment = rng.integers(0, inv.segments, 200_000)
    query = inv.q_lo[segment] + rng.uniform(0, 1, segment.shape[0]) * (inv.q_hi[segment] - inv.q_lo[segment])
    every = np.arange(inv.segments)
    knots = np.concatenate([np.arange(inv.first[g], inv.last[g] + 1) for g in every])
    owners = np.concatenate([np.full(inv.last[g] - inv.first[g] + 1, g) for g in every])
    segment = np.concatenate((segment, every, every, owners))
    query = np.concatenate((query, inv.q_lo, inv.q_hi, inv.key[knots]))
    inside = (query >= inv.q_lo[segment]) & (query <= inv.q_hi[segment])
    segment, query = segment[inside], query[inside]
    dense = inv.bucket_dense[
        np.maximum((query - inv.bucket_base[segment]) * inv.bucket_scale[segment], 0).astype(np.int64)
        + inv.bucket_offset[segment]
    ]
    assert 0 < dense.mean() < 0.1  # both paths are taken
    np.testing.assert_array_equal(search_keys(dev, segment, query), np.searchsorted(inv.key, query, side="right"))


def test_builder_grows_past_a_low_estimate(sample_events: TransitEvents) -> None:
    t0_us = int(np.datetime64("2027-01-01T00:00:00", "us").astype(np.int64))
    builder = TransitEventsBuilder(10, sample_events.points, sample_events.bodies, "numpy", t0_us)
    for part in np.array_split(np.arange(len(sample_events)), 7):
        chunk = sample_events.select(part)
        days = {
            name: np.where(np.isnat(column), np.nan, (column.astype(np.int64) - t0_us) / 86_400e6)
            for name, column in (("exact", chunk.exact), ("starts", chunk.starts), ("ends", chunk.ends))
        }
        others = {name: getattr(chunk, name) for name in ("i", "point", "body", "aspect", "retrograde")}
        builder.append(days, **others)
    built = builder.build()
    for name, column in sample_events.to_arrays().items():
        got = built.to_arrays()[name]
        assert got.dtype == column.dtype, name
        if name in ("exact", "starts", "ends"):  # through float days: within a microsecond
            assert (np.isnat(got) == np.isnat(column)).all()
            assert np.abs((got - column)[~np.isnat(column)].astype(np.int64)).max() <= 1
        else:
            np.testing.assert_array_equal(got, column, err_msg=name)


def test_records_and_json(sample_events: TransitEvents) -> None:
    first = sample_events.select(np.arange(2)).to_records()
    assert set(first[0]) == {"i", "point", "body", "aspect", "exact", "starts", "ends", "retrograde"}
    assert first[0]["exact"].tzinfo is UTC
    assert isinstance(first[0]["point"], str) and isinstance(first[0]["body"], str)
    parsed = json.loads(sample_events.select(np.arange(3)).to_json())
    assert datetime.fromisoformat(parsed[0]["exact"]) == first[0]["exact"]
    assert sample_events.to_records(point_names=False)[0]["point"] == int(sample_events.point[0])


def test_sky_events_ingresses_and_stations(sample_track: TransitTrack) -> None:
    found = sky_events(sample_track)
    records = found.to_records()
    stations = [r for r in records if r["kind"] == "station"]
    assert len(stations) == sample_track.station_times.shape[0]  # all fall inside the half year
    ingresses = [r for r in records if r["kind"] == "ingress"]
    moon = [r for r in ingresses if r["body"] == "Moon"]
    assert 78 <= len(moon) <= 81  # ~13.4 sidereal months × 12 signs / 2
    times = found.time[found.kind == 0]
    before = compute_positions(times - np.timedelta64(1, "m"), 0.0, 0.0, points=list(sample_track.bodies)).longitudes
    after = compute_positions(times + np.timedelta64(1, "m"), 0.0, 0.0, points=list(sample_track.bodies)).longitudes
    rows = np.arange(times.shape[0])
    column = found.body[found.kind == 0]
    entered = np.floor(after[rows, column] / 30.0).astype(int) % 12
    assert (entered == found.sign[found.kind == 0]).all()
    assert (np.floor(before[rows, column] / 30.0).astype(int) % 12 != entered).all()


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("natal", "points", "field"),
    [
        ([[float("nan")]], ["Sun"], "natal_lon"),
        ([[400.0]], ["Sun"], "natal_lon"),
        ([[10.0, 20.0]], ["Sun"], "points"),
    ],
)
def test_bad_natal_input_names_the_argument(natal: Any, points: list[str], field: str) -> None:
    with pytest.raises(ValueError) as info:
        MemoryOptimizedVectorizedCalculator().transits(natal, LOOP_TRACK, points=points)
    assert getattr(info.value, "field", None) == field


def test_bad_track_input_names_the_argument() -> None:
    with pytest.raises(ValueError) as info:
        MemoryOptimizedVectorizedCalculator().transits([[1.0]], "not a track", points=["Sun"])  # type: ignore[arg-type]
    assert getattr(info.value, "field", None) == "track"
    one = np.array(["2030-01-01"], dtype="datetime64[us]")
    with pytest.raises(ValueError) as info:
        TransitTrack.from_samples(one, [[1.0]], [[1.0]], ["Mars"])
    assert getattr(info.value, "field", None) == "times"
    two = np.array(["2030-01-01", "2030-01-02"], dtype="datetime64[us]")
    with pytest.raises(ValueError) as info:
        TransitTrack.from_samples(two, [[1.0], [2.0]], [[1.0]], ["Mars"])
    assert getattr(info.value, "field", None) == "speeds"
    typo = AspectConfig.from_orbs({"conjunction": 1.0}, {"Plutoo": {"square": 1.0}})
    with pytest.raises(ValueError) as info:
        MemoryOptimizedVectorizedCalculator(config=typo).transits([[1.0]], LOOP_TRACK, points=["Sun"])
    assert getattr(info.value, "field", None) == "point_orbs"


def test_transit_orbs_preset_is_tight() -> None:
    assert max(TRANSIT_ORBS.values()) == 3.0
    assert math.isclose(TRANSIT_ORBS["conjunction"], 3.0)
