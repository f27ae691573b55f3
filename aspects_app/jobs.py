"""Batch runs: create, start (here or on the workers), resume, cancel and describe them. The job API and
``manage.py compute_aspects`` both go through here, so a run behaves the same whoever asked for it.

Bad input is a :class:`FieldError` on the spec's field (``group_a``, ``k``, ``working_memory_mb``…); callers
name fields their own way (the API's ``charts``, the command's ``--ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from . import services, tasks
from .batch import (
    FORMATS,
    MODES,
    BatchError,
    BatchInterrupted,
    BatchJob,
    JobSpec,
    Selection,
    Summary,
    calibrate,
    check_plan,
    create_run,
)
from .conf import get_config
from .distributed import FINISHED, fail
from .engine.errors import FieldError
from .models import BatchRun

__all__ = [
    "FORMATS",
    "MODES",
    "BatchError",
    "BatchInterrupted",
    "EnqueueFailed",
    "FieldError",
    "JobNotFound",
    "JobSpec",
    "Selection",
    "Summary",
    "cancel",
    "create",
    "describe",
    "estimate",
    "find_run",
    "is_distributed",
    "queue_for",
    "resumable",
    "run_here",
    "start",
    "submit",
    "visible_job",
    "visible_jobs",
]


class EnqueueFailed(RuntimeError):
    """The broker could not take the run's blocks (down or unreachable); the run is marked failed and resumes
    with its blocks once the broker is back. ``reason`` is short and names no host: "timed out" or
    "unreachable"."""

    def __init__(self, message: str, run_id: int, reason: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.reason = reason


class JobNotFound(FieldError):
    """No such run, or one the caller may not see."""


def create(spec: JobSpec, owner: Any = None, distributed: bool = False) -> BatchRun:
    """A pending run of ``spec``, after everything that can fail before computing has been checked."""
    if distributed and spec.output != "db":
        raise FieldError("distributed", "writes into the database: drop --output")
    check_plan(spec)
    return create_run(spec, owner=owner)


def estimate(spec: JobSpec) -> dict[str, Any]:
    """Memory plan and time estimate per mode (nothing is stored)."""
    check_plan(spec)
    return calibrate(spec)


def run_here(
    run: BatchRun,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Summary:
    """Run (or resume) ``run`` in this process, block by block."""
    return BatchJob(run, progress=progress, should_stop=should_stop).execute()


def queue_for(run: BatchRun) -> str:
    """GPU runs go to the GPU workers' queue, the rest to the CPU workers'."""
    config = get_config()
    return config.gpu_queue if run.parameters["spec"].get("backend") == "cupy" else config.cpu_queue


def start(run: BatchRun, queue: str | None = None) -> int:
    """Enqueue every block of ``run`` that has not completed for the workers; returns how many were enqueued."""
    if run.status in FINISHED:
        raise BatchError(f"run {run.pk} is {run.status}")
    try:
        return tasks.enqueue(run, queue or queue_for(run))
    except (FieldError, BatchError):
        raise
    except Exception as exc:  # the broker is down or unreachable
        fail(run.pk, f"enqueueing failed: {exc}")
        timed_out = isinstance(exc, TimeoutError) or "timeout" in str(exc).lower() or "timed out" in str(exc).lower()
        reason = "timed out" if timed_out else "unreachable"
        raise EnqueueFailed(f"could not enqueue run {run.pk} ({exc})", run.pk, reason) from exc


def is_distributed(run: BatchRun) -> bool:
    return "distributed" in run.parameters


def resumable(run_id: int) -> BatchRun:
    """The run ``run_id``, if it can be resumed (it exists and is not done)."""
    run = find_run(run_id, "resume")
    if run.status == BatchRun.Status.DONE:
        raise FieldError("resume", f"run {run.pk} is already done")
    return run


def find_run(run_id: int, field: str) -> BatchRun:
    run = BatchRun.objects.filter(pk=run_id).first()
    if run is None:
        raise JobNotFound(field, f"no batch run {run_id}")
    return run


def cancel(run: BatchRun) -> bool:
    """Stop a run: its queued blocks are skipped when they arrive (what is stored stays). False when it had
    already finished."""
    changed = (
        BatchRun.objects.filter(pk=run.pk)
        .exclude(status__in=FINISHED)
        .update(status=BatchRun.Status.CANCELLED, finished_at=timezone.now())
    )
    run.refresh_from_db()
    return bool(changed)


# -- the job API -------------------------------------------------------------------------------------------------

# The spec's fields under the job API's names.
_API_FIELDS = {"group_a": "charts", "group_b": "with_charts"}


def submit(
    user: Any,
    modes: Sequence[str],
    charts: Sequence[int] | None,
    with_charts: Sequence[int] | None,
    orbs: Any,
    aspects: Sequence[str] | None,
    k: int,
    method: str,
) -> BatchRun:
    """A distributed run over charts ``user`` can see (default: their own), enqueued for the workers."""
    group_a = (
        sorted(services.visible_charts(user).filter(owner=user).values_list("pk", flat=True))
        if charts is None
        else services.visible_chart_ids(user, charts, "charts")
    )
    group_b = None if with_charts is None else services.visible_chart_ids(user, with_charts, "with_charts")
    if not group_a:
        raise FieldError("charts", "no charts selected (you own none; list some visible ones)")
    try:
        spec = JobSpec(
            modes=list(dict.fromkeys(modes)),
            group_a=group_a,
            group_b=group_b,
            orbs=orbs,
            aspects=None if aspects is None else list(aspects),
            method=method,
            k=k,
        )
        run = create(spec, owner=user, distributed=True)
        start(run)
    except FieldError as exc:  # start's: a chart deleted since the checks
        raise exc.renamed(_API_FIELDS.get(exc.field, exc.field)) from exc
    except BatchError as exc:
        raise FieldError("charts", str(exc)) from exc
    run.refresh_from_db()
    return run


def visible_jobs(user: Any) -> QuerySet[BatchRun]:
    """The distributed runs ``user`` may see: their own (staff: all)."""
    runs = BatchRun.objects.filter(parameters__has_key="distributed")
    return runs if user.is_staff else runs.filter(owner=user)


def visible_job(user: Any, pk: str | int | None) -> BatchRun:
    run = visible_jobs(user).filter(pk=pk).first() if pk is not None and str(pk).isdigit() else None
    if run is None:
        raise JobNotFound("id", "no such job")
    return run


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
