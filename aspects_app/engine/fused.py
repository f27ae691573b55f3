"""The fused kernels of ``fused_kernels.cu``, launched from Python: on a GPU through CuPy, or on the CPU through the
host's C++ compiler (the emulation the test suite uses, so that CI checks the GPU path's results without a GPU).

Each operation reads longitudes and writes its reduced result in one kernel: hit codes (1 byte per cell, then a
nonzero scan lists the hits in order), hit columns with movement, scores, and top-k (per-segment lists merged on
the device, so only ``k`` per row come back).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .aspects import ASPECT_NAMES
from .classify import ANGLES, NO_ASPECT
from .errors import FieldError
from .hits import APPLYING, SEPARATING, STATIC
from .kernels import LOOKAHEAD_DAYS, STATIC_CHANGE, STATIC_RELATIVE_SPEED, HitKernel
from .scoring import DESTINY_SIGN_POINTS, HIGH_PRECISION_ORB, DiscepoloScorer, WeightedScorer

KERNEL_SOURCE = importlib.resources.files(__package__).joinpath("fused_kernels.cu").read_text(encoding="utf-8")
NO_COLUMN = 2**63 - 1  # an empty top-k slot's column: every real column is lower, so beats it on ties
# The largest k with a fused top-k (the per-thread list lives in registers or local memory); a larger k selects from
# fused score blocks with the namespace's sort instead, still on the device.
MAX_FUSED_K = 64
# Bytes per cell of a fused hit chunk: the code (1) and the nonzero scan's work (up to 8 per cell in CuPy).
FUSED_HIT_CELL_BYTES = 1 + 8
# The hit columns packed in one buffer, widest first so each column stays aligned: a chunk's hits then cross to
# the host in one transfer, not seven.
HIT_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("orb", np.float64),
    ("i", np.int32),
    ("j", np.int32),
    ("p1", np.uint8),
    ("p2", np.uint8),
    ("aspect", np.uint8),
    ("movement", np.uint8),
)
PACKED_HIT_BYTES: int = sum(np.dtype(dtype).itemsize for _, dtype in HIT_COLUMNS)
# Bytes per hit while its columns are written: the flat index (8) and the packed columns.
FUSED_HIT_BYTES = 8 + PACKED_HIT_BYTES
# Threads per top-k launch that keep a GPU's streaming multiprocessors busy; segments shorter than this many
# columns are not worth a list of their own.
TOPK_TARGET_TASKS = 1 << 19
MIN_SEGMENT_LENGTH = 32

# NVRTC options: no fused multiply-add, so every product rounds on its own, as in NumPy, and results are identical.
CUDA_OPTIONS: tuple[str, ...] = ("--std=c++14", "--fmad=false")
KERNEL_NAMES: tuple[str, ...] = (
    "hit_codes",
    "hit_columns",
    "discepolo_scores",
    "weighted_scores",
    "topk_discepolo",
    "topk_weighted",
    "topk_merge_short",
    "topk_merge_double",
)

CUDA_PRELUDE = """
#define DEVICE __device__ __forceinline__
#define GLOBAL __global__
#define EXTERN_C extern "C"
#define FOR_EACH(t, n) \\
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < (n); \\
         t += (long long)blockDim.x * gridDim.x)
"""
HOST_PRELUDE = """
#include <math.h>
#define DEVICE static inline
#define GLOBAL
#define EXTERN_C extern "C"
#define FOR_EACH(t, n) for (long long t = 0; t < (n); ++t)
"""


def constants_prelude(top_k: int) -> str:
    """The engine's constants as C macros, from the Python modules that own them (one source of truth)."""
    values: dict[str, str] = {
        "NUM_ASPECTS": str(len(ASPECT_NAMES)),
        "NO_ASPECT": f"({NO_ASPECT})",
        "MOVE_STATIC": str(STATIC),
        "MOVE_APPLYING": str(APPLYING),
        "MOVE_SEPARATING": str(SEPARATING),
        "LOOKAHEAD_DAYS": repr(LOOKAHEAD_DAYS),
        "STATIC_RELATIVE_SPEED": repr(STATIC_RELATIVE_SPEED),
        "STATIC_CHANGE": repr(STATIC_CHANGE),
        "HIGH_PRECISION_ORB": repr(float(HIGH_PRECISION_ORB)),
        "DESTINY_SIGN_POINTS": str(DESTINY_SIGN_POINTS),
        "NO_COLUMN": f"{NO_COLUMN}LL",
        "TOPK_K": str(top_k),
    }
    return "".join(f"#define {name} {value}\n" for name, value in values.items())


