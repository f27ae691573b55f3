"""The one place that writes results: aspect results (upserted, stamped with the positions they came from),
match lists (replaced whole), transit events (replaced per charts and range) and their invalidation when a chart
changes.

The request path (services), the batch writers and the distributed workers all store through here, so a row
looks the same whoever computed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.db.models import Field

from .cache import result_cache
from .engine import ENGINE_VERSION
from .models import AspectResult, Chart, Match, TransitEvent, id_batches, positions_hash

# What an upsert may change in an existing row; the rest is the row's identity.
_RESULT_KEY = ["kind", "chart_a", "chart_b", "config_hash", "engine_version"]
_RESULT_UPDATES = ["positions_hash", "payload", "hit_count", "computed_at"]


def combined_positions_hash(*hashes: str) -> str:
    """What a result over several charts was computed from."""
    return positions_hash(list(hashes), np.empty(0), None)


def stored_payload(kind: str, chart_a: Chart, chart_b: Chart, config_hash: str) -> bytes | None:
    """A persisted result's payload, if one was computed from these charts' current positions."""
    row = (
        AspectResult.objects.filter(
            kind=kind,
            chart_a=chart_a,
            chart_b=chart_b,
            config_hash=config_hash,
            engine_version=ENGINE_VERSION,
            positions_hash=combined_positions_hash(chart_a.positions_hash, chart_b.positions_hash),
        )
        .values_list("payload", flat=True)
        .first()
    )
    return None if row is None else bytes(row)


def result_row(
    kind: str,
    chart_a_id: int,
    chart_b_id: int,
    config_hash: str,
    payload: bytes,
    hit_count: int,
    positions_hash: str = "",
    duration_ms: float = 0.0,
) -> AspectResult:
    """An unsaved result of this engine version, for :func:`save_results`."""
    return AspectResult(
        kind=kind,
        chart_a_id=chart_a_id,
        chart_b_id=chart_b_id,
        config_hash=config_hash,
        engine_version=ENGINE_VERSION,
        positions_hash=positions_hash,
        payload=payload,
        hit_count=hit_count,
        duration_ms=duration_ms,
    )


def save_results(rows: Sequence[AspectResult], timed: bool = False) -> int:
    """Upsert result rows (one per kind, charts, configuration and engine version). Rows whose positions hash is
    not set are stamped with their charts' current ones first. ``timed`` rows carry their own compute time;
    others (computed in bulk) leave a stored one as it was."""
    unstamped = [row for row in rows if not row.positions_hash]
    if unstamped:
        _stamp_positions(unstamped)
    AspectResult.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=_RESULT_KEY,
        update_fields=[*_RESULT_UPDATES, "duration_ms"] if timed else _RESULT_UPDATES,
        batch_size=500,
    )
    return len(rows)


def _stamp_positions(rows: Sequence[AspectResult]) -> None:
    ids = sorted({r.chart_a_id for r in rows} | {r.chart_b_id for r in rows})
    hashes: dict[int, str] = {}
    for batch in id_batches(ids):
        hashes.update(Chart.objects.filter(pk__in=batch).values_list("pk", "positions_hash"))
    for row in rows:
        row.positions_hash = combined_positions_hash(hashes[row.chart_a_id], hashes[row.chart_b_id])


def replace_matches(chart_ids: Sequence[int], method: str, config_hash: str, matches: Sequence[Match]) -> int:
    """The charts' match lists for (method, configuration), replaced whole: a re-run with a smaller k leaves no
    stale ranks behind."""
    Match.objects.filter(chart_id__in=chart_ids, method=method, config_hash=config_hash).delete()
    Match.objects.bulk_create(matches, batch_size=2000)
    return len(matches)


# A stored transit event's columns, in the order :func:`replace_transit_events` takes its rows.
TRANSIT_EVENT_COLUMNS = ("chart", "point", "body", "aspect", "exact", "starts", "ends", "retrograde")
_TRANSIT_DATETIMES = frozenset({"exact", "starts", "ends"})


def replace_transit_events(
    chart_ids: Sequence[int],
    config_hash: str,
    start: datetime,
    end: datetime,
    rows: Sequence[Sequence[Any]],
    run_id: int | None = None,
) -> int:
    """The charts' stored transit events under ``config_hash`` whose exact moment lies in [``start``, ``end``),
    replaced by ``rows`` (tuples in :data:`TRANSIT_EVENT_COLUMNS` order; moments aware, or None) in one
    transaction: a block written again (a resumed run, a task delivered twice, a GPU run resumed on the CPU whose
    moments differ by nanoseconds) leaves one copy, and events of other ranges stay.

    Rows go in as multi-row INSERTs of values the database's own adapters prepared: ``bulk_create`` compiles
    every field of every row in Python, ~10 µs a row, which made it 97% of a transits run's time."""
    with transaction.atomic():
        for batch in id_batches(list(chart_ids)):
            TransitEvent.objects.filter(
                chart_id__in=batch, config_hash=config_hash, exact__gte=start, exact__lt=end
            ).delete()
        _insert_transit_events(rows, config_hash, run_id)
    return len(rows)


