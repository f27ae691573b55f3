"""Checks on every public entry's arrays: clear ``ValueError``s (:class:`FieldError`) naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FieldError

MAX_POINTS = 255  # point indices are stored as uint8


def longitudes(name: str, value: Any) -> npt.NDArray[np.float64]:
    """A (charts, points) float64 array of ecliptic longitudes in [0, 360)."""
    array = _as_float_2d(name, value)
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise FieldError(name, f"longitudes must be finite; found {array[row, col]} at [{row}, {col}]")
    out_of_range = (array < 0.0) | (array >= 360.0)
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise FieldError(name, f"longitudes must lie in [0, 360); found {array[row, col]} at [{row}, {col}]")
    return array


def speeds(name: str, value: Any, shape: tuple[int, ...]) -> npt.NDArray[np.float64] | None:
    """Daily speeds of the same shape as their longitudes, or None."""
    if value is None:
        return None
    array = _as_float_2d(name, value)
    if array.shape != shape:
        raise FieldError(name, f"shape {array.shape} does not match the longitudes' shape {shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise FieldError(name, f"speeds must be finite; found {array[row, col]} at [{row}, {col}]")
    return array


def same_points(name_a: str, a: npt.NDArray[Any], name_b: str, b: npt.NDArray[Any]) -> None:
    if a.shape[1] != b.shape[1]:
        raise FieldError(name_a, f"{a.shape[1]} points per chart but {name_b} has {b.shape[1]}; they must match")


def positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise FieldError(name, f"expected a positive integer, got {value!r}")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not np.isfinite(value):
        raise FieldError(name, f"expected a finite positive number, got {value!r}")
    if value <= 0:
        raise FieldError(name, f"expected a finite positive number, got {value!r}")
    return float(value)


def _as_float_2d(name: str, value: Any) -> npt.NDArray[np.float64]:
    if value is None:
        raise FieldError(name, "an array of shape (charts, points) is required")
    if hasattr(value, "get") and hasattr(value, "__cuda_array_interface__"):
        value = value.get()  # a CuPy array: validation runs on the host copy
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FieldError(name, f"not a numeric array ({exc})") from exc
    if array.ndim == 1 and array.size:
        raise FieldError(name, f"expected shape (charts, points), got 1-D shape {array.shape}; use arr[None, :]")
    if array.ndim != 2:
        raise FieldError(name, f"expected a 2-D array of shape (charts, points), got shape {array.shape}")
    if array.shape[1] < 1:
        raise FieldError(name, f"at least one point per chart is required, got shape {array.shape}")
    if array.shape[1] > MAX_POINTS:
        raise FieldError(name, f"at most {MAX_POINTS} points per chart, got {array.shape[1]}")
    return np.ascontiguousarray(array)