class Launcher(Protocol):
    """Runs a kernel of ``fused_kernels.cu`` over ``size`` work items with ``args`` (arrays and NumPy scalars)."""

    @property
    def xp(self) -> Any: ...

    def __call__(self, kernel: str, size: int, args: Sequence[Any], top_k: int = 1) -> None: ...


def _check_contiguous(kernel: str, args: Sequence[Any]) -> None:
    for n, arg in enumerate(args):
        if hasattr(arg, "flags") and not arg.flags.c_contiguous:
            raise ValueError(f"{kernel}: argument {n} is not C-contiguous; kernels index it as a flat array")


class CudaLauncher:
    """Compiles the kernels with NVRTC through CuPy (cached per ``TOPK_K``, and on disk by CuPy) and launches them."""

    THREADS = 256
    MAX_BLOCKS = 1 << 20  # grid-stride loops cover the rest

    def __init__(self, cupy: Any) -> None:
        self.xp = cupy
        self._modules: dict[int, Any] = {}
        self._lock = threading.Lock()

    def compile(self, top_k: int) -> Any:
        """The module whose top-k lists hold ``top_k``, compiled on first use (then cached, also on disk)."""
        with self._lock:
            module = self._modules.get(top_k)
            if module is None:
                code = CUDA_PRELUDE + constants_prelude(top_k) + KERNEL_SOURCE
                module = self.xp.RawModule(code=code, options=CUDA_OPTIONS)
                self._modules[top_k] = module
            return module

    def __call__(self, kernel: str, size: int, args: Sequence[Any], top_k: int = 1) -> None:
        if size <= 0:
            return
        _check_contiguous(kernel, args)
        function = self.compile(top_k).get_function(kernel)
        blocks = min(-(-size // self.THREADS), self.MAX_BLOCKS)
        function((blocks,), (self.THREADS,), tuple(args))


_CTYPES = {
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int16): ctypes.c_int16,
    np.dtype(np.float64): ctypes.c_double,
}


class HostLauncher:
    """The same kernels compiled by the host's C++ compiler (``CXX``, default ``c++``) and run serially on NumPy
    arrays: the CPU emulation of the GPU path, for tests and debugging. It is not fast, and not meant to be."""

    def __init__(self, compiler: str | None = None) -> None:
        self.xp = np
        self.compiler = compiler or os.environ.get("CXX", "c++")
        self._libraries: dict[int, ctypes.CDLL] = {}
        self._lock = threading.Lock()

    def _library(self, top_k: int) -> ctypes.CDLL:
        with self._lock:
            library = self._libraries.get(top_k)
            if library is None:
                code = HOST_PRELUDE + constants_prelude(top_k) + KERNEL_SOURCE
                library = self._libraries[top_k] = self._compile(code)
            return library

    def _compile(self, code: str) -> ctypes.CDLL:
        digest = hashlib.sha256((self.compiler + code).encode()).hexdigest()[:16]
        directory = os.path.join(tempfile.gettempdir(), "aspects_app_fused")
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, f"kernels-{digest}.so")
        if not os.path.exists(target):
            source = os.path.join(directory, f"kernels-{digest}-{os.getpid()}.cpp")
            partial = f"{target}.{os.getpid()}.tmp"
            with open(source, "w", encoding="utf-8") as handle:
                handle.write(code)
            # -ffp-contract=off: no fused multiply-add, the same rounding as NVRTC's --fmad=false and NumPy.
            flags = ["-std=c++14", "-O2", "-shared", "-fPIC", "-ffp-contract=off"]
            command = [self.compiler, *flags, "-o", partial, source]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            os.unlink(source)
            if result.returncode:
                raise RuntimeError(f"compiling the fused kernels failed:\n{result.stderr}")
            os.replace(partial, target)  # atomic: concurrent test processes never load a half-written library
        return ctypes.CDLL(target)

    def __call__(self, kernel: str, size: int, args: Sequence[Any], top_k: int = 1) -> None:
        if size <= 0:
            return
        _check_contiguous(kernel, args)
        function = getattr(self._library(top_k), kernel)
        converted: list[Any] = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                converted.append(ctypes.c_void_p(arg.ctypes.data))
            elif isinstance(arg, np.generic):
                converted.append(_CTYPES[arg.dtype](arg.item()))
            else:
                raise TypeError(f"{kernel}: pass arrays or NumPy scalars, got {type(arg).__name__}")
        function.argtypes = [type(value) for value in converted]
        function.restype = None
        function(*converted)


def host_compiler_available(compiler: str | None = None) -> str | None:
    """None when the host emulation can compile here, else why not (for a skip message)."""
    try:
        HostLauncher(compiler)._library(1)
    except (OSError, RuntimeError) as exc:
        return f"host C++ compiler unusable ({exc.__class__.__name__}: {str(exc)[:200]})"
    return None


