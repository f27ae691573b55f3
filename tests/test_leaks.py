"""Memory leaks: repeated engine calls, API requests and batch runs must not keep memory.

``VectorizedPerformanceMonitor.check_leaks`` runs an operation a few times to warm caches and pools, then
``runs`` times under tracemalloc, and reports what is still allocated afterwards (after ``gc.collect()``). The
tolerances are generous against interpreter noise (interned strings, freelists, Django's lazy caches) but far
below what one leaked result or response per repetition adds up to (the tests that plant such a leak show it is
caught). API requests are also checked for growth per request beyond a window's constant offset, which catches a
leak as small as one kept request object.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from django.core.handlers.base import BaseHandler
from django.core.management import call_command
from django.http import HttpRequest, HttpResponseBase
from django.test import RequestFactory

from aspects_app.cache import result_cache
from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator, VectorizedPerformanceMonitor
from aspects_app.engine.monitor import LeakReport
from aspects_app.models import AspectResult, Chart, Match

from .conftest import PLANETS, ChartFactory

KIB = 1024
MIB = 1024 * KIB
ENGINE_TOLERANCE = 256 * KIB
API_TOLERANCE = 512 * KIB
BATCH_TOLERANCE = 1 * MIB
# Growth per request beyond the constant offset of a window (measured: at most 0.65 KiB; a kept request: 6 KiB).
SLOPE_TOLERANCE = 2 * KIB


def describe(what: str, report: LeakReport, tolerance: int) -> str:
    top = "\n  ".join(report.top) or "(nothing grew)"
    return (
        f"{what}: grew {report.growth_bytes / KIB:.1f} KiB over {report.runs} runs "
        f"({report.per_run_bytes / KIB:.2f} KiB per run; tolerance {tolerance / KIB:.0f} KiB). Largest growth:\n  {top}"
    )


def assert_no_leak(what: str, operation: Callable[[], object], tolerance: int, runs: int, warmup: int) -> LeakReport:
    report = VectorizedPerformanceMonitor.check_leaks(operation, runs=runs, warmup=warmup)
    print(describe(what, report, tolerance))
    assert report.runs == runs
    assert not report.leaks(tolerance), describe(what, report, tolerance)
    return report


def assert_no_slope(what: str, operation: Callable[[], object], long: LeakReport, short_runs: int) -> None:
    """Growth must not scale with the number of runs. Each window shows a constant offset (long-lived objects such
    as a statement cache that are replaced while tracemalloc is tracing: the new ones count, the freed old ones
    were never traced), the same for 10 runs as for 400; a leak adds the same amount per run on top. Comparing a
    short window with the long one cancels the offset and isolates the slope, which catches a request-sized leak
    (the whole request kept: 6 to 18 KiB each) that the absolute tolerance over 50 requests would let through."""
    short = VectorizedPerformanceMonitor.check_leaks(operation, runs=short_runs, warmup=0)
    slope = (long.growth_bytes - short.growth_bytes) / (long.runs - short_runs)
    message = (
        f"{what}: {slope / KIB:.2f} KiB more per run ({short.growth_bytes / KIB:.1f} KiB over {short_runs} runs, "
        f"{long.growth_bytes / KIB:.1f} KiB over {long.runs}; tolerance {SLOPE_TOLERANCE / KIB:.0f} KiB per run)"
    )
    print(message)
    assert slope < SLOPE_TOLERANCE, message


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    """pytest's log capture keeps every record of the test (a Not Found or a warning per request): that is the
    harness's memory, not the app's. Records are still created and formatted by the loggers' own code paths up to
    the disabled level check."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# -- the helper itself: it must see a real leak ------------------------------------------------------------------


def test_check_leaks_sees_a_planted_leak() -> None:
    kept: list[bytes] = []

    def leaky() -> None:
        kept.append(bytes(64 * KIB))

    report = VectorizedPerformanceMonitor.check_leaks(leaky, runs=8, warmup=2)
    assert report.growth_bytes >= 8 * 64 * KIB, describe("planted leak", report, ENGINE_TOLERANCE)
    assert report.leaks(ENGINE_TOLERANCE)
    assert report.per_run_bytes == pytest.approx(report.growth_bytes / 8)
    assert report.top, "the report names where the memory went"
    assert len(kept) == 10  # the warm-up runs ran too


