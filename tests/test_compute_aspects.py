"""``manage.py compute_aspects``: every mode and output, selections, re-runs, resume after a crash or a stop
request, bad options, --estimate, --demo, progress and the BatchRun record.

Charts are made from seeded random positions (no ephemeris) except for the --demo tests; every result is checked
against the engine run directly on the same positions.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F

from aspects_app import batch, demo_data, services
from aspects_app.engine import ENGINE_VERSION, AspectConfig, AspectHits, MemoryOptimizedVectorizedCalculator, TopK
from aspects_app.engine.aspects import STANDARD_POINTS
from aspects_app.models import AspectResult, BatchRun, Chart, Match
from aspects_app.services import ChartInput

from .batch_faults import crash_on_block

POINTS: tuple[str, ...] = STANDARD_POINTS[:10]
# Every run names the backend (so BatchRun.backend is predictable) and, unless a test is about progress, no bar.
QUIET: tuple[str, ...] = ("--backend", "numpy", "--no-progress")
# --chunk-size 1 makes every block MIN_BLOCK_ROWS (16) rows: several blocks from a few dozen charts.
SMALL_BLOCKS: tuple[str, ...] = ("--chunk-size", "1")

MakeCharts = Callable[..., list[Chart]]


# -- helpers -------------------------------------------------------------------------------------------------------


def run_command(*args: str, **options: Any) -> tuple[str, str]:
    """Run compute_aspects; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("compute_aspects", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def engine() -> MemoryOptimizedVectorizedCalculator:
    """The reference: the engine with the configuration the command uses by default (settings' ASPECTS is {})."""
    return MemoryOptimizedVectorizedCalculator(config=AspectConfig(), backend="numpy")


def arrays(ids: list[int]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None, tuple[str, ...]]:
    """Longitudes, speeds and points of ``ids``, in that order, read back from the database."""
    by_pk = {c.pk: c for c in Chart.objects.filter(pk__in=ids)}
    charts = [by_pk[i] for i in ids]
    lon = np.stack([c.longitude_array for c in charts])
    speed_rows = [c.speed_array for c in charts]
    speeds = None if any(s is None for s in speed_rows) else np.stack(speed_rows)  # type: ignore[arg-type]
    return lon, speeds, tuple(charts[0].points)


def columns(hits: AspectHits) -> dict[str, list[Any]]:
    """What a hit says apart from its chart indices (which are positions in whatever array was computed)."""
    return {
        "p1": hits.p1.tolist(),
        "p2": hits.p2.tolist(),
        "aspect": hits.aspect.tolist(),
        "orb": hits.orb.tolist(),
        "movement": hits.movement.tolist(),
    }


def stored_hits(row: AspectResult) -> AspectHits:
    return AspectHits.from_bytes(bytes(row.payload))


def counts() -> tuple[int, int, int]:
    return AspectResult.objects.count(), Match.objects.count(), BatchRun.objects.count()


def last_run() -> BatchRun:
    run = BatchRun.objects.order_by("-pk").first()
    assert run is not None
    return run


def result_snapshot() -> dict[tuple[str, int, int], tuple[int, bytes, str]]:
    return {
        (r.kind, r.chart_a_id, r.chart_b_id): (r.hit_count, bytes(r.payload), r.positions_hash)
        for r in AspectResult.objects.all()
    }


def match_snapshot() -> dict[tuple[int, int], tuple[int, float]]:
    return {(m.chart_id, m.rank): (m.partner_id, m.score) for m in Match.objects.all()}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def expected_top_k(ids: list[int], best: TopK) -> dict[tuple[int, int], tuple[int, float]]:
    return {
        (chart, rank + 1): (ids[int(j)], float(score))
        for chart, row_idx, row_scores in zip(ids, best.indices.tolist(), best.scores.tolist(), strict=True)
        for rank, (j, score) in enumerate(zip(row_idx, row_scores, strict=True))
    }


@pytest.fixture
def make_charts(db: None) -> MakeCharts:
    """Create ``n`` charts from seeded random positions (and speeds) in one bulk insert; returns them by pk."""
    seeds = iter(range(1, 10_000))

    def make(n: int, owner: Any = None, with_speeds: bool = True) -> list[Chart]:
        rng = np.random.default_rng(next(seeds))
        lon = rng.uniform(0.0, 360.0, (n, len(POINTS)))
        spd = rng.uniform(-1.0, 14.0, (n, len(POINTS)))
        inputs = [
            ChartInput(
                name=f"random {k}",
                points=POINTS,
                longitudes=tuple(lon[k].tolist()),
                speeds=tuple(spd[k].tolist()) if with_speeds else None,
            )
            for k in range(n)
        ]
        created = services.create_charts(owner, inputs)
        assert all(c.pk is not None for c in created)
        return sorted(created, key=lambda c: c.pk)

    return make


def pks(charts: list[Chart]) -> list[int]:
    return [int(c.pk) for c in charts]


def id_list(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


# -- natal ---------------------------------------------------------------------------------------------------------


def test_natal_to_the_database_stores_one_row_per_chart_equal_to_the_engine(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(40))
    out, _ = run_command("--mode", "natal", *SMALL_BLOCKS, *QUIET)  # 3 blocks of 16, 16 and 8 charts

    rows = {r.chart_a_id: r for r in AspectResult.objects.filter(kind=AspectResult.Kind.NATAL)}
    assert sorted(rows) == ids
    assert AspectResult.objects.count() == 40
    lon, spd, points = arrays(ids)
    reference = engine().natal(lon, spd, points=points)
    for n, pk in enumerate(ids):
        row = rows[pk]
        assert row.chart_b_id == pk
        assert row.config_hash == AspectConfig().config_hash()
        assert row.engine_version == ENGINE_VERSION
        hits = stored_hits(row)
        assert hits.j is None
        assert hits.points == POINTS
        assert columns(hits) == columns(reference.select(reference.i == n)), f"chart {pk}"
        assert row.hit_count == len(hits)
    assert sum(r.hit_count for r in rows.values()) == len(reference)
    assert f"{len(reference):,} hits" in out


def test_natal_rows_from_the_batch_are_served_by_the_request_path(make_charts: MakeCharts) -> None:
    charts = make_charts(5)
    run_command("--mode", "natal", *QUIET)

    for chart in charts:
        result = services.natal_aspects(chart, AspectConfig())
        assert result.cached, "the request path recomputed instead of serving the batch's row"
        lon, spd, points = arrays([chart.pk])
        assert columns(result.hits) == columns(engine().natal(lon, spd, points=points))
    assert AspectResult.objects.count() == 5


def test_natal_for_birth_data_charts_from_demo(db: None) -> None:
    run_command("--demo", "30", "--mode", "natal", *QUIET)

    ids = list(Chart.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == 30
    lon, spd, points = arrays(ids)
    assert points == STANDARD_POINTS
    reference = engine().natal(lon, spd, points=points)
    rows = {r.chart_a_id: r for r in AspectResult.objects.filter(kind="natal")}
    assert sorted(rows) == ids
    for n, pk in enumerate(ids):
        assert columns(stored_hits(rows[pk])) == columns(reference.select(reference.i == n))


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_natal_to_a_file_writes_one_line_per_hit(make_charts: MakeCharts, tmp_path: Path, file_format: str) -> None:
    ids = pks(make_charts(30))
    path = tmp_path / f"natal.{file_format}"
    run_command("--mode", "natal", "--output", str(path), *SMALL_BLOCKS, *QUIET)

    lon, spd, points = arrays(ids)
    expected = [
        {
            "chart": ids[r["i"]],
            "p1": r["p1"],
            "p2": r["p2"],
            "aspect": r["aspect"],
            "orb": r["orb"],
            "movement": r["movement"],
        }
        for r in engine().natal(lon, spd, points=points).to_records(point_names=True)
    ]
    assert expected
    if file_format == "jsonl":
        assert read_jsonl(path) == expected
    else:
        header, *rows = read_csv(path)
        assert header == ["chart", "p1", "p2", "aspect", "orb", "movement"]
        got = [
            {"chart": int(c), "p1": p1, "p2": p2, "aspect": a, "orb": float(o), "movement": m}
            for c, p1, p2, a, o, m in rows
        ]
        assert got == expected
    assert not path.with_name(path.name + ".partial").exists()
    assert AspectResult.objects.count() == 0
    assert last_run().rows_written == len(expected)


# -- synastry ------------------------------------------------------------------------------------------------------


def test_synastry_within_one_group_stores_each_unordered_pair_once(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(20))
    run_command("--mode", "synastry", *SMALL_BLOCKS, *QUIET)  # blocks of 16 and 4 rows

    rows = {(r.chart_a_id, r.chart_b_id): r for r in AspectResult.objects.filter(kind="synastry")}
    assert set(rows) == {(ids[x], ids[y]) for x in range(20) for y in range(x + 1, 20)}
    assert AspectResult.objects.count() == 20 * 19 // 2
    lon, spd, points = arrays(ids)
    reference = engine().synastry(lon, lon, spd, spd, points=points)
    assert reference.j is not None
    for x in range(20):
        for y in range(x + 1, 20):
            row = rows[(ids[x], ids[y])]
            hits = stored_hits(row)
            assert hits.j is not None
            assert columns(hits) == columns(reference.select((reference.i == x) & (reference.j == y)))
            assert row.hit_count == len(hits)
    run = last_run()
    assert run.progress_total == run.progress_done == 190
    assert run.rows_written == 190


def test_synastry_between_two_groups_stores_every_ordered_pair(make_charts: MakeCharts) -> None:
    group_a = pks(make_charts(8))
    group_b = pks(make_charts(7))
    make_charts(3)  # in neither group
    run_command("--mode", "synastry", "--ids", id_list(group_a), "--with-ids", id_list(group_b), *QUIET)

    rows = {(r.chart_a_id, r.chart_b_id): r for r in AspectResult.objects.filter(kind="synastry")}
    assert set(rows) == {(a, b) for a in group_a for b in group_b}
    lon_a, spd_a, points = arrays(group_a)
    lon_b, spd_b, _ = arrays(group_b)
    reference = engine().synastry(lon_a, lon_b, spd_a, spd_b, points=points)
    assert reference.j is not None
    for x, a in enumerate(group_a):
        for y, b in enumerate(group_b):
            expected = reference.select((reference.i == x) & (reference.j == y))
            assert columns(stored_hits(rows[(a, b)])) == columns(expected), (a, b)


def test_synastry_to_jsonl_writes_each_unordered_pair_once(make_charts: MakeCharts, tmp_path: Path) -> None:
    ids = pks(make_charts(18))
    path = tmp_path / "synastry.jsonl"
    run_command("--mode", "synastry", "--output", str(path), *SMALL_BLOCKS, *QUIET)

    lon, spd, points = arrays(ids)
    expected = [
        {"chart_a": ids[r["i"]], "chart_b": ids[r["j"]], **{k: r[k] for k in ("p1", "p2", "aspect", "orb", "movement")}}
        for r in engine().synastry(lon, lon, spd, spd, points=points).to_records(point_names=True)
        if r["j"] > r["i"]
    ]
    assert read_jsonl(path) == expected


# -- top-k ---------------------------------------------------------------------------------------------------------


def test_top_k_to_the_database_stores_k_ranked_partners_equal_to_the_engine(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(50))
    run_command("--mode", "top-k", "-k", "5", *SMALL_BLOCKS, *QUIET)  # 4 blocks

    run = last_run()
    matches = list(Match.objects.all())
    assert len(matches) == 50 * 5
    for pk in ids:
        mine = sorted((m for m in matches if m.chart_id == pk), key=lambda m: m.rank)
        assert [m.rank for m in mine] == [1, 2, 3, 4, 5]
        assert all(m.partner_id != pk for m in mine), f"chart {pk} is its own partner"
        assert [m.score for m in mine] == sorted((m.score for m in mine), reverse=True)
        assert all(m.run_id == run.pk and m.method == "discepolo" for m in mine)
    lon, _, points = arrays(ids)
    best = engine().top_k(lon, lon, k=5, points=points, exclude_self=True)
    assert match_snapshot() == expected_top_k(ids, best)
    assert run.rows_written == 250


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_top_k_to_a_file(make_charts: MakeCharts, tmp_path: Path, file_format: str) -> None:
    ids = pks(make_charts(24))
    path = tmp_path / f"top.{file_format}"
    run_command("--mode", "top-k", "-k", "3", "--output", str(path), *SMALL_BLOCKS, *QUIET)

    lon, _, points = arrays(ids)
    expected = [
        {"chart": chart, "rank": rank, "partner": partner, "score": score}
        for (chart, rank), (partner, score) in sorted(
            expected_top_k(ids, engine().top_k(lon, lon, k=3, points=points, exclude_self=True)).items()
        )
    ]
    if file_format == "jsonl":
        got = read_jsonl(path)
    else:
        header, *rows = read_csv(path)
        assert header == ["chart", "rank", "partner", "score"]
        got = [{"chart": int(c), "rank": int(r), "partner": int(p), "score": float(s)} for c, r, p, s in rows]
    assert got == expected
    assert len(got) == 24 * 3
    assert Match.objects.count() == 0


def test_top_k_against_all_charts_never_pairs_a_chart_with_itself(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(30))
    chosen = ids[3:9]
    run_command("--mode", "top-k", "-k", "4", "--ids", id_list(chosen), "--with-all", *QUIET)

    assert sorted(set(Match.objects.values_list("chart_id", flat=True))) == chosen
    assert Match.objects.count() == len(chosen) * 4
    selfish = list(Match.objects.filter(partner_id=F("chart_id")).values_list("chart_id", "rank"))
    assert not selfish, f"charts ranked as their own partner (chart, rank): {selfish}"
    lon, _, points = arrays(ids)
    best = engine().top_k(lon[3:9], lon, k=4, points=points, exclude_self=True, row_offset=3)
    expected = {
        (chosen[r], rank + 1): (ids[int(j)], float(s))
        for r, (row_idx, row_scores) in enumerate(zip(best.indices.tolist(), best.scores.tolist(), strict=True))
        for rank, (j, s) in enumerate(zip(row_idx, row_scores, strict=True))
    }
    assert match_snapshot() == expected


# -- scores --------------------------------------------------------------------------------------------------------


def test_scores_to_npz_hold_the_engine_matrix(make_charts: MakeCharts, tmp_path: Path) -> None:
    ids = pks(make_charts(30))
    path = tmp_path / "scores.npz"
    run_command("--mode", "scores", "--output", str(path), *SMALL_BLOCKS, *QUIET)

    lon, _, points = arrays(ids)
    with np.load(path) as data:
        assert set(data.files) == {"scores", "chart_a", "chart_b"}
        assert data["chart_a"].tolist() == ids
        assert data["chart_b"].tolist() == ids
        assert data["scores"].dtype == np.int16
        np.testing.assert_array_equal(data["scores"], engine().scores(lon, lon, points=points))
    assert not list(tmp_path.glob("*.partial*"))
    assert last_run().rows_written == 30 * 30


def test_scores_between_groups_and_weighted_method_to_npz(make_charts: MakeCharts, tmp_path: Path) -> None:
    group_a = pks(make_charts(6))
    group_b = pks(make_charts(9))
    path = tmp_path / "weighted.npz"
    run_command(
        "--mode", "scores", "--method", "weighted", "--ids", id_list(group_a), "--with-ids", id_list(group_b),
        "--output", str(path), *QUIET,
    )  # fmt: skip

    lon_a, _, points = arrays(group_a)
    lon_b, _, _ = arrays(group_b)
    with np.load(path) as data:
        assert data["chart_a"].tolist() == group_a
        assert data["chart_b"].tolist() == group_b
        assert data["scores"].shape == (6, 9)
        np.testing.assert_array_equal(data["scores"], engine().scores(lon_a, lon_b, method="weighted", points=points))


def test_scores_with_all_as_second_group(make_charts: MakeCharts, tmp_path: Path) -> None:
    ids = pks(make_charts(12))
    path = tmp_path / "scores.npz"
    run_command("--mode", "scores", "--ids", id_list(ids[:4]), "--with-all", "--output", str(path), *QUIET)

    lon, _, points = arrays(ids)
    with np.load(path) as data:
        assert data["chart_a"].tolist() == ids[:4]
        assert data["chart_b"].tolist() == ids
        np.testing.assert_array_equal(data["scores"], engine().scores(lon[:4], lon, points=points))


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_scores_to_a_text_file_write_one_line_per_pair(
    make_charts: MakeCharts, tmp_path: Path, file_format: str
) -> None:
    ids = pks(make_charts(20))
    path = tmp_path / f"scores.{file_format}"
    run_command("--mode", "scores", "--output", str(path), *SMALL_BLOCKS, *QUIET)

    lon, _, points = arrays(ids)
    matrix = engine().scores(lon, lon, points=points)
    expected = [
        {"chart_a": a, "chart_b": b, "score": int(matrix[x, y])} for x, a in enumerate(ids) for y, b in enumerate(ids)
    ]
    if file_format == "jsonl":
        got = read_jsonl(path)
    else:
        header, *rows = read_csv(path)
        assert header == ["chart_a", "chart_b", "score"]
        got = [{"chart_a": int(a), "chart_b": int(b), "score": int(s)} for a, b, s in rows]
    assert len(got) == 400
    assert got == expected


def test_format_option_overrides_the_extension(make_charts: MakeCharts, tmp_path: Path) -> None:
    make_charts(5)
    path = tmp_path / "scores.txt"
    run_command("--mode", "scores", "--output", str(path), "--format", "csv", *QUIET)
    assert read_csv(path)[0] == ["chart_a", "chart_b", "score"]
    assert len(read_csv(path)) == 1 + 25


# -- re-running ----------------------------------------------------------------------------------------------------


def test_rerunning_natal_and_synastry_overwrites_rather_than_duplicates(make_charts: MakeCharts) -> None:
    make_charts(20)
    run_command("--mode", "natal", "--mode", "synastry", *QUIET)
    first = result_snapshot()
    assert len(first) == 20 + 190

    run_command("--mode", "natal", "--mode", "synastry", *SMALL_BLOCKS, *QUIET)
    assert AspectResult.objects.count() == 20 + 190
    again = result_snapshot()
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in first.items()}
    assert BatchRun.objects.filter(status=BatchRun.Status.DONE).count() == 2


def test_rerunning_top_k_replaces_each_charts_matches_also_when_k_shrinks(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(40))
    run_command("--mode", "top-k", "-k", "6", *QUIET)
    assert Match.objects.count() == 240

    run_command("--mode", "top-k", "-k", "6", *SMALL_BLOCKS, *QUIET)
    assert Match.objects.count() == 240
    second = last_run()
    assert set(Match.objects.values_list("run_id", flat=True)) == {second.pk}

    run_command("--mode", "top-k", "-k", "2", *QUIET)
    assert Match.objects.count() == 80
    for pk in ids:
        assert list(Match.objects.filter(chart_id=pk).order_by("rank").values_list("rank", flat=True)) == [1, 2]
    lon, _, points = arrays(ids)
    assert match_snapshot() == expected_top_k(ids, engine().top_k(lon, lon, k=2, points=points, exclude_self=True))


def test_rerunning_a_file_job_replaces_the_file(make_charts: MakeCharts, tmp_path: Path) -> None:
    make_charts(10)
    path = tmp_path / "natal.jsonl"
    run_command("--mode", "natal", "--output", str(path), *QUIET)
    first = path.read_bytes()
    run_command("--mode", "natal", "--output", str(path), *SMALL_BLOCKS, *QUIET)
    assert path.read_bytes() == first


# -- selections ----------------------------------------------------------------------------------------------------


def test_owner_selects_that_users_charts(make_charts: MakeCharts, alice: Any, bob: Any) -> None:
    mine = pks(make_charts(4, owner=alice))
    make_charts(3, owner=bob)
    make_charts(2)
    run_command("--mode", "natal", "--owner", "alice", *QUIET)
    assert sorted(AspectResult.objects.values_list("chart_a_id", flat=True)) == mine


def test_changed_since_selects_charts_updated_at_or_after_the_moment(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(6))
    Chart.objects.filter(pk__in=ids[:3]).update(updated_at=datetime(2020, 5, 1, tzinfo=UTC))
    Chart.objects.filter(pk=ids[3]).update(updated_at=datetime(2024, 1, 1, tzinfo=UTC))  # exactly at: included
    # 02:00 at +02:00 is midnight UTC: the offset is honoured.
    run_command("--mode", "natal", "--changed-since", "2024-01-01T02:00:00+02:00", *QUIET)
    assert sorted(AspectResult.objects.values_list("chart_a_id", flat=True)) == ids[3:]


def test_ids_select_those_charts(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(10))
    chosen = [ids[1], ids[4], ids[7]]
    run_command("--mode", "natal", "--ids", f"{chosen[2]}, {chosen[0]},{chosen[1]},{chosen[0]}", *QUIET)
    assert sorted(AspectResult.objects.values_list("chart_a_id", flat=True)) == chosen
    assert last_run().parameters["spec"]["group_a"] == chosen


def test_filters_combine(make_charts: MakeCharts, alice: Any) -> None:
    ids = pks(make_charts(4, owner=alice))
    Chart.objects.filter(pk__in=ids[:2]).update(updated_at=datetime(2020, 1, 1, tzinfo=UTC))
    make_charts(3)
    run_command("--mode", "natal", "--owner", "alice", "--changed-since", "2021-01-01T00:00:00+00:00", *QUIET)
    assert sorted(AspectResult.objects.values_list("chart_a_id", flat=True)) == ids[2:]


def test_with_owner_selects_the_second_group(make_charts: MakeCharts, alice: Any, bob: Any) -> None:
    group_a = pks(make_charts(3, owner=alice))
    group_b = pks(make_charts(4, owner=bob))
    run_command("--mode", "synastry", "--owner", "alice", "--with-owner", "bob", *QUIET)
    assert set(AspectResult.objects.values_list("chart_a_id", "chart_b_id")) == {
        (a, b) for a in group_a for b in group_b
    }


# -- resume --------------------------------------------------------------------------------------------------------


def stop_after_block(monkeypatch: pytest.MonkeyPatch, call: int) -> Callable[[], None]:
    """Send the process a real SIGINT (Ctrl-C) during the ``call``-th block; the command's handler must turn it
    into a stop request that takes effect before the next block."""
    real = batch.BatchJob.compute_block
    calls: list[int] = []

    def interrupted(self: batch.BatchJob, mode: str, block: batch.Block, writer: Any) -> batch.BlockResult:
        result = real(self, mode, block, writer)
        calls.append(block.rows.start)
        if len(calls) == call:
            # Never deliver SIGINT without the command's handler: it would abort the whole test session.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler, "no SIGINT handler installed"
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(batch.BatchJob, "compute_block", interrupted)
    return lambda: monkeypatch.setattr(batch.BatchJob, "compute_block", real)


def clean_database_run(args: tuple[str, ...]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    AspectResult.objects.all().delete()
    Match.objects.all().delete()
    run_command(*args)
    return result_snapshot(), match_snapshot()


# 60 charts in blocks of 16: 16, 16, 16, 12 rows.
RESUME_CHARTS = 60
RESUME_CASES = [
    pytest.param("natal", 16 * 2, RESUME_CHARTS, id="natal"),
    pytest.param("synastry", sum(RESUME_CHARTS - 1 - r for r in range(32)), RESUME_CHARTS * 59 // 2, id="synastry"),
    pytest.param("top-k", 32 * 3, RESUME_CHARTS * 3, id="top-k"),
]


@pytest.mark.parametrize(("mode", "rows_after_two_blocks", "rows_in_all"), RESUME_CASES)
def test_resume_after_a_crash_completes_the_database_output_without_duplicates_or_gaps(
    transactional_db: None,
    make_charts: MakeCharts,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    rows_after_two_blocks: int,
    rows_in_all: int,
) -> None:
    make_charts(RESUME_CHARTS)
    args = ("--mode", mode, "-k", "3", *SMALL_BLOCKS, *QUIET)
    restore = crash_on_block(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_command(*args)
    restore()

    run = last_run()
    assert run.status == BatchRun.Status.FAILED
    assert "simulated crash" in run.error
    assert 0 < run.progress_done < run.progress_total
    assert run.parameters["state"]["next_row"] == 32
    assert run.rows_written == rows_after_two_blocks
    # The third block's writes were rolled back with its transaction.
    assert AspectResult.objects.count() + Match.objects.count() == rows_after_two_blocks

    out, _ = run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == run.progress_total
    assert run.rows_written == rows_in_all
    assert BatchRun.objects.count() == 1
    assert f"run {run.pk} done" in out
    resumed = result_snapshot(), match_snapshot()
    assert len(resumed[0]) + len(resumed[1]) == rows_in_all

    clean = clean_database_run(args)
    assert resumed == clean


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_resume_after_a_crash_cuts_the_partial_file_back_and_completes_it(
    transactional_db: None, make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_format: str
) -> None:
    make_charts(RESUME_CHARTS)
    path = tmp_path / f"natal.{file_format}"
    partial = path.with_name(path.name + ".partial")
    restore = crash_on_block(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_command("--mode", "natal", "--output", str(path), *SMALL_BLOCKS, *QUIET)
    restore()

    run = last_run()
    assert run.status == BatchRun.Status.FAILED
    assert not path.exists()
    recorded = run.parameters["state"]["file_bytes"]
    assert 0 < recorded < partial.stat().st_size, "the crashed block's rows should be in the partial file"

    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == run.progress_total == RESUME_CHARTS
    assert not partial.exists()

    clean = tmp_path / f"clean.{file_format}"
    run_command("--mode", "natal", "--output", str(clean), *SMALL_BLOCKS, *QUIET)
    assert path.read_bytes() == clean.read_bytes()
    lines = path.read_text().splitlines()
    assert len(lines) == len(set(lines)), "duplicate lines"
    assert run.rows_written == last_run().rows_written


def test_resume_after_a_crash_completes_the_npz_matrix(
    transactional_db: None, make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_charts(RESUME_CHARTS)
    path = tmp_path / "scores.npz"
    restore = crash_on_block(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_command("--mode", "scores", "--output", str(path), *SMALL_BLOCKS, *QUIET)
    restore()
    run = last_run()
    assert run.status == BatchRun.Status.FAILED
    assert not path.exists()

    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.rows_written == RESUME_CHARTS * RESUME_CHARTS
    clean = tmp_path / "clean.npz"
    run_command("--mode", "scores", "--output", str(clean), *SMALL_BLOCKS, *QUIET)
    with np.load(path) as got, np.load(clean) as want:
        for name in ("scores", "chart_a", "chart_b"):
            np.testing.assert_array_equal(got[name], want[name])
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize("output", ["db", "jsonl"])
def test_a_stop_request_ends_the_run_after_the_current_block_and_resume_completes_it(
    transactional_db: None, make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, output: str
) -> None:
    make_charts(RESUME_CHARTS)
    path = tmp_path / "natal.jsonl"
    args = ("--mode", "natal", *SMALL_BLOCKS, *QUIET, *(() if output == "db" else ("--output", str(path))))
    handler_before = signal.getsignal(signal.SIGINT)
    restore = stop_after_block(monkeypatch, 2)
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"--resume \d+"):
        call_command("compute_aspects", *args, stdout=io.StringIO(), stderr=err)
    restore()
    assert signal.getsignal(signal.SIGINT) is handler_before, "the command left its signal handler installed"
    assert "stopping after the current block" in err.getvalue()

    run = last_run()
    assert run.status == BatchRun.Status.INTERRUPTED
    assert run.parameters["state"]["next_row"] == 32
    assert run.progress_done == 32 < run.progress_total
    if output == "db":
        assert AspectResult.objects.count() == 32

    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == run.progress_total == RESUME_CHARTS
    if output == "db":
        assert run.rows_written == RESUME_CHARTS
        resumed = result_snapshot()
        assert len(resumed) == RESUME_CHARTS
        assert resumed == clean_database_run(args)[0]
    else:
        clean = tmp_path / "clean.jsonl"
        run_command("--mode", "natal", *SMALL_BLOCKS, *QUIET, "--output", str(clean))
        assert path.read_bytes() == clean.read_bytes()


def test_a_failed_run_resumes_twice_if_it_fails_again(
    transactional_db: None, make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_charts(RESUME_CHARTS)
    restore = crash_on_block(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        run_command("--mode", "natal", *SMALL_BLOCKS, *QUIET)
    run = last_run()
    assert run.parameters["state"]["next_row"] == 16
    restore()
    restore = crash_on_block(monkeypatch, 2)  # the second attempt also fails in its second block
    with pytest.raises(RuntimeError):
        run_command("--resume", str(run.pk), "--no-progress")
    restore()
    run.refresh_from_db()
    assert run.status == BatchRun.Status.FAILED
    assert run.parameters["state"]["next_row"] == 32
    assert AspectResult.objects.count() == 32

    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert AspectResult.objects.count() == RESUME_CHARTS
    assert run.rows_written == RESUME_CHARTS
    assert run.progress_done == run.progress_total == RESUME_CHARTS


# -- bad options ---------------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    pytest.param(("--mode", "natal", "--ids", "999999"), "unknown chart ids", id="unknown-ids"),
    pytest.param(("--mode", "natal", "--ids", "1,x"), "comma-separated integers", id="ids-not-integers"),
    pytest.param(("--mode", "natal", "--ids", ","), "no ids given", id="ids-empty"),
    pytest.param(("--mode", "synastry", "--with-ids", "999999"), "second group: unknown chart ids", id="unknown-with"),
    pytest.param(
        ("--mode", "natal", "--changed-since", "2999-01-01T00:00:00+00:00"), "selection is empty", id="empty-selection"
    ),
    pytest.param(("--mode", "natal", "--owner", "nobody"), "no charts owned by 'nobody'", id="unknown-owner"),
    pytest.param(("--mode", "natal", "--changed-since", "last tuesday"), "not an ISO datetime", id="bad-since"),
    pytest.param(("--mode", "natal", "--changed-since", "2020-01-01T00:00:00"), "UTC offset", id="naive-since"),
    pytest.param(("--mode", "natal", "--with-changed-since", "2020-01-01"), "--with-changed-since", id="naive-with"),
    pytest.param((), "--mode: give at least one", id="no-mode"),
    pytest.param(("--mode", "bogus"), "invalid choice", id="unknown-mode"),
    pytest.param(("--mode", "scores"), "--output PATH.npz", id="scores-to-db"),
    pytest.param(("--mode", "natal", "--output", "{tmp}/out.npz"), "use it with --mode scores", id="npz-natal"),
    pytest.param(("--mode", "top-k", "--output", "{tmp}/out.npz"), "use it with --mode scores", id="npz-top-k"),
    pytest.param(
        ("--mode", "natal", "--mode", "top-k", "--output", "{tmp}/out.jsonl"), "a file takes one mode", id="two-modes"
    ),
    pytest.param(("--mode", "natal", "--output", "/nonexistent/dir/out.jsonl"), "cannot write into", id="unwritable"),
    pytest.param(("--mode", "natal", "--output", "{tmp}/out.xml"), "unknown output format 'xml'", id="unknown-ext"),
    pytest.param(("--mode", "natal", "--output", "{tmp}/out.jsonl", "--format", "xml"), "invalid choice", id="format"),
    pytest.param(("--mode", "natal", "--orbs", '{"trine": }'), "--orbs: not valid JSON", id="orbs-bad-json"),
    pytest.param(("--mode", "natal", "--orbs", "tight"), "unknown orb preset 'tight'", id="orbs-unknown-preset"),
    pytest.param(("--mode", "natal", "--orbs", '{"trine": -1}'), ">= 0", id="orbs-negative"),
    pytest.param(("--mode", "natal", "--orbs", '{"trigon": 8}'), "unknown aspect 'trigon'", id="orbs-unknown-aspect"),
    pytest.param(("--mode", "natal", "--aspects", "trine,bogus"), "unknown aspect 'bogus'", id="unknown-aspect"),
    pytest.param(("--mode", "top-k", "-k", "0"), "-k: must be at least 1", id="k-zero"),
    pytest.param(("--mode", "natal", "--chunk-size", "0"), "--chunk-size: must be at least 1", id="chunk-size-zero"),
    pytest.param(("--mode", "natal", "--working-memory-mb", "0"), "must be positive", id="budget-zero"),
    pytest.param(("--mode", "natal", "--working-memory-mb", "-5"), "must be positive", id="budget-negative"),
    pytest.param(("--mode", "natal", "--working-memory-mb", "1e-9"), "too small", id="budget-below-one-pair"),
    pytest.param(("--mode", "top-k", "--working-memory-mb", "1e-9"), "too small", id="budget-below-one-pair-top-k"),
    pytest.param(("--mode", "natal", "--working-memory-mb", "inf"), "working", id="budget-infinite"),
    pytest.param(
        ("--mode", "natal", "--estimate", "--working-memory-mb", "1e-9"),
        "too small",
        id="estimate-tiny-budget",
    ),
    pytest.param(("--demo", "0"), "--demo: must be at least 1", id="demo-zero"),
]


@pytest.mark.parametrize(("args", "reason"), BAD_OPTIONS)
def test_bad_options_are_command_errors_and_write_nothing(
    make_charts: MakeCharts, tmp_path: Path, args: tuple[str, ...], reason: str
) -> None:
    make_charts(20)
    run_command("--mode", "top-k", "-k", "2", *QUIET)  # something already stored that must survive
    before = counts(), result_snapshot(), match_snapshot()
    charts_before = Chart.objects.count()

    with pytest.raises(CommandError) as raised:
        run_command(*(a.replace("{tmp}", str(tmp_path)) for a in args), *QUIET)

    assert reason in str(raised.value)
    assert (counts(), result_snapshot(), match_snapshot()) == before, "something was written"
    assert Chart.objects.count() == charts_before
    assert list(tmp_path.iterdir()) == []


def test_an_empty_database_is_an_empty_selection(db: None) -> None:
    with pytest.raises(CommandError, match="selection is empty"):
        run_command("--mode", "natal", *QUIET)
    assert counts() == (0, 0, 0)


def test_resume_of_an_unknown_run(db: None) -> None:
    with pytest.raises(CommandError, match="no batch run 424242"):
        run_command("--resume", "424242")


def test_resume_of_a_done_run_is_refused_and_changes_nothing(make_charts: MakeCharts) -> None:
    make_charts(10)
    run_command("--mode", "natal", *QUIET)
    run = last_run()
    before = counts(), result_snapshot(), run.finished_at, run.rows_written
    with pytest.raises(CommandError, match=f"run {run.pk} is already done"):
        run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert (counts(), result_snapshot(), run.finished_at, run.rows_written) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--mode", "natal"), "--mode"),
        (("--ids", "1"), "--ids"),
        (("--orbs", "all"), "--orbs"),
        (("--chunk-size", "4"), "--chunk-size"),
        (("--output", "elsewhere.jsonl"), "output"),
        (("--estimate",), "estimate"),
    ],
)
def test_resume_refuses_parameters_of_its_own(
    make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...], named: str
) -> None:
    make_charts(40)
    restore = crash_on_block(monkeypatch, 2)
    with pytest.raises(RuntimeError):
        run_command("--mode", "natal", *SMALL_BLOCKS, *QUIET)
    restore()
    run = last_run()
    before = counts(), run.parameters
    with pytest.raises(CommandError, match="--resume takes the run's own parameters") as raised:
        run_command("--resume", str(run.pk), *extra)
    assert named in str(raised.value)
    run.refresh_from_db()
    assert run.status == BatchRun.Status.FAILED
    assert (counts(), run.parameters) == before


# -- estimate ------------------------------------------------------------------------------------------------------


def test_estimate_prints_the_plan_and_a_time_and_writes_nothing(make_charts: MakeCharts, tmp_path: Path) -> None:
    make_charts(40)
    out, _ = run_command("--mode", "natal", "--mode", "top-k", "--estimate", *QUIET)
    assert "backend: numpy" in out
    for mode, units in (("natal", 40), ("top-k", 1600)):
        line = next(line for line in out.splitlines() if line.startswith(f"{mode}:"))
        assert f"{units:,} units" in line
        assert "chunks of" in line
        assert "MiB" in line
        assert "units/s" in line
        assert " s at " in line
    assert counts() == (0, 0, 0)

    path = tmp_path / "scores.npz"
    out, _ = run_command("--mode", "scores", "--output", str(path), "--estimate", *QUIET)
    assert "scores: 1,600 units" in out
    assert list(tmp_path.iterdir()) == []
    assert counts() == (0, 0, 0)


# -- demo ----------------------------------------------------------------------------------------------------------


def test_demo_creates_charts_once(db: None) -> None:
    out, _ = run_command("--demo", "25")
    charts = list(Chart.objects.order_by("pk"))
    assert len(charts) == 25
    assert [c.name for c in charts] == [demo_data.demo_name(0, n) for n in range(25)]
    for chart in charts:
        assert tuple(chart.points) == STANDARD_POINTS
        assert len(chart.points) == 13
        assert chart.longitude_array.shape == (13,)
        assert chart.speed_array is not None
        assert chart.birth_datetime is not None
        assert demo_data.FIRST_BIRTH <= chart.birth_datetime <= demo_data.LAST_BIRTH
        assert chart.is_public
    assert "25 created" in out
    assert BatchRun.objects.count() == 0

    out, _ = run_command("--demo", "25")
    assert Chart.objects.count() == 25
    assert "0 created" in out and "25 already present" in out

    run_command("--demo", "30")  # only the 5 missing ones
    assert Chart.objects.count() == 30
    run_command("--demo", "5", "--seed", "7")  # another seed: other charts
    assert Chart.objects.count() == 35


# -- progress and summary ------------------------------------------------------------------------------------------


def test_default_progress_bar_goes_to_stderr_and_the_summary_to_stdout(make_charts: MakeCharts) -> None:
    make_charts(40)
    out, err = run_command("--mode", "top-k", "--backend", "numpy", *SMALL_BLOCKS)
    assert "top-k" in err
    assert "100%" in err
    assert "pair" in err
    run = last_run()
    assert f"run {run.pk} done" not in err
    summary = out.strip()
    assert f"run {run.pk} done" in summary
    assert "top-k on numpy" in summary
    assert "1,600 pairs" in summary
    assert "0 hits" in summary
    assert "400 rows written" in summary
    assert "pairs/s" in summary
    assert "peak memory" in summary


def test_no_progress_prints_no_bar(make_charts: MakeCharts) -> None:
    make_charts(20)
    out, err = run_command("--mode", "natal", "--backend", "numpy", "--no-progress")
    assert err == ""
    assert "20 rows written" in out


def test_verbosity_zero_prints_nothing(make_charts: MakeCharts) -> None:
    make_charts(20)
    out, err = run_command("--mode", "natal", "--backend", "numpy", verbosity=0)
    assert err == ""
    assert out == ""
    assert AspectResult.objects.count() == 20


def test_summary_counts_hits_of_synastry(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(12))
    out, _ = run_command("--mode", "synastry", *QUIET)
    lon, spd, points = arrays(ids)
    reference = engine().synastry(lon, lon, spd, spd, points=points)
    assert reference.j is not None
    hits = int((reference.j > reference.i).sum())
    assert f"66 pairs, {hits:,} hits, 66 rows written" in out
    assert last_run().hits == hits


# -- the BatchRun record -------------------------------------------------------------------------------------------


def test_batch_run_records_a_finished_run(make_charts: MakeCharts) -> None:
    make_charts(30)
    started = datetime.now(UTC)
    run_command("--mode", "natal", "--mode", "top-k", "-k", "4", *SMALL_BLOCKS, *QUIET)
    run = last_run()
    assert run.status == BatchRun.Status.DONE
    assert run.mode == "natal,top-k"
    assert run.backend == "numpy"
    assert run.progress_total == 30 + 30 * 30
    assert run.progress_done == run.progress_total
    assert run.progress_fraction == 1.0
    assert run.rows_written == 30 + 30 * 4
    assert run.pairs_computed == 30 + 30 * 30
    assert run.peak_memory_mb is not None and run.peak_memory_mb >= 0
    assert run.started_at is not None and run.finished_at is not None
    assert started <= run.started_at <= run.finished_at <= datetime.now(UTC)
    assert run.error == ""
    spec = run.parameters["spec"]
    assert spec["modes"] == ["natal", "top-k"]
    assert spec["k"] == 4
    assert spec["backend"] == "numpy"
    assert spec["output"] == "db"
    assert run.parameters["state"]["mode_index"] == 2


def test_orbs_and_aspects_options_change_the_configuration(make_charts: MakeCharts) -> None:
    ids = pks(make_charts(15))
    run_command(
        "--mode", "natal", "--orbs", '{"conjunction": 8, "trine": 6, "square": 4}', "--aspects", "trine", *QUIET
    )
    config = AspectConfig.from_orbs({"conjunction": 8, "trine": 6, "square": 4}).only(["trine"])
    rows = {r.chart_a_id: r for r in AspectResult.objects.all()}
    assert {r.config_hash for r in rows.values()} == {config.config_hash()}
    lon, spd, points = arrays(ids)
    reference = MemoryOptimizedVectorizedCalculator(config=config, backend="numpy").natal(lon, spd, points=points)
    for n, pk in enumerate(ids):
        assert columns(stored_hits(rows[pk])) == columns(reference.select(reference.i == n))

    run_command("--mode", "natal", "--orbs", "all", *QUIET)  # another configuration: rows of its own
    assert AspectResult.objects.count() == 30
    assert AspectConfig.preset("all").config_hash() in set(AspectResult.objects.values_list("config_hash", flat=True))


# -- backends ------------------------------------------------------------------------------------------------------


def test_a_device_that_fails_hands_over_to_the_cpu_and_the_run_records_it(
    make_charts: MakeCharts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--backend cupy on a device whose kernels fail at launch: same rows as the CPU, backend and reason recorded."""
    from aspects_app.engine import Backend, calculator
    from aspects_app.engine.fused import FusedKernels

    class DriverError(RuntimeError):
        pass

    class FailingLauncher:
        xp = np

        def __call__(self, kernel: str, size: int, args: Any, top_k: int = 1) -> None:
            raise DriverError("cudaErrorIllegalAddress: an illegal memory access was encountered")

    real_get_backend = calculator.get_backend

    def device(name: str = "auto") -> Backend:
        if name != "cupy":
            return real_get_backend(name)
        return Backend("failing-gpu", np, kernels=FusedKernels(FailingLauncher()), device_errors=(DriverError,))

    monkeypatch.setattr(calculator, "get_backend", device)
    ids = pks(make_charts(20))
    out, _ = run_command("--mode", "top-k", "-k", "3", "--backend", "cupy", "--no-progress", *SMALL_BLOCKS)

    run = last_run()
    assert run.status == BatchRun.Status.DONE
    assert run.backend == "numpy"
    assert "DriverError" in run.backend_note and "cudaErrorIllegalAddress" in run.backend_note
    assert f"backend note: {run.backend_note}" in out
    lon, _, points = arrays(ids)
    assert match_snapshot() == expected_top_k(ids, engine().top_k(lon, lon, k=3, points=points, exclude_self=True))
