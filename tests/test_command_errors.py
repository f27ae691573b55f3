"""Engine and backend errors in the commands: a ``CommandError`` naming the flag, and a run that records the
failure (resumable), never a traceback and a run left pending."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aspects_app.engine import backend as engine_backend
from aspects_app.models import BatchRun


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy's backend as it fails on a host without CuPy (or without a device), whatever this host has."""

    def unavailable() -> Any:
        raise engine_backend.BackendUnavailable("CuPy is not importable (ModuleNotFoundError: No module named 'cupy')")

    monkeypatch.setattr(engine_backend, "_cupy_backend", unavailable)


def compute(*args: str) -> str:
    out = io.StringIO()
    call_command("compute_aspects", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_unavailable_backend_fails_the_run_with_a_command_error(make_chart: Any, no_gpu: None) -> None:
    charts = [make_chart() for _ in range(3)]
    with pytest.raises(CommandError, match=r"--backend: CuPy is not importable.*--resume") as raised:
        compute("--mode", "natal", "--backend", "cupy")
    run = BatchRun.objects.get()
    assert run.status == BatchRun.Status.FAILED
    assert "BackendUnavailable: CuPy is not importable" in run.error
    assert run.finished_at is not None
    assert f"--resume {run.pk}" in str(raised.value)

    # Resumable: once the backend can run (here: its spec moved to NumPy, as a host installing CuPy would fix it).
    run.parameters["spec"]["backend"] = "numpy"
    run.save(update_fields=["parameters"])
    compute("--resume", str(run.pk))
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    assert run.progress_done == len(charts)


def test_estimate_with_an_unavailable_backend_is_a_command_error(make_chart: Any, no_gpu: None) -> None:
    make_chart()
    make_chart()
    with pytest.raises(CommandError, match="--backend: CuPy is not importable"):
        compute("--mode", "natal", "--backend", "cupy", "--estimate")
    assert not BatchRun.objects.exists()


def test_a_gpu_run_is_planned_on_a_host_without_the_device(make_chart: Any, no_gpu: None) -> None:
    """Planning computes nothing: a run for the GPU workers enqueued from a web host without CuPy is planned (with
    NumPy's chunk sizes), not failed."""
    from aspects_app import batch, distributed

    ids = [make_chart().pk for _ in range(40)]
    run = batch.create_run(batch.JobSpec(modes=["top-k"], group_a=ids, backend="cupy"))
    blocks = distributed.plan(run, "aspects-gpu")
    run.refresh_from_db()
    assert run.status == BatchRun.Status.RUNNING
    assert run.parameters["spec"]["backend"] == "cupy"  # the workers still compute on the GPU
    assert sum(block.stop - block.start for block in blocks) == len(ids)
