"""Namespace-neutral array operations for the engine's ``xp``-style code.

NumPy and CuPy take the in-place path: ufuncs write into pooled buffers through ``out=`` (what the memory estimator
counts), and NumPy also keeps its own shortcuts (``np.take(mode="clip")``, ``np.partition``, bool views). Any other
namespace gets functions of the array API standard only, results assigned with ``out[...] = value``: slower and with
temporaries, but it lets the test suite run the engine on ``array_api_strict`` and catch calls another library
would reject.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def numpy_like(xp: Any) -> bool:
    """Whether ``xp`` is NumPy or CuPy: ufuncs with ``out=``/``casting=`` and NumPy's extra functions and methods."""
    return xp is np or getattr(xp, "__name__", None) == "cupy"


def dtype(xp: Any, np_dtype: Any) -> Any:
    """The namespace's dtype for a NumPy dtype (``np.intp`` is ``int64`` or ``int32`` by its name)."""
    if numpy_like(xp):
        return np.dtype(np_dtype)
    return getattr(xp, np.dtype(np_dtype).name)


def astype(xp: Any, x: Any, np_dtype: Any) -> Any:
    """``x`` cast to a NumPy dtype, as a new array."""
    if numpy_like(xp):
        return x.astype(np_dtype)
    return xp.astype(x, dtype(xp, np_dtype))


def reshape(xp: Any, x: Any, shape: tuple[int, ...]) -> Any:
    """``x`` reshaped without copying, so that writes reach a pooled buffer (standard: an error if it must copy)."""
    if numpy_like(xp):
        return x.reshape(shape)
    # Zero-size: nothing to write through, and array_api_strict cannot show that empty arrays share memory.
    return xp.reshape(x, shape, copy=False if x.size else None)


def apply_into(xp: Any, func: Callable[..., Any], *args: Any, out: Any, **kwargs: Any) -> None:
    """``out[...] = func(*args, **kwargs)`` for an elementwise function or reduction of ``xp``, in place when it can."""
    if numpy_like(xp):
        func(*args, out=out, **kwargs)
    else:
        out[...] = func(*args, **kwargs)


def scaled_index_into(xp: Any, x: Any, scale: float, out: Any) -> None:
    """``out[...] = trunc(x * scale)`` into an integer ``out``: a floor for ``x >= 0``, without a float temporary."""
    if numpy_like(xp):
        xp.multiply(x, scale, out=out, casting="unsafe")
    else:
        out[...] = xp.astype(x * scale, out.dtype)


def take_into(xp: Any, table: Any, index: Any, out: Any, axis: int | None = None) -> None:
    """``out[...] = table[index]`` (1-D ``table``, any ``index`` shape), or ``take(table, index, axis)`` (1-D index)."""
    if xp is np:
        # No buffered bounds check: indices are in range by construction.
        np.take(table, index, axis=axis, out=out, mode="clip")
    elif numpy_like(xp):
        xp.take(table, index, axis=axis, out=out)
    elif axis is None:
        out[...] = xp.reshape(xp.take(table, xp.reshape(index, (-1,))), out.shape)
    else:
        out[...] = xp.take(table, index, axis=axis)


def gather_2d(xp: Any, x: Any, rows: Any, cols: Any) -> Any:
    """``x[rows[n], cols[n]]`` for each ``n`` of aligned 1-D index arrays into a 2-D ``x``."""
    if numpy_like(xp):
        return x[rows, cols]
    # Multi-array integer indexing is newer than take; a flat take is standard since the first revision.
    flat = astype(xp, rows, np.int64) * x.shape[1] + astype(xp, cols, np.int64)
    return xp.take(xp.reshape(x, (-1,)), flat)


def flatnonzero(xp: Any, x: Any) -> Any:
    """Flat (row-major) positions of the true or nonzero elements of ``x``, ascending."""
    if numpy_like(xp):
        return xp.flatnonzero(x)
    return xp.nonzero(xp.reshape(x, (-1,)))[0]