def test_check_leaks_ignores_temporaries() -> None:
    def temporary() -> int:
        return len(bytes(4 * MIB))

    report = VectorizedPerformanceMonitor.check_leaks(temporary, runs=8, warmup=2)
    assert not report.leaks(64 * KIB), describe("temporaries", report, 64 * KIB)


# -- engine ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.uniform(0, 360, (300, len(PLANETS))), rng.uniform(-1, 14, (300, len(PLANETS)))


def engine_operations(
    calc: MemoryOptimizedVectorizedCalculator, lon: np.ndarray, speed: np.ndarray
) -> dict[str, Callable[[], object]]:
    return {
        "natal": lambda: len(calc.natal(lon, speed)),
        "synastry": lambda: len(calc.synastry(lon[:150], lon[150:], speed[:150], speed[150:])),
        "top_k": lambda: calc.top_k(lon, k=10, exclude_self=True).indices.sum(),
        "scores": lambda: int(calc.scores(lon[:100], lon[100:]).sum()),
    }


@pytest.mark.parametrize("operation", ["natal", "synastry", "top_k", "scores"])
def test_repeated_engine_calls_do_not_grow(operation: str, population: tuple[np.ndarray, np.ndarray]) -> None:
    lon, speed = population
    # Small chunks: many chunk iterations (pool borrows, per-chunk temporaries) per call.
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig(), backend="numpy", chunk_size=32)
    run = engine_operations(calc, lon, speed)[operation]
    assert run()  # it really computes something
    assert calc.monitor.counters.get("chunks", 0) >= 4
    assert_no_leak(f"engine {operation}", run, ENGINE_TOLERANCE, runs=10, warmup=3)
    calc.close()


def test_a_retained_engine_result_per_call_is_caught(population: tuple[np.ndarray, np.ndarray]) -> None:
    """The engine tolerance is meaningful: keeping each call's natal hits would exceed it."""
    lon, speed = population
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig(), backend="numpy", chunk_size=32)
    kept: list[Any] = []
    report = VectorizedPerformanceMonitor.check_leaks(lambda: kept.append(calc.natal(lon, speed)), runs=10, warmup=3)
    assert report.leaks(ENGINE_TOLERANCE), describe("retained natal hits", report, ENGINE_TOLERANCE)


# -- API requests ----------------------------------------------------------------------------------------------


@pytest.fixture
def api_charts(make_chart: ChartFactory) -> tuple[Chart, Chart]:
    return make_chart(is_public=True), make_chart(is_public=True)


class Requests:
    """Requests through Django's request handler: URL resolution, the whole middleware stack (monitoring and silk
    included) and the view, as the test client runs them, but without the test client itself, whose
    ``ClientHandler`` connects ``close_old_connections`` to request_started/request_finished anew on every request
    and so leaves two ``weakref.finalize`` records per request behind (about 1 KiB each time, measured): growth of
    the harness, not of the app."""

    def __init__(self) -> None:
        self.handler = BaseHandler()
        self.handler.load_middleware()
        self.factory = RequestFactory()

    def get(self, path: str) -> HttpResponseBase:
        return self.handler.get_response(self.factory.get(path))


def body(response: HttpResponseBase) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.content)  # type: ignore[attr-defined]
    return data


@pytest.fixture
def unthrottled(settings: Any) -> None:
    settings.ASPECTS = {"THROTTLE_ANON": None, "THROTTLE_USER": None}


def forget_results() -> None:
    result_cache().clear()
    AspectResult.objects.all().delete()


