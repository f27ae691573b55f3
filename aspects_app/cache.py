"""Result caching in three levels behind one small interface.

1. an in-process LRU, bounded by entries and bytes (no I/O at all);
2. the Django cache alias ``ASPECTS["CACHE_ALIAS"]`` (django-redis run as an LRU in production, LocMemCache as
   the embedded default);
3. the persisted ``AspectResult`` rows (read and written by the services), one per chart (pair).

Keys are scoped per chart: kind, configuration hash, engine version and, for each chart, its id and positions
hash. The positions hash keeps an edited chart from ever being served a stale result; the id keeps two charts
with the same positions apart, so nobody learns from a hit (or its speed) that another user computed the same
birth data (README, "Security"). Values are compact bytes (``AspectHits.to_bytes``).

Forgetting never scans keys. In the shared level a key also carries generation tokens, random and stored in
the same alias: one for everything and one per chart. Forgetting a chart (or everything) deletes its token, so
its old entries become unreachable and age out of the LRU; an evicted token forgets the same way, which is
safe. The in-process level indexes its entries by chart, so forgetting one costs that chart's entries only.

When the shared cache fails (Redis down, slow, full), requests go on without it: the error is logged and
counted, the level is skipped for ``CACHE_RETRY_SECONDS``, then tried again, so it resumes by itself. Locks for
single-flight live in ``ASPECTS["LOCK_ALIAS"]``, which must not evict (nor should DRF's throttle counters).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import metrics
from .conf import get_config
from .timing import timed

logger = logging.getLogger("aspects_app.cache")

KEY_PREFIX = "aspects:r2"
# Generation tokens: one for every result (``clear``), one per chart (forgetting a chart).
GENERATION_PREFIX = f"{KEY_PREFIX}:gen"
_EVERYTHING = f"{GENERATION_PREFIX}:all"


@dataclass(frozen=True)
class ResultKey:
    """A result's address: ``name`` in the in-process level; in the shared level ``name`` plus the current
    generation tokens of everything and of each of ``charts``."""

    name: str
    charts: tuple[int, ...] = ()


Key = ResultKey | str  # a plain string: a result that belongs to no chart
AnyKey = TypeVar("AnyKey", ResultKey, str, Key)


def result_key(kind: str, config_hash: str, engine_version: str, *charts: tuple[int, str]) -> ResultKey:
    """The key of a result over ``charts``, each given as (id, positions hash), in the result's order."""
    parts = [f"{chart_id}.{positions}" for chart_id, positions in charts]
    return ResultKey(":".join([KEY_PREFIX, kind, config_hash, engine_version, *parts]), _unique(charts))


def _unique(charts: Iterable[tuple[int, str]]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(int(chart_id) for chart_id, _ in charts))


def _as_key(key: Key) -> ResultKey:
    return key if isinstance(key, ResultKey) else ResultKey(key)


def chart_generation_key(chart_id: int) -> str:
    return f"{GENERATION_PREFIX}:chart:{chart_id}"


