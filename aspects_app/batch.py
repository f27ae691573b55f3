"""Batch jobs over whole populations: the service layer behind ``manage.py compute_aspects``.

A job walks row blocks of group A against all of group B (or of A itself), one engine call and one write per
block. Each block's results and the run's progress are committed together (database) or the file is flushed
before the progress is recorded (files), so a job stopped anywhere resumes at its first unfinished block with
no duplicate and no missing rows: database writes are upserts, and a file is cut back to the length it had
after the last recorded block.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import metrics, services
from .conf import get_config
from .engine import ENGINE_VERSION, AspectConfig, AspectHits, MemoryOptimizedVectorizedCalculator, TopK
from .engine.aspects import ASPECT_NAMES
from .engine.hits import MOVEMENTS
from .models import AspectResult, BatchRun, Chart, Match

MODES: tuple[str, ...] = ("natal", "synastry", "scores", "top-k")
FORMATS: tuple[str, ...] = ("jsonl", "csv", "npz")
# Rows per block are the engine's chunk rows, within these bounds: enough to amortise a transaction, few enough
# that an interruption loses little and progress moves.
MIN_BLOCK_ROWS = 16
MAX_BLOCK_ROWS = 2048
# id__in lists are split so SQLite's bound-parameter limit is never reached.
ID_BATCH = 900


class BatchError(ValueError):
    """A job that cannot run as asked (the command turns it into a CommandError)."""


class BatchInterrupted(Exception):
    """The job stopped cleanly after a block because it was asked to."""


@dataclass
class Selection:
    """Which charts: explicit ids, an owner's, changed since a moment, or all (ids ascending)."""

    ids: list[int] | None = None
    owner: str | None = None
    changed_since: datetime | None = None

    def queryset(self) -> QuerySet[Chart]:
        charts = Chart.objects.all()
        if self.ids is not None:
            charts = charts.filter(pk__in=self.ids)
        if self.owner is not None:
            charts = charts.filter(owner__username=self.owner)
        if self.changed_since is not None:
            charts = charts.filter(updated_at__gte=self.changed_since)
        return charts.order_by("pk")

    def resolve(self, what: str) -> list[int]:
        if self.ids is not None:
            found = set()
            for start in range(0, len(self.ids), ID_BATCH):
                batch = self.ids[start : start + ID_BATCH]
                found.update(Selection(batch, self.owner, self.changed_since).queryset().values_list("pk", flat=True))
            missing = sorted(set(self.ids) - found)
            if missing:
                raise BatchError(f"{what}: unknown chart ids (or outside the other filters): {missing[:20]}")
            return sorted(found)
        ids = list(self.queryset().values_list("pk", flat=True))
        if not ids:
            raise BatchError(f"{what}: the selection is empty")
        return ids


@dataclass
class JobSpec:
    """Everything a run needs to be repeated or resumed; stored in ``BatchRun.parameters``."""

    modes: list[str]
    group_a: list[int]
    group_b: list[int] | None = None  # None: pairs within group A
    orbs: str | dict[str, float] | None = None
    aspects: list[str] | None = None
    method: str = "discepolo"
    k: int = 10
    backend: str = "auto"
    working_memory_mb: float = 256.0
    chunk_size: int | None = None
    output: str = "db"  # "db" or a file path
    file_format: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise BatchError(f"--mode: unknown or missing mode(s) {unknown}; choose from {', '.join(MODES)}")
        if self.output != "db":
            self.file_format = self.file_format or Path(self.output).suffix.lstrip(".").lower()
            if self.file_format not in FORMATS:
                raise BatchError(f"--format: unknown output format {self.file_format!r}; use {', '.join(FORMATS)}")
            if len(self.modes) > 1:
                raise BatchError("--output: a file takes one mode; run the command once per mode")
            if self.file_format == "npz" and self.modes != ["scores"]:
                raise BatchError("--format npz holds dense score matrices: use it with --mode scores")
            directory = Path(self.output).resolve().parent
            if not directory.is_dir() or not os.access(directory, os.W_OK):
                raise BatchError(f"--output: cannot write into {directory}")
        elif "scores" in self.modes:
            raise BatchError("--mode scores writes a dense matrix: give --output PATH.npz (or .csv / .jsonl)")
        if self.k < 1:
            raise BatchError(f"-k: must be at least 1, got {self.k}")
        if not math.isfinite(self.working_memory_mb) or self.working_memory_mb <= 0:
            raise BatchError(f"--working-memory-mb: must be positive and finite, got {self.working_memory_mb}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise BatchError(f"--chunk-size: must be at least 1, got {self.chunk_size}")
        self.config()  # validate orbs and aspects now, not after the first block

    @property
    def within_one_group(self) -> bool:
        return self.group_b is None

    def config(self) -> AspectConfig:
        try:
            return services.aspect_config(self.orbs, self.aspects)
        except services.ServiceError as exc:
            raise BatchError(f"--{exc.field}: {exc.message}") from exc

    def to_parameters(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> JobSpec:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in parameters.items() if k in known})


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
    per_mode_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Population:
    ids: npt.NDArray[np.int64]
    points: tuple[str, ...]
    longitudes: npt.NDArray[np.float64]
    speeds: npt.NDArray[np.float64] | None


