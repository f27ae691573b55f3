"""The fused path: each chunk is one or two kernel launches of :class:`~aspects_app.engine.fused.FusedKernels`
(on a GPU, or emulated on the CPU), and only reduced results cross to the host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from .aspects import AspectConfig
from .backend import Backend
from .chunking import ChunkDriver
from .fused import MAX_FUSED_K, DiscepoloTables, FusedKernels, HitTables, WeightedTables, unpack_hits
from .harmonic import HARMONIC
from .hits import AspectHits
from .memory import FusedCellBytes, MemoryBudget
from .path import ExecutionPath, FloatArray, Names
from .pool import ArrayPool
from .scoring import DiscepoloScorer, WeightedScorer, score_dtype
from .topk import TopK, merge_top_k

T = TypeVar("T")
# Chart pairs per fused top-k launch at most, so that progress is reported every second or so on a GPU.
TOP_K_LAUNCH_PAIRS = 1 << 33


class FusedPath(ExecutionPath):
    """Hits, scores and top-k (k <= :data:`MAX_FUSED_K`) as fused kernels; a larger k sorts fused score blocks."""

    cells = FusedCellBytes()

    def __init__(
        self,
        backend: Backend,
        pool: ArrayPool,
        config: AspectConfig,
        budget: MemoryBudget,
        driver: ChunkDriver,
        kernels: FusedKernels,
    ) -> None:
        super().__init__(backend, pool, config, budget, driver)
        self.kernels = kernels
        self._tables: dict[tuple[str, Names, str], Any] = {}

    def synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits:
        return self._hits("synastry", a, b, sa, sb, names)

    def natal(self, a: FloatArray, s: FloatArray | None, names: Names) -> AspectHits:
        return self._hits("natal", a, a, s, s, names)

    def paired_synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits:
        return self._hits("paired_synastry", a, b, sa, sb, names)

    def _hits(
        self, operation: str, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None,
        names: Names,
    ) -> AspectHits:  # fmt: skip
        """A code per cell, a nonzero scan, the hits' columns; only hits move."""
        natal = operation == "natal"
        paired = operation != "synastry"
        kind = "upper" if natal else "all"
        kernel = self.hit_kernel(names, kind)
        tables = self._table(("hits", names, kind), lambda: HitTables.build(self.xp, kernel))
        cols = 1 if paired else b.shape[0]
        plan = self.plan(a.shape[0], cols, self.cells.hits(kernel, natal))
        xa = self.backend.asarray(a)
        xb = xa if natal else self.backend.asarray(b)
        xsa = xsb = None
        if sa is not None or sb is not None:  # a side without speeds stands still
            xsa = self.backend.asarray(np.zeros(a.shape) if sa is None else sa)
            xsb = xsa if natal else self.backend.asarray(np.zeros(b.shape) if sb is None else sb)
        builder = self.builder(kernel, a.shape[0] * cols, names, natal=natal)

        def reduce(rows: slice, col_block: slice) -> None:
            b_rows = rows if paired else col_block
            with self.monitor.timer(f"{operation}_device_compute"):
                packed, count = self.kernels.hits(
                    tables, xa[rows], xb[b_rows], paired, rows.start, 0 if paired else col_block.start,
                    None if xsa is None else xsa[rows], None if xsb is None else xsb[b_rows],
                )  # fmt: skip
                self.monitor.sample()
            with self.monitor.timer(f"{operation}_transfer"):
                builder.append(**unpack_hits(self.backend.host_view(packed), count))  # append copies

        self.driver.run(plan, operation, reduce)
        return self.collect(builder)

    @contextmanager
    def score_block(self, method: str, names: Names, xa: Any, xb: Any, rows: slice, cols: slice) -> Iterator[Any]:
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        tables = self._score_tables(method, names)
        with self.pool.borrow(shape, score_dtype(method)) as block:
            with self.monitor.timer(f"scores_{method}_device_compute"):
                if isinstance(tables, DiscepoloTables):
                    self.kernels.discepolo_scores(tables, xa[rows], xb[cols], block)
                else:
                    self.kernels.weighted_scores(tables, xa[rows], xb[cols], block)
            self.monitor.sample()
            yield block

    def top_k(
        self, a: FloatArray, b: FloatArray, k: int, method: str, names: Names, excluded: npt.NDArray[np.int64] | None
    ) -> TopK:
        """Top-k reduced on the device: scores are never stored, only (rows, k) per launch comes back."""
        if k > MAX_FUSED_K or method == HARMONIC:  # beyond the kernels' lists; harmonic is a BLAS product
            return super().top_k(a, b, k, method, names, excluded)
        tables = self._score_tables(method, names)
        rows, cols = a.shape[0], b.shape[0]
        plan = self.plan(rows, cols, self.cells.top_k(method, a.shape[1]))
        if plan.cols_per_chunk == cols:  # whole rows, but not so many per launch that progress stalls
            plan = self.budget.with_rows(plan, max(1, min(plan.rows_per_chunk, TOP_K_LAUNCH_PAIRS // cols)))
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        x_excluded = self.backend.asarray(np.full(rows, -1, np.int64) if excluded is None else excluded)
        indices = np.empty((rows, k), dtype=np.int64)
        values = np.empty((rows, k), dtype=score_dtype(method))
        best: tuple[Any, Any] | None = None

        def reduce(row_block: slice, col_block: slice) -> None:
            nonlocal best
            with self.monitor.timer(f"top_k_{method}_device_compute"):
                excluded_rows = x_excluded[row_block]
                block = self.kernels.top_k(tables, xa[row_block], xb[col_block], k, excluded_rows, col_block.start)
                # Column blocks (a budget below one row's candidates) merge on the device; a block's empty
                # slots hold the lowest score, so real candidates always sort before them.
                best = merge_top_k(xp, best, block, k)
            if col_block.stop == cols:  # the row block is complete
                with self.monitor.timer(f"top_k_{method}_transfer"):
                    self.backend.copy_into(best[0], indices[row_block])
                    self.backend.copy_into(best[1], values[row_block])
                best = None

        self.driver.run(plan, f"top_k_{method}", reduce)
        return TopK(scores=values, indices=indices, backend=self.backend.name)

    def _table(self, key: tuple[str, Names, str], build: Callable[[], T]) -> T:
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = build()
        return cast(T, table)

    def _score_tables(self, method: str, names: Names) -> DiscepoloTables | WeightedTables:
        if method == "discepolo":
            return self._table(
                ("score", names, method), lambda: DiscepoloTables.build(self.xp, DiscepoloScorer(self.xp, names))
            )
        kernel = self.hit_kernel(names, "all")
        return self._table(
            ("score", names, method), lambda: WeightedTables.build(self.xp, WeightedScorer(self.xp, names, kernel))
        )

    def close(self) -> None:
        self._tables.clear()
