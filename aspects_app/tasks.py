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


# One quick retry of a publish (a dropped connection), not Celery's default three with back-off.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def publish_timeout() -> float:
    """Seconds a connection to the broker, or one command on it, may take while enqueueing: Celery's
    ``broker_connection_timeout`` (CELERY_BROKER_CONNECTION_TIMEOUT; 2 s in the recommended settings)."""
    return float(compute_block.app.conf.broker_connection_timeout or 4.0)


def enqueue(run: BatchRun, queue: str) -> int:
    """Send every block of ``run`` that has not completed to ``queue``; returns how many were sent.

    Bounded: a broker that is down refuses at once, and one that accepts connections but never answers (stopped,
    or its host gone) times out after :func:`publish_timeout` instead of blocking the request for ever (kombu's
    Redis transport waits without limit by default). Either raises kombu's ``OperationalError``."""
    todo = distributed.plan(run, queue)
    if not todo:
        distributed.finish_if_complete(run.pk)
        return 0
    app = compute_block.app
    timeout = publish_timeout()
    # The host's own transport options win; the timeouts are kombu's Redis transport's (others ignore them).
    bounded = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    options = {key: value for key, value in bounded.items() if key not in app.conf.broker_transport_options}
    with app.connection_for_write(connect_timeout=timeout, transport_options=options) as connection:
        producer = app.amqp.Producer(connection, auto_declare=False)  # what apply_async(connection=) makes
        for block in todo:
            compute_block.apply_async(
                (run.pk, block.mode, block.start, block.stop),
                queue=queue,
                producer=producer,
                retry=True,
                retry_policy=PUBLISH_RETRY,
            )
    return len(todo)