def load_population(ids: Sequence[int], what: str) -> Population:
    """Positions of ``ids`` as arrays, in the given order, loaded in batches."""
    rows: dict[int, tuple[list[str], bytes, bytes | None]] = {}
    for start in range(0, len(ids), ID_BATCH):
        batch = ids[start : start + ID_BATCH]
        for pk, points, lon, speed in Chart.objects.filter(pk__in=batch).values_list(
            "pk", "points", "longitudes", "speeds"
        ):
            rows[pk] = (points, bytes(lon), None if speed is None else bytes(speed))
    missing = [i for i in ids if i not in rows]
    if missing:
        raise BatchError(f"{what}: charts deleted since the run started: {missing[:20]}")
    points = tuple(rows[ids[0]][0])
    odd = [i for i in ids if tuple(rows[i][0]) != points]
    if odd:
        raise BatchError(f"{what}: charts {odd[:20]} have other points than chart {ids[0]} ({list(points)})")
    longitudes = np.frombuffer(b"".join(rows[i][1] for i in ids), dtype="<f8").reshape(len(ids), len(points))
    has_speeds = all(rows[i][2] is not None for i in ids)
    speeds = (
        np.frombuffer(b"".join(rows[i][2] or b"" for i in ids), dtype="<f8").reshape(len(ids), len(points))
        if has_speeds
        else None
    )
    return Population(np.asarray(ids, dtype=np.int64), points, longitudes.astype(np.float64), speeds)


def create_run(spec: JobSpec, owner: Any = None) -> BatchRun:
    return BatchRun.objects.create(
        owner=owner,
        mode=",".join(spec.modes),
        parameters={"spec": spec.to_parameters(), "state": asdict(JobState())},
        status=BatchRun.Status.PENDING,
    )


