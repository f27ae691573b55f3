"""The namespace path: chunks of |Δλ| broadcast with ``xp`` (NumPy, CuPy without its kernels, or any array API
namespace), reduced by :class:`~aspects_app.engine.kernels.HitKernel` and the scorers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .aspects import AspectConfig
from .backend import Backend
from .chunking import ChunkDriver
from .hits import STATIC, AspectHits, HitsBuilder
from .kernels import HitKernel, movement
from .memory import MemoryBudget, XpCellBytes
from .path import ExecutionPath, FloatArray, Names
from .pool import ArrayPool
from .scoring import DiscepoloScorer, WeightedScorer
from .xp_ops import apply_into, gather_2d, reshape, take_into


class XpPath(ExecutionPath):
    """Every operation as namespace calls on pooled chunk buffers."""

    cells = XpCellBytes()

    def __init__(
        self, backend: Backend, pool: ArrayPool, config: AspectConfig, budget: MemoryBudget, driver: ChunkDriver
    ) -> None:
        super().__init__(backend, pool, config, budget, driver)
        self._scorers: dict[tuple[Names, str], Any] = {}

    def synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits:
        kernel = self.hit_kernel(names, "all")
        plan = self.plan(a.shape[0], b.shape[0], self.cells.hits(kernel))
        xp, p = self.xp, a.shape[1]
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        builder = self.builder(kernel, a.shape[0] * b.shape[0], names, natal=False)

        def reduce(rows: slice, cols: slice) -> None:
            shape = (rows.stop - rows.start, cols.stop - cols.start, p, p)
            with self.pool.borrow(shape, np.float64) as diff:
                apply_into(xp, xp.subtract, xa[rows, None, :, None], xb[None, cols, None, :], out=diff)
                apply_into(xp, xp.abs, diff, out=diff)
                self.monitor.sample()
                chunk_a = reshape(xp, diff, (shape[0], shape[1], -1))
                columns = kernel.extract(self.pool, chunk_a, rows.start, cols.start)
            self._append(builder, columns, kernel, xa, xb, sa, sb, natal=False)

        self.driver.run(plan, "synastry", reduce)
        return self.collect(builder)

    def natal(self, a: FloatArray, s: FloatArray | None, names: Names) -> AspectHits:
        kernel = self.hit_kernel(names, "upper")
        plan = self.plan(a.shape[0], 1, self.cells.hits(kernel, natal=True))
        xp = self.xp
        xa = self.backend.asarray(a)
        builder = self.builder(kernel, a.shape[0], names, natal=True)

        def reduce(rows: slice, _cols: slice) -> None:
            chunk = xa[rows, :]
            shape = (chunk.shape[0], 1, kernel.layout.size)
            with self.pool.borrow(shape, np.float64) as diff:
                flat = reshape(xp, diff, (shape[0], -1))
                # The kernel's point indices live on the backend (the layout's are host arrays).
                take_into(xp, chunk, kernel.p1, flat, axis=1)
                apply_into(xp, xp.subtract, flat, xp.take(chunk, kernel.p2, axis=1), out=flat)
                apply_into(xp, xp.abs, diff, out=diff)
                columns = kernel.extract(self.pool, diff, rows.start, 0)
            self._append(builder, columns, kernel, xa, xa, s, s, natal=True)

        self.driver.run(plan, "natal", reduce)
        return self.collect(builder)

    def paired_synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits:
        kernel = self.hit_kernel(names, "all")
        plan = self.plan(a.shape[0], 1, self.cells.hits(kernel))
        xp, p = self.xp, a.shape[1]
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        builder = self.builder(kernel, a.shape[0], names, natal=False)

        def reduce(rows: slice, _cols: slice) -> None:
            shape = (rows.stop - rows.start, p, p)
            with self.pool.borrow(shape, np.float64) as diff:
                apply_into(xp, xp.subtract, xa[rows, :, None], xb[rows, None, :], out=diff)
                apply_into(xp, xp.abs, diff, out=diff)
                columns = kernel.extract(self.pool, reshape(xp, diff, (shape[0], 1, -1)), rows.start, 0)
            columns["j"] = columns["i"]
            self._append(builder, columns, kernel, xa, xb, sa, sb, natal=False)

        self.driver.run(plan, "paired_synastry", reduce)
        return self.collect(builder)

    def _append(
        self,
        builder: HitsBuilder,
        columns: dict[str, Any],
        kernel: HitKernel,
        xa: Any,
        xb: Any,
        sa: FloatArray | None,
        sb: FloatArray | None,
        natal: bool,
    ) -> None:
        """Movement for a chunk's hits, then the columns into the result."""
        xp, to_host = self.xp, self.backend.to_numpy
        i, j, pair, aspect = columns["i"], columns["j"], columns["pair"], columns["aspect"]
        p1, p2 = kernel.p1[pair], kernel.p2[pair]
        if sa is None and sb is None:
            moves: Any = STATIC
        else:
            # A side without speeds stands still.
            speed_a = xp.zeros(xa.shape) if sa is None else self.backend.asarray(sa)
            speed_b = xp.zeros(xb.shape) if sb is None else self.backend.asarray(sb)
            rows_b = i if natal else j
            lon1, lon2 = gather_2d(xp, xa, i, p1), gather_2d(xp, xb, rows_b, p2)
            speed1, speed2 = gather_2d(xp, speed_a, i, p1), gather_2d(xp, speed_b, rows_b, p2)
            moves = to_host(movement(xp, lon1, lon2, speed1, speed2, aspect))
        builder.append(
            i=to_host(i),
            j=to_host(j),
            p1=to_host(p1),
            p2=to_host(p2),
            aspect=to_host(aspect),
            orb=to_host(columns["orb"]),
            movement=moves,
        )

    @contextmanager
    def score_block(self, method: str, names: Names, xa: Any, xb: Any, rows: slice, cols: slice) -> Iterator[Any]:
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        xp = self.xp
        if method == "discepolo":
            scorer = self._scorers.get((names, method))
            if scorer is None:
                scorer = self._scorers[(names, method)] = DiscepoloScorer(xp, names)
            with self.pool.borrow(shape, np.int16) as block:
                scorer.score_into(self.pool, xa[rows, :], xb[cols, :], block)
                self.monitor.sample()
                yield block
            return
        kernel = self.hit_kernel(names, "all")
        scorer = self._scorers.get((names, method))
        if scorer is None:
            scorer = self._scorers[(names, method)] = WeightedScorer(xp, names, kernel)
        p = len(names)
        with self.pool.borrow((*shape, p, p), np.float64) as diff, self.pool.borrow(shape, np.float64) as block:
            apply_into(xp, xp.subtract, xa[rows, None, :, None], xb[None, cols, None, :], out=diff)
            apply_into(xp, xp.abs, diff, out=diff)
            scorer.score_into(self.pool, reshape(xp, diff, (shape[0], shape[1], -1)), block)
            self.monitor.sample()
            yield block

    def close(self) -> None:
        """Nothing to drop: the kernels' and scorers' tables are small, and kept for the calculator's next job."""
