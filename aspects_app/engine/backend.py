"""Array backends: one numeric code path written against a namespace ``xp`` (NumPy, or CuPy on a GPU).

Following CuPy's ``get_array_module`` and scikit-learn's array-API support, kernels receive ``backend.xp`` and
never import CuPy themselves; CuPy is imported only when a GPU backend is asked for.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

logger = logging.getLogger("aspects_app.engine")

BACKEND_NAMES: tuple[str, ...] = ("auto", "numpy", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (library missing, no device)."""


@dataclass
class Backend:
    """A namespace plus the few device operations the engine needs beyond it."""

    name: str
    xp: ModuleType
    # Why "auto" did not get the first choice; recorded in results and batch runs.
    fallback_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray[Any, Any]:
        if self.is_gpu:
            return self.xp.asnumpy(array)  # type: ignore[no-any-return]
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for queued device work, so that timings measure the work and not its launch."""
        if self.is_gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def free_device_bytes(self) -> int | None:
        if not self.is_gpu:
            return None
        free, _total = self.xp.cuda.runtime.memGetInfo()
        pool = self.xp.get_default_memory_pool()
        # Blocks the pool holds but does not use are free for our purposes.
        return int(free) + int(pool.free_bytes())

    def memory_pool_stats(self) -> dict[str, float]:
        if not self.is_gpu:
            return {}
        pool = self.xp.get_default_memory_pool()
        return {
            "gpu_pool_used_mb": pool.used_bytes() / 2**20,
            "gpu_pool_total_mb": pool.total_bytes() / 2**20,
        }

    def free_pools(self) -> None:
        if self.is_gpu:
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
    return Backend("cupy", cupy)


def get_backend(name: str = "auto") -> Backend:
    """The backend called ``name``; ``"auto"`` takes CuPy when a GPU is usable, else NumPy, logging why."""
    if name == "numpy":
        return Backend("numpy", np)
    if name == "cupy":
        return _cupy_backend()
    if name != "auto":
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    try:
        return _cupy_backend()
    except BackendUnavailable as exc:
        logger.info("backend auto: using numpy (%s)", exc)
        return Backend("numpy", np, fallback_reason=str(exc))
