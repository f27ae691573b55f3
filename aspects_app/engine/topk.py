"""The k best columns of every row, deterministic under ties: higher score first, then lower column index.

The order is total, so the answer does not depend on how rows or columns were chunked, nor on the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .xp_ops import argsort_descending, concat, contiguous, count_true, cumulative_count, kth_smallest, reshape


@dataclass(frozen=True)
class TopK:
    """``indices[r]`` are the k best partners of row ``r``, best first; ``scores[r]`` their scores."""

    scores: npt.NDArray[Any]
    indices: npt.NDArray[np.int64]
    backend: str = "numpy"

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"i": row, "rank": rank, "j": int(j), "score": s}
            for row, (cols, vals) in enumerate(zip(self.indices, self.scores.tolist(), strict=True))
            for rank, (j, s) in enumerate(zip(cols, vals, strict=True))
        ]


def select_top_k(xp: Any, scores: Any, k: int) -> tuple[Any, Any]:
    """Column indices (rows, k) and their scores of the k best entries of each row of ``scores`` (rows, cols)."""
    rows, cols = scores.shape
    if k >= cols:
        index = xp.broadcast_to(xp.arange(cols), (rows, cols))
        return _sort_rows(xp, scores, contiguous(xp, index))
    # The k-th best value per row; everything strictly better is in, ties at it are filled by lowest index.
    kth = kth_smallest(xp, scores, cols - k)
    better = scores > kth
    missing = k - count_true(xp, better, axis=1)
    tied = scores == kth
    chosen = better | (tied & (cumulative_count(xp, tied, axis=1) <= missing))
    index = reshape(xp, xp.nonzero(chosen)[1], (rows, k))  # row-major, so ascending column within each row
    return _sort_rows(xp, xp.take_along_axis(scores, index, axis=1), index)


def _sort_rows(xp: Any, values: Any, index: Any) -> tuple[Any, Any]:
    """Order each row by value descending; a stable sort keeps ascending index among equal values."""
    order = argsort_descending(xp, values, axis=1)
    return xp.take_along_axis(index, order, axis=1), xp.take_along_axis(values, order, axis=1)


def merge_top_k(xp: Any, best: tuple[Any, Any] | None, block: tuple[Any, Any], k: int) -> tuple[Any, Any]:
    """Merge a later column block's top-k into the running one; every earlier index is lower than every later."""
    if best is None:
        return block
    index = concat(xp, [best[0], block[0]], axis=1)
    values = concat(xp, [best[1], block[1]], axis=1)
    index, values = _sort_rows(xp, values, index)
    keep = min(k, int(index.shape[1]))  # the standard leaves slices past the end unspecified
    return index[:, :keep], values[:, :keep]
