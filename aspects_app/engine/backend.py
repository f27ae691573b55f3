"""Array backends: one numeric code path written against a namespace ``xp`` (NumPy, or CuPy on a GPU).

Following CuPy's ``get_array_module`` and scikit-learn's array-API support, kernels receive ``backend.xp`` and
never import CuPy themselves; CuPy is imported only when a GPU backend is asked for.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FieldError

if TYPE_CHECKING:
    from .fused import FusedKernels

logger = logging.getLogger("aspects_app.engine")

BACKEND_NAMES: tuple[str, ...] = ("auto", "numpy", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (library missing, no device)."""


@dataclass
class Backend:
    """A namespace plus the few device operations the engine needs beyond it."""

    name: str
    xp: ModuleType
    # Why "auto" did not get the first choice, or why a device failed and work moved to the CPU; recorded in
    # results and batch runs.
    fallback_reason: str | None = None
    # Fused kernels for this namespace's device (None: the xp code path does the work).
    kernels: FusedKernels | None = None
    # Errors after which the calculator retries with smaller chunks (out of memory), or moves to the CPU.
    oom_errors: tuple[type[BaseException], ...] = ()
    device_errors: tuple[type[BaseException], ...] = ()
    # Pinned staging buffers per thread: calculators serve concurrent requests, and a transfer's view must not be
    # overwritten by another thread's before it is copied out.
    _pinned: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(array, dtype=dtype)

    @property
    def can_fall_back(self) -> bool:
        """Whether a failure of this backend is one the calculator recovers from (a device's, not the CPU's)."""
        return bool(self.oom_errors or self.device_errors)

    def to_numpy(self, array: Any) -> np.ndarray[Any, Any]:
        if self.is_gpu:
            return self._through_pinned(array).copy()
        return np.asarray(array)

    def host_view(self, array: Any) -> np.ndarray[Any, Any]:
        """The array on the host for an immediate copy: on a GPU a view of the pinned staging buffer, valid only
        until the next transfer (one host copy fewer than :meth:`to_numpy`)."""
        if self.is_gpu:
            return self._through_pinned(array)
        return self.to_numpy(array)

    def copy_into(self, array: Any, out: np.ndarray[Any, Any]) -> None:
        """``out[...] = array`` for a device array, through pinned host memory on a GPU."""
        if self.is_gpu:
            np.copyto(out, self._through_pinned(array))
        else:
            out[...] = np.asarray(array)

    def _through_pinned(self, array: Any) -> np.ndarray[Any, Any]:
        """The device array copied into a reused page-locked buffer (valid until this thread's next transfer): the
        DMA engine reads pinned memory directly, where pageable memory costs an extra staging copy in the driver."""
        array = self.xp.ascontiguousarray(array)  # a column slice of merged top-k lists, say: one copy on the device
        nbytes = int(array.nbytes)
        thread = threading.get_ident()
        staging = self._pinned.get(thread)
        if staging is None or staging.nbytes < nbytes:
            # Only on a GPU backend, where CuPy (and so cupyx) is importable.
            staging = importlib.import_module("cupyx").empty_pinned(max(nbytes, 1 << 20), dtype=np.uint8)
            self._pinned[thread] = staging
        view = staging[:nbytes].view(array.dtype).reshape(array.shape)
        array.get(out=view)
        return view  # type: ignore[no-any-return]

    def synchronize(self) -> None:
        """Wait for queued device work, so that timings measure the work and not its launch."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def free_device_bytes(self) -> int | None:
        """Device memory a chunk may use: free memory plus the pool's idle blocks, within the pool's limit."""
        if not self.is_gpu:
            return None
        free, _total = self.xp.cuda.runtime.memGetInfo()
        pool = self.xp.get_default_memory_pool()
        # Blocks the pool holds but does not use are free for our purposes.
        available = int(free) + int(pool.free_bytes())
        limit = int(pool.get_limit())
        if limit:  # 0: no limit
            available = min(available, limit - int(pool.used_bytes()))
        return max(available, 0)

    def set_memory_limit(self, limit_bytes: int | None) -> None:
        """Cap the device memory pool (CuPy's ``MemoryPool.set_limit``): allocations beyond it raise out-of-memory,
        which the calculator answers with smaller chunks. None removes the cap. The pool is per process."""
        if self.is_gpu:
            self.xp.get_default_memory_pool().set_limit(size=int(limit_bytes or 0))

    def memory_pool_stats(self) -> dict[str, float]:
        if not self.is_gpu:
            return {}
        pool = self.xp.get_default_memory_pool()
        free, total = self.xp.cuda.runtime.memGetInfo()
        return {
            "gpu_pool_used_mb": pool.used_bytes() / 2**20,
            "gpu_pool_total_mb": pool.total_bytes() / 2**20,
            "gpu_pool_limit_mb": pool.get_limit() / 2**20,
            "gpu_pinned_free_blocks": float(self.xp.get_default_pinned_memory_pool().n_free_blocks()),
            "gpu_device_used_mb": (total - free) / 2**20,
            "gpu_device_total_mb": total / 2**20,
        }

    def free_pools(self) -> None:
        if self.is_gpu:
            self._pinned.clear()  # their pages go back to the pinned pool, then to the system
            self.xp.get_default_memory_pool().free_all_blocks()
            self.xp.get_default_pinned_memory_pool().free_all_blocks()


def _cupy_backend() -> Backend:
    try:
        cupy = importlib.import_module("cupy")
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        raise BackendUnavailable(f"CuPy is not importable ({exc.__class__.__name__}: {exc})") from exc
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, or a driver error
        raise BackendUnavailable(f"CUDA device query failed ({exc})") from exc
    if count < 1:
        raise BackendUnavailable("no CUDA device is present")
    from .fused import CudaLauncher, FusedKernels  # only device backends need the kernels

    launcher = CudaLauncher(cupy)
    try:
        launcher.compile(top_k=1)  # NVRTC missing or failing is found here, so that "auto" can take NumPy instead
    except Exception as exc:  # CompileException, NVRTCError, a CUDA library not found: all mean "not here"
        problem = f"{exc.__class__.__name__}: {exc}"
        raise BackendUnavailable(f"the fused CUDA kernels do not compile here ({problem})") from exc
    return Backend(
        "cupy",
        cupy,
        kernels=FusedKernels(launcher),
        oom_errors=_cupy_errors(cupy, ("cuda.memory.OutOfMemoryError",)),
        device_errors=_cupy_errors(
            cupy,
            (
                "cuda.runtime.CUDARuntimeError",
                "cuda.driver.CUDADriverError",
                "cuda.compiler.CompileException",
                "cuda.nvrtc.NVRTCError",
            ),
        ),
    )


def _emulated_backend() -> Backend:
    """NumPy arrays, with the GPU's fused kernels compiled for the CPU and run serially: the GPU code path, checkable
    without a GPU (tests, ``benchmarks/gpu.py --emulate``). Slow by design."""
    from .fused import FusedKernels, HostLauncher, host_compiler_available  # only device backends need the kernels

    problem = host_compiler_available()
    if problem is not None:
        raise BackendUnavailable(problem)
    return Backend("cuda-emulated", np, kernels=FusedKernels(HostLauncher()))


def _cupy_errors(cupy: Any, paths: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """CuPy's exception classes by dotted path, skipping any this CuPy version does not have."""
    found: list[type[BaseException]] = []
    for path in paths:
        target: Any = cupy
        for part in path.split("."):
            target = getattr(target, part, None)
        if isinstance(target, type) and issubclass(target, BaseException):
            found.append(target)
    return tuple(found)


def get_backend(name: str = "auto") -> Backend:
    """The backend called ``name``; ``"auto"`` takes CuPy when a GPU is usable, else NumPy, logging why.

    ``"array_api_strict"`` (not a user-facing choice) runs the engine's namespace-neutral code path on the strict
    array API namespace: slow, for portability tests that catch calls other libraries would reject.
    """
    if name == "numpy":
        return Backend("numpy", np)
    if name == "array_api_strict":
        try:
            strict = importlib.import_module("array_api_strict")
        except ImportError as exc:
            raise BackendUnavailable(f"array_api_strict is not importable ({exc})") from exc
        version = str(strict.__array_api_version__)
        if version < "2024.12":  # YYYY.MM strings order as dates
            # The engine uses Python scalars as function arguments and take_along_axis, both from 2024.12.
            raise BackendUnavailable(
                f"array_api_strict {strict.__version__} implements the {version} standard; the engine needs 2024.12"
            )
        return Backend("array_api_strict", strict)
    if name == "cupy":
        return _cupy_backend()
    if name == "cuda-emulated":
        return _emulated_backend()
    if name != "auto":
        raise FieldError("backend", f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    try:
        return _cupy_backend()
    except BackendUnavailable as exc:
        logger.info("backend auto: using numpy (%s)", exc)
        return Backend("numpy", np, fallback_reason=str(exc))