def unpack_hits(packed: Any, count: int) -> dict[str, Any]:
    """Views of the columns in a packed hit buffer of ``count`` hits (on the device or on the host)."""
    columns: dict[str, Any] = {}
    offset = 0
    for name, dtype in HIT_COLUMNS:
        size = np.dtype(dtype).itemsize * count
        columns[name] = packed[offset : offset + size].view(dtype)
        offset += size
    return columns


def _i64(value: int) -> np.int64:
    return np.int64(value)


def _i32(value: int) -> np.int32:
    return np.int32(value)


@dataclass(frozen=True)
class HitTables:
    """A hit kernel's layout and orb bounds in the dtypes the fused kernels read, on the launcher's device."""

    p1: Any
    p2: Any
    pair_profile: Any
    lo: Any
    hi: Any
    angles: Any
    pairs: int

    @classmethod
    def build(cls, xp: Any, kernel: HitKernel) -> HitTables:
        profiles = kernel.classifier.profiles
        return cls(
            p1=xp.asarray(kernel.layout.p1.astype(np.int32)),
            p2=xp.asarray(kernel.layout.p2.astype(np.int32)),
            pair_profile=xp.asarray(profiles.pair_profile.astype(np.int32)),
            lo=xp.asarray(np.ascontiguousarray(profiles.lo).ravel()),
            hi=xp.asarray(np.ascontiguousarray(profiles.hi).ravel()),
            angles=xp.asarray(ANGLES),
            pairs=kernel.layout.size,
        )


@dataclass(frozen=True)
class DiscepoloTables:
    """A discepolo scorer's terms and point tables on the launcher's device."""

    term_a: Any
    term_b: Any
    term_table: Any
    lo: Any
    hi: Any
    angles: Any
    precise: Any
    standard: Any
    sun: int
    num_terms: int

    @classmethod
    def build(cls, xp: Any, scorer: DiscepoloScorer) -> DiscepoloTables:
        terms = scorer.terms
        return cls(
            term_a=xp.asarray(np.array([t.column_a for t in terms], dtype=np.int32)),
            term_b=xp.asarray(np.array([t.column_b for t in terms], dtype=np.int32)),
            term_table=xp.asarray(np.array([t.table for t in terms], dtype=np.int32)),
            lo=xp.asarray(scorer.lo),
            hi=xp.asarray(scorer.hi),
            angles=xp.asarray(ANGLES),
            precise=xp.asarray(np.ascontiguousarray(scorer.precise).ravel()),
            standard=xp.asarray(np.ascontiguousarray(scorer.standard).ravel()),
            sun=scorer.sun,
            num_terms=len(terms),
        )

    def args(self) -> list[Any]:
        return [
            _i32(self.num_terms),
            self.term_a,
            self.term_b,
            self.term_table,
            self.lo,
            self.hi,
            self.angles,
            self.precise,
            self.standard,
            _i32(self.sun),
        ]


@dataclass(frozen=True)
class WeightedTables:
    """A weighted scorer's per-(profile, aspect) slopes and harmonies and its pair weights, on the device."""

    hits: HitTables
    slope: Any
    harmony: Any
    pair_weight: Any
    scale: float

    @classmethod
    def build(cls, xp: Any, scorer: WeightedScorer) -> WeightedTables:
        # The scorer's tables already live on this namespace's device, flat and contiguous.
        return cls(
            hits=HitTables.build(xp, scorer.kernel),
            slope=scorer.slope,
            harmony=scorer.harmony,
            pair_weight=scorer.pair_weight,
            scale=scorer.scale,
        )

    def args(self) -> list[Any]:
        h = self.hits
        return [
            _i64(h.pairs),
            h.p1,
            h.p2,
            h.pair_profile,
            h.lo,
            h.hi,
            h.angles,
            self.slope,
            self.harmony,
            self.pair_weight,
            np.float64(self.scale),
        ]


