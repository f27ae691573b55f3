"""Work that follows a transaction's writes, done once per transaction for all of them.

Django's ``on_commit`` runs one callback per registration: charts saved one by one in one transaction (the
admin's "recompute positions") would each start the follower's work after the commit, and a follower that loads a
whole population (the fresh match lists) does it N times. Here the ids are gathered while the transaction is open,
and the first of its callbacks to run hands all of them to the follower at once; the others find nothing left.

Ids registered inside a savepoint that was rolled back stay gathered and are handed over with the next commit's:
followers take ids as "look at these charts again", for which a chart that no longer changed (or no longer
exists) costs a little work and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from weakref import WeakKeyDictionary

from django.db import transaction

# Per connection (each thread or async context has its own), per follower: the ids gathered so far.
_gathered: WeakKeyDictionary[Any, dict[str, set[int]]] = WeakKeyDictionary()
_lock = threading.Lock()


def on_commit_batched(key: str, ids: Iterable[int], follow: Callable[[list[int]], None]) -> None:
    """Have ``follow`` called with ``ids`` (ascending, with every other id registered under ``key`` in the same
    transaction) once the transaction commits; at once outside a transaction. ``follow``'s failure is logged, not
    raised: the write has committed by then (``on_commit(robust=True)``)."""
    connection = transaction.get_connection()
    with _lock:
        _gathered.setdefault(connection, {}).setdefault(key, set()).update(int(pk) for pk in ids)

    def flush() -> None:
        with _lock:
            taken = _gathered.get(connection, {}).pop(key, set())
        if taken:
            follow(sorted(taken))

    transaction.on_commit(flush, robust=True)
