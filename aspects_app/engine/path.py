"""The interface of an execution path: how one backend runs each operation's chunks.

The calculator validates input and picks a path once (:class:`~aspects_app.engine.xp_path.XpPath` for namespace
kernels, :class:`~aspects_app.engine.fused_path.FusedPath` for fused ones); a path plans its chunks with its own
memory model and drives them through the shared :class:`~aspects_app.engine.chunking.ChunkDriver`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .aspects import AspectConfig
from .backend import Backend
from .chunking import MIB, ChunkDriver, ChunkPlan
from .classify import AspectClassifier, OrbProfiles
from .harmonic import (
    HARMONIC,
    HarmonicConfig,
    HarmonicScorer,
    features_of,
    products_into,
    scores_into,
    select_top_k_pruned,
)
from .hits import AspectHits, HitsBuilder
from .kernels import HitKernel, Layout
from .memory import CellBytes, MemoryBudget, expected_hits
from .pool import ArrayPool
from .scoring import score_dtype
from .topk import TopK, merge_top_k, select_top_k

FloatArray = npt.NDArray[np.float64]
Names = tuple[str, ...]


class ExecutionPath(ABC):
    """Hits, score blocks and top-k on one backend. Inputs are validated host arrays; results are on the host.

    Scores and top-k are written here once, over :meth:`score_block`, which each path implements; a path
    replaces top-k where it has a better reduction.
    """

    cells: ClassVar[CellBytes]
    # The harmonic score's settings; the calculator sets its own.
    harmonic: HarmonicConfig = HarmonicConfig()

    def __init__(
        self, backend: Backend, pool: ArrayPool, config: AspectConfig, budget: MemoryBudget, driver: ChunkDriver
    ) -> None:
        self.backend = backend
        self.xp = backend.xp
        self.pool = pool
        self.config = config
        self.budget = budget
        self.driver = driver
        self.monitor = driver.monitor
        self._kernels: dict[tuple[Names, str], HitKernel] = {}

    # -- hits ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits: ...

    @abstractmethod
    def natal(self, a: FloatArray, s: FloatArray | None, names: Names) -> AspectHits: ...

    @abstractmethod
    def paired_synastry(
        self, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None, names: Names
    ) -> AspectHits: ...

    # -- scores ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def score_block(
        self, method: str, names: Names, xa: Any, xb: Any, rows: slice, cols: slice
    ) -> AbstractContextManager[Any]:
        """A pooled (rows, cols) block of scores on the backend, valid inside the ``with`` only."""

    def scores(self, a: FloatArray, b: FloatArray, method: str, names: Names) -> npt.NDArray[Any]:
        if method == HARMONIC:
            return self.harmonic_scores(a, b, names)
        result = np.empty((a.shape[0], b.shape[0]), dtype=score_dtype(method))
        plan = self.plan(a.shape[0], b.shape[0], self.cells.scores(method, a.shape[1]))
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)

        def reduce(rows: slice, cols: slice) -> None:
            with (
                self.score_block(method, names, xa, xb, rows, cols) as block,
                self.monitor.timer(f"scores_{method}_transfer"),
            ):
                self.backend.copy_into(block, result[rows, cols])

        self.driver.run(plan, f"scores_{method}", reduce)
        return result

    def top_k(
        self, a: FloatArray, b: FloatArray, k: int, method: str, names: Names, excluded: npt.NDArray[np.int64] | None
    ) -> TopK:
        """Top-k selected from score blocks with the namespace's sort; column blocks merge as they come."""
        if method == HARMONIC:
            return self.harmonic_top_k(a, b, k, names, excluded)
        plan = self.plan(a.shape[0], b.shape[0], self.cells.top_k(method, a.shape[1]))
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        x_excluded = None if excluded is None else self.backend.asarray(excluded)
        indices = np.empty((a.shape[0], k), dtype=np.int64)
        values = np.empty((a.shape[0], k), dtype=score_dtype(method))
        # +1: the value must survive negation in the descending sort.
        lowest = np.iinfo(np.int16).min + 1 if method == "discepolo" else -np.inf
        best: tuple[Any, Any] | None = None

        def reduce(rows: slice, cols: slice) -> None:
            nonlocal best
            with self.score_block(method, names, xa, xb, rows, cols) as block:
                if x_excluded is not None:
                    col_ids = xp.arange(cols.start, cols.stop)[None, :]
                    block[x_excluded[rows, None] == col_ids] = lowest
                index, score = select_top_k(xp, block, k)
            best = merge_top_k(xp, best, (index + cols.start, score), k)
            if cols.stop == b.shape[0]:  # the row block is complete
                indices[rows] = self.backend.to_numpy(best[0])
                values[rows] = self.backend.to_numpy(best[1])
                best = None

        self.driver.run(plan, f"top_k_{method}", reduce)
        return TopK(scores=values, indices=indices, backend=self.backend.name)

    # -- the harmonic score: matrix products of features (the same xp code on every backend) -------------------

    def harmonic_features(self, lon: FloatArray, names: Names, side: str) -> Any:
        """(N, D) features of ``lon`` on the backend, computed in row blocks under the working memory."""
        scorer = self.harmonic_scorer(names)
        # Per row: h·λ, cos and sin, and the mixed side-b copy, all float64, per (harmonic, point).
        per_row = 4 * 8 * scorer.dimension
        # The features themselves are the call's operands, held throughout; only their temporaries are chunked,
        # at least a row at a time even under a budget too small for one (the score chunks then say so).
        rows = max(1, int(self.budget.working_memory_mb * MIB // per_row))
        return features_of(self.xp, scorer, self.backend.asarray(lon), side, rows)

    def harmonic_scorer(self, names: Names) -> HarmonicScorer:
        return HarmonicScorer(self.xp, names, self.harmonic)

    def harmonic_scores(self, a: FloatArray, b: FloatArray, names: Names) -> npt.NDArray[Any]:
        fa, fb = self.harmonic_features(a, names, "a"), self.harmonic_features(b, names, "b")
        result = np.empty((a.shape[0], b.shape[0]), dtype=score_dtype(HARMONIC))
        plan = self.plan(a.shape[0], b.shape[0], self.cells.scores(HARMONIC, a.shape[1]))
        xp = self.xp

        def reduce(rows: slice, cols: slice) -> None:
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            with self.pool.borrow(shape, np.dtype(self.harmonic.dtype)) as block:
                scores_into(xp, fa[rows, :], fb[cols, :], block)
                self.monitor.sample()
                self.backend.copy_into(block, result[rows, cols])

        self.driver.run(plan, "scores_harmonic", reduce)
        return result

    def harmonic_top_k(
        self, a: FloatArray, b: FloatArray, k: int, names: Names, excluded: npt.NDArray[np.int64] | None
    ) -> TopK:
        """Exact top-k by maximum inner product: a (rows, cols) block of ``F(a) @ G(b).T`` per chunk, pruned
        block-wise selection, column blocks merged as they come; ties to the lower index."""
        fa, fb = self.harmonic_features(a, names, "a"), self.harmonic_features(b, names, "b")
        np_dtype = np.dtype(self.harmonic.dtype)
        plan = self.plan(a.shape[0], b.shape[0], self.cells.top_k(HARMONIC, a.shape[1]))
        xp = self.xp
        x_excluded = None if excluded is None else self.backend.asarray(excluded)
        indices = np.empty((a.shape[0], k), dtype=np.int64)
        values = np.empty((a.shape[0], k), dtype=score_dtype(HARMONIC))
        best: tuple[Any, Any] | None = None

        def reduce(rows: slice, cols: slice) -> None:
            nonlocal best
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            with self.pool.borrow(shape, np_dtype) as block:
                products_into(xp, fa[rows, :], fb[cols, :], block)
                if x_excluded is not None:
                    col_ids = xp.arange(cols.start, cols.stop)[None, :]
                    block[x_excluded[rows, None] == col_ids] = -xp.inf
                self.monitor.sample()
                index, score = select_top_k_pruned(xp, block, k)
            best = merge_top_k(xp, best, (index + cols.start, score), k)
            if cols.stop == b.shape[0]:  # the row block is complete
                indices[rows] = self.backend.to_numpy(best[0])
                values[rows] = self.backend.to_numpy(best[1])
                best = None

        self.driver.run(plan, "top_k_harmonic", reduce)
        return TopK(scores=values, indices=indices, backend=self.backend.name)

    # -- shared pieces ---------------------------------------------------------------------------------------------

    def plan(self, rows: int, cols: int, bytes_per_cell: float) -> ChunkPlan:
        return self.budget.plan(rows, cols, bytes_per_cell, self.backend)

    def hit_kernel(self, names: Names, kind: str) -> HitKernel:
        """The classifier of the calculator's orbs for ``names``, all ordered pairs or (``"upper"``) p1 < p2."""
        key = (names, kind)
        kernel = self._kernels.get(key)
        if kernel is None:
            layout = Layout.all_pairs(len(names)) if kind == "all" else Layout.upper_pairs(len(names))
            pairs = [(names[x], names[y]) for x, y in zip(layout.p1, layout.p2, strict=True)]
            classifier = AspectClassifier(OrbProfiles.build(self.config, pairs))
            kernel = self._kernels[key] = HitKernel(self.xp, classifier, layout)
        return kernel

    def builder(self, kernel: HitKernel, chart_pairs: int, names: Names, natal: bool) -> HitsBuilder:
        # Sized for the expected hits (an upper bound for evenly spread longitudes): written once, in place.
        expected = expected_hits(kernel, chart_pairs)
        return HitsBuilder(int(expected * 1.02) + 4096, names, natal, self.backend.name)

    def collect(self, builder: HitsBuilder) -> AspectHits:
        hits = builder.build()
        self.monitor.count("hits", len(hits))
        return hits

    @abstractmethod
    def close(self) -> None:
        """Drop what the path keeps on the device between calls (rebuilt when needed)."""