@dataclass
class LevelStats:
    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class LocalLRU:
    """A thread-safe LRU of bytes values, bounded by entry count and total bytes, with its keys indexed by the
    charts they belong to (forgetting a chart touches only its own entries)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[bytes, tuple[int, ...]]] = OrderedDict()
        self._by_chart: dict[int, set[str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = LevelStats()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return entry[0]

    def set(self, key: str, value: bytes, charts: tuple[int, ...] = ()) -> None:
        if len(value) > self.max_bytes:
            return  # never worth evicting everything else for
        with self._lock:
            self._pop(key)
            self._data[key] = (value, charts)
            self._bytes += len(value)
            for chart_id in charts:
                self._by_chart.setdefault(chart_id, set()).add(key)
            self.stats.sets += 1
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                self._pop(next(iter(self._data)))
                self.stats.evictions += 1

    def _pop(self, key: str) -> bool:
        """Remove ``key`` and its index entries (the lock is held)."""
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        value, charts = entry
        self._bytes -= len(value)
        for chart_id in charts:
            keys = self._by_chart.get(chart_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_chart[chart_id]
        return True

    def forget_charts(self, chart_ids: Iterable[int]) -> int:
        """Drop every entry that involves one of ``chart_ids``; returns how many."""
        with self._lock:
            doomed = {key for chart_id in chart_ids for key in self._by_chart.get(int(chart_id), ())}
            return sum(self._pop(key) for key in doomed)

    def entries_of(self, chart_id: int) -> int:
        with self._lock:
            return len(self._by_chart.get(chart_id, ()))

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._by_chart.clear()
            self._bytes = 0

    def summary(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._data), "bytes": self._bytes, **self.stats.as_dict()}


@dataclass
class SharedLevel:
    """The Django cache alias, with failures absorbed: a failing alias is skipped for a while, then retried.
    Entries are stored under their key's name plus the current generation tokens (see the module's doc)."""

    alias: str
    timeout: float | None
    retry_seconds: float
    stats: LevelStats = field(default_factory=LevelStats)
    _down_until: float = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, action: str, exc: Exception) -> None:
        self.stats.errors += 1
        metrics.CACHE_ERRORS.inc()
        self._down_until = time.monotonic() + self.retry_seconds
        logger.warning(
            "cache alias %r failed on %s (%s); skipping it for %.1f s", self.alias, action, exc, self.retry_seconds
        )

    def _generations(self, chart_ids: Iterable[int]) -> dict[str, str]:
        """The current token of everything and of each chart, creating the missing ones (``add``: of two
        processes creating the same token at once, one wins and both use it)."""
        backend = caches[self.alias]
        names = [_EVERYTHING, *dict.fromkeys(chart_generation_key(c) for c in chart_ids)]
        tokens: dict[str, str] = backend.get_many(names)
        for name in names:
            if name not in tokens:
                token = uuid.uuid4().hex[:16]
                if not backend.add(name, token, timeout=None):
                    # Taken meanwhile by another process; if it was evicted again already, ours is as good.
                    token = backend.get(name) or token
                tokens[name] = token
        return tokens

    def addresses(self, keys: Iterable[ResultKey]) -> dict[ResultKey, str]:
        """Where each key's entry is stored now (raises what the backend raises)."""
        keys = list(keys)
        tokens = self._generations(chart_id for key in keys for chart_id in key.charts)
        everything = tokens[_EVERYTHING]
        return {
            key: ":".join([key.name, everything, *(tokens[chart_generation_key(c)] for c in key.charts)])
            for key in keys
        }

    def get_many(self, keys: list[ResultKey]) -> dict[ResultKey, bytes]:
        if not keys or not self.available:
            self.stats.misses += len(keys)
            return {}
        try:
            with timed("cache"):
                addresses = self.addresses(keys)
                stored: dict[str, bytes] = caches[self.alias].get_many(list(addresses.values()))
        except Exception as exc:  # any backend error: the request must not fail for the cache's sake
            self._failed("get_many", exc)
            self.stats.misses += len(keys)
            return {}
        found = {key: stored[address] for key, address in addresses.items() if address in stored}
        self.stats.hits += len(found)
        self.stats.misses += len(keys) - len(found)
        return found

    def set_many(self, values: dict[ResultKey, bytes]) -> None:
        if not values or not self.available:
            return
        try:
            with timed("cache"):
                addresses = self.addresses(values)
                caches[self.alias].set_many(
                    {addresses[key]: value for key, value in values.items()}, timeout=self.timeout
                )
        except Exception as exc:
            self._failed("set_many", exc)
            return
        self.stats.sets += len(values)

    def forget(self, generation_keys: list[str]) -> bool:
        """Drop these generation tokens: every entry stored under them becomes unreachable (one round trip, no
        scan). False when the alias failed (the entries stay reachable until evicted)."""
        try:
            caches[self.alias].delete_many(generation_keys)
        except Exception as exc:
            self._failed("delete_many", exc)
            return False
        return True


