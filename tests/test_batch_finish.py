"""Finishing a file output: a run killed at any step between its last block and being marked done resumes to the
same complete file a clean run writes (no rows lost or repeated), and a file already in place is left untouched.

Each step is reached by wrapping the function that performs it: the wrapper lets the step happen and then raises
(as a crash right after it would); one test kills a real ``compute_aspects`` process with SIGKILL instead.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from aspects_app import batch, services
from aspects_app.batch import writers
from aspects_app.engine.aspects import STANDARD_POINTS
from aspects_app.models import AspectResult, BatchRun, Match

ROOT = Path(__file__).resolve().parents[1]
POINTS: tuple[str, ...] = STANDARD_POINTS[:10]
QUIET: tuple[str, ...] = ("--backend", "numpy", "--no-progress")
# --chunk-size 1 gives blocks of 16 rows: 40 charts are blocks of 16, 16 and 8.
CHARTS = 40
SMALL_BLOCKS: tuple[str, ...] = ("--chunk-size", "1", "-k", "3")
# One mode per format, so that every writer's finishing is covered.
MODE_OF = {"jsonl": "natal", "csv": "top-k", "npz": "scores"}

pytestmark = pytest.mark.django_db(transaction=True)


class SimulatedCrash(RuntimeError):
    pass


@pytest.fixture
def charts() -> None:
    rng = np.random.default_rng(7)
    lon = rng.uniform(0.0, 360.0, (CHARTS, len(POINTS)))
    spd = rng.uniform(-1.0, 14.0, (CHARTS, len(POINTS)))
    services.create_charts(
        None,
        [
            services.ChartInput(
                name=f"c{n}", points=POINTS, longitudes=tuple(lon[n].tolist()), speeds=tuple(spd[n].tolist())
            )
            for n in range(CHARTS)
        ],
    )


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("compute_aspects", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def last_run() -> BatchRun:
    run = BatchRun.objects.order_by("-pk").first()
    assert run is not None
    return run


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name or ".tmp" in p.name)


# -- the steps of finishing, each followed by a crash -----------------------------------------------------------


Installer = Callable[[pytest.MonkeyPatch, Path], None]


def _once(condition: Callable[..., bool]) -> Callable[..., bool]:
    """``condition`` true for its first matching call only: the resumed run must get past the same step."""
    fired: list[bool] = []

    def check(*args: Any) -> bool:
        if not fired and condition(*args):
            fired.append(True)
            return True
        return False

    return check


def after_last_block_flushed(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The last block is written and flushed, its progress not yet recorded."""
    real = batch.BatchJob._save_state
    last = _once(lambda job: job.state.next_row == CHARTS)

    def save(self: batch.BatchJob) -> None:
        if last(self):
            raise SimulatedCrash("after the last block's flush")
        real(self)

    monkeypatch.setattr(batch.BatchJob, "_save_state", save)


