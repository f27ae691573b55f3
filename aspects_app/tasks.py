"""Celery tasks and the enqueue loop: one task per row block of a distributed batch run (see
:mod:`aspects_app.distributed`)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import distributed
from .models import BatchRun


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="aspects_app.compute_block")
def compute_block(self: Any, run_id: int, mode: str, start: int, stop: int) -> str:
    """Idempotent: a block delivered again (worker lost, duplicate message) writes nothing twice."""
    try:
        return distributed.run_block(run_id, mode, start, stop)
    except Exception as exc:
        distributed.fail(run_id, f"block {mode} [{start}, {stop}): {exc.__class__.__name__}: {exc}")
        raise


def enqueue(run: BatchRun, queue: str) -> int:
    """Send every block of ``run`` that has not completed to ``queue``; returns how many were sent."""
    todo = distributed.plan(run, queue)
    for block in todo:
        compute_block.apply_async((run.pk, block.mode, block.start, block.stop), queue=queue)
    if not todo:
        distributed.finish_if_complete(run.pk)
    return len(todo)
