"""The GPU path without a GPU: fused kernels compiled for the CPU (the ``cuda-emulated`` backend) give the NumPy path's
results, and a failing device (out of memory, driver error) is recovered from with smaller chunks, then the CPU.

The engine's whole suite also runs on ``cuda-emulated`` (see helpers.CPU_BACKENDS); these tests add the failure
chain, which needs a device that fails on demand, and the GPU-only checks, skipped here with their reason.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aspects_app.engine import (
    AspectConfig,
    Backend,
    BackendUnavailable,
    MemoryOptimizedVectorizedCalculator,
    get_backend,
)
from aspects_app.engine.fused import (
    CUDA_OPTIONS,
    CUDA_PRELUDE,
    KERNEL_NAMES,
    KERNEL_SOURCE,
    MAX_FUSED_K,
    FusedKernels,
    HostLauncher,
    constants_prelude,
    host_compiler_available,
)

from . import nvrtc
from .helpers import CPU_BACKENDS, gpu_backend_or_skip

NO_COMPILER = host_compiler_available()
needs_compiler = pytest.mark.skipif(NO_COMPILER is not None, reason=NO_COMPILER or "")
ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_suite_runs_the_gpu_path_here() -> None:
    """Every engine test runs on ``cuda-emulated`` when a C++ compiler is here; say so loudly when it is not."""
    if NO_COMPILER is not None:
        pytest.skip(f"the GPU code path is NOT tested on this machine: {NO_COMPILER}")
    assert "cuda-emulated" in CPU_BACKENDS


class FakeOutOfMemory(MemoryError):
    """Stands in for cupy.cuda.memory.OutOfMemoryError."""


class FakeDriverError(RuntimeError):
    """Stands in for cupy.cuda.runtime.CUDARuntimeError."""


class FailingLauncher:
    """The host launcher, failing like a device would: out of memory for launches over ``oom_above`` work items,
    or a driver error on every launch."""

    def __init__(self, oom_above: int | None = None, driver_error: bool = False) -> None:
        self.inner = HostLauncher()
        self.xp = np
        self.oom_above = oom_above
        self.driver_error = driver_error
        self.launches: list[tuple[str, int]] = []

    def __call__(self, kernel: str, size: int, args: Sequence[Any], top_k: int = 1) -> None:
        self.launches.append((kernel, size))
        if self.driver_error:
            raise FakeDriverError("cudaErrorLaunchFailure: unspecified launch failure")
        if self.oom_above is not None and size > self.oom_above:
            raise FakeOutOfMemory(f"Out of memory allocating {size:,} bytes")
        self.inner(kernel, size, args, top_k)


def failing_backend(launcher: FailingLauncher) -> Backend:
    return Backend(
        "failing-device",
        np,
        kernels=FusedKernels(launcher),
        oom_errors=(FakeOutOfMemory,),
        device_errors=(FakeDriverError,),
    )


@pytest.fixture
def charts() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(11)
    a, b = rng.uniform(0, 360, (30, 13)), rng.uniform(0, 360, (25, 13))
    return {"a": a, "b": b, "sa": rng.normal(0, 3, a.shape), "sb": rng.normal(0, 3, b.shape)}


def assert_same_hits(got: Any, want: Any) -> None:
    for column in ("i", "j", "p1", "p2", "aspect", "orb", "movement"):
        g, w = getattr(got, column), getattr(want, column)
        assert (g is None and w is None) or np.array_equal(g, w), column


@needs_compiler
def test_out_of_memory_is_retried_with_smaller_chunks(
    charts: dict[str, np.ndarray[Any, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # A chunk of 30 x 25 charts x 169 point pairs is 126,750 cells; the device "holds" 40,000.
    launcher = FailingLauncher(oom_above=40_000)
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.preset("all"), backend=failing_backend(launcher))
    want = MemoryOptimizedVectorizedCalculator(config=AspectConfig.preset("all"), backend="numpy")
    with caplog.at_level(logging.WARNING, logger="aspects_app.engine"):
        hits = calc.synastry(charts["a"], charts["b"], charts["sa"], charts["sb"])
    assert_same_hits(hits, want.synastry(charts["a"], charts["b"], charts["sa"], charts["sb"]))
    assert hits.backend == "failing-device"  # recovered on the device, not on the CPU
    assert calc.backend.fallback_reason is None
    assert "out of memory" in caplog.text and "smaller chunks" in caplog.text
    assert max(size for kernel, size in launcher.launches if kernel == "hit_codes") > 40_000  # it did fail first


@needs_compiler
def test_out_of_memory_that_persists_moves_the_work_to_the_cpu(
    charts: dict[str, np.ndarray[Any, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=failing_backend(FailingLauncher(oom_above=0)))
    with caplog.at_level(logging.WARNING, logger="aspects_app.engine"):
        top = calc.top_k(charts["a"], charts["b"], k=5)
    want = MemoryOptimizedVectorizedCalculator(backend="numpy").top_k(charts["a"], charts["b"], k=5)
    assert np.array_equal(top.indices, want.indices) and np.array_equal(top.scores, want.scores)
    assert top.backend == "numpy"
    assert calc.backend.name == "numpy"
    assert "FakeOutOfMemory" in (calc.backend.fallback_reason or "")
    assert "using numpy" in caplog.text


@needs_compiler
@pytest.mark.parametrize("operation", ["synastry", "natal", "paired", "scores", "weighted", "top_k"])
def test_a_driver_error_moves_every_operation_to_the_cpu(
    charts: dict[str, np.ndarray[Any, Any]], operation: str
) -> None:
    a, b = charts["a"], charts["a"][::-1].copy()
    runs = {
        "synastry": lambda c: c.synastry(a, b),
        "natal": lambda c: c.natal(a),
        "paired": lambda c: c.paired_synastry(a, b),
        "scores": lambda c: c.scores(a, b),
        "weighted": lambda c: c.scores(a, b, method="weighted"),
        "top_k": lambda c: c.top_k(a, b, k=3),
    }
    failing = MemoryOptimizedVectorizedCalculator(backend=failing_backend(FailingLauncher(driver_error=True)))
    got = runs[operation](failing)
    want = runs[operation](MemoryOptimizedVectorizedCalculator(backend="numpy"))
    if isinstance(got, np.ndarray):
        assert np.array_equal(got, want)
    elif hasattr(got, "indices"):
        assert np.array_equal(got.indices, want.indices)
    else:
        assert_same_hits(got, want)
        assert got.backend == "numpy"
    assert "FakeDriverError" in (failing.backend.fallback_reason or "")
    assert failing.monitor.backend is failing.backend  # device figures stop once the device is gone


@needs_compiler
def test_bad_input_is_not_mistaken_for_a_device_failure() -> None:
    calc = MemoryOptimizedVectorizedCalculator(backend=failing_backend(FailingLauncher(driver_error=True)))
    with pytest.raises(ValueError, match="lon_a"):
        calc.synastry(np.full((2, 10), np.nan), np.zeros((2, 10)))
    assert calc.backend.name == "failing-device"


@needs_compiler
@pytest.mark.parametrize("k", [1, 10, MAX_FUSED_K, MAX_FUSED_K + 1, 200])
def test_top_k_beyond_the_fused_limit_matches_too(charts: dict[str, np.ndarray[Any, Any]], k: int) -> None:
    rng = np.random.default_rng(k)
    a = rng.uniform(0, 360, (40, 10))
    got = MemoryOptimizedVectorizedCalculator(backend="cuda-emulated").top_k(a, k=k, exclude_self=True)
    want = MemoryOptimizedVectorizedCalculator(backend="numpy").top_k(a, k=k, exclude_self=True)
    assert np.array_equal(got.indices, want.indices) and np.array_equal(got.scores, want.scores)
    assert got.backend == "cuda-emulated"


@needs_compiler
def test_the_gpu_benchmark_script_runs_and_finds_equal_results() -> None:
    """benchmarks/gpu.py can only be timed on a GPU; this checks the script itself and its equality section."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--emulate"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "results equal" in result.stdout


