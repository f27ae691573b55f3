"""Batch runs spread over workers: a run is cut into row blocks (:func:`plan`), and a worker computes and stores
one block (:func:`run_block`). Enqueueing is :mod:`aspects_app.tasks`'s; starting a run is :mod:`aspects_app.jobs`'s.

A block's results, its ``BatchBlock`` marker and the run's counters commit in one transaction, and tasks are
acknowledged late: a worker killed mid-block commits nothing and the block is delivered again, while a block
delivered twice finds its marker (or collides with it) and writes nothing. Top-k blocks are final per row, so
nothing is merged afterwards. Only the blocks without a marker are planned, which is also how a stopped or
failed run resumes.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .batch import BatchJob, DatabaseWriter, Population
from .engine import BackendUnavailable, get_backend
from .models import BatchBlock, BatchRun

FINISHED = (BatchRun.Status.DONE, BatchRun.Status.CANCELLED)
# Blocks per mode at least (rows allowing), so that many workers share a run evenly.
MIN_BLOCKS = 64


@dataclass(frozen=True)
class PlannedBlock:
    """One task's work: rows [start, stop) of group A in ``mode``."""

    mode: str
    start: int
    stop: int


def plan(run: BatchRun, queue: str) -> list[PlannedBlock]:
    """Mark ``run`` running on ``queue`` and return its blocks that have not completed (the caller enqueues them)."""
    job = BatchJob(run, backend=_planning_backend(run))
    try:
        a, b = job.load_groups()
        blocks = [
            PlannedBlock(mode, rows.start, rows.stop)
            for mode in job.spec.modes
            for rows in job.block_slices(mode, a, b, min_blocks=MIN_BLOCKS)
        ]
    finally:
        job.calculator.close()  # planning computes nothing; the workers build their own
    done = set(BatchBlock.objects.filter(run=run).values_list("mode", "start"))
    run.status = BatchRun.Status.RUNNING
    run.error = ""
    run.progress_total = sum(job.units(mode, job.block(a, b)) for mode in job.spec.modes)
    run.started_at = run.started_at or timezone.now()
    run.finished_at = None
    run.parameters = {**run.parameters, "distributed": {"blocks": len(blocks), "queue": queue}}
    run.save()
    return [block for block in blocks if (block.mode, block.start) not in done]


def _planning_backend(run: BatchRun) -> str | None:
    """The run's backend, or NumPy where it cannot run here: planning computes nothing, and a GPU run is often
    enqueued from a host without the device (a web server); the workers build their own engines."""
    name = run.parameters["spec"].get("backend")
    if name != "cupy":
        return None
    try:
        get_backend(name)
    except BackendUnavailable:
        return "numpy"
    return None


# One run's populations per worker process: consecutive blocks of a run reuse them.
_loaded: dict[int, tuple[BatchJob, Population, Population]] = {}


def _job(run: BatchRun) -> tuple[BatchJob, Population, Population]:
    if run.pk not in _loaded:
        for previous, _a, _b in _loaded.values():
            previous.calculator.close()
        _loaded.clear()
        job = BatchJob(run)
        _loaded[run.pk] = (job, *job.load_groups())
    return _loaded[run.pk]


def run_block(run_id: int, mode: str, start_row: int, stop_row: int) -> str:
    """Compute and store one block; "done", "duplicate" (already stored) or "skipped" (run not running)."""
    run = BatchRun.objects.filter(pk=run_id).first()
    if run is None or run.status != BatchRun.Status.RUNNING:
        return "skipped"
    if BatchBlock.objects.filter(run_id=run_id, mode=mode, start=start_row).exists():
        return "duplicate"
    job, a, b = _job(run)
    writer = DatabaseWriter(job.config.config_hash(), job.spec.method, run_id, job.spec.transit_window())
    began = time.perf_counter()
    try:
        with transaction.atomic():
            done = job.compute_block(mode, job.block(a, b, slice(start_row, stop_row)), writer)
            BatchBlock.objects.create(
                run_id=run_id,
                mode=mode,
                start=start_row,
                stop=stop_row,
                units=done.units,
                worker=socket.gethostname(),
                seconds=time.perf_counter() - began,
            )
            BatchRun.objects.filter(pk=run_id).update(
                progress_done=F("progress_done") + done.units,
                pairs_computed=F("pairs_computed") + done.units,
                hits=F("hits") + done.hits,
                rows_written=F("rows_written") + done.rows_written,
                backend=job.calculator.backend.name,
                backend_note=job.calculator.backend.fallback_reason or "",
            )
    except IntegrityError:
        return "duplicate"  # another delivery of this block committed first; this one rolled back whole
    finish_if_complete(run_id)
    return "done"


def finish_if_complete(run_id: int) -> None:
    run = BatchRun.objects.get(pk=run_id)
    if BatchBlock.objects.filter(run_id=run_id).count() >= run.parameters["distributed"]["blocks"]:
        BatchRun.objects.filter(pk=run_id, status=BatchRun.Status.RUNNING).update(
            status=BatchRun.Status.DONE, finished_at=timezone.now()
        )


def fail(run_id: int, error: str) -> None:
    BatchRun.objects.filter(pk=run_id, status=BatchRun.Status.RUNNING).update(
        status=BatchRun.Status.FAILED, error=error[:10_000], finished_at=timezone.now()
    )