def _insert_transit_events(rows: Sequence[Sequence[Any]], config_hash: str, run_id: int | None) -> None:
    connection = connections[router.db_for_write(TransitEvent)]
    ops = connection.ops
    names = [*TRANSIT_EVENT_COLUMNS, "config_hash", "run"]
    fields = [field for name in names if isinstance(field := TransitEvent._meta.get_field(name), Field)]
    adapt = [ops.adapt_datetimefield_value if name in _TRANSIT_DATETIMES else (lambda value: value) for name in names]
    table = ops.quote_name(TransitEvent._meta.db_table)
    columns = ", ".join(ops.quote_name(str(field.get_attname_column()[1])) for field in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    size = max(1, min(ops.bulk_batch_size(fields, list(rows)), 1000))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY of text lines: several times the rows per second of INSERTs (or of psycopg's write_row, which
            # adapts value by value). Point names are the caller's text: escaped, or a tab, newline or backslash
            # in one would split its row and could write another chart's.
            tail = f"\t{_copy_text(config_hash)}\t{NULL if run_id is None else run_id}\n"
            text = "".join(
                f"{chart}\t{_copy_text(point)}\t{_copy_text(body)}\t{_copy_text(aspect)}\t{_copy_moment(exact)}\t"
                f"{_copy_moment(starts)}\t{_copy_moment(ends)}\t{'t' if retrograde else 'f'}{tail}"
                for chart, point, body, aspect, exact, starts, ends, retrograde in rows
            )
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                copy.write(text)
            return
        for first in range(0, len(rows), size):
            chunk = rows[first : first + size]
            values = [
                convert(value)
                for row in chunk
                for convert, value in zip(adapt, (*row, config_hash, run_id), strict=True)
            ]
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(chunk))}", values)


NULL = "\\N"  # COPY's text format
# The characters COPY's text format reads specially, as its escapes.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def _copy_moment(moment: datetime | None) -> str:
    return NULL if moment is None else moment.isoformat()


def invalidate_results(chart: Chart) -> int:
    """Delete every persisted result that involves ``chart`` (its stored transit events included: they were
    found from its old positions), and once the transaction commits, forget its cached ones."""
    deleted, _ = AspectResult.objects.filter(chart_a=chart).delete()
    more, _ = AspectResult.objects.filter(chart_b=chart).delete()
    transits, _ = TransitEvent.objects.filter(chart=chart).delete()
    forget_cached(chart.pk)
    return deleted + more + transits


def forget_cached(chart_id: int) -> None:
    """Forget the chart's cached results after the current transaction commits (a rollback keeps them valid).
    Cached keys hold the chart's id and positions hash, so this costs one shared-cache round trip and the chart's
    own in-process entries, never a scan of the keyspace."""
    chart_id = int(chart_id)  # the id now: a deleted instance loses its pk before the commit
    transaction.on_commit(lambda: result_cache().forget_charts([chart_id]))
