"""Running a batch job: row blocks of group A against all of group B (or of A itself), one engine call and one
write per block, every mode described by one row of :data:`MODE_TABLE`.

Each block's results and the run's progress are committed together (database) or the file is flushed before
the progress is recorded (files), so a job stopped anywhere resumes at its first unfinished block with no
duplicate and no missing rows: database writes are upserts, and a file is cut back to the length it had after
the last recorded block. Once the last block is recorded the output is whole, so a resumed run only puts it in
place (:func:`.writers.finish_output`, repeatable), whichever step of finishing the crash came after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from django.utils import timezone

from .. import calculators, ephemeris, metrics
from ..engine import (
    PATTERN_NAMES,
    AspectHits,
    BackendUnavailable,
    ChartPatterns,
    MemoryOptimizedVectorizedCalculator,
    TransitEvents,
    TransitTrack,
)
from ..engine.errors import FieldError
from ..models import BatchRun
from .population import Block, PointSetSplit, Population, load_population, split_by_points
from .spec import OPERATIONS, BatchError, JobSpec
from .writers import Writer, finish_output, open_writer

# Rows per block are the engine's chunk rows, within these bounds: enough to amortise a transaction, few enough
# that an interruption loses little and progress moves.
MIN_BLOCK_ROWS = 16
MAX_BLOCK_ROWS = 2048
# Transit blocks are sized by the events they store (a chart-year holds ~2,000 with the transit orbs): one
# transaction of about this many rows.
TRANSIT_ROWS_PER_BLOCK = 50_000


class BatchInterrupted(Exception):
    """The job stopped cleanly after a block because it was asked to."""


@dataclass(frozen=True)
class BlockResult:
    units: int  # progress units: charts for natal, chart pairs otherwise
    hits: int
    rows_written: int


class Computation:
    """A spec's engine work, block by block, with no run attached: the run, the distributed workers and the
    calibration of ``--estimate`` all compute (and count) through it."""

    def __init__(self, spec: JobSpec, backend: str | None = None) -> None:
        self.spec = spec
        self.config = spec.config()
        self.calculator: MemoryOptimizedVectorizedCalculator = calculators.new_calculator(
            self.config, backend or spec.backend, spec.working_memory_mb, spec.chunk_size
        )
        self.column_of: dict[int, int] = {}  # chart id -> its column in group B
        self._track: TransitTrack | None = None

    def load_groups(self) -> tuple[Population, Population]:
        """Groups A and B (B is A for pairs within one group)."""
        group_a = load_population(self.spec.group_a, "group_a")
        group_b = group_a if self.spec.group_b is None else load_population(self.spec.group_b, "group_b")
        if group_a.points != group_b.points:
            raise FieldError("group_b", f"points {list(group_b.points)} differ from group A's {list(group_a.points)}")
        self.column_of = {chart: column for column, chart in enumerate(group_b.ids.tolist())}
        return group_a, group_b

    def block(self, a: Population, b: Population, rows: slice | None = None) -> Block:
        return Block(rows or slice(0, len(a.ids)), a, b, self.spec.within_one_group)

    def units(self, mode: str, block: Block) -> int:
        """Progress units of a block: charts for natal and transits, chart pairs otherwise (each unordered pair
        once within one group)."""
        rows, m = block.rows, len(block.b.ids)
        if mode in ("natal", "transits", "patterns"):
            return rows.stop - rows.start
        if mode == "synastry" and block.within_one_group:
            return sum(m - 1 - r for r in range(rows.start, rows.stop))
        return (rows.stop - rows.start) * m

    def compute(self, mode: str, block: Block) -> Any:
        """The engine's result for one block of ``mode``: hits, a score matrix or top-k lists."""
        return MODE_TABLE[mode].compute(self, block)

    def compute_block(self, mode: str, block: Block, writer: Writer) -> BlockResult:
        result = self.compute(mode, block)
        hits = len(result) if isinstance(result, AspectHits | TransitEvents | ChartPatterns) else 0
        return BlockResult(self.units(mode, block), hits, MODE_TABLE[mode].write(writer, result, block))

    def block_slices(
        self, mode: str, a: Population, b: Population, first_row: int = 0, min_blocks: int = 1
    ) -> list[slice]:
        """Row blocks from ``first_row``: the engine's chunk rows, made smaller (down to MIN_BLOCK_ROWS) when that
        gives fewer than ``min_blocks`` (work spread over several workers needs enough blocks to share). Transit
        blocks hold about TRANSIT_ROWS_PER_BLOCK events (counted on the first chart)."""
        if mode == "transits":
            rows = TRANSIT_ROWS_PER_BLOCK // max(self.transit_events_per_chart(a), 1)
        else:
            plan = self.calculator.estimate_memory_usage(
                max(len(a.ids), 1), max(len(b.ids), 1), len(a.points), OPERATIONS[mode], self.spec.method,
                points=a.points,
            )  # fmt: skip
            rows = plan["chunk_rows"]
        step = int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows)))
        step = max(MIN_BLOCK_ROWS, min(step, -(-len(a.ids) // min_blocks)))
        return [slice(start, min(start + step, len(a.ids))) for start in range(first_row, len(a.ids), step)]

    # -- the modes ---------------------------------------------------------------------------------------------

    def _natal(self, block: Block) -> AspectHits:
        a, rows = block.a, block.rows
        return self.calculator.natal(a.longitudes[rows], _speeds(a, rows), points=a.points)

    def _synastry(self, block: Block) -> AspectHits:
        a, b, rows = block.a, block.b, block.rows
        hits = self.calculator.synastry(a.longitudes[rows], b.longitudes, _speeds(a, rows), b.speeds, points=a.points)
        if block.within_one_group:  # each unordered pair once: j > i
            assert hits.j is not None
            hits = hits.select(hits.j > hits.i + rows.start)
        return hits

    def _scores(self, block: Block) -> Any:
        a, b, rows = block.a, block.b, block.rows
        return self.calculator.scores(a.longitudes[rows], b.longitudes, method=self.spec.method, points=a.points)

    def _top_k(self, block: Block) -> Any:
        a, b, rows = block.a, block.b, block.rows
        # A chart is never its own partner, whether the groups are one population or merely share charts.
        excluded = np.array([self.column_of.get(chart, -1) for chart in a.ids[rows].tolist()], dtype=np.int64)
        return self.calculator.top_k(
            a.longitudes[rows], b.longitudes, k=self.spec.k, method=self.spec.method, points=a.points,
            exclude_columns=excluded,
        )  # fmt: skip

    @property
    def track(self) -> TransitTrack:
        """The sky of a transits run, built once (the ephemeris: ~0.5 s a year) and shared by every block."""
        if self._track is None:
            window = self.spec.transit_window()
            if window is None:
                raise BatchError("this run has no transit range")
            self._track = ephemeris.transit_track(*window, bodies=self.spec.bodies)
        return self._track

    def transit_events_per_chart(self, a: Population) -> int:
        """Events of group A's first chart: what sizes blocks and the job API's row count."""
        if not len(a.ids):
            return 0
        return len(self._transits(self.block(a, a, slice(0, 1))))

    def _transits(self, block: Block) -> TransitEvents:
        a, rows = block.a, block.rows
        return self.calculator.transits(a.longitudes[rows], self.track, points=a.points)

    def _patterns(self, block: Block) -> ChartPatterns:
        a, rows = block.a, block.rows
        found = self.calculator.patterns(a.longitudes[rows], points=a.points, stellium_span=self.spec.stellium_span)
        if self.spec.patterns is None:
            return found
        return found.select(np.isin(found.pattern, [PATTERN_NAMES.index(name) for name in self.spec.patterns]))


def _speeds(population: Population, rows: slice) -> Any:
    return None if population.speeds is None else population.speeds[rows]


@dataclass(frozen=True)
class Mode:
    """One batch mode: how a block is computed and how its result is written."""

    compute: Callable[[Computation, Block], Any]
    write: Callable[[Writer, Any, Block], int]


MODE_TABLE: dict[str, Mode] = {
    "natal": Mode(Computation._natal, lambda writer, hits, block: writer.write_hits(hits, block, natal=True)),
    "synastry": Mode(Computation._synastry, lambda writer, hits, block: writer.write_hits(hits, block, natal=False)),
    "scores": Mode(Computation._scores, lambda writer, values, block: writer.write_scores(values, block)),
    "top-k": Mode(Computation._top_k, lambda writer, best, block: writer.write_matches(best, block)),
    "transits": Mode(Computation._transits, lambda writer, events, block: writer.write_transits(events, block)),
    "patterns": Mode(Computation._patterns, lambda writer, found, block: writer.write_patterns(found, block)),
}


@dataclass
class JobState:
    """Where a run stands: the mode being worked on, the next row of group A, and the output file's length."""

    mode_index: int = 0
    next_row: int = 0
    file_bytes: int = 0


@dataclass
class Summary:
    run_id: int
    modes: list[str]
    backend: str
    pairs: int = 0
    hits: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    output: str = "db"
    skipped: int = 0  # charts left out: another point set than the run's
    per_mode_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def mark_failed(run: BatchRun, error: str) -> None:
    run.status = BatchRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])


def narrowed(spec: JobSpec) -> tuple[JobSpec, PointSetSplit]:
    """``spec`` over the charts with the run's point set only (see :func:`.population.split_by_points`)."""
    split = split_by_points(spec.group_a, spec.group_b)
    if not split.skipped:
        return spec, split
    return replace(spec, group_a=split.group_a, group_b=split.group_b), split


def skipped_charts(run: BatchRun) -> list[int]:
    """The charts a run left out because their point set is not the run's."""
    return list(run.parameters.get("skipped", {}).get("charts", []))


def create_run(spec: JobSpec, owner: Any = None) -> BatchRun:
    """A pending run of ``spec``; charts with another point set than the run's are left out of the stored spec
    (so every resume and every worker sees the same rows) and listed under ``parameters["skipped"]``."""
    spec, split = narrowed(spec)
    parameters: dict[str, Any] = {"spec": spec.to_parameters(), "state": asdict(JobState())}
    if split.skipped:
        parameters["skipped"] = {"points": list(split.points), "charts": split.skipped}
    return BatchRun.objects.create(
        owner=owner, mode=",".join(spec.modes), parameters=parameters, status=BatchRun.Status.PENDING
    )


class BatchJob(Computation):
    """Runs (or resumes) one BatchRun in this process. ``progress(done, total)`` is called after each block,
    ``should_stop()`` before the next one."""

    def __init__(
        self,
        run: BatchRun,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        backend: str | None = None,  # instead of the spec's (planning, which computes nothing)
    ) -> None:
        self.run = run
        try:
            super().__init__(JobSpec.from_parameters(run.parameters["spec"]), backend)
        except BackendUnavailable as exc:
            # The run's backend cannot run here (no CuPy, no device): the run is failed, not left pending, and
            # resumes where the backend can run.
            mark_failed(run, f"{exc.__class__.__name__}: {exc}")
            raise
        self.state = JobState(**run.parameters.get("state", {}))
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self._chunks_seen: float = 0

    def execute(self) -> Summary:
        if self.run.status == BatchRun.Status.DONE:
            raise BatchError(f"run {self.run.pk} is already done")
        group_a, group_b = self.load_groups()
        totals = [self.units(mode, self.block(group_a, group_b)) for mode in self.spec.modes]
        summary = Summary(
            self.run.pk,
            self.spec.modes,
            self.calculator.backend.name,
            output=self.spec.output,
            skipped=len(skipped_charts(self.run)),
        )
        self._start(sum(totals))
        start = time.perf_counter()
        try:
            for index in range(self.state.mode_index, len(self.spec.modes)):
                mode = self.spec.modes[index]
                mode_start = time.perf_counter()
                self._run_mode(mode, group_a, group_b, sum(totals[:index]), summary)
                summary.per_mode_seconds[mode] = time.perf_counter() - mode_start
                self.state = JobState(mode_index=index + 1)
                self._save_state()
        except BatchInterrupted:
            self._finish(BatchRun.Status.INTERRUPTED, summary, start)
            raise
        except BaseException as exc:
            self.run.error = f"{exc.__class__.__name__}: {exc}"
            self._finish(BatchRun.Status.FAILED, summary, start)
            raise
        self._finish(BatchRun.Status.DONE, summary, start)
        return summary

    def _start(self, total: int) -> None:
        run = self.run
        run.status = BatchRun.Status.RUNNING
        run.backend = self.calculator.backend.name
        run.backend_note = self.calculator.backend.fallback_reason or ""
        run.progress_total = total
        run.started_at = run.started_at or timezone.now()
        run.error = ""
        run.save()

    def _finish(self, status: str, summary: Summary, start: float) -> None:
        summary.seconds = time.perf_counter() - start
        memory = self.calculator.monitor.get_memory_stats()
        summary.peak_memory_mb = memory["peak_memory_mb"]
        metrics.ENGINE_PEAK_MEMORY.labels(source="batch").set(summary.peak_memory_mb)
        if "gpu_pool_used_mb" in memory:
            metrics.GPU_POOL_MB.set(memory["gpu_pool_used_mb"])
        run = self.run
        run.status = status
        # The backend that finished the work: a device that failed part-way hands over to the CPU.
        summary.backend = run.backend = self.calculator.backend.name
        run.backend_note = self.calculator.backend.fallback_reason or ""
        run.peak_memory_mb = max(run.peak_memory_mb or 0.0, summary.peak_memory_mb)
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "backend", "backend_note", "peak_memory_mb", "finished_at", "error"])
        self.calculator.close()

    def _save_state(self) -> None:
        self.run.parameters = {**self.run.parameters, "state": asdict(self.state)}
        self.run.save(update_fields=["parameters", "progress_done", "pairs_computed", "hits", "rows_written"])

    def _blocks(self, mode: str, a: Population, b: Population) -> Iterator[slice]:
        for rows in self.block_slices(mode, a, b, self.state.next_row):
            if self.should_stop():
                raise BatchInterrupted(f"run {self.run.pk} stopped at row {rows.start} of {mode}")
            yield rows

    def _run_mode(self, mode: str, a: Population, b: Population, offset: int, summary: Summary) -> None:
        if self.state.next_row >= len(a.ids):
            # Every block is recorded (the run stopped while finishing the mode): opening a writer would start an
            # empty partial file and rename it over the finished one.
            finish_output(self.spec, a, b, self.state.file_bytes)
            return
        writer = open_writer(
            self.spec, mode, a, b, self.state.file_bytes, self.config.config_hash(), self.run.pk, self.state.next_row
        )
        try:
            for rows in self._blocks(mode, a, b):
                # Database output: the block's rows and the run's progress commit together.
                with writer.block():
                    done = self.compute_block(mode, self.block(a, b, rows), writer)
                    self._record_block(rows.stop, done, offset, writer, summary)
                if self.progress is not None:
                    self.progress(self.run.progress_done, self.run.progress_total)
            writer.close()
        except BaseException:
            writer.abort()
            raise

    def _record_block(self, next_row: int, done: BlockResult, offset: int, writer: Writer, summary: Summary) -> None:
        run = self.run
        run.progress_done = min(run.progress_total, max(run.progress_done, offset) + done.units)
        run.pairs_computed += done.units
        run.hits += done.hits
        run.rows_written += done.rows_written
        summary.pairs += done.units
        summary.hits += done.hits
        summary.rows_written += done.rows_written
        chunks = self.calculator.monitor.counters.get("chunks", 0)
        metrics.record_engine(
            "batch", self.calculator.backend.name, pairs=done.units, hits=done.hits, chunks=chunks - self._chunks_seen
        )
        self._chunks_seen = chunks
        self.state.next_row = next_row
        self.state.file_bytes = writer.flush()
        self._save_state()


