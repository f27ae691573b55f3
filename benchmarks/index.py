"""The match index over a large population: approximate (HNSW) top-10 against exact, and the fold-in of a new chart.

    python benchmarks/index.py                        # 1,000,000 charts (about 8 minutes on 2 busy cores)
    python benchmarks/index.py --charts 100000        # a quick run
    python benchmarks/index.py --kinds hnsw,ivf,exact --ef-search 128,256,384,512

Charts are realistic: ``--births`` random births 1940–2010 (latitudes ±60°) from the ephemeris, each shifted by up to
half a day along its own daily motions (the Moon moves, the angles turn) to make ``--charts`` charts of the first
``--points`` (10–13) standard points. The queries are ``--queries`` charts of the population, each excluding itself.

- build time and memory (psutil RSS delta, beside ``MatchIndex.memory_bytes()``) of each kind;
- single-query top-10 latency (one thread), p50 and p95, and recall@10 against the exact top-10 computed by BLAS
  (``calc.top_k(..., method="harmonic")``) for every ``--ef-search`` (HNSW) or ``--nprobe`` (IVF);
- the exact index's (``IndexFlatIP``) p50 latency beside it, as the ratio exact / approximate;
- fold-in: one new chart into the stored top-10 lists of every chart (``harmonic.fold_in``: one matrix-vector
  product F @ g and a comparison with each list's k-th), its time, float64 and float32 features. The k-th scores are
  the true 10th-best of ``--queries`` sampled charts (exact, BLAS), repeated over the population.

Issue 15's target: p50 under 5 ms at recall ≥ 0.95 for 1,000,000 charts.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aspects_app.engine import STANDARD_POINTS, MemoryOptimizedVectorizedCalculator  # noqa: E402
from aspects_app.engine.harmonic import HarmonicConfig, fold_in  # noqa: E402
from aspects_app.ephemeris import compute_positions  # noqa: E402
from aspects_app.index import IndexParams, MatchIndex  # noqa: E402

K = 10
FIRST_BIRTH = np.datetime64("1940-01-01T00:00:00", "s").astype(np.int64)
LAST_BIRTH = np.datetime64("2010-01-01T00:00:00", "s").astype(np.int64)


def realistic_charts(charts: int, births: int, points: tuple[str, ...], seed: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    when = rng.integers(FIRST_BIRTH, LAST_BIRTH, births).astype("datetime64[s]")
    positions = compute_positions(when, rng.uniform(-60, 60, births), rng.uniform(-180, 180, births), points=points)
    base = rng.integers(0, births, charts)
    shift = rng.uniform(-0.5, 0.5, (charts, 1))  # days
    return (positions.longitudes[base] + positions.speeds[base] * shift) % 360.0


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def latencies_ms(
    index: MatchIndex, queries: npt.NDArray[np.float64], ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """One query at a time, on one thread: a web worker answers one request per thread, and faiss's OpenMP team
    spinning on cores that other work holds turns a millisecond into tens of them."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    out = []
    try:
        for q in range(queries.shape[0]):
            start = time.perf_counter()
            index.search(queries[q : q + 1], K, exclude_self_ids=ids[q : q + 1])
            out.append((time.perf_counter() - start) * 1e3)
    finally:
        faiss.omp_set_num_threads(threads)
    return np.array(out)


def recall(found: npt.NDArray[np.int64], exact: npt.NDArray[np.int64]) -> float:
    return float(np.mean([np.isin(f, e).sum() / K for f, e in zip(found, exact, strict=True)]))


