"""The engine's entry point: aspects, scores and matches for many charts at once, chunked under a memory budget."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from . import validation
from .aspects import STANDARD_POINTS, AspectConfig, resolve_points
from .backend import Backend, get_backend
from .chunking import MIB, ChunkPlan
from .classify import AspectClassifier, OrbProfiles
from .fused import (
    FUSED_HIT_BYTES,
    FUSED_HIT_CELL_BYTES,
    MAX_FUSED_K,
    DiscepoloTables,
    FusedKernels,
    HitTables,
    WeightedTables,
    unpack_hits,
)
from .hits import HIT_RESULT_BYTES, STATIC, AspectHits, HitsBuilder
from .kernels import HIT_BYTES, HIT_CELL_BYTES, HitKernel, Layout, movement
from .monitor import VectorizedPerformanceMonitor
from .pool import ArrayPool
from .scoring import SCORE_METHODS, DiscepoloScorer, WeightedScorer
from .topk import TopK, merge_top_k, select_top_k
from .xp_ops import apply_into, gather_2d, reshape, take_into

Progress = Callable[[int, int], None]
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("aspects_app.engine")
FloatArray = npt.NDArray[np.float64]

OPERATIONS: tuple[str, ...] = ("synastry", "natal", "scores", "top_k")
# Natal differences gather the second point's column into a temporary.
NATAL_GATHER_BYTES = 8
# Temporaries per chart pair of top-k selection beyond the scores: partition copy, masks, cumsum (int64).
TOP_K_CELL_BYTES = 8 + 8 + 3
# Out of device memory, a chunk is halved and retried this many times before the work moves to the CPU.
MAX_OOM_RETRIES = 8
# Chart pairs per fused top-k launch at most, so that progress is reported every second or so on a GPU.
TOP_K_LAUNCH_PAIRS = 1 << 33


def _recovering(method: F) -> F:
    """Run a public operation so that a device failure is recovered from: out of memory is retried with smaller
    chunks, and a failure that persists (or a driver error) reruns the operation on the CPU. Bad input raises."""

    @functools.wraps(method)
    def run(self: MemoryOptimizedVectorizedCalculator, *args: Any, **kwargs: Any) -> Any:
        return self._recover(method.__name__, lambda: method(self, *args, **kwargs))

    return cast(F, run)


class MemoryOptimizedVectorizedCalculator:
    """Natal and synastry aspects, compatibility scores and top-k matching over many charts.

    Longitudes are (charts, points) arrays in degrees, [0, 360); speeds, when given, are degrees per day of the
    same shape. Columns are named by ``points`` (default: a prefix of :data:`STANDARD_POINTS`). Work is split into
    chunks whose temporaries fit ``working_memory_mb`` (``chunk_size`` fixes the rows per chunk instead), and
    ``progress(done, total)`` is called after each chunk.

    On a GPU backend the operations run as fused kernels (:mod:`aspects_app.engine.fused`); chunks also fit the
    free device memory and ``device_memory_limit_mb``, the cap set on CuPy's memory pool. A device that runs out
    of memory is retried with chunks half the size; one that keeps failing, or reports a driver error, hands the
    operation to NumPy (progress then restarts from zero), logs why and records it in
    ``backend.fallback_reason``. Results name the backend that produced them.
    """

    def __init__(
        self,
        config: AspectConfig | Mapping[str, float] | None = None,
        backend: str | Backend = "auto",
        working_memory_mb: float = 256,
        chunk_size: int | None = None,
        progress: Progress | None = None,
        monitor: VectorizedPerformanceMonitor | None = None,
        points: Sequence[str] | None = None,
        device_memory_limit_mb: float | None = None,
    ) -> None:
        if config is None:
            config = AspectConfig()
        elif not isinstance(config, AspectConfig):
            config = AspectConfig.from_orbs(config)
        self.config = config
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend)
        self.xp = self.backend.xp
        self.working_memory_mb = validation.positive_number("working_memory_mb", working_memory_mb)
        self.chunk_size = validation.positive_int("chunk_size", chunk_size, allow_none=True)
        if progress is not None and not callable(progress):
            raise ValueError("progress: expected a callable progress(done, total)")
        self.progress = progress
        self.points = None if points is None else tuple(points)
        self.pool = ArrayPool(self.xp)
        self.monitor = monitor or VectorizedPerformanceMonitor(self.backend)
        self._kernels: dict[tuple[tuple[str, ...], str], HitKernel] = {}
        self._scorers: dict[tuple[tuple[str, ...], str], Any] = {}
        self._fused_tables: dict[tuple[str, tuple[str, ...], str], Any] = {}
        # After an out-of-memory on the device: the most bytes a chunk may hold (halved on each failure).
        self._device_cap: int | None = None
        self._last_chunk_bytes = 0
        if device_memory_limit_mb is not None:
            limit = validation.positive_number("device_memory_limit_mb", device_memory_limit_mb)
            self.backend.set_memory_limit(int(limit * MIB))

    # -- public operations -------------------------------------------------------------------------------------

    @_recovering
    def synastry(
        self,
        lon_a: Any,
        lon_b: Any,
        speed_a: Any = None,
        speed_b: Any = None,
        points: Sequence[str] | None = None,
    ) -> AspectHits:
        """Aspects between every chart of ``lon_a`` (N, P) and every chart of ``lon_b`` (M, P): p1 from a, p2
        from b, all P×P ordered point pairs. A side without speeds counts as standing still."""
        a = validation.longitudes("lon_a", lon_a)
        b = validation.longitudes("lon_b", lon_b)
        validation.same_points("lon_a", a, "lon_b", b)
        sa = validation.speeds("speed_a", speed_a, a.shape)
        sb = validation.speeds("speed_b", speed_b, b.shape)
        names = self._points(points, a.shape[1])
        if self.backend.kernels is not None:
            return self._fused_hits("synastry", a, b, sa, sb, names)
        kernel = self._hit_kernel(names, "all")
        plan = self._plan(a.shape[0], b.shape[0], kernel.layout.size * self._hit_cell_bytes(kernel))
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        builder = self._builder(kernel, a.shape[0] * b.shape[0], names, natal=False)
        with self.monitor.timer("synastry"):
            for rows, cols in self._chunks(plan):
                shape = (rows.stop - rows.start, cols.stop - cols.start, a.shape[1], a.shape[1])
                with self.pool.borrow(shape, np.float64) as diff:
                    apply_into(xp, xp.subtract, xa[rows, None, :, None], xb[None, cols, None, :], out=diff)
                    apply_into(xp, xp.abs, diff, out=diff)
                    self.monitor.sample()
                    chunk_a = reshape(xp, diff, (shape[0], shape[1], -1))
                    columns = kernel.extract(self.pool, chunk_a, rows.start, cols.start)
                self._append(builder, columns, kernel, xa, xb, sa, sb, natal=False)
                del columns  # else this chunk's columns live on through the next chunk's peak
        return self._collect(builder)

    @_recovering
    def natal(self, lon: Any, speed: Any = None, points: Sequence[str] | None = None) -> AspectHits:
        """Aspects within each chart of ``lon`` (N, P), point pairs p1 < p2 only."""
        a = validation.longitudes("lon", lon)
        s = validation.speeds("speed", speed, a.shape)
        names = self._points(points, a.shape[1])
        if self.backend.kernels is not None:
            return self._fused_hits("natal", a, a, s, s, names)
        kernel = self._hit_kernel(names, "upper")
        plan = self._plan(a.shape[0], 1, kernel.layout.size * (self._hit_cell_bytes(kernel) + NATAL_GATHER_BYTES))
        xp = self.xp
        xa = self.backend.asarray(a)
        builder = self._builder(kernel, a.shape[0], names, natal=True)
        with self.monitor.timer("natal"):
            for rows, _ in self._chunks(plan):
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
                del columns  # else this chunk's columns live on through the next chunk's peak
        return self._collect(builder)

    @_recovering
    def paired_synastry(
        self,
        lon_a: Any,
        lon_b: Any,
        speed_a: Any = None,
        speed_b: Any = None,
        points: Sequence[str] | None = None,
    ) -> AspectHits:
        """Aspects between chart ``n`` of ``lon_a`` and chart ``n`` of ``lon_b`` only (``i == j == n``)."""
        a = validation.longitudes("lon_a", lon_a)
        b = validation.longitudes("lon_b", lon_b)
        validation.same_points("lon_a", a, "lon_b", b)
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"lon_a has {a.shape[0]} charts but lon_b has {b.shape[0]}; pairs need equal counts")
        sa = validation.speeds("speed_a", speed_a, a.shape)
        sb = validation.speeds("speed_b", speed_b, b.shape)
        names = self._points(points, a.shape[1])
        if self.backend.kernels is not None:
            return self._fused_hits("paired_synastry", a, b, sa, sb, names)
        kernel = self._hit_kernel(names, "all")
        plan = self._plan(a.shape[0], 1, kernel.layout.size * self._hit_cell_bytes(kernel))
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        builder = self._builder(kernel, a.shape[0], names, natal=False)
        with self.monitor.timer("paired_synastry"):
            for rows, _ in self._chunks(plan):
                p = a.shape[1]
                shape = (rows.stop - rows.start, p, p)
                with self.pool.borrow(shape, np.float64) as diff:
                    apply_into(xp, xp.subtract, xa[rows, :, None], xb[rows, None, :], out=diff)
                    apply_into(xp, xp.abs, diff, out=diff)
                    columns = kernel.extract(self.pool, reshape(xp, diff, (shape[0], 1, -1)), rows.start, 0)
                columns["j"] = columns["i"]
                self._append(builder, columns, kernel, xa, xb, sa, sb, natal=False)
                del columns  # else this chunk's columns live on through the next chunk's peak
        return self._collect(builder)

    def calculate_large_batch_aspects(
        self, chart_pairs: Sequence[tuple[Any, Any]], points: Sequence[str] | None = None
    ) -> AspectHits:
        """The seed system's pair-list input: ``[(lon_a, lon_b), ...]`` of 1-D longitude arrays, one synastry per
        pair, vectorised as :meth:`paired_synastry` (``i == j`` is the pair's position in the list)."""
        pairs = list(chart_pairs)
        if not pairs:
            raise ValueError("chart_pairs: at least one (lon_a, lon_b) pair is required")
        try:
            firsts = [np.asarray(pair[0], dtype=np.float64) for pair in pairs]
            seconds = [np.asarray(pair[1], dtype=np.float64) for pair in pairs]
            lon_a, lon_b = np.stack(firsts), np.stack(seconds)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"chart_pairs: expected (lon_a, lon_b) pairs of equal-length 1-D arrays ({exc})") from exc
        return self.paired_synastry(lon_a, lon_b, points=points)

    @_recovering
    def scores(
        self,
        lon_a: Any,
        lon_b: Any,
        method: str = "discepolo",
        points: Sequence[str] | None = None,
    ) -> npt.NDArray[Any]:
        """Compatibility score of every chart of ``lon_a`` against every chart of ``lon_b``: an (N, M) array,
        int16 for ``"discepolo"``, float64 for ``"weighted"`` (see :mod:`aspects_app.engine.scoring`)."""
        a, b, names = self._score_inputs(lon_a, lon_b, method, points)
        dtype = np.int16 if method == "discepolo" else np.float64
        result = np.empty((a.shape[0], b.shape[0]), dtype=dtype)
        plan = self._plan(a.shape[0], b.shape[0], self._score_cell_bytes(method, a.shape[1]))
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        with self.monitor.timer(f"scores_{method}"):
            for rows, cols in self._chunks(plan):
                with (
                    self._score_block(method, names, xa, xb, rows, cols) as block,
                    self.monitor.timer(f"scores_{method}_transfer"),
                ):
                    self.backend.copy_into(block, result[rows, cols])
        return result

    @_recovering
    def top_k(
        self,
        lon_a: Any,
        lon_b: Any = None,
        k: int = 10,
        method: str = "discepolo",
        points: Sequence[str] | None = None,
        exclude_self: bool = False,
        row_offset: int = 0,
        exclude_columns: Any = None,
    ) -> TopK:
        """The ``k`` best partners in ``lon_b`` of every chart of ``lon_a`` by score, best first, ties to the lower
        index. ``lon_b=None`` matches ``lon_a`` against itself; ``exclude_self`` drops each chart's own column
        (one population on both sides): row ``r`` of ``lon_a`` is column ``r + row_offset`` of ``lon_b``, so a
        block of rows can be matched against its whole population. ``exclude_columns`` generalises it: one column
        of ``lon_b`` per row of ``lon_a`` to leave out (−1: none), for groups that share some charts. ``k`` is
        capped at the number of candidates."""
        k_checked = validation.positive_int("k", k)
        assert k_checked is not None
        if lon_b is None:
            lon_b = lon_a
        a, b, names = self._score_inputs(lon_a, lon_b, method, points)
        if row_offset < 0 or (row_offset and not exclude_self):
            raise ValueError(f"row_offset: must be >= 0 and only used with exclude_self, got {row_offset}")
        if exclude_self and a.shape[0] + row_offset > b.shape[0]:
            raise ValueError("exclude_self: lon_a must be rows of lon_b (from row_offset on), but it has more charts")
        excluded = self._excluded_columns(a.shape[0], b.shape[0], exclude_self, row_offset, exclude_columns)
        k_eff = min(k_checked, b.shape[0] - (1 if excluded is not None and bool((excluded >= 0).any()) else 0))
        score_dtype = np.int16 if method == "discepolo" else np.float64
        if k_eff <= 0:
            return TopK(np.empty((a.shape[0], 0), score_dtype), np.empty((a.shape[0], 0), np.int64), self.backend.name)
        if self.backend.kernels is not None and k_eff <= MAX_FUSED_K:
            return self._fused_top_k(self.backend.kernels, a, b, k_eff, method, names, excluded)
        plan = self._plan(a.shape[0], b.shape[0], self._score_cell_bytes(method, a.shape[1]) + TOP_K_CELL_BYTES)
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        x_excluded = None if excluded is None else self.backend.asarray(excluded)
        indices = np.empty((a.shape[0], k_eff), dtype=np.int64)
        values = np.empty((a.shape[0], k_eff), dtype=score_dtype)
        # +1: the value must survive negation in the descending sort.
        lowest = np.iinfo(np.int16).min + 1 if method == "discepolo" else -np.inf
        with self.monitor.timer(f"top_k_{method}"):
            best: tuple[Any, Any] | None = None
            for rows, cols in self._chunks(plan):
                with self._score_block(method, names, xa, xb, rows, cols) as block:
                    if x_excluded is not None:
                        col_ids = xp.arange(cols.start, cols.stop)[None, :]
                        block[x_excluded[rows, None] == col_ids] = lowest
                    index, score = select_top_k(xp, block, k_eff)
                best = merge_top_k(xp, best, (index + cols.start, score), k_eff)
                if cols.stop == b.shape[0]:  # the row block is complete
                    indices[rows] = self.backend.to_numpy(best[0])
                    values[rows] = self.backend.to_numpy(best[1])
                    best = None
        return TopK(scores=values, indices=indices, backend=self.backend.name)

    @staticmethod
    def _excluded_columns(
        rows: int, cols: int, exclude_self: bool, row_offset: int, exclude_columns: Any
    ) -> npt.NDArray[np.int64] | None:
        """The column each row leaves out (−1: none), or None when nothing is excluded."""
        if exclude_columns is None:
            return np.arange(row_offset, row_offset + rows, dtype=np.int64) if exclude_self else None
        if exclude_self:
            raise ValueError("exclude_columns: give either exclude_self or exclude_columns, not both")
        columns = np.asarray(exclude_columns)
        if columns.shape != (rows,) or not np.issubdtype(columns.dtype, np.integer):
            raise ValueError(f"exclude_columns: expected {rows} integers (one per row of lon_a), got {columns.shape}")
        if ((columns < -1) | (columns >= cols)).any():
            raise ValueError(f"exclude_columns: values must be -1 or a column of lon_b (0..{cols - 1})")
        return columns.astype(np.int64)

    def estimate_memory_usage(
        self,
        num_charts1: int,
        num_charts2: int | None = None,
        num_planets: int = 10,
        operation: str = "synastry",
        method: str = "discepolo",
        points: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The memory plan of an operation without running it.

        ``unchunked_bytes`` is what one broadcast over all chart pairs would hold in temporaries, ``chunked_bytes``
        the peak of this calculator's chunks, ``memory_savings_percent`` the difference, ``chunk_rows`` the rows
        per chunk; ``result_bytes`` the expected result size (hits from the orbs' coverage of the circle).
        """
        n1 = validation.positive_int("num_charts1", num_charts1)
        n2 = n1 if num_charts2 is None else validation.positive_int("num_charts2", num_charts2)
        p = validation.positive_int("num_planets", num_planets)
        assert n1 is not None and n2 is not None and p is not None
        if operation not in OPERATIONS:
            raise ValueError(f"operation: unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
        if points is None and self.points is None and p > len(STANDARD_POINTS):
            points = [f"P{n}" for n in range(p)]  # unnamed extra columns: names only matter for point_orbs
        names = self._points(points, p)
        hit_fraction = None
        if operation in ("synastry", "natal"):
            kernel = self._hit_kernel(names, "all" if operation == "synastry" else "upper")
            cols = n2 if operation == "synastry" else 1
            gather = 0 if operation == "synastry" else NATAL_GATHER_BYTES
            cell = kernel.layout.size * (self._hit_cell_bytes(kernel) + gather)
            if self.backend.kernels is not None:
                cell = self._fused_hit_cell_bytes(kernel)
            hit_fraction = self._hit_fraction(kernel)
            result = n1 * cols * kernel.layout.size * hit_fraction * HIT_RESULT_BYTES
        else:
            self._check_method(method)
            cols = n2
            cell = self._score_cell_bytes(method, p) + (TOP_K_CELL_BYTES if operation == "top_k" else 0)
            result = n1 * (10 * 16 if operation == "top_k" else n2 * (2 if method == "discepolo" else 8))
        plan = self._plan(n1, cols, cell)
        unchunked = n1 * cols * cell
        chunked = min(plan.chunk_bytes, unchunked)
        return {
            "operation": operation,
            "num_charts1": n1,
            "num_charts2": n2 if operation != "natal" else None,
            "num_planets": p,
            "backend": self.backend.name,
            "working_memory_mb": self.working_memory_mb,
            "bytes_per_chart_pair": cell,
            "unchunked_bytes": int(unchunked),
            "unchunked_mb": unchunked / MIB,
            "chunked_bytes": int(chunked),
            "chunked_mb": chunked / MIB,
            "memory_savings_percent": 100.0 * (1.0 - chunked / unchunked) if unchunked else 0.0,
            "chunk_rows": plan.rows_per_chunk,
            "chunk_cols": plan.cols_per_chunk,
            "chunks": plan.chunks,
            "expected_hit_fraction": hit_fraction,
            "result_bytes": int(result),
        }

    def close(self) -> None:
        """Free pooled buffers, pinned staging and device memory pools (done when a job ends)."""
        self.pool.clear()
        self._fused_tables.clear()
        self.backend.free_pools()

    # -- recovery from device failures ---------------------------------------------------------------------------

    def _recover(self, operation: str, run: Callable[[], T]) -> T:
        retries = 0
        while True:
            backend = self.backend
            try:
                return run()
            except Exception as exc:
                failures = backend.oom_errors + backend.device_errors
                if not backend.can_fall_back or not isinstance(exc, failures):
                    raise
                self.pool.clear()
                with contextlib.suppress(*failures):  # a device in a bad state may fail to free, too
                    backend.free_pools()
                if isinstance(exc, backend.oom_errors) and retries < MAX_OOM_RETRIES and self._last_chunk_bytes > 1:
                    retries += 1
                    self._device_cap = self._last_chunk_bytes // 2
                    logger.warning(
                        "%s on %s: out of memory (%s); retrying with smaller chunks (%.3g MiB), try %d of %d",
                        operation, backend.name, exc, self._device_cap / MIB, retries, MAX_OOM_RETRIES,
                    )  # fmt: skip
                    continue
                reason = f"{backend.name} failed in {operation} ({type(exc).__name__}: {exc}); using numpy"
                logger.warning("%s", reason)
                self._use_cpu(reason)

    def _use_cpu(self, reason: str) -> None:
        """Carry on with NumPy for the rest of this calculator's life: a device that failed once is not trusted."""
        self.pool.clear()
        self._fused_tables.clear()
        self.backend = Backend("numpy", np, fallback_reason=reason)
        self.xp = np
        self.pool = ArrayPool(np)
        self.monitor.backend = self.backend
        self._kernels.clear()
        self._scorers.clear()
        self._device_cap = None

    # -- the fused path (GPU kernels, or their CPU emulation) ----------------------------------------------------

    def _fused_hits(
        self, operation: str, a: FloatArray, b: FloatArray, sa: FloatArray | None, sb: FloatArray | None,
        names: tuple[str, ...],
    ) -> AspectHits:  # fmt: skip
        """Hits through the fused kernels: a code per cell, a nonzero scan, the hits' columns; only hits move."""
        kernels = self.backend.kernels
        assert kernels is not None
        natal = operation == "natal"
        paired = operation != "synastry"
        kind = "upper" if natal else "all"
        kernel = self._hit_kernel(names, kind)
        tables = self._fused_table(("hits", names, kind), lambda: HitTables.build(self.xp, kernel))
        cols = 1 if paired else b.shape[0]
        plan = self._plan(a.shape[0], cols, self._fused_hit_cell_bytes(kernel))
        xa = self.backend.asarray(a)
        xb = xa if natal else self.backend.asarray(b)
        xsa = xsb = None
        if sa is not None or sb is not None:  # a side without speeds stands still
            xsa = self.backend.asarray(np.zeros(a.shape) if sa is None else sa)
            xsb = xsa if natal else self.backend.asarray(np.zeros(b.shape) if sb is None else sb)
        builder = self._builder(kernel, a.shape[0] * cols, names, natal=natal)
        with self.monitor.timer(operation):
            for rows, col_block in self._chunks(plan):
                b_rows = rows if paired else col_block
                with self.monitor.timer(f"{operation}_device_compute"):
                    packed, count = kernels.hits(
                        tables, xa[rows], xb[b_rows], paired, rows.start, 0 if paired else col_block.start,
                        None if xsa is None else xsa[rows], None if xsb is None else xsb[b_rows],
                    )  # fmt: skip
                    self.monitor.sample()
                with self.monitor.timer(f"{operation}_transfer"):
                    builder.append(**unpack_hits(self.backend.host_view(packed), count))  # append copies
                del packed  # else this chunk's hits live on through the next chunk's peak
        return self._collect(builder)

    def _fused_hit_cell_bytes(self, kernel: HitKernel) -> float:
        return kernel.layout.size * (FUSED_HIT_CELL_BYTES + self._hit_fraction(kernel) * FUSED_HIT_BYTES)

    def _fused_table(self, key: tuple[str, tuple[str, ...], str], build: Callable[[], T]) -> T:
        table = self._fused_tables.get(key)
        if table is None:
            table = self._fused_tables[key] = build()
        return cast(T, table)

    def _fused_score_tables(self, method: str, names: tuple[str, ...]) -> DiscepoloTables | WeightedTables:
        if method == "discepolo":
            return self._fused_table(
                ("score", names, method), lambda: DiscepoloTables.build(self.xp, DiscepoloScorer(self.xp, names))
            )
        kernel = self._hit_kernel(names, "all")
        return self._fused_table(
            ("score", names, method), lambda: WeightedTables.build(self.xp, WeightedScorer(self.xp, names, kernel))
        )

    def _fused_top_k(
        self,
        kernels: FusedKernels,
        a: FloatArray,
        b: FloatArray,
        k: int,
        method: str,
        names: tuple[str, ...],
        excluded: npt.NDArray[np.int64] | None,
    ) -> TopK:
        """Top-k reduced on the device: scores are never stored, only (rows, k) per launch comes back."""
        tables = self._fused_score_tables(method, names)
        dtype = np.int16 if method == "discepolo" else np.float64
        rows, cols = a.shape[0], b.shape[0]
        # Planned as the xp path plans it, so a budget means the same chunks on every backend; the kernels need
        # far less (a row's candidates, not its scores), so this bounds them from above.
        plan = self._plan(rows, cols, self._score_cell_bytes(method, a.shape[1]) + TOP_K_CELL_BYTES)
        if plan.cols_per_chunk == cols:  # whole rows, but not so many per launch that progress stalls
            per_launch = max(1, min(plan.rows_per_chunk, TOP_K_LAUNCH_PAIRS // cols))
            plan = ChunkPlan(rows, cols, per_launch, cols, plan.bytes_per_cell)
            self._last_chunk_bytes = plan.chunk_bytes
        xp = self.xp
        xa, xb = self.backend.asarray(a), self.backend.asarray(b)
        x_excluded = self.backend.asarray(np.full(rows, -1, np.int64) if excluded is None else excluded)
        indices = np.empty((rows, k), dtype=np.int64)
        values = np.empty((rows, k), dtype=dtype)
        with self.monitor.timer(f"top_k_{method}"):
            best: tuple[Any, Any] | None = None
            for row_block, col_block in self._chunks(plan):
                with self.monitor.timer(f"top_k_{method}_device_compute"):
                    block = kernels.top_k(
                        tables, xa[row_block], xb[col_block], k, x_excluded[row_block], col_block.start
                    )
                    # Column blocks (a budget below one row's candidates) merge on the device; a block's empty
                    # slots hold the lowest score, so real candidates always sort before them.
                    best = merge_top_k(xp, best, block, k)
                if col_block.stop == cols:  # the row block is complete
                    with self.monitor.timer(f"top_k_{method}_transfer"):
                        self.backend.copy_into(best[0], indices[row_block])
                        self.backend.copy_into(best[1], values[row_block])
                    best = None
        return TopK(scores=values, indices=indices, backend=self.backend.name)

    # -- internals ---------------------------------------------------------------------------------------------

    def _points(self, points: Sequence[str] | None, num_points: int) -> tuple[str, ...]:
        names = resolve_points(points if points is not None else self.points, num_points)
        self.config.check_points(names)
        return names

    def _hit_kernel(self, names: tuple[str, ...], kind: str) -> HitKernel:
        key = (names, kind)
        kernel = self._kernels.get(key)
        if kernel is None:
            layout = Layout.all_pairs(len(names)) if kind == "all" else Layout.upper_pairs(len(names))
            pairs = [(names[x], names[y]) for x, y in zip(layout.p1, layout.p2, strict=True)]
            classifier = AspectClassifier(OrbProfiles.build(self.config, pairs))
            kernel = self._kernels[key] = HitKernel(self.xp, classifier, layout)
        return kernel

    def _hit_fraction(self, kernel: HitKernel) -> float:
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

    def _hit_cell_bytes(self, kernel: HitKernel) -> float:
        return HIT_CELL_BYTES + self._hit_fraction(kernel) * HIT_BYTES

    def _score_cell_bytes(self, method: str, num_points: int) -> float:
        if self.backend.kernels is not None:  # a fused kernel writes the scores and holds nothing else
            return 2 if method == "discepolo" else 8
        if method == "discepolo":
            return DiscepoloScorer.CELL_BYTES
        return num_points * num_points * WeightedScorer.CELL_BYTES + 8  # + the (rows, cols) block

    def _plan(self, rows: int, cols: int, bytes_per_cell: float) -> ChunkPlan:
        budget = int(self.working_memory_mb * MIB)
        chunk_rows = self.chunk_size
        if self.backend.is_gpu:
            free = self.backend.free_device_bytes()
            if free is not None:
                budget = min(budget, int(free * 0.8))  # leave room for the pool's fragmentation
        if self._device_cap is not None:  # the device ran out of memory at twice this: the cap beats chunk_size
            # One chart pair at least: below it, only the CPU can help (and a failure there moves the work to it).
            budget = max(min(budget, self._device_cap), int(bytes_per_cell) + 1)
            chunk_rows = None
        plan = ChunkPlan.make(rows, cols, bytes_per_cell, budget, chunk_rows)
        self._last_chunk_bytes = min(plan.chunk_bytes, int(rows * cols * bytes_per_cell))
        return plan

    def _chunks(self, plan: ChunkPlan) -> Iterator[tuple[slice, slice]]:
        total = plan.rows * plan.cols
        done = 0
        for rows, cols in plan:
            yield rows, cols
            done += (rows.stop - rows.start) * (cols.stop - cols.start)
            self.monitor.count("chunks")
            if self.progress is not None:
                self.progress(done, total)

    def _builder(self, kernel: HitKernel, chart_pairs: int, names: tuple[str, ...], natal: bool) -> HitsBuilder:
        # Sized for the expected hits (an upper bound for evenly spread longitudes): written once, in place.
        expected = chart_pairs * kernel.layout.size * self._hit_fraction(kernel)
        return HitsBuilder(int(expected * 1.02) + 4096, names, natal, self.backend.name)

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
        to_host = self.backend.to_numpy
        i, j, pair, aspect = columns["i"], columns["j"], columns["pair"], columns["aspect"]
        p1, p2 = kernel.p1[pair], kernel.p2[pair]
        if sa is None and sb is None:
            moves: Any = STATIC
        else:
            # A side without speeds stands still.
            speed_a = self.xp.zeros(xa.shape) if sa is None else self.backend.asarray(sa)
            speed_b = self.xp.zeros(xb.shape) if sb is None else self.backend.asarray(sb)
            rows_b = i if natal else j
            xp = self.xp
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

    def _collect(self, builder: HitsBuilder) -> AspectHits:
        hits = builder.build()
        self.monitor.count("hits", len(hits))
        return hits

    def _check_method(self, method: str) -> None:
        if method not in SCORE_METHODS:
            raise ValueError(f"method: unknown scoring method {method!r}; choose one of {', '.join(SCORE_METHODS)}")

    def _score_inputs(
        self, lon_a: Any, lon_b: Any, method: str, points: Sequence[str] | None
    ) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
        self._check_method(method)
        a = validation.longitudes("lon_a", lon_a)
        b = validation.longitudes("lon_b", lon_b)
        validation.same_points("lon_a", a, "lon_b", b)
        return a, b, self._points(points, a.shape[1])

    @contextmanager
    def _score_block(
        self, method: str, names: tuple[str, ...], xa: Any, xb: Any, rows: slice, cols: slice
    ) -> Iterator[Any]:
        """A pooled (rows, cols) block of scores, valid inside the ``with`` only."""
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        kernels = self.backend.kernels
        if kernels is not None:
            tables = self._fused_score_tables(method, names)
            with self.pool.borrow(shape, np.int16 if method == "discepolo" else np.float64) as block:
                with self.monitor.timer(f"scores_{method}_device_compute"):
                    if isinstance(tables, DiscepoloTables):
                        kernels.discepolo_scores(tables, xa[rows], xb[cols], block)
                    else:
                        kernels.weighted_scores(tables, xa[rows], xb[cols], block)
                self.monitor.sample()
                yield block
            return
        if method == "discepolo":
            scorer = self._scorers.get((names, method))
            if scorer is None:
                scorer = self._scorers[(names, method)] = DiscepoloScorer(self.xp, names)
            with self.pool.borrow(shape, np.int16) as block:
                scorer.score_into(self.pool, xa[rows, :], xb[cols, :], block)
                self.monitor.sample()
                yield block
            return
        kernel = self._hit_kernel(names, "all")
        scorer = self._scorers.get((names, method))
        if scorer is None:
            scorer = self._scorers[(names, method)] = WeightedScorer(self.xp, names, kernel)
        p = len(names)
        with self.pool.borrow((*shape, p, p), np.float64) as diff, self.pool.borrow(shape, np.float64) as block:
            apply_into(self.xp, self.xp.subtract, xa[rows, None, :, None], xb[None, cols, None, :], out=diff)
            apply_into(self.xp, self.xp.abs, diff, out=diff)
            scorer.score_into(self.pool, reshape(self.xp, diff, (shape[0], shape[1], -1)), block)
            self.monitor.sample()
            yield block


@contextmanager
def memory_optimized_processing(
    chunk_size: int | None = 100, **kwargs: Any
) -> Iterator[tuple[MemoryOptimizedVectorizedCalculator, VectorizedPerformanceMonitor]]:
    """A calculator and its monitor for a block of work; pools are freed and garbage collected on exit, even
    when the block raises. Keyword arguments go to the calculator."""
    calculator = MemoryOptimizedVectorizedCalculator(chunk_size=chunk_size, **kwargs)
    try:
        yield calculator, calculator.monitor
    finally:
        calculator.close()
        gc.collect()
