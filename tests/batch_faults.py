"""Faults injected into batch runs, shared by the command tests of every mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aspects_app import batch


def crash_on_block(monkeypatch: pytest.MonkeyPatch, call: int) -> Callable[[], None]:
    """Make the ``call``-th block fail after it has computed and written its rows (as a crash between the write
    and the progress record would); returns a function that restores the real method."""
    real = batch.BatchJob.compute_block
    calls: list[int] = []

    def crashing(self: batch.BatchJob, mode: str, block: batch.Block, writer: Any) -> batch.BlockResult:
        result = real(self, mode, block, writer)
        calls.append(block.rows.start)
        if len(calls) == call:
            raise RuntimeError("simulated crash")
        return result

    monkeypatch.setattr(batch.BatchJob, "compute_block", crashing)
    return lambda: monkeypatch.setattr(batch.BatchJob, "compute_block", real)