def after_last_block_recorded(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The last block's progress is recorded; the file is not in place yet."""
    real = batch.BatchJob._save_state
    last = _once(lambda job: job.state.next_row == CHARTS)

    def save(self: batch.BatchJob) -> None:
        real(self)
        if last(self):
            raise SimulatedCrash("after the state is recorded")

    monkeypatch.setattr(batch.BatchJob, "_save_state", save)


def after_compressed(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """npz: the compressed matrix is written beside PATH, not yet renamed onto it."""
    real = np.savez_compressed
    first = _once(lambda: True)

    def savez(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        if first():
            raise SimulatedCrash("after the compression")

    monkeypatch.setattr(writers.np, "savez_compressed", savez)


def after_renamed(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The output is renamed onto PATH: complete there, and the run does not know yet."""
    real = os.replace
    onto_path = _once(lambda dst: Path(dst) == path)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real(src, dst, *args, **kwargs)
        if onto_path(dst):
            raise SimulatedCrash("after the rename")

    monkeypatch.setattr(os, "replace", replace)


def after_partial_removed(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """npz: the memory-mapped partial matrix is deleted as well."""
    real = Path.unlink
    partial = _once(lambda p: p.name.startswith(path.name + ".partial"))

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real(self, missing_ok=missing_ok)
        if partial(self):
            raise SimulatedCrash("after the partial is removed")

    monkeypatch.setattr(Path, "unlink", unlink)


def after_mode_recorded(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The mode is recorded as finished (the next mode index); the run is not marked done."""
    real = batch.BatchJob._save_state
    finished = _once(lambda job: job.state.mode_index == 1)

    def save(self: batch.BatchJob) -> None:
        real(self)
        if finished(self):
            raise SimulatedCrash("after the mode is recorded")

    monkeypatch.setattr(batch.BatchJob, "_save_state", save)


def after_marked_done(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The run is saved as done (the process dies before it returns)."""
    real = batch.BatchJob._finish

    def finish(self: batch.BatchJob, status: str, summary: batch.Summary, start: float) -> None:
        real(self, status, summary, start)
        if status == BatchRun.Status.DONE:
            raise SimulatedCrash("after the run is marked done")

    monkeypatch.setattr(batch.BatchJob, "_finish", finish)


STEPS: dict[str, Installer] = {
    "block-flushed": after_last_block_flushed,
    "state-recorded": after_last_block_recorded,
    "compressed": after_compressed,
    "renamed": after_renamed,
    "partial-removed": after_partial_removed,
    "mode-recorded": after_mode_recorded,
    "marked-done": after_marked_done,
}
# A text file's rename is its partial's removal, and only npz compresses.
CASES = [
    pytest.param(file_format, step, id=f"{file_format}-{step}")
    for file_format in ("jsonl", "csv", "npz")
    for step in STEPS
    if file_format == "npz" or step not in ("compressed", "partial-removed")
]


def clean_output(tmp_path: Path, file_format: str) -> tuple[Path, int]:
    clean = tmp_path / "clean" / f"out.{file_format}"
    clean.parent.mkdir()
    run_command("--mode", MODE_OF[file_format], "--output", str(clean), *SMALL_BLOCKS, *QUIET)
    return clean, last_run().rows_written


def assert_same_output(got: Path, want: Path, file_format: str) -> None:
    if file_format == "npz":
        with np.load(got) as g, np.load(want) as w:
            assert sorted(g.files) == sorted(w.files) == ["chart_a", "chart_b", "scores"]
            for name in w.files:
                np.testing.assert_array_equal(g[name], w[name])
                assert g[name].dtype == w[name].dtype
    else:
        assert got.read_bytes() == want.read_bytes()


def snapshot(path: Path) -> tuple[int, int, bytes] | None:
    """Identity, modification time and content: a file left alone keeps all three."""
    if not path.exists():
        return None
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


@pytest.mark.parametrize(("file_format", "step"), CASES)
def test_a_crash_at_any_step_of_finishing_resumes_to_the_clean_runs_file(
    charts: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_format: str, step: str
) -> None:
    path = tmp_path / f"out.{file_format}"
    args = ("--mode", MODE_OF[file_format], "--output", str(path), *SMALL_BLOCKS, *QUIET)
    with monkeypatch.context() as patch:
        STEPS[step](patch, path)
        with pytest.raises(SimulatedCrash):
            run_command(*args)
    run = last_run()
    before = snapshot(path)

    if run.status == BatchRun.Status.DONE:
        with pytest.raises(CommandError, match="already done"):
            run_command("--resume", str(run.pk), "--no-progress")
    else:
        out = run_command("--resume", str(run.pk), "--no-progress")
        assert f"run {run.pk} done" in out
    if before is not None:
        # Already in place (complete, as the comparison below shows): resuming must neither cut nor rewrite it.
        assert snapshot(path) == before

    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == run.progress_total > 0
    assert BatchRun.objects.count() == 1
    assert leftovers(tmp_path) == []
    clean, clean_rows = clean_output(tmp_path, file_format)
    assert_same_output(path, clean, file_format)
    assert run.rows_written == clean_rows, "rows counted twice or lost"
    if file_format != "npz":
        lines = path.read_text().splitlines()
        assert len(lines) == len(set(lines)), "duplicate lines"


def test_resume_refuses_a_finished_file_that_is_gone_rather_than_writing_an_empty_one(
    charts: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        after_renamed(patch, path)
        with pytest.raises(SimulatedCrash):
            run_command("--mode", "natal", "--output", str(path), *SMALL_BLOCKS, *QUIET)
    path.unlink()  # removed by hand meanwhile: neither the partial nor the file holds the rows any more
    with pytest.raises(CommandError, match="is not the finished output"):
        run_command("--resume", str(last_run().pk), "--no-progress")
    assert not path.exists()
    assert last_run().status == BatchRun.Status.FAILED


def after_first_block_recorded(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The first block (16 of 40 rows) is written, flushed and recorded; the run is mid-mode."""
    real = batch.BatchJob._save_state
    first = _once(lambda job: 0 < job.state.next_row < CHARTS)

    def save(self: batch.BatchJob) -> None:
        real(self)
        if first(self):
            raise SimulatedCrash("after the first block is recorded")

    monkeypatch.setattr(batch.BatchJob, "_save_state", save)


@pytest.mark.parametrize("file_format", ["jsonl", "csv", "npz"])
def test_resume_refuses_a_partial_file_gone_mid_run_rather_than_restarting_it_empty(
    charts: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_format: str
) -> None:
    """The partial held the recorded blocks' rows: a new empty one would lose them (a file missing its first
    block, an .npz with zero scores there) under a run reported done. The error names the file and the way out."""
    path = tmp_path / f"out.{file_format}"
    with monkeypatch.context() as patch:
        after_first_block_recorded(patch, path)
        with pytest.raises(SimulatedCrash):
            run_command("--mode", MODE_OF[file_format], "--output", str(path), *SMALL_BLOCKS, *QUIET)
    (partial,) = (p for p in tmp_path.iterdir() if ".partial" in p.name)
    partial.unlink()  # removed meanwhile (a cleaner, another disk): the recorded rows are gone with it
    run = last_run()
    with pytest.raises(CommandError, match=rf"{partial.name} is gone.*start a new run"):
        run_command("--resume", str(run.pk), "--no-progress")
    assert not path.exists()
    assert leftovers(tmp_path) == []  # no empty partial started
    run.refresh_from_db()
    assert run.status == BatchRun.Status.FAILED


@pytest.mark.parametrize("step", ["state-recorded", "mode-recorded"])
def test_a_multi_mode_run_crashed_between_modes_resumes_with_the_next_mode(
    charts: None, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    args = ("--mode", "natal", "--mode", "top-k", *SMALL_BLOCKS, *QUIET)
    with monkeypatch.context() as patch:
        STEPS[step](patch, Path("unused"))
        with pytest.raises(SimulatedCrash):
            run_command(*args)
    run = last_run()
    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == run.progress_total
    resumed = AspectResult.objects.count(), Match.objects.count(), run.rows_written
    assert resumed == (CHARTS, CHARTS * 3, CHARTS + CHARTS * 3)


# -- a real kill ---------------------------------------------------------------------------------------------------

# Runs the command in a process of its own that SIGKILLs itself right after the output is renamed onto PATH
# (nothing runs after it: no exception handler, no status saved). argv: PATH, then the command's arguments.
KILLED_AFTER_RENAME = """
import os, signal, sys
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
target, real = Path(sys.argv[1]), os.replace
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    if Path(dst) == target:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
call_command("compute_aspects", *sys.argv[2:])
"""


@pytest.mark.parametrize("file_format", ["jsonl", "csv", "npz"])
def test_a_process_killed_right_after_the_rename_resumes_without_touching_the_file(
    charts: None, tmp_path: Path, file_format: str
) -> None:
    path = tmp_path / f"out.{file_format}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ASPECTS_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    args = ["--mode", MODE_OF[file_format], "--output", str(path), *SMALL_BLOCKS, *QUIET]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_RENAME, str(path), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    run = last_run()
    assert run.status == BatchRun.Status.RUNNING  # as the kill left it
    before = snapshot(path)
    assert before is not None

    run_command("--resume", str(run.pk), "--no-progress")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert snapshot(path) == before
    assert leftovers(tmp_path) == []
    clean, clean_rows = clean_output(tmp_path, file_format)
    assert_same_output(path, clean, file_format)
    assert run.rows_written == clean_rows