def calibrate(spec: JobSpec, sample_rows: int = 64) -> dict[str, Any]:
    """Memory plan and a time estimate per mode, from a short run of the same computation on a sample of group A
    (nothing written). Units are counted as the run counts them; the time scales with the rows of group A (synastry
    within one group computes whole rows and then keeps each pair once)."""
    computation = Computation(narrowed(spec)[0])
    try:
        a, b = computation.load_groups()
        calc = computation.calculator
        report: dict[str, Any] = {"backend": calc.backend.name, "modes": {}}
        sample_rows = min(sample_rows, len(a.ids))
        sample = computation.block(a, b, slice(0, sample_rows))
        for mode in spec.modes:
            plan = _plan(computation, mode, a, b)
            start = time.perf_counter()
            computation.compute(mode, sample)
            # Every row of A costs the same (a chart, or one row against all of B), whatever units count.
            estimated = max(time.perf_counter() - start, 1e-9) * len(a.ids) / sample_rows
            total = computation.units(mode, computation.block(a, b))
            report["modes"][mode] = {
                **plan,
                "units": total,
                "units_per_second": total / estimated,
                "estimated_seconds": estimated,
            }
        return report
    finally:
        computation.calculator.close()


def _plan(computation: Computation, mode: str, a: Population, b: Population) -> dict[str, Any]:
    """The engine's memory plan of a mode; for transits (which the engine chunks by itself), the blocks and the
    rows they store."""
    spec = computation.spec
    if mode != "transits":
        calc = computation.calculator
        plan: dict[str, Any] = calc.estimate_memory_usage(
            len(a.ids), len(b.ids), len(a.points), OPERATIONS[mode], spec.method, points=a.points
        )
        return plan
    per_chart = computation.transit_events_per_chart(a)
    blocks = computation.block_slices(mode, a, b)
    return {
        "events_per_chart": per_chart,
        "estimated_rows": per_chart * len(a.ids),
        "blocks": len(blocks),
        "block_rows": blocks[0].stop - blocks[0].start if blocks else 0,
    }
