"""Result caching in three levels behind one small interface.

1. an in-process LRU, bounded by entries and bytes (no I/O at all);
2. the Django cache alias ``ASPECTS["CACHE_ALIAS"]`` (django-redis run as an LRU in production, LocMemCache as
   the embedded default);
3. the persisted ``AspectResult`` rows (read and written by the services).

Keys are content-addressed: kind, configuration hash, engine version and the charts' positions hashes, so an
edited chart can never be served a stale result. Values are compact bytes (``AspectHits.to_bytes``).

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import metrics
from .conf import get_config
from .timing import timed

logger = logging.getLogger("aspects_app.cache")

KEY_PREFIX = "aspects:r1"


def result_key(kind: str, config_hash: str, engine_version: str, *positions_hashes: str) -> str:
    return ":".join([KEY_PREFIX, kind, config_hash, engine_version, *positions_hashes])


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
    """A thread-safe LRU of bytes values, bounded by entry count and total bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = LevelStats()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return value

    def set(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return  # never worth evicting everything else for
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = value
            self._bytes += len(value)
            self.stats.sets += 1
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= len(evicted)
                self.stats.evictions += 1

    def delete_matching(self, fragment: str) -> int:
        with self._lock:
            doomed = [key for key in self._data if fragment in key]
            for key in doomed:
                self._bytes -= len(self._data.pop(key))
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def summary(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._data), "bytes": self._bytes, **self.stats.as_dict()}


@dataclass
class SharedLevel:
    """The Django cache alias, with failures absorbed: a failing alias is skipped for a while, then retried."""

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

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        if not keys or not self.available:
            self.stats.misses += len(keys)
            return {}
        try:
            with timed("cache"):
                found: dict[str, bytes] = caches[self.alias].get_many(keys)
        except Exception as exc:  # any backend error: the request must not fail for the cache's sake
            self._failed("get_many", exc)
            self.stats.misses += len(keys)
            return {}
        self.stats.hits += len(found)
        self.stats.misses += len(keys) - len(found)
        return found

    def set_many(self, values: dict[str, bytes]) -> None:
        if not values or not self.available:
            return
        try:
            with timed("cache"):
                caches[self.alias].set_many(values, timeout=self.timeout)
        except Exception as exc:
            self._failed("set_many", exc)
            return
        self.stats.sets += len(values)

    def delete_matching(self, fragment: str) -> int:
        backend = caches[self.alias]
        if not self.available or not hasattr(backend, "delete_pattern"):
            return 0
        try:
            return int(backend.delete_pattern(f"*{fragment}*"))
        except Exception as exc:
            self._failed("delete_pattern", exc)
            return 0

    def clear(self) -> None:
        try:
            backend = caches[self.alias]
            if hasattr(backend, "delete_pattern"):
                backend.delete_pattern(f"*{KEY_PREFIX}*")
            else:
                backend.clear()
        except Exception as exc:
            self._failed("clear", exc)


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

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[bytes, str]]:
        """Found values with the level that had them ("local" or "shared"); shared hits refill the local LRU."""
        found: dict[str, tuple[bytes, str]] = {}
        remaining = []
        for key in keys:
            value = self.local.get(key)
            if value is None:
                remaining.append(key)
            else:
                found[key] = (value, "local")
        for key, value in self.shared.get_many(remaining).items():
            self.local.set(key, value)
            found[key] = (value, "shared")
        return found

    def get(self, key: str) -> tuple[bytes, str] | None:
        return self.get_many([key]).get(key)

    def set_many(self, values: dict[str, bytes]) -> None:
        for key, value in values.items():
            self.local.set(key, value)
        self.shared.set_many(values)

    def set(self, key: str, value: bytes) -> None:
        self.set_many({key: value})

    def get_or_compute(self, key: str, compute: Callable[[], bytes]) -> tuple[bytes, str]:
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
    def _single_flight(self, key: str) -> Iterator[bool]:
        """Yields True to the caller that computes, False to one that waited for it (and should look again)."""
        with self._flights_lock:
            event = self._flights.get(key)
            leader = event is None
            if leader:
                event = self._flights[key] = threading.Event()
        assert event is not None
        if not leader:
            event.wait(self.lock_seconds)
            yield False
            return
        try:
            with self._process_lock(key) as got_lock:
                if not got_lock:
                    self._wait_for_other_process(key)
                    yield self.get(key) is None
                    return
                yield True
        finally:
            with self._flights_lock:
                self._flights.pop(key, None)
            event.set()

    @contextmanager
    def _process_lock(self, key: str) -> Iterator[bool]:
        """A lock in the lock alias; True when taken (or when the alias fails: computing twice is harmless)."""
        lock_key = f"{key}:lock"
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

    def _wait_for_other_process(self, key: str) -> None:
        deadline = time.monotonic() + self.lock_seconds
        pause = 0.005
        while time.monotonic() < deadline:
            if self.get(key) is not None:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def invalidate(self, positions_hash: str) -> int:
        """Forget every cached result that involves these positions (an edited or deleted chart)."""
        return self.local.delete_matching(positions_hash) + self.shared.delete_matching(positions_hash)

    def clear(self) -> None:
        self.local.clear()
        self.shared.clear()

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