class FusedKernels:
    """The engine's operations as fused kernel launches on one launcher's namespace (CuPy, or NumPy emulated)."""

    def __init__(self, launcher: Launcher) -> None:
        self.launch = launcher
        self.xp = launcher.xp

    def hits(
        self,
        tables: HitTables,
        a: Any,
        b: Any,
        paired: bool,
        row_offset: int,
        col_offset: int,
        speed_a: Any = None,
        speed_b: Any = None,
    ) -> tuple[Any, int]:
        """The hits of rows ``a`` against rows ``b`` (or row by row, ``paired``), packed in one device buffer (see
        :func:`unpack_hits`), and their count. ``speed_a``/``speed_b`` are both given (movement) or both None."""
        xp = self.xp
        rows, num_points = a.shape
        cols = 1 if paired else b.shape[0]
        cells = rows * cols * tables.pairs
        codes = xp.empty(cells, dtype=np.uint8)
        self.launch(
            "hit_codes",
            cells,
            [a, b, _i64(rows), _i64(cols), _i64(num_points), _i64(tables.pairs), _i32(int(paired)), tables.p1,
             tables.p2, tables.pair_profile, tables.lo, tables.hi, codes],
        )  # fmt: skip
        flat = xp.flatnonzero(codes).astype(np.int64, copy=False)
        count = int(flat.shape[0])
        packed = xp.empty(count * PACKED_HIT_BYTES, dtype=np.uint8)
        out = unpack_hits(packed, count)
        has_speed = speed_a is not None
        self.launch(
            "hit_columns",
            count,
            [flat, _i64(count), codes, a, b, speed_a if has_speed else a, speed_b if has_speed else b,
             _i32(int(has_speed)), _i64(cols), _i64(num_points), _i64(tables.pairs), _i32(int(paired)),
             _i64(row_offset), _i64(col_offset), tables.p1, tables.p2, tables.angles,
             out["i"], out["j"], out["p1"], out["p2"], out["aspect"], out["orb"], out["movement"]],
        )  # fmt: skip
        return packed, count

    def discepolo_scores(self, tables: DiscepoloTables, a: Any, b: Any, out: Any) -> None:
        """kerykeion's relationship scores of rows ``a`` against rows ``b`` into ``out`` (rows, cols) int16."""
        rows, cols = a.shape[0], b.shape[0]
        self.launch(
            "discepolo_scores",
            rows * cols,
            [a, b, _i64(rows), _i64(cols), _i64(a.shape[1]), *tables.args(), out],
        )

    def weighted_scores(self, tables: WeightedTables, a: Any, b: Any, out: Any) -> None:
        """Weighted scores of rows ``a`` against rows ``b`` into ``out`` (rows, cols) float64."""
        rows, cols = a.shape[0], b.shape[0]
        head = [a, b, _i64(rows), _i64(cols), _i64(a.shape[1])]
        self.launch("weighted_scores", rows * cols, [*head, *tables.args(), out])

    @staticmethod
    def segments(rows: int, cols: int) -> tuple[int, int]:
        """(segments, segment length) of a top-k launch: enough tasks to fill a GPU, segments not too short."""
        wanted = max(1, -(-TOPK_TARGET_TASKS // max(rows, 1)))
        most = max(1, -(-cols // MIN_SEGMENT_LENGTH))
        length = -(-cols // min(wanted, most))
        return -(-cols // length), length

    def top_k(
        self,
        tables: DiscepoloTables | WeightedTables,
        a: Any,
        b: Any,
        k: int,
        excluded: Any,
        col_offset: int = 0,
    ) -> tuple[Any, Any]:
        """The ``k`` best columns of ``b`` for every row of ``a`` (``k`` <= :data:`MAX_FUSED_K`) and their scores,
        best first, ties to the lower column; columns are numbered from ``col_offset``, and ``excluded[r]`` is one
        row ``r`` may not take (-1: none). Slots beyond the candidates hold the lowest score and column
        :data:`NO_COLUMN`. Only (rows, k) leaves the device."""
        if not 1 <= k <= MAX_FUSED_K:
            raise FieldError("k", f"the fused top-k takes 1..{MAX_FUSED_K}, got {k}")
        xp = self.xp
        rows, cols = a.shape[0], b.shape[0]
        segments, length = self.segments(rows, cols)
        discepolo = isinstance(tables, DiscepoloTables)
        dtype = np.int16 if discepolo else np.float64
        # +1: the sentinel must survive negation when column blocks are merged by a descending sort.
        lowest: Any = np.int16(np.iinfo(np.int16).min + 1) if discepolo else np.float64(-np.inf)
        values = xp.empty((rows, segments, k), dtype=dtype)
        columns = xp.empty((rows, segments, k), dtype=np.int64)
        head = [a, b, _i64(rows), _i64(cols), _i64(a.shape[1]), _i64(segments), _i64(length)]
        head += [excluded, _i64(col_offset)]
        kernel = "topk_discepolo" if discepolo else "topk_weighted"
        self.launch(kernel, rows * segments, [*head, *tables.args(), lowest, values, columns], top_k=k)
        best_values = xp.empty((rows, k), dtype=dtype)
        best_columns = xp.empty((rows, k), dtype=np.int64)
        merge = "topk_merge_short" if discepolo else "topk_merge_double"
        self.launch(
            merge,
            rows,
            [values, columns, _i64(rows), _i64(segments * k), _i64(k), lowest, best_values, best_columns],
            top_k=k,
        )
        return best_columns, best_values
