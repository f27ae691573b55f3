"""Time spent per category (engine, cache, db) within the current request, through a context variable.

The monitoring middleware opens a :class:`RequestTimings` per request; the services and the cache wrap their
work in :func:`timed`. Outside a request (batch command, shell) ``timed`` only runs the block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestTimings:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, category: str, seconds: float) -> None:
        self.seconds[category] = self.seconds.get(category, 0.0) + seconds


current: ContextVar[RequestTimings | None] = ContextVar("aspects_request_timings", default=None)


@contextmanager
def timed(category: str) -> Iterator[None]:
    timings = current.get()
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings.add(category, time.perf_counter() - start)


def time_query(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    """A database execute wrapper that counts query time as "db" (installed on connections by signals.py)."""
    with timed("db"):
        return execute(sql, params, many, context)
