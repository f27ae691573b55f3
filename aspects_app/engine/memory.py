"""The memory model: bytes of temporaries per chart pair for each operation on each execution path, and the
budget that turns them into a :class:`ChunkPlan` (working memory, free device memory, the cap after an OOM).

The figures are upper bounds of what a chunk holds at its peak, so that a plan's ``chunk_bytes`` is what the
budget promises; :meth:`MemoryOptimizedVectorizedCalculator.estimate_memory_usage` reports them without running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import Backend
from .chunking import MIB, ChunkPlan
from .fused import FUSED_HIT_BYTES, FUSED_HIT_CELL_BYTES
from .harmonic import TOP_K_SELECTION_BYTES as HARMONIC_SELECTION_BYTES
from .hits import HIT_RESULT_BYTES
from .kernels import HIT_BYTES, HIT_CELL_BYTES, HitKernel
from .scoring import DiscepoloScorer, WeightedScorer

# Natal differences gather the second point's column into a temporary.
NATAL_GATHER_BYTES = 8
# Temporaries per chart pair of top-k selection beyond the scores: partition copy, masks, cumsum (int64).
TOP_K_CELL_BYTES = 8 + 8 + 3
# Share of the free device memory a chunk may take: the rest is room for the pool's fragmentation.
FREE_DEVICE_SHARE = 0.8


def hit_fraction(kernel: HitKernel) -> float:
    """Share of point pairs expected to form an aspect when longitudes spread evenly round the circle (the
    separation is then uniform on [0°, 180°]): the length of the union of the orb intervals over 180°."""
    profiles = kernel.classifier.profiles
    if kernel.layout.size == 0:  # one point: no pairs
        return 0.0
    covered = np.empty(profiles.count)
    for index in range(profiles.count):
        active = np.isfinite(profiles.lo[index])
        spans = sorted(
            zip(
                np.clip(profiles.lo[index][active], 0, 180),
                np.clip(profiles.hi[index][active], 0, 180),
                strict=True,
            )
        )
        length, reach = 0.0, 0.0
        for lo, hi in spans:
            length += max(0.0, hi - max(lo, reach))
            reach = max(reach, hi)
        covered[index] = length / 180.0
    weights = np.bincount(profiles.pair_profile, minlength=profiles.count)
    return float((covered * weights).sum() / weights.sum())


def expected_hits(kernel: HitKernel, chart_pairs: int) -> float:
    """Hits expected over ``chart_pairs`` (an upper bound for evenly spread longitudes)."""
    return chart_pairs * kernel.layout.size * hit_fraction(kernel)


class CellBytes(ABC):
    """Temporaries per chart pair of each operation on one execution path."""

    @abstractmethod
    def hits(self, kernel: HitKernel, natal: bool = False) -> float: ...

    @abstractmethod
    def scores(self, method: str, num_points: int) -> float: ...

    def top_k(self, method: str, num_points: int) -> float:
        # Planned the same on every path, so that a budget means the same chunks on every backend; the fused
        # kernels need far less (a row's candidates, not its scores), so this bounds them from above.
        if method == "harmonic":  # one product block on every path, and its pruning mask
            return 8 + HARMONIC_SELECTION_BYTES
        return self.scores(method, num_points) + TOP_K_CELL_BYTES


class XpCellBytes(CellBytes):
    """The namespace kernels: |Δλ| and its table lookups per point pair, the scorers' intermediates."""

    def hits(self, kernel: HitKernel, natal: bool = False) -> float:
        gather = NATAL_GATHER_BYTES if natal else 0
        return kernel.layout.size * (HIT_CELL_BYTES + hit_fraction(kernel) * HIT_BYTES + gather)

    def scores(self, method: str, num_points: int) -> float:
        if method == "harmonic":  # a float64 block of a matrix product
            return 8
        if method == "discepolo":
            return DiscepoloScorer.CELL_BYTES
        return num_points * num_points * WeightedScorer.CELL_BYTES + 8  # + the (rows, cols) block


