"""Celery tasks and the enqueue loop: one task per row block of a distributed batch run (see
:mod:`aspects_app.distributed`)."""

from __future__ import annotations

from typing import Any

from celery import Celery, shared_task

from . import distributed, fresh_matches
from .conf import get_config
from .models import BatchRun


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="aspects_app.compute_block")
def compute_block(self: Any, run_id: int, mode: str, start: int, stop: int) -> str:
    """Idempotent: a block delivered again (worker lost, duplicate message) writes nothing twice."""
    try:
        return distributed.run_block(run_id, mode, start, stop)
    except Exception as exc:
        distributed.fail(run_id, f"block {mode} [{start}, {stop}): {exc.__class__.__name__}: {exc}")
        raise


@shared_task(acks_late=True, name="aspects_app.refresh_matches")
def refresh_matches(changed: list[int], repair: list[int], k: int) -> int:
    """Fresh stored harmonic lists of length ``k`` after charts were created, moved (``changed``) or deleted
    (``repair``: the lists that held them). Idempotent: a task delivered twice writes the same lists."""
    return fresh_matches.refresh(changed, repair, k)


def schedule_refresh(changed: list[int], repair: list[int]) -> None:
    """:func:`refresh_matches` as a task on CPU_QUEUE when ``FRESH_MATCHES_CELERY``, else now, inline."""
    settings = get_config()
    if settings.fresh_matches_k is None or not (changed or repair):
        return
    if settings.fresh_matches_celery:
        arguments = (changed, repair, settings.fresh_matches_k)
        refresh_matches.apply_async(arguments, queue=settings.cpu_queue, retry=True, retry_policy=PUBLISH_RETRY)
    else:
        fresh_matches.refresh(changed, repair)


def celery_app() -> Celery:
    """The Celery app the tasks are sent with: the host's (Celery's Django pattern loads it with the project),
    else Celery's fallback app."""
    app: Celery = compute_block.app
    return app


def celery_problem() -> str | None:
    """Why a run's blocks could not reach any worker, or None: no Celery app of the host's (Celery's fallback
    ignores Django's CELERY_* settings and sends to amqp://localhost, where no worker listens), or an app
    without a broker URL (the same default)."""
    app = celery_app()
    # Celery makes its fallback as Celery("default", set_as_current=False) when no app was created.
    if app.main == "default" and not getattr(app, "set_as_current", True):
        return (
            "no Celery app is loaded: create one configured from Django's settings and load it with the project "
            "(Celery's Django guide: celery.py, and `from .celery import app as celery_app` in the project's "
            "__init__.py)"
        )
    if not app.conf.broker_url:
        return f"the Celery app {app.main!r} has no broker: set CELERY_BROKER_URL (e.g. redis://host:6379/2)"
    return None


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
