"""Batch runs: create, start (here or on the workers), resume, cancel and describe them. The job API and
``manage.py compute_aspects`` both go through here, so a run behaves the same whoever asked for it.

Bad input is a :class:`FieldError` on the spec's field (``group_a``, ``k``, ``working_memory_mb``…); callers
name fields their own way (the API's ``charts``, the command's ``--ids``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import services, tasks
from .batch import (
    FORMATS,
    MODES,
    BatchError,
    BatchInterrupted,
    BatchJob,
    Block,
    Computation,
    JobSpec,
    Population,
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
    "JobSize",
    "JobSpec",
    "JobTooLarge",
    "JobsUnavailable",
    "Selection",
    "Summary",
    "TooManyJobs",
    "cancel",
    "create",
    "describe",
    "estimate",
    "find_run",
    "is_distributed",
    "job_size",
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


class JobsUnavailable(RuntimeError):
    """The job API takes no jobs: switched off (``JOBS_ENABLED``) or no Celery app and broker to send them to.
    Nothing was stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobTooLarge(FieldError):
    """A job over one of the job API's size quotas: ``limit`` is the setting's key, ``maximum`` its value."""

    def __init__(self, field: str, limit: str, maximum: int, requested: int, message: str) -> None:
        super().__init__(field, message)
        self.limit = limit
        self.maximum = maximum
        self.requested = requested


class TooManyJobs(RuntimeError):
    """The user has ``maximum`` pending or running jobs already (``limit`` is the setting's key)."""

    def __init__(self, limit: str, maximum: int, active: int) -> None:
        super().__init__(f"{active} of your jobs are pending or running; {limit} is {maximum}")
        self.limit = limit
        self.maximum = maximum
        self.active = active


ACTIVE = (BatchRun.Status.PENDING, BatchRun.Status.RUNNING)


def _check_workers(field: str) -> None:
    """A FieldError on ``field`` (the command's --distributed) when no worker could ever get the run's blocks."""
    problem = tasks.celery_problem()
    if problem is not None:
        raise FieldError(field, problem)


def create(spec: JobSpec, owner: Any = None, distributed: bool = False) -> BatchRun:
    """A pending run of ``spec``, after everything that can fail before computing has been checked."""
    if distributed and spec.output != "db":
        raise FieldError("distributed", "writes into the database: drop --output")
    if distributed:
        _check_workers("distributed")
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
    _check_workers("distributed")  # before the run is marked running: a resumed run stays as it was
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


@dataclass(frozen=True)
class JobSize:
    """What a spec costs, per mode: units as the run counts them (charts for natal, pairs otherwise) and rows
    it stores in the database."""

    units: dict[str, int]
    rows: dict[str, int]

    @property
    def pairs(self) -> int:
        return sum(units for mode, units in self.units.items() if mode != "natal")


def _ids_only(ids: Sequence[int]) -> Population:
    # Counting reads ids and group sizes only: no positions are loaded.
    empty = np.empty((len(ids), 0))
    return Population(np.asarray(ids, dtype=np.int64), (), empty, None)


def job_size(spec: JobSpec) -> JobSize:
    """The spec's units, counted by the batch layer's own :meth:`Computation.units` (over the whole groups, as
    ``--estimate`` and the run count them), and the database rows they become: one per chart (natal) or pair
    (synastry), ``k`` per chart (top-k), the first chart's events per chart (transits; estimated on a sample
    of the range, :func:`_transit_events_per_chart`)."""
    a = _ids_only(spec.group_a)
    b = a if spec.group_b is None else _ids_only(spec.group_b)
    whole = Block(slice(0, len(a.ids)), a, b, spec.within_one_group)
    counter = object.__new__(Computation)  # units() reads only the block: no engine is built to count
    units = {mode: counter.units(mode, whole) for mode in spec.modes}
    rows = {mode: len(a.ids) * min(spec.k, len(b.ids)) if mode == "top-k" else units[mode] for mode in spec.modes}
    if "transits" in spec.modes:
        rows["transits"] = len(a.ids) * _transit_events_per_chart(spec)
    return JobSize(units, rows)


# The job API estimates a transits job's rows on this much of its range: building the sky track costs ~0.5 s a
# year, so counting on the whole of a long range would outlast the request (gunicorn's 30 s timeout).
TRANSIT_SAMPLE_DAYS = 366


def _transit_events_per_chart(spec: JobSpec) -> int:
    """A transits job's rows per chart, an estimate: the first chart's events (every chart sees the same sky) over
    the first TRANSIT_SAMPLE_DAYS of the range, scaled by the range's length (rounded up); exact for a range no
    longer than that. The run itself counts every event."""
    window = spec.transit_window()
    assert window is not None  # a transits spec has its range (JobSpec checks it)
    start, end = window
    sample_end = min(end, start + timedelta(days=TRANSIT_SAMPLE_DAYS))
    computation = Computation(replace(spec, group_a=spec.group_a[:1], end=sample_end.isoformat()))
    try:
        first, _ = computation.load_groups()
        sampled = computation.transit_events_per_chart(first)
    finally:
        computation.calculator.close()
    return math.ceil(sampled * ((end - start) / (sample_end - start)))


def _check_transit_range(spec: JobSpec) -> None:
    """A transits range past MAX_JOB_TRANSIT_DAYS is refused, naming ``end``."""
    maximum = get_config().max_job_transit_days
    window = spec.transit_window()
    if maximum is None or window is None:
        return
    days = (window[1] - window[0]) / timedelta(days=1)
    if days > maximum:
        message = f"the range is {days:g} days, over MAX_JOB_TRANSIT_DAYS ({maximum}); ask for a shorter range"
        raise JobTooLarge("end", "MAX_JOB_TRANSIT_DAYS", maximum, math.ceil(days), message)


