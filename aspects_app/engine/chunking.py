"""Chunk plans under a working-memory budget, and the one driver every operation's chunks go through, after
scikit-learn's ``pairwise_distances_chunked``.

A plan tiles a (rows × cols) problem: as many whole rows per chunk as the budget holds (``rows = budget //
bytes_per_row``); when not even one row fits, one row at a time split into column blocks. Each chunk is reduced
(to hits, scores or top-k) before the next is computed, so the temporaries' peak is one chunk's worth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import FieldError

if TYPE_CHECKING:
    from .monitor import VectorizedPerformanceMonitor

Progress = Callable[[int, int], None]
# Reduces the chunk (row slice, column slice) into the operation's result.
Reduce = Callable[[slice, slice], None]

MIB = 2**20


@dataclass(frozen=True)
class ChunkPlan:
    rows: int  # rows of the first operand
    cols: int  # rows of the second operand (1 for natal)
    rows_per_chunk: int
    cols_per_chunk: int
    bytes_per_cell: float  # temporaries per chart pair

    @classmethod
    def make(
        cls,
        rows: int,
        cols: int,
        bytes_per_cell: float,
        budget_bytes: int,
        chunk_rows: int | None = None,
    ) -> ChunkPlan:
        """``chunk_rows`` (the ``chunk_size`` option) overrides the budget's row count."""
        if chunk_rows is not None:
            return cls(rows, cols, max(1, min(chunk_rows, max(rows, 1))), max(cols, 1), bytes_per_cell)
        row_bytes = bytes_per_cell * cols
        if row_bytes <= 0:  # nothing to hold (no columns, or no point pairs): one chunk takes all
            return cls(rows, cols, max(rows, 1), max(cols, 1), bytes_per_cell)
        if row_bytes <= budget_bytes:
            per_chunk = int(budget_bytes // row_bytes)
            return cls(rows, cols, max(1, min(per_chunk, max(rows, 1))), max(cols, 1), bytes_per_cell)
        per_block = int(budget_bytes // bytes_per_cell)
        if per_block < 1:
            raise FieldError(
                "working_memory_mb",
                f"{budget_bytes / MIB:.3g} MiB is too small for one chart pair "
                f"({bytes_per_cell / MIB:.3g} MiB); raise the budget",
            )
        return cls(rows, cols, 1, per_block, bytes_per_cell)

    @property
    def chunks(self) -> int:
        if not self.rows or not self.cols:
            return 0
        return -(-self.rows // self.rows_per_chunk) * -(-self.cols // self.cols_per_chunk)

    @property
    def chunk_bytes(self) -> int:
        return int(self.rows_per_chunk * self.cols_per_chunk * self.bytes_per_cell)

    def __iter__(self) -> Iterator[tuple[slice, slice]]:
        """(row slice, column slice) per chunk, rows outer, so results come out in row-major order."""
        if not self.cols:
            return
        for r0 in range(0, self.rows, self.rows_per_chunk):
            rows = slice(r0, min(r0 + self.rows_per_chunk, self.rows))
            for c0 in range(0, self.cols, self.cols_per_chunk):
                yield rows, slice(c0, min(c0 + self.cols_per_chunk, self.cols))


@dataclass
class ChunkDriver:
    """Runs a plan's chunks through an operation's reduce function, timed as one operation, counting chunks on
    the monitor and reporting ``progress(done, total)`` in chart pairs after each chunk.

    Unlike scikit-learn's generator, the reduce function writes its chunk into the result itself (hit builder,
    score matrix, top-k lists) and returns nothing: a yielded chunk would stay alive through the next one's peak.
    """

    monitor: VectorizedPerformanceMonitor
    progress: Progress | None = None

    def run(self, plan: ChunkPlan, operation: str, reduce: Reduce) -> None:
        total = plan.rows * plan.cols
        done = 0
        with self.monitor.timer(operation):
            for rows, cols in plan:
                reduce(rows, cols)
                done += (rows.stop - rows.start) * (cols.stop - cols.start)
                self.monitor.count("chunks")
                if self.progress is not None:
                    self.progress(done, total)