class ResultCache:
    """Levels 1 and 2, plus single-flight computation of a missing result."""

    def __init__(self) -> None:
        config = get_config()
        self.local = LocalLRU(config.local_cache_entries, int(config.local_cache_mb * 2**20))
        self.shared = SharedLevel(config.cache_alias, config.cache_timeout, config.cache_retry_seconds)
        self.lock_alias = config.lock_alias
        self.lock_seconds = config.lock_seconds
        self._flights: dict[str, threading.Event] = {}
        self._flights_lock = threading.Lock()

    def get_many(self, keys: Iterable[Key]) -> dict[Key, tuple[bytes, str]]:
        """Found values with the level that had them ("local" or "shared"); shared hits refill the local LRU."""
        found: dict[Key, tuple[bytes, str]] = {}
        remaining: dict[ResultKey, Key] = {}
        for key in keys:
            scoped = _as_key(key)
            value = self.local.get(scoped.name)
            if value is None:
                remaining[scoped] = key
            else:
                found[key] = (value, "local")
        for scoped, value in self.shared.get_many(list(remaining)).items():
            self.local.set(scoped.name, value, scoped.charts)
            found[remaining[scoped]] = (value, "shared")
        return found

    def get(self, key: Key) -> tuple[bytes, str] | None:
        return self.get_many([key]).get(key)

    def set_many(self, values: Mapping[AnyKey, bytes]) -> None:
        normalized = {_as_key(key): value for key, value in values.items()}
        for key, value in normalized.items():
            self.local.set(key.name, value, key.charts)
        self.shared.set_many(normalized)

    def set(self, key: Key, value: bytes) -> None:
        self.set_many({key: value})

    def get_or_compute(self, key: Key, compute: Callable[[], bytes]) -> tuple[bytes, str]:
        """The cached value, or ``compute()`` run once however many callers miss the same key at the same time
        (threads of this process wait on an event; other processes on a lock in the lock alias)."""
        found = self.get(key)
        if found is not None:
            return found
        with self._single_flight(key) as leader:
            if not leader:
                found = self.get(key)
                if found is not None:
                    return found
            value = compute()
            self.set(key, value)
            return value, "computed"

    @contextmanager
    def _single_flight(self, key: Key) -> Iterator[bool]:
        """Yields True to the caller that computes, False to one that waited for it (and should look again)."""
        name = _as_key(key).name
        with self._flights_lock:
            event = self._flights.get(name)
            leader = event is None
            if leader:
                event = self._flights[name] = threading.Event()
        assert event is not None
        if not leader:
            event.wait(self.lock_seconds)
            yield False
            return
        try:
            with self._process_lock(name) as got_lock:
                if not got_lock:
                    self._wait_for_other_process(key)
                    yield self.get(key) is None
                    return
                yield True
        finally:
            with self._flights_lock:
                self._flights.pop(name, None)
            event.set()

    @contextmanager
    def _process_lock(self, name: str) -> Iterator[bool]:
        """A lock in the lock alias; True when taken (or when the alias fails: computing twice is harmless)."""
        lock_key = f"{name}:lock"
        token = uuid.uuid4().hex
        try:
            taken = bool(caches[self.lock_alias].add(lock_key, token, timeout=self.lock_seconds))
        except Exception as exc:
            logger.warning("lock alias %r failed (%s); computing without a lock", self.lock_alias, exc)
            yield True
            return
        try:
            yield taken
        finally:
            if taken:
                try:
                    if caches[self.lock_alias].get(lock_key) == token:
                        caches[self.lock_alias].delete(lock_key)
                except Exception as exc:
                    logger.warning(
                        "lock alias %r failed on release (%s); the lock expires by itself", self.lock_alias, exc
                    )

    def _wait_for_other_process(self, key: Key) -> None:
        deadline = time.monotonic() + self.lock_seconds
        pause = 0.005
        while time.monotonic() < deadline:
            if self.get(key) is not None:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def forget_charts(self, chart_ids: Iterable[int]) -> int:
        """Forget every cached result that involves these charts (edited, deleted or forgotten by an operator):
        their entries in this process's LRU (returns how many) and, in every process, their shared entries."""
        chart_ids = [int(c) for c in chart_ids]
        self.shared.forget([chart_generation_key(c) for c in chart_ids])
        return self.local.forget_charts(chart_ids)

    def clear(self) -> None:
        """Forget every cached result: this process's LRU, and the shared entries of every process."""
        self.local.clear()
        self.shared.forget([_EVERYTHING])

    def stats(self) -> dict[str, Any]:
        return {
            "local": self.local.summary(),
            "shared": {"alias": self.shared.alias, "available": self.shared.available, **self.shared.stats.as_dict()},
        }


_cache: ResultCache | None = None
_cache_lock = threading.Lock()


def result_cache() -> ResultCache:
    """The process's ResultCache (rebuilt when ``settings.ASPECTS`` changes)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ResultCache()
        return _cache


def reset_result_cache() -> None:
    global _cache
    with _cache_lock:
        _cache = None


@receiver(setting_changed)
def _reset_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    # The cache is built from ASPECTS and reads its aliases from CACHES: a test's override_settings of either must
    # reach the next request.
    if setting in ("ASPECTS", "CACHES"):
        reset_result_cache()