def _check_size(spec: JobSpec, staff: bool) -> None:
    """The job API's size quotas (README, "Settings"); staff may store synastry rows past its threshold."""
    config = get_config()
    _check_transit_range(spec)  # first: it bounds the counting's work too
    size = job_size(spec)
    checks = [
        ("MAX_JOB_PAIRS", config.max_job_pairs, size.pairs, "chart pairs"),
        ("MAX_JOB_ROWS", config.max_job_rows, sum(size.rows.values()), "stored rows"),
    ]
    if not staff and "synastry" in size.units:
        checks.append(
            ("MAX_JOB_SYNASTRY_PAIRS", config.max_job_synastry_pairs, size.units["synastry"], "synastry pairs")
        )
    for limit, maximum, requested, what in checks:
        if maximum is not None and requested > maximum:
            hint = (
                " (synastry stores a row per pair: an operator can write it to a file with compute_aspects "
                "--mode synastry --output FILE)"
                if limit == "MAX_JOB_SYNASTRY_PAIRS"
                else "; select fewer charts, or ask an operator to run compute_aspects"
            )
            message = f"the job has {requested} {what}, over {limit} ({maximum}){hint}"
            raise JobTooLarge("charts", limit, maximum, requested, message)


def _check_active(user: Any) -> None:
    """At most MAX_ACTIVE_JOBS_PER_USER pending or running jobs per user (staff are exempt). The caller holds the
    user's row locked, so two requests at once cannot both take the last place."""
    maximum = get_config().max_active_jobs_per_user
    if maximum is None or user.is_staff:
        return
    active = BatchRun.objects.filter(owner=user, status__in=ACTIVE).count()
    if active >= maximum:
        raise TooManyJobs("MAX_ACTIVE_JOBS_PER_USER", maximum, active)


def _accepting() -> None:
    if not get_config().jobs_enabled:
        raise JobsUnavailable("jobs are switched off on this server (ASPECTS['JOBS_ENABLED'])")
    problem = tasks.celery_problem()
    if problem is not None:
        raise JobsUnavailable(f"jobs cannot reach any worker: {problem}")


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
    transit_start: datetime | None = None,
    transit_end: datetime | None = None,
    bodies: Sequence[str] | None = None,
) -> BatchRun:
    """A distributed run over charts ``user`` can see (default: their own), enqueued for the workers, within the
    job API's quotas (:class:`JobTooLarge`, :class:`TooManyJobs`); :class:`JobsUnavailable` when no worker
    could get it (nothing is stored then). ``transit_start``, ``transit_end`` and ``bodies``: a transits job's
    range and bodies."""
    _accepting()
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
            start=None if transit_start is None else transit_start.isoformat(),
            end=None if transit_end is None else transit_end.isoformat(),
            bodies=None if bodies is None else list(bodies),
        )
        _check_size(spec, user.is_staff)
        with transaction.atomic():
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # see _check_active
            _check_active(user)
            run = create(spec, owner=user, distributed=True)
        start(run)
    except JobTooLarge:
        raise
    except FieldError as exc:  # start's: a chart deleted since the checks
        raise exc.renamed(_API_FIELDS.get(exc.field, exc.field)) from exc
    except BatchError as exc:
        raise FieldError("charts", str(exc)) from exc
    run.refresh_from_db()
    return run


def visible_jobs(user: Any) -> QuerySet[BatchRun]:
    """The runs ``user`` may see: their own distributed runs; staff see every run, compute_aspects' included."""
    if user.is_staff:
        return BatchRun.objects.all()
    if not user.is_authenticated:  # anonymous callers own no runs (and AnonymousUser is no owner to filter by)
        return BatchRun.objects.none()
    return BatchRun.objects.filter(parameters__has_key="distributed", owner=user)


def visible_job(user: Any, pk: str | int | None) -> BatchRun:
    run = visible_jobs(user).filter(pk=pk).first() if pk is not None and str(pk).isdigit() else None
    if run is None:
        raise JobNotFound("id", "no such job")
    return run


def stored_results(run: BatchRun) -> dict[str, Any]:
    """Where ``run``'s results are: ``matches``, ``natal`` and ``transit_events`` (database rows, once the run is
    done) and ``output`` (a file run's path and format, and whether the file is complete; files are never
    served)."""
    spec = run.parameters.get("spec", {})
    modes = run.mode.split(",")
    done = run.status == BatchRun.Status.DONE
    output = spec.get("output", "db")
    in_db = output == "db"
    file = None if in_db else {"path": output, "format": spec.get("file_format"), "complete": done}
    return {
        "matches": done and in_db and "top-k" in modes,
        "natal": done and in_db and "natal" in modes,
        "transit_events": done and in_db and "transits" in modes,
        "output": file,
    }


def group_a(run: BatchRun) -> list[int]:
    """The chart ids of ``run``'s group A, ascending (what its natal results are of)."""
    return list(run.parameters["spec"]["group_a"])


def natal_results(user: Any, run: BatchRun, chart_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The natal results ``run`` stored for ``chart_ids`` (a page of its group A) under its configuration, of
    the charts ``user`` may see."""
    spec = JobSpec.from_parameters(run.parameters["spec"])
    return services.stored_natal_results(user, chart_ids, spec.config().config_hash())


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
        # Charts of another point set than the run's are left out, not an error; say how many.
        "skipped_charts": len(run.parameters.get("skipped", {}).get("charts", [])),
        "backend": run.backend,
        "backend_note": run.backend_note,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
