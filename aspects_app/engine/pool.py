"""A thread-safe pool of scratch buffers reused across chunks and calls.

Chunks of one job have the same shapes, so allocating their temporaries once and reusing them avoids the
allocator and page faults on every chunk. The rules that keep it safe:

- a buffer is handed out only through :meth:`ArrayPool.borrow`, a context manager that returns it on exit, an
  exception included;
- a buffer is never handed out twice at once: borrowed buffers leave the free list until returned;
- what is handed out is a view of exactly the requested shape and dtype, whatever capacity the buffer has;
- results that outlive a chunk are always fresh arrays (gathers or copies), never views of a pooled buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from math import prod
from typing import Any

import numpy as np

from . import xp_ops


class ArrayPool:
    """Free buffers keyed by dtype; ``max_free_bytes`` bounds what is kept while unused."""

    def __init__(self, xp: Any = np, max_free_bytes: int = 1 << 30) -> None:
        self.xp = xp
        self.max_free_bytes = max_free_bytes
        self._lock = threading.Lock()
        self._free: dict[str, list[Any]] = {}
        self._borrowed: dict[int, Any] = {}
        self.allocations = 0
        self.reuses = 0

    @contextmanager
    def borrow(self, shape: tuple[int, ...], dtype: Any) -> Iterator[Any]:
        """A scratch array of ``shape`` and ``dtype``, uninitialised, returned to the pool when the block ends."""
        if any(int(n) < 0 for n in shape):
            raise ValueError(f"shape must not be negative, got {shape}")
        dtype = np.dtype(dtype)
        size = prod(int(n) for n in shape)
        flat = self._take(dtype, size)
        try:
            yield xp_ops.reshape(self.xp, flat[:size], shape)
        finally:
            self._give_back(dtype, flat)

    def _take(self, dtype: np.dtype[Any], size: int) -> Any:
        with self._lock:
            free = self._free.setdefault(dtype.str, [])
            # Smallest free buffer that fits, so a large one stays available for large requests.
            best = None
            for n, buffer in enumerate(free):
                if buffer.size >= size and (best is None or buffer.size < free[best].size):
                    best = n
            if best is not None:
                buffer = free.pop(best)
                self.reuses += 1
            else:
                buffer = None
        if buffer is None:
            buffer = self.xp.empty(max(size, 1), dtype=xp_ops.dtype(self.xp, dtype))
            with self._lock:
                self.allocations += 1
        with self._lock:
            self._borrowed[id(buffer)] = buffer
        return buffer

    def _give_back(self, dtype: np.dtype[Any], buffer: Any) -> None:
        with self._lock:
            self._borrowed.pop(id(buffer), None)
            free = self._free.setdefault(dtype.str, [])
            free.append(buffer)
            # Over the bound, drop the smallest buffers first: the large ones are the expensive ones to remake.
            while self._free_bytes_locked() > self.max_free_bytes and free:
                # By position: list.remove would compare arrays elementwise. One dtype per list, so size orders bytes.
                del free[min(range(len(free)), key=lambda n: free[n].size)]

    def _free_bytes_locked(self) -> int:
        # size times itemsize: standard arrays have no nbytes.
        return sum(int(b.size) * np.dtype(key).itemsize for key, buffers in self._free.items() for b in buffers)

    @property
    def free_bytes(self) -> int:
        with self._lock:
            return self._free_bytes_locked()

    @property
    def borrowed_count(self) -> int:
        with self._lock:
            return len(self._borrowed)

    def clear(self) -> None:
        """Drop every free buffer (borrowed ones go when their borrowers return them)."""
        with self._lock:
            self._free.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "allocations": self.allocations,
                "reuses": self.reuses,
                "borrowed": len(self._borrowed),
                "free_buffers": sum(len(b) for b in self._free.values()),
                "free_bytes": self._free_bytes_locked(),
            }