class FusedCellBytes(CellBytes):
    """The fused kernels: a code per point pair and the hits' columns; scores are written and nothing else."""

    def hits(self, kernel: HitKernel, natal: bool = False) -> float:
        return kernel.layout.size * (FUSED_HIT_CELL_BYTES + hit_fraction(kernel) * FUSED_HIT_BYTES)

    def scores(self, method: str, num_points: int) -> float:
        return 2 if method == "discepolo" else 8


@dataclass
class MemoryBudget:
    """Turns bytes per chart pair into chunk plans under the working memory, and remembers what the device
    allowed: after an out-of-memory, ``device_cap`` (half the failed chunk) bounds every later chunk."""

    working_memory_mb: float
    chunk_size: int | None = None
    device_cap: int | None = None
    # The planned peak of the last plan, which an out-of-memory halves into ``device_cap``.
    last_chunk_bytes: int = 0

    def plan(self, rows: int, cols: int, bytes_per_cell: float, backend: Backend) -> ChunkPlan:
        budget = int(self.working_memory_mb * MIB)
        chunk_rows = self.chunk_size
        if backend.is_gpu:
            free = backend.free_device_bytes()
            if free is not None:
                budget = min(budget, int(free * FREE_DEVICE_SHARE))
        if self.device_cap is not None:  # the device ran out of memory at twice this: the cap beats chunk_size
            # One chart pair at least: below it, only the CPU can help (and a failure there moves the work to it).
            budget = max(min(budget, self.device_cap), int(bytes_per_cell) + 1)
            chunk_rows = None
        plan = ChunkPlan.make(rows, cols, bytes_per_cell, budget, chunk_rows)
        self.last_chunk_bytes = min(plan.chunk_bytes, int(rows * cols * bytes_per_cell))
        return plan

    def with_rows(self, plan: ChunkPlan, rows_per_chunk: int) -> ChunkPlan:
        """``plan`` with fewer rows per chunk (whole rows still), recorded as the last plan."""
        plan = ChunkPlan(plan.rows, plan.cols, rows_per_chunk, plan.cols_per_chunk, plan.bytes_per_cell)
        self.last_chunk_bytes = plan.chunk_bytes
        return plan

    def shrink(self) -> int | None:
        """Cap later chunks at half the last one after an out-of-memory: the new cap, or None when a chunk cannot
        get smaller."""
        if self.last_chunk_bytes <= 1:
            return None
        self.device_cap = self.last_chunk_bytes // 2
        return self.device_cap


def result_bytes(operation: str, rows: int, cols: int, method: str, kernel: HitKernel | None) -> float:
    """Expected size of an operation's result: hits from the orbs' coverage of the circle, top-10 lists, scores."""
    if kernel is not None:
        return expected_hits(kernel, rows * cols) * HIT_RESULT_BYTES
    if operation == "top_k":
        return rows * 10 * 16
    return rows * cols * (2 if method == "discepolo" else 8)


def usage_report(
    operation: str,
    shape: tuple[int, int, int],
    cell: float,
    plan: ChunkPlan,
    kernel: HitKernel | None,
    method: str,
    backend: str,
    working_memory_mb: float,
) -> dict[str, Any]:
    """The dict of :meth:`~aspects_app.engine.calculator.MemoryOptimizedVectorizedCalculator.estimate_memory_usage`
    for ``shape`` = (charts of the first operand, of the second, points) and its plan."""
    n1, n2, num_points = shape
    unchunked = n1 * plan.cols * cell
    chunked = min(plan.chunk_bytes, unchunked)
    return {
        "operation": operation,
        "num_charts1": n1,
        "num_charts2": n2 if operation != "natal" else None,
        "num_planets": num_points,
        "backend": backend,
        "working_memory_mb": working_memory_mb,
        "bytes_per_chart_pair": cell,
        "unchunked_bytes": int(unchunked),
        "unchunked_mb": unchunked / MIB,
        "chunked_bytes": int(chunked),
        "chunked_mb": chunked / MIB,
        "memory_savings_percent": 100.0 * (1.0 - chunked / unchunked) if unchunked else 0.0,
        "chunk_rows": plan.rows_per_chunk,
        "chunk_cols": plan.cols_per_chunk,
        "chunks": plan.chunks,
        "expected_hit_fraction": None if kernel is None else hit_fraction(kernel),
        "result_bytes": int(result_bytes(operation, n1, plan.cols, method, kernel)),
    }
