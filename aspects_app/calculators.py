"""The calculators of this process: the warm ones that requests share, bounded by bytes, and the private ones a
batch run gets. Every calculator is configured here, from the settings unless told otherwise."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import get_config
from .engine import AspectConfig, MemoryOptimizedVectorizedCalculator
from .engine.harmonic import HarmonicConfig


def _build_calculator(
    config: AspectConfig,
    backend: str,
    working_memory_mb: float,
    device_memory_limit_mb: float | None,
    chunk_size: int | None,
) -> MemoryOptimizedVectorizedCalculator:
    return MemoryOptimizedVectorizedCalculator(
        config=config,
        backend=backend,
        working_memory_mb=working_memory_mb,
        chunk_size=chunk_size,
        device_memory_limit_mb=device_memory_limit_mb,
        harmonic=harmonic_config(),
    )


def harmonic_config() -> HarmonicConfig:
    """The ``HARMONIC`` setting as the engine's configuration (the defaults when None); a bad value is
    ImproperlyConfigured naming the key."""
    given: dict[str, Any] = get_config().harmonic or {}
    unknown = sorted(set(given) - {"harmonics", "point_weights", "pair_emphasis", "dtype"})
    if unknown:
        raise ImproperlyConfigured(f"ASPECTS['HARMONIC']: unknown key(s) {', '.join(unknown)}")
    fields = dict(given)
    try:
        if "harmonics" in fields:
            fields["harmonics"] = {int(h): float(c) for h, c in dict(fields["harmonics"]).items()}
        if "pair_emphasis" in fields:  # JSON-friendly triples [p, q, e] (dict keys cannot be pairs in settings files)
            fields["pair_emphasis"] = {(str(p), str(q)): float(e) for p, q, e in fields["pair_emphasis"]}
        return HarmonicConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"ASPECTS['HARMONIC']: {exc}") from exc


MIB = 1 << 20
# Calculators that requests share, at most this many: each keeps its kernel tables (KiB for ten points, about
# 3 MiB for 255) and a pool of scratch buffers, which is what the byte budget below bounds.
MAX_SHARED_CALCULATORS = 32
# The scratch buffers kept by all of them together, in units of the settings' WORKING_MEMORY_MB: one request fills
# a pool up to about its budget (258 MB for scores of 999 charts of 255 points), so the two most recent
# configurations stay warm and a third empties the pool of the least recently used.
SHARED_POOL_BUDGET_FACTOR = 2

CalculatorKey = tuple[AspectConfig, str, float, float | None, int | None]


class SharedCalculators:
    """The calculators that requests share, one per configuration, backend, budget, device cap and chunk size,
    kept warm between requests: their kernel tables, and their pools of scratch buffers within a byte budget for
    the process (:meth:`trim`, after every request-time engine call), the most recently used first. A count alone
    bounded nothing: 32 configurations each kept a budget's worth of buffers (a worker grew by 2.5 GB on 12
    ``scores`` requests with slightly different orbs, and never gave it back)."""

    def __init__(self, maxsize: int = MAX_SHARED_CALCULATORS) -> None:
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._calculators: OrderedDict[CalculatorKey, MemoryOptimizedVectorizedCalculator] = OrderedDict()

    def get(self, key: CalculatorKey) -> MemoryOptimizedVectorizedCalculator:
        with self._lock:
            found = self._calculators.get(key)
            if found is not None:
                self._calculators.move_to_end(key)
                return found
        built = _build_calculator(*key)  # outside the lock: the first one may import a GPU library
        built.pool.max_free_bytes = min(built.pool.max_free_bytes, pool_budget_bytes())
        with self._lock:
            calc = self._calculators.setdefault(key, built)  # another thread's, if it got there first
            self._calculators.move_to_end(key)
            while len(self._calculators) > self.maxsize:
                # Dropped, not closed: a request may still be using it; its buffers go with it.
                self._calculators.popitem(last=False)
            return calc

    def trim(self, budget_bytes: int | None = None) -> int:
        """Empty the pools of the least recently used calculators until the others' free buffers fit
        ``budget_bytes`` (default :func:`pool_budget_bytes`); returns the bytes kept. Buffers a request is using
        are not free: they come back to their pool afterwards, and that request's own trim bounds them."""
        budget = pool_budget_bytes() if budget_bytes is None else budget_bytes
        with self._lock:
            recent_first = list(reversed(self._calculators.values()))
        kept = 0
        for calc in recent_first:
            held = calc.pool.free_bytes
            if kept + held <= budget:
                kept += held
            else:
                calc.pool.clear()
        return kept

    def clear(self) -> None:
        with self._lock:
            self._calculators.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calculators)


def pool_budget_bytes() -> int:
    """What the shared calculators' pools may keep together: ``SHARED_POOL_BUDGET_FACTOR`` times the settings'
    ``WORKING_MEMORY_MB``."""
    return int(SHARED_POOL_BUDGET_FACTOR * get_config().working_memory_mb * MIB)


shared_calculators = SharedCalculators()


@receiver(setting_changed)
def _forget_calculators(*, setting: str, **kwargs: Any) -> None:
    # The HARMONIC setting is part of every calculator but not of its key: a change starts them afresh.
    if setting == "ASPECTS":
        shared_calculators.clear()


def _calculator_settings(backend: str | None, working_memory_mb: float | None) -> tuple[str, float, float | None]:
    """Backend and budget as given, else the settings'; the device memory cap is the machine's, so always theirs."""
    settings = get_config()
    return (
        settings.backend if backend is None else backend,
        settings.working_memory_mb if working_memory_mb is None else working_memory_mb,
        settings.device_memory_limit_mb,
    )


def calculator(
    config: AspectConfig,
    backend: str | None = None,
    working_memory_mb: float | None = None,
    chunk_size: int | None = None,
) -> MemoryOptimizedVectorizedCalculator:
    """The process's shared calculator for ``config`` (kept warm), with the settings' backend and budget unless
    given."""
    return shared_calculators.get((config, *_calculator_settings(backend, working_memory_mb), chunk_size))


def new_calculator(
    config: AspectConfig,
    backend: str | None = None,
    working_memory_mb: float | None = None,
    chunk_size: int | None = None,
) -> MemoryOptimizedVectorizedCalculator:
    """A calculator of its own for a batch run, configured as :func:`calculator`'s: a run resets its figures,
    closes its pools when it ends and may move to the CPU after a device failure, none of which may reach the
    warm calculators that requests share."""
    return _build_calculator(config, *_calculator_settings(backend, working_memory_mb), chunk_size)
