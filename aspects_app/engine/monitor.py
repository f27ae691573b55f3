"""Timings, process memory (psutil), device memory and a tracemalloc leak check for engine work."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from .backend import Backend

MIB = 2**20


@dataclass
class TimingStats:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    def as_dict(self) -> dict[str, float]:
        mean = self.total_s / self.count if self.count else 0.0
        return {"count": self.count, "total_s": self.total_s, "mean_s": mean, "max_s": self.max_s}


@dataclass
class LeakReport:
    """Memory growth across repeated runs of an operation, after warm-up runs have filled caches and pools."""

    growth_bytes: int
    per_run_bytes: float
    runs: int
    top: list[str] = field(default_factory=list)

    def leaks(self, tolerance_bytes: int) -> bool:
        return self.growth_bytes > tolerance_bytes


class VectorizedPerformanceMonitor:
    """Named timings through :meth:`timer`, RSS now and at its peak, counters, and device memory figures.

    The peak RSS is sampled at every timer boundary and every :meth:`sample` (the engine samples once per
    chunk, when temporaries are at their largest), so it reflects the engine's own peaks.
    """

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend = backend
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self.timings: dict[str, TimingStats] = {}
        self.counters: dict[str, float] = {}
        self.baseline_rss = self._process.memory_info().rss
        self.peak_rss = self.baseline_rss

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """Time a block; device work queued inside it is waited for before the clock stops."""
        self.sample()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.backend is not None:
                self.backend.synchronize()
            elapsed = time.perf_counter() - start
            with self._lock:
                self.timings.setdefault(name, TimingStats()).add(elapsed)
            self.sample()

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + amount

    def sample(self) -> int:
        rss = int(self._process.memory_info().rss)
        with self._lock:
            self.peak_rss = max(self.peak_rss, rss)
        return rss

    def reset(self) -> None:
        with self._lock:
            self.timings.clear()
            self.counters.clear()
            self.baseline_rss = self._process.memory_info().rss
            self.peak_rss = self.baseline_rss

    def get_memory_stats(self) -> dict[str, float]:
        """``memory_used_mb`` (RSS growth since the monitor started), ``peak_memory_mb`` (its peak growth),
        ``rss_mb``/``peak_rss_mb`` (absolute), system availability, and GPU pool figures on a GPU backend."""
        rss = self.sample()
        stats: dict[str, float] = {
            "memory_used_mb": (rss - self.baseline_rss) / MIB,
            "peak_memory_mb": (self.peak_rss - self.baseline_rss) / MIB,
            "rss_mb": rss / MIB,
            "peak_rss_mb": self.peak_rss / MIB,
            "system_available_mb": psutil.virtual_memory().available / MIB,
        }
        if self.backend is not None:
            stats.update(self.backend.memory_pool_stats())
            free = self.backend.free_device_bytes()
            if free is not None:
                stats["gpu_free_mb"] = free / MIB
        return stats

    def report(self) -> dict[str, Any]:
        with self._lock:
            timings = {name: t.as_dict() for name, t in self.timings.items()}
            counters = dict(self.counters)
        return {"timings": timings, "counters": counters, "memory": self.get_memory_stats()}

    @staticmethod
    def check_leaks(operation: Callable[[], object], runs: int = 5, warmup: int = 2) -> LeakReport:
        """Run ``operation`` ``warmup`` times, then ``runs`` times under tracemalloc; report what stayed."""
        for _ in range(warmup):
            operation()
        gc.collect()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(runs):
                operation()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            if not was_tracing:
                tracemalloc.stop()
        diff = after.compare_to(before, "lineno")
        growth = sum(stat.size_diff for stat in diff)
        top = [str(stat) for stat in diff[:5] if stat.size_diff > 0]
        return LeakReport(growth_bytes=growth, per_run_bytes=growth / runs, runs=runs, top=top)