@pytest.mark.parametrize("k", [1, 10, MAX_FUSED_K])
def test_the_kernels_compile_for_an_h200_without_fused_multiply_add(k: int) -> None:
    """NVRTC (the compiler CuPy uses) turns the source into PTX for compute capability 9.0 (H100/H200), with every
    kernel present and no fused multiply-add: the instruction that would round differently from NumPy."""
    try:
        library = nvrtc.load()
    except OSError as exc:
        pytest.skip(f"NVRTC unavailable: {exc}")
    source = CUDA_PRELUDE + constants_prelude(k) + KERNEL_SOURCE
    ptx = nvrtc.compile_ptx(library, source, [*CUDA_OPTIONS, "--gpu-architecture=compute_90"])
    entries = {line.split()[2].rstrip("(") for line in ptx.splitlines() if ".entry" in line}
    assert entries == set(KERNEL_NAMES)
    assert "fma.rn.f64" not in ptx
    # The check can fail: NVRTC's default contracts the look-ahead's lon + speed * 0.001 into an FMA.
    contracted = nvrtc.compile_ptx(library, source, ["--std=c++14", "--gpu-architecture=compute_90"])
    assert "fma.rn.f64" in contracted


def test_auto_without_a_gpu_says_why_it_took_numpy() -> None:
    try:
        get_backend("cupy")
    except BackendUnavailable as exc:
        backend = get_backend("auto")
        assert backend.name == "numpy" and backend.fallback_reason == str(exc)
    else:
        assert get_backend("auto").name == "cupy"


# -- on a GPU only ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_auto_takes_the_gpu_and_its_kernels_compile() -> None:
    gpu_backend_or_skip()
    backend = get_backend("auto")
    assert backend.name == "cupy" and backend.kernels is not None and backend.fallback_reason is None
    calc = MemoryOptimizedVectorizedCalculator(backend=backend)
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 360, (64, 13))
    assert np.array_equal(calc.scores(a, a), MemoryOptimizedVectorizedCalculator(backend="numpy").scores(a, a))
    stats = calc.monitor.get_memory_stats()
    assert stats["gpu_device_total_mb"] > 0 and "gpu_pool_used_mb" in stats


@pytest.mark.gpu
def test_a_small_pool_limit_shrinks_chunks_and_is_freed_at_the_end() -> None:
    gpu_backend_or_skip()
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 360, (2000, 10)), rng.uniform(0, 360, (2000, 10))
    calc = MemoryOptimizedVectorizedCalculator(backend="cupy", working_memory_mb=4096, device_memory_limit_mb=64)
    try:
        hits = calc.synastry(a, b)
        want = MemoryOptimizedVectorizedCalculator(backend="numpy").synastry(a, b)
        assert_same_hits(hits, want)
        assert hits.backend == "cupy"
        assert calc.monitor.get_memory_stats()["gpu_pool_limit_mb"] == 64
        assert calc.estimate_memory_usage(2000, 2000)["chunked_mb"] <= 64
        calc.close()
        assert calc.monitor.get_memory_stats()["gpu_pool_total_mb"] == 0
    finally:
        calc.backend.set_memory_limit(None)  # the pool's limit is the process's, not this calculator's