class BatchJob:
    """Runs (or resumes) one BatchRun. ``progress(done, total)`` is called after each block, ``should_stop()``
    before the next one."""

    def __init__(
        self,
        run: BatchRun,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.run = run
        self.spec = JobSpec.from_parameters(run.parameters["spec"])
        self.state = JobState(**run.parameters.get("state", {}))
        self.progress = progress
        self.should_stop = should_stop or (lambda: False)
        self.column_of: dict[int, int] = {}  # chart id -> its column in group B
        self._chunks_seen = 0
        self.config = self.spec.config()
        self.calculator = MemoryOptimizedVectorizedCalculator(
            config=self.config,
            backend=self.spec.backend,
            working_memory_mb=self.spec.working_memory_mb,
            chunk_size=self.spec.chunk_size,
            # A property of the machine that runs the job, so read here, not stored in the spec.
            device_memory_limit_mb=get_config()["DEVICE_MEMORY_LIMIT_MB"],
        )

    # -- the run -----------------------------------------------------------------------------------------------

    def execute(self) -> Summary:
        if self.run.status == BatchRun.Status.DONE:
            raise BatchError(f"--resume: run {self.run.pk} is already done")
        group_a, group_b = self.load_groups()
        totals = [self.units(mode, group_a, group_b) for mode in self.spec.modes]
        summary = Summary(self.run.pk, self.spec.modes, self.calculator.backend.name, output=self.spec.output)
        run = self.run
        run.status = BatchRun.Status.RUNNING
        run.backend = self.calculator.backend.name
        run.backend_note = self.calculator.backend.fallback_reason or ""
        run.progress_total = sum(totals)
        run.started_at = run.started_at or timezone.now()
        run.error = ""
        run.save()
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
            run.error = f"{exc.__class__.__name__}: {exc}"
            self._finish(BatchRun.Status.FAILED, summary, start)
            raise
        self._finish(BatchRun.Status.DONE, summary, start)
        return summary

    def load_groups(self) -> tuple[Population, Population]:
        """Groups A and B (B is A for pairs within one group)."""
        group_a = load_population(self.spec.group_a, "group A")
        group_b = group_a if self.spec.group_b is None else load_population(self.spec.group_b, "group B")
        if group_a.points != group_b.points:
            raise BatchError(f"groups have different points: {list(group_a.points)} and {list(group_b.points)}")
        self.column_of = {chart: column for column, chart in enumerate(group_b.ids.tolist())}
        return group_a, group_b

    def units(self, mode: str, a: Population, b: Population, rows: slice | None = None) -> int:
        """Progress units (charts for natal, chart pairs otherwise) of ``rows`` of group A (default: all)."""
        rows = rows or slice(0, len(a.ids))
        n, m = rows.stop - rows.start, len(b.ids)
        if mode == "natal":
            return n
        if mode == "synastry" and self.spec.within_one_group:
            return sum(m - 1 - r for r in range(rows.start, rows.stop))
        return n * m

    def block_slices(
        self, mode: str, a: Population, b: Population, first_row: int = 0, min_blocks: int = 1
    ) -> list[slice]:
        """Row blocks from ``first_row``: the engine's chunk rows, made smaller (down to MIN_BLOCK_ROWS) when that
        gives fewer than ``min_blocks`` (work spread over several workers needs enough blocks to share)."""
        step = self._block_rows(mode, a, b)
        step = max(MIN_BLOCK_ROWS, min(step, -(-len(a.ids) // min_blocks)))
        return [slice(start, min(start + step, len(a.ids))) for start in range(first_row, len(a.ids), step)]

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

    def _block_rows(self, mode: str, a: Population, b: Population) -> int:
        plan = self.calculator.estimate_memory_usage(
            max(len(a.ids), 1), max(len(b.ids), 1), len(a.points), _OPERATIONS[mode], self.spec.method, points=a.points
        )
        return int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, plan["chunk_rows"])))

    def _blocks(self, mode: str, a: Population, b: Population) -> Iterator[slice]:
        for rows in self.block_slices(mode, a, b, self.state.next_row):
            if self.should_stop():
                raise BatchInterrupted(f"run {self.run.pk} stopped at row {rows.start} of {mode}")
            yield rows

    def _run_mode(self, mode: str, a: Population, b: Population, offset: int, summary: Summary) -> None:
        writer = open_writer(self.spec, mode, a, b, self.state.file_bytes)
        try:
            for rows in self._blocks(mode, a, b):
                # Database output: the block's rows and the run's progress commit together.
                with writer.block():
                    units, hits, written = self.compute_block(mode, a, b, rows, writer)
                    self._record_block(rows.stop, units, hits, written, offset, writer, summary)
                if self.progress is not None:
                    self.progress(self.run.progress_done, self.run.progress_total)
            writer.close()
        except BaseException:
            writer.abort()
            raise

    def _record_block(
        self, next_row: int, units: int, hits: int, written: int, offset: int, writer: Writer, summary: Summary
    ) -> None:
        run = self.run
        run.progress_done = min(run.progress_total, max(run.progress_done, offset) + units)
        run.pairs_computed += units
        run.hits += hits
        run.rows_written += written
        summary.pairs += units
        summary.hits += hits
        summary.rows_written += written
        chunks = self.calculator.monitor.counters.get("chunks", 0)
        metrics.record_engine(
            "batch", self.calculator.backend.name, pairs=units, hits=hits, chunks=chunks - self._chunks_seen
        )
        self._chunks_seen = chunks
        self.state.next_row = next_row
        self.state.file_bytes = writer.flush()
        self._save_state()

    def compute_block(
        self, mode: str, a: Population, b: Population, rows: slice, writer: Writer
    ) -> tuple[int, int, int]:
        """(units of progress, hits, rows written) of one block."""
        calc = self.calculator
        lon = a.longitudes[rows]
        speed = None if a.speeds is None else a.speeds[rows]
        within = self.spec.within_one_group
        if mode == "natal":
            hits = calc.natal(lon, speed, points=a.points)
            return rows.stop - rows.start, len(hits), writer.write_hits(self, hits, rows, a, b, natal=True)
        if mode == "synastry":
            hits = calc.synastry(lon, b.longitudes, speed, b.speeds, points=a.points)
            if within:  # each unordered pair once: j > i
                assert hits.j is not None
                hits = hits.select(hits.j > hits.i + rows.start)
            return self.units(mode, a, b, rows), len(hits), writer.write_hits(self, hits, rows, a, b, natal=False)
        if mode == "scores":
            values = calc.scores(lon, b.longitudes, method=self.spec.method, points=a.points)
            return int(values.size), 0, writer.write_scores(values, rows, a, b)
        # A chart is never its own partner, whether the groups are one population or merely share charts.
        excluded = np.array([self.column_of.get(chart, -1) for chart in a.ids[rows].tolist()], dtype=np.int64)
        best = calc.top_k(
            lon, b.longitudes, k=self.spec.k, method=self.spec.method, points=a.points, exclude_columns=excluded
        )
        return (rows.stop - rows.start) * len(b.ids), 0, writer.write_matches(self, best, rows, a, b)


# -- writers -------------------------------------------------------------------------------------------------


class Writer:
    """Where a mode's results go; ``block()`` wraps one block's writes and its progress record."""

    def block(self) -> Any:
        return contextlib.nullcontext()

    def write_hits(
        self, job: BatchJob, hits: AspectHits, rows: slice, a: Population, b: Population, natal: bool
    ) -> int:
        raise BatchError("this output does not take aspect hits")

    def write_scores(self, values: Any, rows: slice, a: Population, b: Population) -> int:
        raise BatchError("this output does not take score matrices")

    def write_matches(self, job: BatchJob, best: TopK, rows: slice, a: Population, b: Population) -> int:
        raise BatchError("this output does not take matches")

    def flush(self) -> int:
        """Make the written data durable; returns the output's length to record (files)."""
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class DatabaseWriter(Writer):
    """Upserts into AspectResult (one row per chart or pair) and Match (k rows per chart)."""

    def block(self) -> Any:
        return transaction.atomic()

    def write_hits(
        self, job: BatchJob, hits: AspectHits, rows: slice, a: Population, b: Population, natal: bool
    ) -> int:
        kind = AspectResult.Kind.NATAL if natal else AspectResult.Kind.SYNASTRY
        config_hash = job.config.config_hash()
        width = len(b.ids)
        parts = hits.split()
        block = range(rows.stop - rows.start)
        if natal:
            pairs = [(r, rows.start + r) for r in block]
        elif job.spec.within_one_group:
            pairs = [(r, c) for r in block for c in range(rows.start + r + 1, width)]
        else:
            pairs = [(r, c) for r in block for c in range(width)]
        # A chart (pair) without aspects is stored too, so that it is known to have none.
        empty = AspectHits.empty(hits.points, natal)
        results = []
        for local, column in pairs:
            picked = parts.get(local if natal else (local, column), empty)
            results.append(
                AspectResult(
                    kind=kind,
                    chart_a_id=int(a.ids[rows.start + local]),
                    chart_b_id=int(a.ids[column] if natal else b.ids[column]),
                    config_hash=config_hash,
                    engine_version=ENGINE_VERSION,
                    payload=picked.to_bytes(),
                    hit_count=len(picked),
                )
            )
        _stamp_positions(results)
        AspectResult.objects.bulk_create(
            results,
            update_conflicts=True,
            unique_fields=["kind", "chart_a", "chart_b", "config_hash", "engine_version"],
            update_fields=["positions_hash", "payload", "hit_count", "computed_at"],
            batch_size=500,
        )
        return len(results)

    def write_matches(self, job: BatchJob, best: TopK, rows: slice, a: Population, b: Population) -> int:
        config_hash = job.config.config_hash()
        method = job.spec.method
        charts = a.ids[rows].tolist()
        # Replace each chart's list: a re-run with a smaller k leaves no stale ranks behind.
        Match.objects.filter(chart_id__in=charts, method=method, config_hash=config_hash).delete()
        partners = b.ids[best.indices].tolist()
        matches = [
            Match(
                chart_id=chart,
                partner_id=partner,
                rank=rank + 1,
                score=float(score),
                method=method,
                config_hash=config_hash,
                run_id=job.run.pk,
            )
            for chart, row_partners, row_scores in zip(charts, partners, best.scores.tolist(), strict=True)
            for rank, (partner, score) in enumerate(zip(row_partners, row_scores, strict=True))
        ]
        Match.objects.bulk_create(matches, batch_size=2000)
        return len(matches)


def _stamp_positions(rows: list[AspectResult]) -> None:
    """Record the positions each result was computed from, as the request path does."""
    ids = sorted({r.chart_a_id for r in rows} | {r.chart_b_id for r in rows})
    hashes: dict[int, str] = {}
    for start in range(0, len(ids), ID_BATCH):
        hashes.update(Chart.objects.filter(pk__in=ids[start : start + ID_BATCH]).values_list("pk", "positions_hash"))
    for row in rows:
        row.positions_hash = services.combined_positions_hash(hashes[row.chart_a_id], hashes[row.chart_b_id])


class FileWriter(Writer):
    """JSON Lines or CSV, written to ``PATH.partial`` and renamed into place when the mode completes."""

    def __init__(self, spec: JobSpec, mode: str, resume_bytes: int) -> None:
        self.path = Path(spec.output)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.format = spec.file_format
        self.mode = mode
        exists = self.partial.exists()
        self.handle = open(self.partial, "r+b" if exists else "wb")  # noqa: SIM115 - closed in close()/abort()
        # Resuming: cut whatever the interrupted block wrote after the last recorded length.
        self.handle.truncate(resume_bytes if exists else 0)
        self.handle.seek(0, io.SEEK_END)
        if self.handle.tell() == 0 and self.format == "csv":
            self._write_csv([self._header()])

    def _header(self) -> list[str]:
        if self.mode == "top-k":
            return ["chart", "rank", "partner", "score"]
        if self.mode == "scores":
            return ["chart_a", "chart_b", "score"]
        head = ["chart"] if self.mode == "natal" else ["chart_a", "chart_b"]
        return [*head, "p1", "p2", "aspect", "orb", "movement"]

    def _write_rows(self, rows: list[list[Any]]) -> int:
        if self.format == "csv":
            self._write_csv(rows)
        else:
            keys = self._header()
            self.handle.write("".join(json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in rows).encode())
        return len(rows)

    def _write_csv(self, rows: list[list[Any]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        self.handle.write(text.getvalue().encode())

    def write_hits(
        self, job: BatchJob, hits: AspectHits, rows: slice, a: Population, b: Population, natal: bool
    ) -> int:
        points = np.asarray(hits.points, dtype=object)
        chart_a = a.ids[rows][hits.i].tolist()
        charts = [chart_a] if hits.j is None else [chart_a, b.ids[hits.j].tolist()]
        columns = [
            *charts,
            points[hits.p1].tolist(),
            points[hits.p2].tolist(),
            np.asarray(ASPECT_NAMES, dtype=object)[hits.aspect].tolist(),
            hits.orb.tolist(),
            np.asarray(MOVEMENTS, dtype=object)[hits.movement].tolist(),
        ]
        return self._write_rows([list(row) for row in zip(*columns, strict=True)])

    def write_scores(self, values: Any, rows: slice, a: Population, b: Population) -> int:
        chart_a = np.repeat(a.ids[rows], len(b.ids)).tolist()
        chart_b = np.tile(b.ids, rows.stop - rows.start).tolist()
        return self._write_rows([list(r) for r in zip(chart_a, chart_b, values.ravel().tolist(), strict=True)])

    def write_matches(self, job: BatchJob, best: TopK, rows: slice, a: Population, b: Population) -> int:
        partners = b.ids[best.indices].tolist()
        charts = a.ids[rows].tolist()
        return self._write_rows(
            [
                [chart, rank + 1, partner, score]
                for chart, row_partners, row_scores in zip(charts, partners, best.scores.tolist(), strict=True)
                for rank, (partner, score) in enumerate(zip(row_partners, row_scores, strict=True))
            ]
        )

    def flush(self) -> int:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
        self.flush()
        self.handle.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        # The partial file stays for --resume; only the handle goes.
        self.handle.close()


class NpzWriter(Writer):
    """Dense scores into a memory-mapped ``PATH.partial.npy``, compressed into PATH (.npz) when complete."""

    def __init__(self, spec: JobSpec, a: Population, b: Population) -> None:
        self.path = Path(spec.output)
        self.partial = self.path.with_name(self.path.name + ".partial.npy")
        self.ids_a, self.ids_b = a.ids, b.ids
        shape = (len(a.ids), len(b.ids))
        dtype = np.dtype(np.int16 if spec.method == "discepolo" else np.float64)
        if self.partial.exists():
            self.matrix = np.load(self.partial, mmap_mode="r+")
            if self.matrix.shape != shape or self.matrix.dtype != dtype:
                raise BatchError(f"--resume: {self.partial} does not hold this run's matrix")
        else:
            self.matrix = np.lib.format.open_memmap(self.partial, mode="w+", dtype=dtype, shape=shape)

    def write_scores(self, values: Any, rows: slice, a: Population, b: Population) -> int:
        self.matrix[rows] = values
        return int(values.size)

    def flush(self) -> int:
        self.matrix.flush()
        return 0

    def close(self) -> None:
        self.matrix.flush()
        temporary = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez_compressed(temporary, scores=self.matrix, chart_a=self.ids_a, chart_b=self.ids_b)
        os.replace(temporary, self.path)
        del self.matrix
        self.partial.unlink()

    def abort(self) -> None:
        self.matrix.flush()


def open_writer(spec: JobSpec, mode: str, a: Population, b: Population, resume_bytes: int) -> Writer:
    if spec.output == "db":
        return DatabaseWriter()
    if spec.file_format == "npz":
        return NpzWriter(spec, a, b)
    return FileWriter(spec, mode, resume_bytes)


def check_plan(spec: JobSpec) -> None:
    """Fail before anything is stored: charts whose points differ, or a budget that cannot hold one chart pair
    of some mode."""
    for what, ids in (("selection", spec.group_a), ("second group", spec.group_b or [])):
        kinds: set[tuple[str, ...]] = set()
        for start in range(0, len(ids), ID_BATCH):
            batch = Chart.objects.filter(pk__in=ids[start : start + ID_BATCH])
            kinds.update(tuple(p) for p in batch.values_list("points", flat=True).distinct())
        if len(kinds) > 1:
            raise BatchError(f"{what}: the selected charts have different points: {sorted(kinds)[:3]}")
    first = Chart.objects.filter(pk=spec.group_a[0]).values_list("points", flat=True).first()
    num_points = len(first or [])
    calc = MemoryOptimizedVectorizedCalculator(
        config=spec.config(), backend="numpy", working_memory_mb=spec.working_memory_mb, chunk_size=spec.chunk_size
    )
    columns = len(spec.group_a if spec.group_b is None else spec.group_b)
    for mode in spec.modes:
        try:
            calc.estimate_memory_usage(
                len(spec.group_a), columns, max(num_points, 1), _OPERATIONS[mode], spec.method, points=first
            )
        except ValueError as exc:
            raise BatchError(f"--{str(exc).split(':', 1)[0].replace('_', '-')}: {exc}") from exc


_OPERATIONS = {"natal": "natal", "synastry": "synastry", "scores": "scores", "top-k": "top_k"}


def calibrate(spec: JobSpec, sample_rows: int = 64) -> dict[str, Any]:
    """Memory plan and a time estimate per mode, from a short run on a sample of group A (nothing written)."""
    a = load_population(spec.group_a, "group A")
    b = a if spec.group_b is None else load_population(spec.group_b, "group B")
    calc = MemoryOptimizedVectorizedCalculator(
        config=spec.config(), backend=spec.backend, working_memory_mb=spec.working_memory_mb, chunk_size=spec.chunk_size
    )
    report: dict[str, Any] = {"backend": calc.backend.name, "modes": {}}
    rows = slice(0, min(sample_rows, len(a.ids)))
    for mode in spec.modes:
        plan = calc.estimate_memory_usage(
            len(a.ids), len(b.ids), len(a.points), _OPERATIONS[mode], spec.method, points=a.points
        )
        start = time.perf_counter()
        if mode == "natal":
            calc.natal(a.longitudes[rows], points=a.points)
            sample_units = rows.stop
        elif mode == "synastry":
            calc.synastry(a.longitudes[rows], b.longitudes, points=a.points)
            sample_units = rows.stop * len(b.ids)
        elif mode == "scores":
            calc.scores(a.longitudes[rows], b.longitudes, method=spec.method, points=a.points)
            sample_units = rows.stop * len(b.ids)
        else:
            calc.top_k(a.longitudes[rows], b.longitudes, k=spec.k, method=spec.method, points=a.points)
            sample_units = rows.stop * len(b.ids)
        rate = sample_units / max(time.perf_counter() - start, 1e-9)
        total = len(a.ids) if mode == "natal" else len(a.ids) * len(b.ids)
        report["modes"][mode] = {**plan, "units": total, "units_per_second": rate, "estimated_seconds": total / rate}
    calc.close()
    return report
