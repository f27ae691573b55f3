"""``compute_aspects --mode patterns``: the charts with each pattern listed to JSON Lines or CSV exactly as the
engine finds them (every chart with a grand trine, and no other), pattern and stellium options, resume after a
crash without duplicates or gaps, and bad options (database output among them) as command errors."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aspects_app import services
from aspects_app.engine import MemoryOptimizedVectorizedCalculator
from aspects_app.engine.patterns import bytes_per_chart
from aspects_app.models import BatchRun, Chart

from .batch_faults import crash_on_block
from .conftest import PLANETS

QUIET = ("--backend", "numpy", "--no-progress")
Row = tuple[int, str, tuple[str, ...]]


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("compute_aspects", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def charts(db: None) -> list[Chart]:
    """40 charts, every fourth holding a grand trine by construction (the rest random: some have one by chance)."""
    rng = np.random.default_rng(21)
    inputs = []
    for n in range(40):
        lon = rng.uniform(0, 360, 10)
        if n % 4 == 0:
            lon[[0, 1, 4]] = (lon[0] + np.array([0.0, 120.0, 240.0])) % 360.0  # Sun, Moon, Mars
        inputs.append(services.ChartInput(name=f"p{n}", points=PLANETS, longitudes=tuple(lon.tolist())))
    return sorted(services.create_charts(None, inputs), key=lambda c: c.pk)


def engine_rows(charts: list[Chart], names: set[str] | None = None, span: float | None = None) -> list[Row]:
    calc = MemoryOptimizedVectorizedCalculator(config=services.aspect_config(), backend="numpy")
    found = calc.patterns(np.stack([c.longitude_array for c in charts]), points=PLANETS, stellium_span=span)
    return [
        (charts[r["i"]].pk, r["pattern"], tuple(r["points"]))
        for r in found.to_records(point_names=True)
        if names is None or r["pattern"] in names
    ]


def file_rows(path: Path) -> list[Row]:
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            assert next(reader) == ["chart", "pattern", "points"]
            return [(int(chart), pattern, tuple(points.split(";"))) for chart, pattern, points in reader]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["chart"], r["pattern"], tuple(r["points"])) for r in records]


def test_lists_exactly_the_charts_with_a_grand_trine(charts: list[Chart], tmp_path: Path) -> None:
    path = tmp_path / "trines.jsonl"
    run_command("--mode", "patterns", "--pattern", "grand_trine", "--output", str(path), *QUIET)
    rows = file_rows(path)
    assert rows == engine_rows(charts, {"grand-trine"})
    listed = {chart for chart, _, _ in rows}
    built = {c.pk for n, c in enumerate(charts) if n % 4 == 0}
    assert built <= listed < {c.pk for c in charts}  # the built ones, and not every chart
    assert BatchRun.objects.get().status == BatchRun.Status.DONE


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_all_patterns_and_stellium_span_into_a_file(charts: list[Chart], tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"all.{suffix}"
    run_command("--mode", "patterns", "--stellium-span", "12", "--output", str(path), *QUIET)
    rows = file_rows(path)
    assert rows == engine_rows(charts, span=12.0)
    assert {"grand-trine", "t-square", "stellium"} <= {pattern for _, pattern, _ in rows}
    several = tmp_path / f"two.{suffix}"
    picked = ("--pattern", "t-square", "--pattern", "stellium")
    run_command("--mode", "patterns", *picked, "--output", str(several), *QUIET)
    assert file_rows(several) == engine_rows(charts, {"t-square", "stellium"})


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resume_after_a_crash_without_duplicates_or_gaps(
    transactional_db: None, charts: list[Chart], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"resumed.{suffix}"
    restore = crash_on_block(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_command("--mode", "patterns", "--chunk-size", "16", "--output", str(path), *QUIET)  # blocks 16, 16, 8
    restore()
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.FAILED and run.parameters["state"]["next_row"] == 16
    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    rows = file_rows(path)
    assert rows == engine_rows(charts) and len(rows) == run.rows_written


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (("--mode", "patterns"), "--output"),  # the database has no table for patterns
        (("--mode", "patterns", "--output", "db"), "--output"),
        (("--mode", "patterns", "--pattern", "grand_sextile", "--output", "x.jsonl"), "--pattern"),
        (("--mode", "patterns", "--stellium-span", "0", "--output", "x.jsonl"), "--stellium-span"),
        (("--mode", "patterns", "--stellium-span", "360", "--output", "x.jsonl"), "--stellium-span"),
        (("--mode", "patterns", "--output", "x.npz"), "--format"),
        (("--mode", "patterns", "--with-ids", "1", "--output", "x.jsonl"), "second group"),
        (("--mode", "natal", "--pattern", "kite"), "--pattern"),
        (("--mode", "natal", "--stellium-span", "10"), "--stellium-span"),
        (("--mode", "patterns", "--aspects", "trine,bogus", "--output", "x.csv"), "--aspects"),
    ],
)
def test_bad_options_are_command_errors_naming_the_option(
    charts: list[Chart], extra: tuple[str, ...], flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError) as raised:
        run_command(*extra, *QUIET)
    assert str(raised.value).startswith(flag), str(raised.value)
    assert not BatchRun.objects.exists() and not list(tmp_path.iterdir())


def test_resume_takes_the_runs_own_patterns(charts: list[Chart], tmp_path: Path) -> None:
    run_command("--mode", "patterns", "--output", str(tmp_path / "p.jsonl"), *QUIET)
    run = BatchRun.objects.get()
    with pytest.raises(CommandError, match="--pattern"):
        run_command("--resume", str(run.pk), "--pattern", "kite")


def test_estimate_plans_the_patterns_search_and_writes_nothing(charts: list[Chart], tmp_path: Path) -> None:
    path = tmp_path / "patterns.jsonl"
    options = ("--mode", "patterns", "--pattern", "kite", "--stellium-span", "8", "--output", str(path))

    def plan_line(*extra: str) -> str:
        out = run_command(*options, "--estimate", *extra, *QUIET)
        (line,) = [line for line in out.splitlines() if line.startswith("patterns:")]
        return line

    line = plan_line()
    assert line.startswith("patterns: 40 units in 1 chunks of 40 rows;")
    assert "MiB" in line and " s at " in line and "units/s" in line
    # The search's temporaries (triples and quadruples of points) outweigh the natal aspects it reads, and the
    # run chunks the search under the budget: the plan shown is the search's.
    budget_mb = 0.1
    rows = int(budget_mb * 2**20 // bytes_per_chart(len(PLANETS)))
    assert 1 < rows < 40
    chunked = plan_line("--working-memory-mb", str(budget_mb))
    assert chunked.startswith(f"patterns: 40 units in {math.ceil(40 / rows)} chunks of {rows} rows;"), chunked
    assert f"chunk memory {rows * bytes_per_chart(len(PLANETS)) / 2**20:.1f} MiB" in chunked
    assert not BatchRun.objects.exists() and not list(tmp_path.iterdir())
    # A budget that holds a chart's natal aspects but not its search is refused by name before anything is
    # stored, by the estimate and by the run alike.
    too_small = f"{bytes_per_chart(len(PLANETS)) / 2 / 2**20:.6f}"
    for extra in (("--estimate",), ()):
        with pytest.raises(CommandError) as raised:
            run_command(*options, *extra, "--working-memory-mb", too_small, *QUIET)
        assert str(raised.value).startswith("--working-memory-mb: "), str(raised.value)
    assert not BatchRun.objects.exists() and not list(tmp_path.iterdir())
