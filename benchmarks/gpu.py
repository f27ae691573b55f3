"""GPU against CPU: the same results, and the throughput of each, side by side (under 5 minutes on one GPU).

    python benchmarks/gpu.py              # on a machine with an NVIDIA GPU and CuPy (pip install '.[gpu]')
    python benchmarks/gpu.py --emulate    # no GPU: the same kernels compiled for the CPU, at small sizes (a check
                                          # of this script and the kernels' results, not of speed)

1. Equality on random inputs: synastry, natal and paired hits with speeds (every column identical, orbs bit for
   bit), discepolo scores (identical), weighted scores (to 1e-9), top-k (identical indices and scores).
2. Throughput: planet pairs/s of hit extraction and chart pairs/s of top-10 matching, the CPU (NumPy) path at
   sizes it finishes in seconds, the GPU at sizes that fill the device, with the GPU's time split into compute
   (kernels) and transfer (results to the host), and the ratio GPU/CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aspects_app.engine import AspectConfig, BackendUnavailable, MemoryOptimizedVectorizedCalculator, get_backend

H200_BANDWIDTH_GBS = 4800.0  # HBM3e, for the bandwidth figure of hit extraction


def device_backend(emulate: bool) -> str:
    name = "cuda-emulated" if emulate else "cupy"
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        sys.exit(f"{name} backend unavailable: {exc}\n(on a machine without a GPU, run with --emulate)")
    return name


def longitudes(rng: np.random.Generator, rows: int, points: int) -> np.ndarray[Any, Any]:
    return rng.uniform(0.0, 360.0, (rows, points))


def check(label: str, ok: bool, detail: str = "") -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {label}{': ' + detail if detail else ''}")
    return ok


def same_hits(cpu: Any, gpu: Any) -> bool:
    columns = ("i", "j", "p1", "p2", "aspect", "orb", "movement")
    return len(cpu) == len(gpu) and all(
        (getattr(cpu, c) is None and getattr(gpu, c) is None) or np.array_equal(getattr(cpu, c), getattr(gpu, c))
        for c in columns
    )


def equality_section(rng: np.random.Generator, device: str, n: int) -> bool:
    print(f"\n## Equality on random inputs ({n} x {n} charts, 13 points, speeds)")
    config = AspectConfig.preset("all")
    cpu = MemoryOptimizedVectorizedCalculator(config, backend="numpy", working_memory_mb=64)
    gpu = MemoryOptimizedVectorizedCalculator(config, backend=device, working_memory_mb=1024)
    a, b = longitudes(rng, n, 13), longitudes(rng, n, 13)
    sa, sb = rng.normal(0.0, 5.0, a.shape), rng.normal(0.0, 5.0, b.shape)
    ok = True
    for label, run in (
        ("synastry hits", lambda c: c.synastry(a, b, sa, sb)),
        ("natal hits", lambda c: c.natal(a, sa)),
        ("paired synastry hits", lambda c: c.paired_synastry(a, b, sa, sb)),
    ):
        want, got = run(cpu), run(gpu)
        ok &= check(label, same_hits(want, got), f"{len(want):,} hits, backend {got.backend}")
    want, got = cpu.scores(a, b), gpu.scores(a, b)
    ok &= check("discepolo scores", np.array_equal(want, got))
    want, got = cpu.scores(a, b, method="weighted"), gpu.scores(a, b, method="weighted")
    ok &= check("weighted scores", np.allclose(want, got, rtol=0, atol=1e-9), f"max diff {abs(want - got).max():.2e}")
    for k in (1, 10, 64, 100):
        want_k, got_k = cpu.top_k(a, b, k=k), gpu.top_k(a, b, k=k)
        same = np.array_equal(want_k.indices, got_k.indices) and np.array_equal(want_k.scores, got_k.scores)
        ok &= check(f"top-{k} discepolo", same)
    want_k, got_k = cpu.top_k(a, k=10, exclude_self=True), gpu.top_k(a, k=10, exclude_self=True)
    ok &= check("top-10 exclude_self", np.array_equal(want_k.indices, got_k.indices))
    want_k, got_k = cpu.top_k(a, b, k=10, method="weighted"), gpu.top_k(a, b, k=10, method="weighted")
    close = np.allclose(want_k.scores, got_k.scores, rtol=0, atol=1e-9)
    ok &= check("top-10 weighted", close, f"indices equal in {np.mean(want_k.indices == got_k.indices):.2%}")
    return ok


def timed(run: Callable[[], Any], calc: MemoryOptimizedVectorizedCalculator) -> tuple[float, Any]:
    """Wall time of one run after a warm-up (which compiles kernels and fills pools); the monitor then holds the
    timed run's figures only."""
    run()
    calc.monitor.reset()
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def hits_section(rng: np.random.Generator, device: str, cpu_n: int, gpu_n: int, budget_mb: float) -> None:
    points = 10
    config = AspectConfig.preset("all")
    print(f"\n## Synastry hit extraction, {points} points, all 11 aspects")
    cpu = MemoryOptimizedVectorizedCalculator(config, backend="numpy", working_memory_mb=64)
    a, b = longitudes(rng, cpu_n, points), longitudes(rng, cpu_n, points)
    seconds, hits = timed(lambda: cpu.synastry(a, b), cpu)
    cpu_rate = cpu_n * cpu_n * points * points / seconds
    print(f"CPU {cpu_n} x {cpu_n}: {seconds:8.3f} s  {cpu_rate / 1e6:10.1f} M planet pairs/s  ({len(hits):,} hits)")
    del hits
    gpu = MemoryOptimizedVectorizedCalculator(config, backend=device, working_memory_mb=budget_mb)
    a, b = longitudes(rng, gpu_n, points), longitudes(rng, gpu_n, points)
    seconds, hits = timed(lambda: gpu.synastry(a, b), gpu)
    cells = gpu_n * gpu_n * points * points
    gpu_rate = cells / seconds
    timings = gpu.monitor.report()["timings"]
    compute = timings.get("synastry_device_compute", {}).get("total_s", 0.0)
    # Each cell's code is written once and read once by the nonzero scan: the floor of the device traffic.
    bandwidth = 2 * cells / compute / 1e9 if compute else float("nan")
    print(
        f"{device} {gpu_n} x {gpu_n}: {seconds:8.3f} s  {gpu_rate / 1e6:10.1f} M planet pairs/s  ({len(hits):,} hits)  "
        f"-> {gpu_rate / cpu_rate:,.1f}x the CPU"
    )
    print(f"    per run: {device_split(timings, 'synastry')}; code traffic {bandwidth:,.1f} GB/s "
          f"({bandwidth / H200_BANDWIDTH_GBS:.0%} of an H200's {H200_BANDWIDTH_GBS:,.0f} GB/s)")  # fmt: skip