def built(kind: str, ids: npt.NDArray[np.int64], g: npt.NDArray[np.float64], config_hash: str,
          params: IndexParams) -> MatchIndex:  # fmt: skip
    before = rss()
    start = time.perf_counter()
    index = MatchIndex.build(ids, g, config_hash, kind=kind, params=params)
    seconds = time.perf_counter() - start
    grown = rss() - before
    print(
        f"{kind:<5} build {seconds:8.1f} s   RSS +{grown / 2**20:8.0f} MiB   "
        f"estimate {index.memory_bytes() / 2**20:8.0f} MiB"
    )
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charts", type=int, default=1_000_000, help="population (default: %(default)s)")
    parser.add_argument("--births", type=int, default=50_000, help="ephemeris births (default: %(default)s)")
    parser.add_argument("--points", type=int, default=13, choices=range(10, 14), help="(default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="query charts (default: %(default)s)")
    parser.add_argument("--kinds", default="hnsw,exact", help="index kinds (default: %(default)s)")
    parser.add_argument("--ef-search", default="128,256,384,512", help="HNSW efSearch values (default: %(default)s)")
    parser.add_argument("--nprobe", default="16,48,128", help="IVF nprobe values (default: %(default)s)")
    parser.add_argument("--hnsw-m", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--ef-construction", type=int, default=80, help="(default: %(default)s)")
    args = parser.parse_args()
    kinds = args.kinds.split(",")

    points = STANDARD_POINTS[: args.points]
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy")
    config_hash = HarmonicConfig().config_hash(points)
    start = time.perf_counter()
    lon = realistic_charts(args.charts, args.births, points, seed=0)
    ids = np.arange(lon.shape[0], dtype=np.int64)
    sample = np.random.default_rng(1).choice(lon.shape[0], args.queries, replace=False)
    print(f"{args.charts:,} charts x {len(points)} points ({time.perf_counter() - start:.1f} s), top-{K}, "
          f"{args.queries} queries, faiss threads {faiss.omp_get_max_threads()} (1 for latencies)")  # fmt: skip

    start = time.perf_counter()
    exact = calc.top_k(lon[sample], lon, k=K, method="harmonic", exclude_columns=sample)
    print(f"exact top-{K} by BLAS for the queries: {time.perf_counter() - start:.1f} s")
    queries = calc.harmonic_features(lon[sample], side="a")
    g = calc.harmonic_features(lon, side="b")
    params = IndexParams(hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
    p50: dict[str, float] = {}
    for kind in kinds:
        index = built(kind, ids, g, config_hash, params)
        if kind == "exact":
            lat = latencies_ms(index, queries[:50], sample[:50])
            found = index.search(queries, K, exclude_self_ids=sample).ids
            same = bool((found == exact.indices).all())
            p50["exact"] = float(np.median(lat))
            print(f"exact {'':>14} p50 {p50['exact']:7.2f} ms  p95 {np.percentile(lat, 95):7.2f} ms  "
                  f"recall@{K} {recall(found, exact.indices):.4f}  equal ids {same}")  # fmt: skip
            continue
        name, values = ("ef_search", args.ef_search) if kind == "hnsw" else ("nprobe", args.nprobe)
        for value in (int(v) for v in values.split(",")):
            index.params = replace(index.params, **{name: value})
            lat = latencies_ms(index, queries, sample)
            found = index.search(queries, K, exclude_self_ids=sample).ids
            p50[f"{kind} {name}={value}"] = float(np.median(lat))
            print(f"{kind:<5} {name}={value:<5} p50 {np.median(lat):7.2f} ms  p95 {np.percentile(lat, 95):7.2f} ms  "
                  f"recall@{K} {recall(found, exact.indices):.4f}")  # fmt: skip
        del index
    if "exact" in p50:
        for label, value in p50.items():
            if label != "exact":
                print(f"ratio exact p50 / {label} p50: {p50['exact'] / value:.1f}")
    del g
    gc.collect()

    # Fold-in: one new chart into the stored lists of every chart.
    kth_scores = np.resize(exact.scores[:, -1], lon.shape[0])
    kth_ids = np.resize(exact.indices[:, -1], lon.shape[0])
    new = realistic_charts(1, 10, points, seed=2)
    g_new = calc.harmonic_features(new, side="b")[0]
    for dtype in ("float64", "float32"):
        f_population = calc.harmonic_features(lon, side="a").astype(dtype)
        fold_in(f_population[:1000], g_new, lon.shape[0], kth_scores[:1000], kth_ids[:1000])  # warm
        times = []
        for _ in range(5):
            start = time.perf_counter()
            changed = fold_in(f_population, g_new, lon.shape[0], kth_scores, kth_ids)
            times.append(time.perf_counter() - start)
        print(f"fold-in {dtype}: one new chart into {lon.shape[0]:,} lists: median {np.median(times) * 1e3:.1f} ms "
              f"(F {f_population.nbytes / 2**20:.0f} MiB), {changed.rows.shape[0]} lists changed")  # fmt: skip
        del f_population
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