def put(xp: Any, x: Any, index: Any, values: Any) -> None:
    """``x[index] = values`` in place, for a 1-D ``x`` and ascending unique ``index`` (what ``nonzero`` returns)."""
    if numpy_like(xp):
        x[index] = values
        return
    if not index.shape[0]:
        return
    # The standard has no integer scatter: find each position in ``index`` and assign through a boolean mask.
    positions = xp.arange(x.shape[0], dtype=index.dtype)
    slot = xp.clip(xp.searchsorted(index, positions), 0, index.shape[0] - 1)
    chosen = xp.take(index, slot) == positions
    x[chosen] = xp.take(values, slot)[chosen]


def div_mod(xp: Any, x: Any, divisor: int) -> tuple[Any, Any]:
    """``(x // divisor, x % divisor)``, in one pass where a ``divmod`` ufunc exists."""
    if numpy_like(xp):
        quotient, remainder = xp.divmod(x, divisor)
        return quotient, remainder
    return x // divisor, x % divisor


def bool_as_int8(xp: Any, mask: Any) -> Any:
    """A boolean array as 0/1 int8: a free view on NumPy and CuPy, a cast elsewhere."""
    if numpy_like(xp):
        return mask.view(np.int8)
    return xp.astype(mask, xp.int8)


def mask_into(xp: Any, x: Any, mask: Any, out: Any) -> None:
    """``out[...] = x`` where ``mask``, else 0 (finite ``x``: NumPy multiplies by the mask, faster than a select)."""
    if numpy_like(xp):
        xp.multiply(x, mask, out=out)
    else:
        out[...] = xp.where(mask, x, xp.zeros_like(x))


def kth_smallest(xp: Any, x: Any, kth: int) -> Any:
    """The ``kth`` smallest value (0-based) of each row of a 2-D ``x``, as a (rows, 1) column."""
    if numpy_like(xp):
        return xp.partition(x, kth, axis=1)[:, kth : kth + 1]
    return xp.sort(x, axis=1)[:, kth : kth + 1]


def count_true(xp: Any, mask: Any, axis: int) -> Any:
    """How many elements of a boolean ``mask`` are true along ``axis``, the axis kept (length 1)."""
    if numpy_like(xp):
        return mask.sum(axis=axis, keepdims=True)
    return xp.sum(xp.astype(mask, xp.int64), axis=axis, keepdims=True)


def cumulative_count(xp: Any, mask: Any, axis: int) -> Any:
    """Running count of the true elements of a boolean ``mask`` along ``axis`` (inclusive)."""
    if numpy_like(xp):
        return xp.cumsum(mask, axis=axis)
    return xp.cumulative_sum(xp.astype(mask, xp.int64), axis=axis)


def argsort_descending(xp: Any, x: Any, axis: int) -> Any:
    """Indices that sort ``x`` descending along ``axis``; stable, so equal values keep their order."""
    if numpy_like(xp):
        # NumPy's sorts have no descending order: a stable ascending sort of the negation is one.
        return xp.argsort(-x, axis=axis, kind="stable")
    return xp.argsort(x, axis=axis, descending=True, stable=True)


def concat(xp: Any, arrays: Sequence[Any], axis: int) -> Any:
    """The arrays joined along ``axis`` (``concatenate`` in NumPy before 2.0 and CuPy, ``concat`` in the standard)."""
    if numpy_like(xp):
        return xp.concatenate(arrays, axis=axis)
    return xp.concat(list(arrays), axis=axis)


def contiguous(xp: Any, x: Any) -> Any:
    """A C-contiguous copy of ``x`` where it is a view (a broadcast, say); NumPy returns ``x`` if already contiguous."""
    if numpy_like(xp):
        return xp.ascontiguousarray(x)
    return xp.asarray(x, copy=True)