def device_split(timings: dict[str, Any], operation: str) -> str:
    compute = timings.get(f"{operation}_device_compute", {}).get("total_s", 0.0)
    transfer = timings.get(f"{operation}_transfer", {}).get("total_s", 0.0)
    return f"compute {compute:.3f} s, transfer to host {transfer:.3f} s"


def top_k_section(rng: np.random.Generator, device: str, cpu_n: int, gpu_n: int, budget_mb: float) -> None:
    k = 10
    print(f"\n## Top-{k} matching (discepolo), 13 points")
    cpu = MemoryOptimizedVectorizedCalculator(backend="numpy", working_memory_mb=64)
    a = longitudes(rng, cpu_n, 13)
    seconds, _ = timed(lambda: cpu.top_k(a, k=k, exclude_self=True), cpu)
    cpu_rate = cpu_n * cpu_n / seconds
    print(f"CPU {cpu_n} x {cpu_n}: {seconds:8.3f} s  {cpu_rate / 1e6:12.2f} M chart pairs/s")
    gpu = MemoryOptimizedVectorizedCalculator(backend=device, working_memory_mb=budget_mb)
    a = longitudes(rng, gpu_n, 13)
    seconds, _ = timed(lambda: gpu.top_k(a, k=k, exclude_self=True), gpu)
    gpu_rate = gpu_n * gpu_n / seconds
    print(
        f"{device} {gpu_n} x {gpu_n}: {seconds:8.3f} s  {gpu_rate / 1e6:12.2f} M chart pairs/s  "
        f"-> {gpu_rate / cpu_rate:,.1f}x the CPU  ({gpu_rate:.2e} chart pairs/s)"
    )
    print(f"    per run: {device_split(gpu.monitor.report()['timings'], 'top_k_discepolo')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulate", action="store_true", help="no GPU: run the kernels compiled for the CPU, small")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--budget-mb", type=float, default=16384, help="GPU working memory per chunk (MiB)")
    args = parser.parse_args()
    device = device_backend(args.emulate)
    rng = np.random.default_rng(args.seed)
    backend = get_backend(device)
    print(f"device backend: {device} ({backend.xp.__name__} {getattr(backend.xp, '__version__', '')})")
    if device == "cupy":
        props = backend.xp.cuda.runtime.getDeviceProperties(0)
        print(f"device: {props['name'].decode()}, {props['totalGlobalMem'] / 2**30:.0f} GiB")
    started = time.perf_counter()
    ok = equality_section(rng, device, 40 if args.emulate else 600)
    if args.emulate:
        hits_section(rng, device, 200, 60, 64)
        top_k_section(rng, device, 400, 200, 64)
    else:
        hits_section(rng, device, 1000, 4000, args.budget_mb)
        top_k_section(rng, device, 4000, 100_000, args.budget_mb)
    print(f"\nfinished in {time.perf_counter() - started:.0f} s; results {'equal' if ok else 'DIFFER'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
