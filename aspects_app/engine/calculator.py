"""The engine's entry point: aspects, scores and matches for many charts at once, chunked under a memory budget.

The calculator validates input and delegates to its execution path (:mod:`aspects_app.engine.path`), chosen once
from the backend and again when a failed device hands the work to the CPU.
"""

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

from . import memory, validation
from .aspects import STANDARD_POINTS, AspectConfig, resolve_points
from .backend import Backend, get_backend
from .chunking import MIB, ChunkDriver, Progress
from .errors import FieldError
from .fused_path import FusedPath
from .harmonic import HarmonicConfig
from .hits import AspectHits
from .kernels import HitKernel
from .memory import MemoryBudget
from .monitor import VectorizedPerformanceMonitor
from .path import ExecutionPath, FloatArray
from .patterns import (
    DEFAULT_STELLIUM_MIN_POINTS,
    ChartPatterns,
    PatternSearch,
    StelliumRule,
    bytes_per_chart,
    natal_search,
    synastry_search,
)
from .pool import ArrayPool
from .scoring import SCORE_METHODS, score_dtype
from .topk import TopK
from .transit_events import TransitEvents
from .transits import TransitTrack, run_transits
from .xp_path import XpPath

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("aspects_app.engine")

OPERATIONS: tuple[str, ...] = ("synastry", "natal", "scores", "top_k")
# What estimate_memory_usage plans: the operations, and the pattern search over natal aspects (batch runs).
PLANNED_OPERATIONS: tuple[str, ...] = (*OPERATIONS, "patterns")
# Out of device memory, a chunk is halved and retried this many times before the work moves to the CPU.
MAX_OOM_RETRIES = 8
_HOST = Backend("numpy", np)  # plans work that runs on the host whatever the backend (pattern search)


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
        harmonic: HarmonicConfig | None = None,
    ) -> None:
        if config is None:
            config = AspectConfig()
        elif not isinstance(config, AspectConfig):
            config = AspectConfig.from_orbs(config)
        self.config = config
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend)
        self.xp = self.backend.xp
        self._budget = MemoryBudget(
            validation.positive_number("working_memory_mb", working_memory_mb),
            validation.positive_int("chunk_size", chunk_size, allow_none=True),
        )
        if progress is not None and not callable(progress):
            raise FieldError("progress", "expected a callable progress(done, total)")
        self.points = None if points is None else tuple(points)
        self.pool = ArrayPool(self.xp)
        self.monitor = monitor or VectorizedPerformanceMonitor(self.backend)
        self._driver = ChunkDriver(self.monitor, progress)
        if harmonic is not None and not isinstance(harmonic, HarmonicConfig):
            raise FieldError("harmonic", f"expected a HarmonicConfig, got {type(harmonic).__name__}")
        self.harmonic = harmonic or HarmonicConfig()  # the "harmonic" score's settings
        self._path = self._choose_path()
        if device_memory_limit_mb is not None:
            limit = validation.positive_number("device_memory_limit_mb", device_memory_limit_mb)
            self.backend.set_memory_limit(int(limit * MIB))

    def _choose_path(self) -> ExecutionPath:
        """The backend's fused kernels when it has them, else its namespace: the one place that decides."""
        kernels = self.backend.kernels
        shared = (self.backend, self.pool, self.config, self._budget, self._driver)
        path = XpPath(*shared) if kernels is None else FusedPath(*shared, kernels=kernels)
        path.harmonic = self.harmonic
        return path

    # The options live with the objects that use them (the budget plans, the driver reports progress); they stay
    # attributes here, settable as before.

    @property
    def working_memory_mb(self) -> float:
        return self._budget.working_memory_mb

    @working_memory_mb.setter
    def working_memory_mb(self, value: float) -> None:
        self._budget.working_memory_mb = value

    @property
    def chunk_size(self) -> int | None:
        return self._budget.chunk_size

    @chunk_size.setter
    def chunk_size(self, value: int | None) -> None:
        self._budget.chunk_size = value

    @property
    def progress(self) -> Progress | None:
        return self._driver.progress

    @progress.setter
    def progress(self, value: Progress | None) -> None:
        self._driver.progress = value

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
        return self._path.synastry(a, b, sa, sb, self._points(points, a.shape[1]))

    @_recovering
    def natal(self, lon: Any, speed: Any = None, points: Sequence[str] | None = None) -> AspectHits:
        """Aspects within each chart of ``lon`` (N, P), point pairs p1 < p2 only."""
        a = validation.longitudes("lon", lon)
        s = validation.speeds("speed", speed, a.shape)
        return self._path.natal(a, s, self._points(points, a.shape[1]))

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
            raise FieldError("lon_b", f"{b.shape[0]} charts but lon_a has {a.shape[0]}; pairs need equal counts")
        sa = validation.speeds("speed_a", speed_a, a.shape)
        sb = validation.speeds("speed_b", speed_b, b.shape)
        return self._path.paired_synastry(a, b, sa, sb, self._points(points, a.shape[1]))

    @_recovering
    def transits(self, natal_lon: Any, track: TransitTrack, points: Sequence[str] | None = None) -> TransitEvents:
        """Every exact pass of each of ``track``'s bodies over natal longitude ± aspect angle of every chart of
        ``natal_lon`` (N, P), with the orb window around it, for this calculator's aspects and orbs (point orbs
        apply to natal points and bodies alike; :data:`~aspects_app.engine.transits.TRANSIT_ORBS` is the preset
        for predictive work). See :mod:`aspects_app.engine.transits`."""
        natal = validation.longitudes("natal_lon", natal_lon)
        if not isinstance(track, TransitTrack):
            raise FieldError("track", f"expected a TransitTrack (ephemeris.transit_track), got {type(track).__name__}")
        names = self._points(points, natal.shape[1])
        self.config.check_points((*names, *track.bodies))
        backend = self.backend
        return run_transits(
            self.xp, backend.asarray, backend.to_numpy,
            lambda per_chart: self._budget.plan(natal.shape[0], 1, per_chart, backend),
            lambda plan, reduce: self._driver.run(plan, "transits", reduce),
            natal, track, self.config, names, backend.name,
        )  # fmt: skip

    def patterns(
        self,
        lon: Any,
        points: Sequence[str] | None = None,
        stellium_span: float | None = None,
        stellium_min_points: int = DEFAULT_STELLIUM_MIN_POINTS,
    ) -> ChartPatterns:
        """Aspect patterns of every chart of ``lon`` (N, P) from its natal aspects under this calculator's orbs:
        grand trines, T-squares, grand crosses, yods, kites, mystic rectangles and stellia (in one sign when
        ``stellium_span`` is None, else within that many degrees). See :mod:`aspects_app.engine.patterns`."""
        a = validation.longitudes("lon", lon)
        names = self._points(points, a.shape[1])
        StelliumRule.make(stellium_span, stellium_min_points)  # bad options fail before any aspect is computed
        search = natal_search(self.natal(a, points=names), a, stellium_span, stellium_min_points)
        return self._run_pattern_search(search)

    def synastry_patterns(
        self,
        lon_a: Any,
        lon_b: Any,
        points: Sequence[str] | None = None,
        stellium_span: float | None = None,
        stellium_min_points: int = DEFAULT_STELLIUM_MIN_POINTS,
    ) -> ChartPatterns:
        """Aspect patterns of the combined points of each pair (``lon_a[n]``, ``lon_b[n]``), from both charts'
        natal aspects and the pair's synastry aspects, keeping those with points of both charts (``i`` is the
        pair; member ``q >= P`` is b's point ``q - P``)."""
        a = validation.longitudes("lon_a", lon_a)
        b = validation.longitudes("lon_b", lon_b)
        validation.same_points("lon_a", a, "lon_b", b)
        if a.shape[0] != b.shape[0]:
            raise FieldError("lon_b", f"{b.shape[0]} charts but lon_a has {a.shape[0]}; pairs need equal counts")
        names = self._points(points, a.shape[1])
        StelliumRule.make(stellium_span, stellium_min_points)
        natal_a, natal_b = self.natal(a, points=names), self.natal(b, points=names)
        cross = self.paired_synastry(a, b, points=names)
        search = synastry_search(natal_a, natal_b, cross, a, b, stellium_span, stellium_min_points)
        return self._run_pattern_search(search)

    def _run_pattern_search(self, search: PatternSearch) -> ChartPatterns:
        """The search runs on the host over the hits (a few bytes per chart), in chunks under the budget."""
        per_chart = bytes_per_chart(search.lon.shape[1])
        plan = self._budget.plan(search.num_charts, 1, per_chart, _HOST)
        self._driver.run(plan, "patterns", search.chunk)
        return search.result()

    def calculate_large_batch_aspects(
        self, chart_pairs: Sequence[tuple[Any, Any]], points: Sequence[str] | None = None
    ) -> AspectHits:
        """The seed system's pair-list input: ``[(lon_a, lon_b), ...]`` of 1-D longitude arrays, one synastry per
        pair, vectorised as :meth:`paired_synastry` (``i == j`` is the pair's position in the list)."""
        pairs = list(chart_pairs)
        if not pairs:
            raise FieldError("chart_pairs", "at least one (lon_a, lon_b) pair is required")
        try:
            firsts = [np.asarray(pair[0], dtype=np.float64) for pair in pairs]
            seconds = [np.asarray(pair[1], dtype=np.float64) for pair in pairs]
            lon_a, lon_b = np.stack(firsts), np.stack(seconds)
        except (TypeError, ValueError, IndexError) as exc:
            raise FieldError(
                "chart_pairs", f"expected (lon_a, lon_b) pairs of equal-length 1-D arrays ({exc})"
            ) from exc
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
        int16 for ``"discepolo"``, float64 for ``"weighted"`` (see :mod:`aspects_app.engine.scoring`) and
        ``"harmonic"`` (see :mod:`aspects_app.engine.harmonic`)."""
        a, b, names = self._score_inputs(lon_a, lon_b, method, points)
        return self._path.scores(a, b, method, names)

    @_recovering
    def harmonic_features(self, lon: Any, side: str = "a", points: Sequence[str] | None = None) -> npt.NDArray[Any]:
        """The (N, D) features of the ``"harmonic"`` score for the charts ``lon`` (N, P): ``side="a"`` for the
        charts scored, ``"b"`` for their candidates, so that ``scores(a, b, "harmonic") == F(a) @ G(b).T``
        (see :mod:`aspects_app.engine.harmonic`); in the configuration's dtype."""
        if side not in ("a", "b"):
            raise FieldError("side", f"expected 'a' or 'b', got {side!r}")
        a = validation.longitudes("lon", lon)
        return self.backend.to_numpy(self._path.harmonic_features(a, self._points(points, a.shape[1]), side))

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
            raise FieldError("row_offset", f"must be >= 0 and only used with exclude_self, got {row_offset}")
        if exclude_self and a.shape[0] + row_offset > b.shape[0]:
            raise FieldError("exclude_self", "lon_a must be rows of lon_b (from row_offset on), but it has more charts")
        excluded = self._excluded_columns(a.shape[0], b.shape[0], exclude_self, row_offset, exclude_columns)
        k_eff = min(k_checked, b.shape[0] - (1 if excluded is not None and bool((excluded >= 0).any()) else 0))
        if k_eff <= 0:
            empty = np.empty((a.shape[0], 0), score_dtype(method))
            return TopK(empty, np.empty((a.shape[0], 0), np.int64), self.backend.name)
        return self._path.top_k(a, b, k_eff, method, names, excluded)

    @staticmethod
    def _excluded_columns(
        rows: int, cols: int, exclude_self: bool, row_offset: int, exclude_columns: Any
    ) -> npt.NDArray[np.int64] | None:
        """The column each row leaves out (−1: none), or None when nothing is excluded."""
        if exclude_columns is None:
            return np.arange(row_offset, row_offset + rows, dtype=np.int64) if exclude_self else None
        if exclude_self:
            raise FieldError("exclude_columns", "give either exclude_self or exclude_columns, not both")
        columns = np.asarray(exclude_columns)
        if columns.shape != (rows,) or not np.issubdtype(columns.dtype, np.integer):
            raise FieldError("exclude_columns", f"expected {rows} integers (one per row of lon_a), got {columns.shape}")
        if ((columns < -1) | (columns >= cols)).any():
            raise FieldError("exclude_columns", f"values must be -1 or a column of lon_b (0..{cols - 1})")
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
        ``"patterns"`` plans :meth:`patterns`: its natal aspects and then its search, which runs on the host in
        chunks of its own; the report is the one of the two with the larger chunk (usually the search's: its
        triples and quadruples of points), the result the natal hits searched.
        """
        n1 = validation.positive_int("num_charts1", num_charts1)
        n2 = n1 if num_charts2 is None else validation.positive_int("num_charts2", num_charts2)
        p = validation.positive_int("num_planets", num_planets)
        assert n1 is not None and n2 is not None and p is not None
        if operation not in PLANNED_OPERATIONS:
            choices = ", ".join(PLANNED_OPERATIONS)
            raise FieldError("operation", f"unknown operation {operation!r}; choose one of {choices}")
        if points is None and self.points is None and p > len(STANDARD_POINTS):
            points = [f"P{n}" for n in range(p)]  # unnamed extra columns: names only matter for point_orbs
        names = self._points(points, p)
        if operation == "patterns":
            return self._patterns_plan(n1, p, names, method)
        kernel: HitKernel | None = None
        if operation in ("synastry", "natal"):
            kernel = self._path.hit_kernel(names, "all" if operation == "synastry" else "upper")
            cols = n2 if operation == "synastry" else 1
            cell = self._path.cells.hits(kernel, natal=operation == "natal")
        else:
            self._check_method(method)
            cols = n2
            cells = self._path.cells
            cell = cells.top_k(method, p) if operation == "top_k" else cells.scores(method, p)
        plan = self._budget.plan(n1, cols, cell, self.backend)
        return memory.usage_report(
            operation, (n1, n2, p), cell, plan, kernel, method, self.backend.name, self.working_memory_mb
        )

    def _patterns_plan(self, n: int, p: int, names: Sequence[str], method: str) -> dict[str, Any]:
        # Both plans must fit the budget (each raises the budget's error otherwise), as in _run_pattern_search.
        natal = self.estimate_memory_usage(n, None, p, "natal", method, names)
        cell = bytes_per_chart(p)
        search = memory.usage_report(
            "patterns", (n, n, p), cell, self._budget.plan(n, 1, cell, _HOST), None, method, self.backend.name,
            self.working_memory_mb,
        )  # fmt: skip
        peak = search if search["chunked_bytes"] >= natal["chunked_bytes"] else natal
        return {
            **peak,
            "operation": "patterns",
            "num_charts2": None,
            "expected_hit_fraction": natal["expected_hit_fraction"],
            "result_bytes": natal["result_bytes"],
        }

    def close(self) -> None:
        """Free pooled buffers, pinned staging and device memory pools (done when a job ends)."""
        self.pool.clear()
        self._path.close()
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
                oom = isinstance(exc, backend.oom_errors) and retries < MAX_OOM_RETRIES
                cap = self._budget.shrink() if oom else None
                if cap is not None:
                    retries += 1
                    logger.warning(
                        "%s on %s: out of memory (%s); retrying with smaller chunks (%.3g MiB), try %d of %d",
                        operation, backend.name, exc, cap / MIB, retries, MAX_OOM_RETRIES,
                    )  # fmt: skip
                    continue
                reason = f"{backend.name} failed in {operation} ({type(exc).__name__}: {exc}); using numpy"
                logger.warning("%s", reason)
                self._use_cpu(reason)

    def _use_cpu(self, reason: str) -> None:
        """Carry on with NumPy for the rest of this calculator's life: a device that failed once is not trusted."""
        self.pool.clear()
        self._path.close()
        self.backend = Backend("numpy", np, fallback_reason=reason)
        self.xp = np
        self.pool = ArrayPool(np)
        self.monitor.backend = self.backend
        self._budget.device_cap = None
        self._path = self._choose_path()  # fresh kernels and scorers, on NumPy

    # -- internals ---------------------------------------------------------------------------------------------

    def _points(self, points: Sequence[str] | None, num_points: int) -> tuple[str, ...]:
        names = resolve_points(points if points is not None else self.points, num_points)
        self.config.check_points(names)
        return names

    def _check_method(self, method: str) -> None:
        if method not in SCORE_METHODS:
            raise FieldError("method", f"unknown scoring method {method!r}; choose one of {', '.join(SCORE_METHODS)}")

    def _score_inputs(
        self, lon_a: Any, lon_b: Any, method: str, points: Sequence[str] | None
    ) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
        self._check_method(method)
        a = validation.longitudes("lon_a", lon_a)
        b = validation.longitudes("lon_b", lon_b)
        validation.same_points("lon_a", a, "lon_b", b)
        return a, b, self._points(points, a.shape[1])


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
