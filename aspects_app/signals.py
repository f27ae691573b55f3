"""Signal receivers, connected when the app is ready: deleting a chart (through the ORM, the admin or a cascade)
forgets its cached results and takes it out of the loaded match indexes (and, with FRESH_MATCHES_K, repairs the
stored lists that held it); stored harmonic features reach the loaded indexes and the fresh lists; every database
connection times its queries for the monitoring middleware."""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import receiver

from . import fresh_matches, live_index, tasks
from .commit_batches import on_commit_batched
from .features import features_stored
from .models import Chart
from .results import forget_cached
from .timing import time_query


@receiver(post_delete, sender=Chart)
def forget_cached_results(sender: type[Chart], instance: Chart, **kwargs: Any) -> None:
    # Persisted rows go by cascade; cached ones are keyed by the chart's id.
    forget_cached(instance.pk)


@receiver(features_stored)
def follow_new_features(sender: Any, chart_ids: list[int], **kwargs: Any) -> None:
    # Sent on commit: this process's loaded indexes take the charts, and the stored lists follow (or a task does).
    live_index.apply_writes(chart_ids)
    tasks.schedule_refresh(list(chart_ids), [])


@receiver(pre_delete, sender=Chart)
def repair_lists_of_deleted(sender: type[Chart], instance: Chart, **kwargs: Any) -> None:
    # Before the cascade takes its Match rows: which lists held the chart, repaired once the delete commits.
    chart_id = int(instance.pk)
    holders = fresh_matches.holders_of(chart_id) if fresh_matches.enabled_k() else []

    # The delete has committed by then: a failure there is logged. The lists are repaired once for all the charts
    # a transaction deletes (the admin's bulk delete).
    transaction.on_commit(lambda: live_index.forget_chart(chart_id), robust=True)
    on_commit_batched("fresh_matches_repair", holders, _repair_lists)


def _repair_lists(holders: list[int]) -> None:
    tasks.schedule_refresh([], holders)


@receiver(connection_created)
def time_queries(sender: Any, connection: Any, **kwargs: Any) -> None:
    # On every connection, in whatever thread (async views run queries in worker threads); it only counts while
    # a request's timings are open in the context.
    if time_query not in connection.execute_wrappers:
        connection.execute_wrappers.append(time_query)


def time_open_connections() -> None:
    """Connections opened before the app was ready (a test runner's, a migrate's) get the timer too."""
    for connection in connections.all(initialized_only=True):
        time_queries(sender=None, connection=connection)
