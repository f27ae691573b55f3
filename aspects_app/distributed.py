"""Batch runs spread over Celery workers: a run is cut into row blocks, each block one task.

A block's results, its ``BatchBlock`` marker and the run's counters commit in one transaction, and tasks are
acknowledged late: a worker killed mid-block commits nothing and the block is delivered again, while a block
delivered twice finds its marker (or collides with it) and writes nothing. Top-k blocks are final per row, so
nothing is merged afterwards. ``start`` enqueues only the blocks without a marker, which is also how a stopped
or failed run resumes.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .batch import BatchError, BatchJob, DatabaseWriter, Population
from .conf import get_config
from .models import BatchBlock, BatchRun

FINISHED = (BatchRun.Status.DONE, BatchRun.Status.CANCELLED)
# Blocks per mode at least (rows allowing), so that many workers share a run evenly.
MIN_BLOCKS = 64


@dataclass(frozen=True)
class Block:
    mode: str
    start: int
    stop: int


def queue_for(run: BatchRun) -> str:
    """GPU runs go to the GPU workers' queue, the rest to the CPU workers'."""
    config = get_config()
    return config["GPU_QUEUE"] if run.parameters["spec"].get("backend") == "cupy" else config["CPU_QUEUE"]


def start(run: BatchRun, queue: str | None = None) -> int:
    """Enqueue every block of ``run`` that has not completed; returns how many were enqueued."""
    from .tasks import compute_block  # tasks import this module

    if run.status in FINISHED:
        raise BatchError(f"run {run.pk} is {run.status}")
    job = BatchJob(run)
    if job.spec.output != "db":
        raise BatchError("--distributed writes into the database: drop --output")
    a, b = job.load_groups()
    blocks = [
        Block(mode, rows.start, rows.stop)
        for mode in job.spec.modes
        for rows in job.block_slices(mode, a, b, min_blocks=MIN_BLOCKS)
    ]
    done = set(BatchBlock.objects.filter(run=run).values_list("mode", "start"))
    todo = [block for block in blocks if (block.mode, block.start) not in done]
    queue = queue or queue_for(run)
    run.status = BatchRun.Status.RUNNING
    run.error = ""
    run.progress_total = sum(job.units(mode, a, b) for mode in job.spec.modes)
    run.started_at = run.started_at or timezone.now()
    run.finished_at = None
    run.parameters = {**run.parameters, "distributed": {"blocks": len(blocks), "queue": queue}}
    run.save()
    for block in todo:
        compute_block.apply_async((run.pk, block.mode, block.start, block.stop), queue=queue)
    if not todo:
        _finish_if_complete(run.pk)
    return len(todo)


# One run's populations per worker process: consecutive blocks of a run reuse them.
_loaded: dict[int, tuple[BatchJob, Population, Population]] = {}


def _job(run: BatchRun) -> tuple[BatchJob, Population, Population]:
    if run.pk not in _loaded:
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
    began = time.perf_counter()
    try:
        with transaction.atomic():
            units, hits, written = job.compute_block(mode, a, b, slice(start_row, stop_row), DatabaseWriter())
            BatchBlock.objects.create(
                run_id=run_id,
                mode=mode,
                start=start_row,
                stop=stop_row,
                units=units,
                worker=socket.gethostname(),
                seconds=time.perf_counter() - began,
            )
            BatchRun.objects.filter(pk=run_id).update(
                progress_done=F("progress_done") + units,
                pairs_computed=F("pairs_computed") + units,
                hits=F("hits") + hits,
                rows_written=F("rows_written") + written,
                backend=job.calculator.backend.name,
                backend_note=job.calculator.backend.fallback_reason or "",
            )
    except IntegrityError:
        return "duplicate"  # another delivery of this block committed first; this one rolled back whole
    _finish_if_complete(run_id)
    return "done"


def _finish_if_complete(run_id: int) -> None:
    run = BatchRun.objects.get(pk=run_id)
    if BatchBlock.objects.filter(run_id=run_id).count() >= run.parameters["distributed"]["blocks"]:
        BatchRun.objects.filter(pk=run_id, status=BatchRun.Status.RUNNING).update(
            status=BatchRun.Status.DONE, finished_at=timezone.now()
        )


def fail(run_id: int, error: str) -> None:
    BatchRun.objects.filter(pk=run_id, status=BatchRun.Status.RUNNING).update(
        status=BatchRun.Status.FAILED, error=error[:10_000], finished_at=timezone.now()
    )


def cancel(run: BatchRun) -> bool:
    """Stop a run: its queued blocks are skipped when they arrive. False when it had already finished."""
    changed = (
        BatchRun.objects.filter(pk=run.pk)
        .exclude(status__in=FINISHED)
        .update(status=BatchRun.Status.CANCELLED, finished_at=timezone.now())
    )
    run.refresh_from_db()
    return bool(changed)


def describe(run: BatchRun) -> dict[str, Any]:
    distributed = run.parameters.get("distributed", {})
    return {
        "id": run.pk,
        "status": run.status,
        "modes": run.mode.split(","),
        "progress": {"done": run.progress_done, "total": run.progress_total, "fraction": run.progress_fraction},
        "blocks": {"done": run.blocks.count(), "total": distributed.get("blocks")},
        "pairs_computed": run.pairs_computed,
        "hits": run.hits,
        "rows_written": run.rows_written,
        "backend": run.backend,
        "backend_note": run.backend_note,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
