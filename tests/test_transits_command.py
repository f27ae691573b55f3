"""``compute_aspects --mode transits``: into the database and each file format (equal to the engine on the same
sky), bodies/aspects/orbs, re-runs and resume after a crash without duplicates, bad options, --estimate."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aspects_app import services
from aspects_app.batch import job as batch_job
from aspects_app.engine import TRANSIT_ORBS, AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.ephemeris import transit_track
from aspects_app.models import BatchRun, Chart, TransitEvent

from .batch_faults import crash_on_block
from .conftest import PLANETS

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 8, tzinfo=UTC)
WEEK = ("--mode", "transits", "--start", "2027-01-01", "--end", "2027-01-08")
QUIET = ("--backend", "numpy", "--no-progress")
Row = tuple[Any, ...]


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("compute_aspects", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def charts(db: None) -> list[Chart]:
    rng = np.random.default_rng(14)
    inputs = [
        services.ChartInput(name=f"t{n}", points=PLANETS, longitudes=tuple(rng.uniform(0, 360, 10).tolist()))
        for n in range(40)
    ]
    return sorted(services.create_charts(None, inputs), key=lambda c: c.pk)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def engine_rows(charts: list[Chart], config: AspectConfig | None = None, bodies: list[str] | None = None) -> set[Row]:
    """(chart, point, body, aspect, exact, starts, ends, retrograde) as the engine finds them on the same sky."""
    calc = MemoryOptimizedVectorizedCalculator(config=config or AspectConfig.from_orbs(TRANSIT_ORBS), backend="numpy")
    lon = np.stack([c.longitude_array for c in charts])
    events = calc.transits(lon, transit_track(START, END, bodies), points=PLANETS)
    return {
        (charts[r["i"]].pk, r["point"], r["body"], r["aspect"], r["exact"], r["starts"], r["ends"], r["retrograde"])
        for r in events.to_records()
    }


def stored_rows() -> list[Row]:
    fields = ("chart_id", "point", "body", "aspect", "exact", "starts", "ends", "retrograde")
    return [
        (*row[:4], _utc(row[4]), _utc(row[5]), _utc(row[6]), row[7])
        for row in TransitEvent.objects.values_list(*fields)
    ]


def test_into_the_database_equal_to_the_engine(charts: list[Chart]) -> None:
    out = run_command(*WEEK, *QUIET)
    rows = stored_rows()
    assert len(rows) == len(set(rows)) > 500
    assert set(rows) == engine_rows(charts)
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.DONE and run.mode == "transits"
    assert run.rows_written == run.hits == len(rows)
    assert run.progress_done == run.progress_total == len(charts)
    assert set(TransitEvent.objects.values_list("run_id", flat=True)) == {run.pk}
    assert set(TransitEvent.objects.values_list("config_hash", flat=True)) == {
        AspectConfig.from_orbs(TRANSIT_ORBS).config_hash()
    }
    assert f"run {run.pk} done" in out


def test_bodies_aspects_and_orbs(charts: list[Chart]) -> None:
    run_command(*WEEK, "--bodies", "Moon,Mars", "--aspects", "square,trine", *QUIET)
    config = AspectConfig.from_orbs(TRANSIT_ORBS).only(["square", "trine"])
    assert set(stored_rows()) == engine_rows(charts, config, ["Moon", "Mars"])
    TransitEvent.objects.all().delete()
    run_command(*WEEK, "--orbs", json.dumps({"quincunx": 2}), *QUIET)
    assert set(stored_rows()) == engine_rows(charts, AspectConfig.from_orbs({"quincunx": 2}))


def test_running_the_same_range_again_stores_no_duplicates(charts: list[Chart]) -> None:
    run_command(*WEEK, *QUIET)
    first = sorted(stored_rows(), key=repr)
    run_command(*WEEK, *QUIET)
    assert sorted(stored_rows(), key=repr) == first
    # An adjacent range adds its own events and leaves these.
    run_command("--mode", "transits", "--start", "2027-01-08", "--end", "2027-01-10", *QUIET)
    assert TransitEvent.objects.filter(exact__lt=END).count() == len(first)
    assert TransitEvent.objects.filter(exact__gte=END).exists()


def _file_rows(path: Path, file_format: str) -> list[Row]:
    if file_format == "jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["chart", "point", "body", "aspect", "exact", "starts", "ends", "retrograde"]
            records = [
                {**r, "chart": int(r["chart"]), "retrograde": r["retrograde"] == "True"}
                | {k: r[k] or None for k in ("starts", "ends")}
                for r in reader
            ]

    def moment(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text)

    return [
        (r["chart"], r["point"], r["body"], r["aspect"], moment(r["exact"]), moment(r["starts"]), moment(r["ends"]),
         r["retrograde"])
        for r in records
    ]  # fmt: skip


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_into_a_file_equal_to_the_engine(charts: list[Chart], tmp_path: Path, file_format: str) -> None:
    path = tmp_path / f"transits.{file_format}"
    run_command(*WEEK, "--output", str(path), *QUIET)
    rows = _file_rows(path, file_format)
    assert len(rows) == len(set(rows))
    assert set(rows) == engine_rows(charts)
    assert not TransitEvent.objects.exists()


@pytest.mark.parametrize("output", ["db", "jsonl", "csv"])
def test_resume_after_a_crash_without_duplicates_or_gaps(
    transactional_db: None, charts: list[Chart], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, output: str
) -> None:
    monkeypatch.setattr(batch_job, "TRANSIT_ROWS_PER_BLOCK", 1)  # blocks of MIN_BLOCK_ROWS (16): 16, 16, 8
    path = tmp_path / f"transits.{output}"
    target = () if output == "db" else ("--output", str(path))
    restore = crash_on_block(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_command(*WEEK, *target, *QUIET)
    restore()
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.FAILED
    assert run.parameters["state"]["next_row"] == 16
    if output == "db":  # the crashed block's rows went with its transaction
        assert TransitEvent.objects.values("chart").distinct().count() == 16
    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    rows = stored_rows() if output == "db" else _file_rows(path, output)
    assert len(rows) == len(set(rows)) == run.rows_written
    assert set(rows) == engine_rows(charts)


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (("--mode", "transits", "--end", "2027-01-08"), "--start"),
        (("--mode", "transits", "--start", "2027-01-01"), "--end"),
        (("--mode", "transits", "--start", "next week", "--end", "2027-01-08"), "--start"),
        (("--mode", "transits", "--start", "2027-01-08", "--end", "2027-01-01"), "--end"),
        (("--mode", "transits", "--start", "1850-01-01", "--end", "1850-02-01"), "--start"),
        ((*WEEK, "--bodies", "Sun,Vulcan"), "--bodies"),
        ((*WEEK, "--aspects", "quintile"), "--aspects"),
        ((*WEEK, "--orbs", '{"trine": 120}'), "--orbs"),
        ((*WEEK, "--mode", "natal"), "--mode"),
        ((*WEEK, "--with-ids", "1"), "second group"),
        ((*WEEK, "--output", "events.npz"), "--format"),
        (("--mode", "natal", "--start", "2027-01-01"), "--start"),
    ],
)
def test_bad_options_are_command_errors_naming_the_option(
    charts: list[Chart], extra: tuple[str, ...], flag: str
) -> None:
    with pytest.raises(CommandError) as raised:
        run_command(*extra, *QUIET)
    assert str(raised.value).startswith(flag), str(raised.value)
    assert not BatchRun.objects.exists() and not TransitEvent.objects.exists()


def test_resume_takes_the_runs_own_range(charts: list[Chart]) -> None:
    run_command(*WEEK, *QUIET)
    run = BatchRun.objects.get()
    with pytest.raises(CommandError, match="--start"):
        run_command("--resume", str(run.pk), "--start", "2027-01-02")


def test_estimate_prints_the_blocks_and_rows(charts: list[Chart]) -> None:
    out = run_command(*WEEK, "--estimate", *QUIET)
    assert "transits: 40 charts" in out and "events each" in out
    assert not BatchRun.objects.exists()