def test_repeated_computing_requests_do_not_grow(
    api_charts: tuple[Chart, Chart], unthrottled: None, quiet_logging: None
) -> None:
    client = Requests()
    url = f"/api/aspects/charts/{api_charts[0].pk}/natal/"
    sources: Counter[str] = Counter()  # counts, not a growing list of strings

    def request() -> None:
        forget_results()
        response = client.get(url)
        assert response.status_code == 200
        assert response.has_header("Server-Timing")
        sources[body(response)["source"]] += 1

    report = assert_no_leak("natal request, computed each time", request, API_TOLERANCE, runs=50, warmup=5)
    assert_no_slope("natal request, computed each time", request, report, short_runs=10)
    assert sources == {"computed": 65}


def test_repeated_cached_requests_do_not_grow(
    api_charts: tuple[Chart, Chart], unthrottled: None, quiet_logging: None
) -> None:
    client = Requests()
    url = f"/api/aspects/synastry/?chart_a={api_charts[0].pk}&chart_b={api_charts[1].pk}"
    sources: Counter[str] = Counter()

    def request() -> None:
        response = client.get(url)
        assert response.status_code == 200
        assert response.has_header("Server-Timing")
        sources[body(response)["source"]] += 1

    report = assert_no_leak("synastry request, cached", request, API_TOLERANCE, runs=50, warmup=5)
    assert_no_slope("synastry request, cached", request, report, short_runs=10)
    assert sources == {"computed": 1, "local": 64}


def test_repeated_error_requests_do_not_grow(db: None, unthrottled: None, quiet_logging: None) -> None:
    client = Requests()

    def request() -> None:
        assert client.get("/api/aspects/charts/999999/natal/").status_code == 404
        assert client.get("/api/aspects/synastry/?chart_a=x").status_code == 400
        assert client.get("/no/such/page/").status_code == 404

    report = assert_no_leak("404 and 400 requests", request, API_TOLERANCE, runs=50, warmup=5)
    assert_no_slope("404 and 400 requests", request, report, short_runs=10)


def test_a_retained_response_per_request_is_caught(
    api_charts: tuple[Chart, Chart], unthrottled: None, quiet_logging: None
) -> None:
    """The API tolerance is meaningful: a request path that kept each response (and its request) would exceed it."""
    client = Requests()
    url = f"/api/aspects/charts/{api_charts[0].pk}/natal/"
    kept: list[HttpResponseBase] = []

    def request() -> None:
        forget_results()
        kept.append(client.get(url))

    report = VectorizedPerformanceMonitor.check_leaks(request, runs=50, warmup=5)
    assert report.leaks(API_TOLERANCE), describe("retained responses", report, API_TOLERANCE)


def test_a_retained_request_per_request_is_caught_by_the_slope(
    api_charts: tuple[Chart, Chart], unthrottled: None, quiet_logging: None
) -> None:
    """Keeping only each request object (a few KiB) stays under the absolute tolerance over 50 requests; the slope
    check catches it."""
    client = Requests()
    url = f"/api/aspects/synastry/?chart_a={api_charts[0].pk}&chart_b={api_charts[1].pk}"
    kept: list[HttpRequest] = []

    def request() -> None:
        built = client.factory.get(url)
        kept.append(built)
        client.handler.get_response(built)

    report = VectorizedPerformanceMonitor.check_leaks(request, runs=50, warmup=5)
    with pytest.raises(AssertionError, match="KiB more per run"):
        assert_no_slope("retained requests", request, report, short_runs=10)


# -- batch runs ------------------------------------------------------------------------------------------------


def test_repeated_batch_runs_do_not_grow(make_chart: ChartFactory, quiet_logging: None) -> None:
    for _ in range(100):
        make_chart(is_public=True)
    outputs: list[str] = []

    def batch() -> None:
        out, err = io.StringIO(), io.StringIO()
        call_command(
            "compute_aspects",
            "--mode",
            "top-k",
            "-k",
            "5",
            "--backend",
            "numpy",
            "--no-progress",
            stdout=out,
            stderr=err,
        )
        outputs.append(out.getvalue())

    assert_no_leak("compute_aspects --mode top-k, 100 charts", batch, BATCH_TOLERANCE, runs=5, warmup=2)
    assert len(outputs) == 7
    assert Match.objects.count() == 100 * 5  # each run replaced the previous one's matches
