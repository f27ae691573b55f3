"""Prometheus metrics of the API and the engine (prometheus-client).

Several gunicorn workers add up when ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus-client's multi-process
mode): each worker writes its samples there and the metrics view collects them all.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Request latencies from a fraction of a millisecond (cache hits) to seconds (large compute requests).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("aspects_requests_total", "HTTP requests by view and status.", ["view", "method", "status"])
REQUEST_SECONDS = Histogram("aspects_request_seconds", "Request wall time by view.", ["view"], buckets=LATENCY_BUCKETS)
REQUEST_PART_SECONDS = Counter(
    "aspects_request_part_seconds_total", "Time inside requests spent in the database, cache and engine.", ["part"]
)
ENGINE_WORK = Counter(
    "aspects_engine_work_total", "Engine work done: charts, pairs, hits, chunks.", ["kind", "backend", "source"]
)
ENGINE_PEAK_MEMORY = Gauge(
    "aspects_engine_peak_memory_mb",
    "Peak RSS growth of the last engine job (MiB).",
    ["source"],
    multiprocess_mode="max",
)
GPU_POOL_MB = Gauge("aspects_gpu_pool_used_mb", "CuPy memory pool in use (MiB).", multiprocess_mode="max")
CACHE_LOOKUPS = Counter("aspects_cache_lookups_total", "Result lookups by the level that answered.", ["level"])
CACHE_ERRORS = Counter("aspects_cache_errors_total", "Shared-cache failures absorbed (Redis down or slow).")


def record_engine(source: str, backend: str, **amounts: float) -> None:
    """Count engine work from the services ("api") or the batch command ("batch")."""
    for kind, amount in amounts.items():
        if amount:
            ENGINE_WORK.labels(kind=kind, backend=backend, source=source).inc(amount)


def registry() -> CollectorRegistry:
    """This process's registry, or every worker's in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        # prometheus-client leaves this constructor unannotated.
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    from prometheus_client import REGISTRY

    return REGISTRY


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def summary() -> dict[str, Any]:
    """The same figures as JSON: every sample by metric name."""
    result: dict[str, Any] = {}
    for family in registry().collect():
        if not family.name.startswith("aspects_"):
            continue
        result[family.name] = [
            {"name": sample.name, "labels": sample.labels, "value": sample.value} for sample in family.samples
        ]
    return result
