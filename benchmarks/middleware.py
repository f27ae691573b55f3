"""Overhead of ``MonitoringMiddleware`` per request, against the same request without it, in one process.

    python benchmarks/middleware.py                   # 20,000 requests per arm
    python benchmarks/middleware.py --requests 5000   # a quicker run
    python benchmarks/middleware.py --multiprocess    # prometheus-client's multi-process mode (gunicorn workers)

A trivial view (returns an ``HttpResponse``) behind URL resolution against a one-route urlconf, so that
``request.resolver_match`` is set as the handler would set it; the same ``RequestFactory`` requests go through
the bare resolve-and-call function and through ``MonitoringMiddleware`` wrapped around it. The two arms alternate
in rounds (so drift of the machine hits both alike), and the figures are the medians over rounds. The target is
under 200 µs of overhead per request (issue 6); the exit status is 1 when the overhead exceeds it.

Settings are configured here (no database, no other middleware): only the monitoring middleware is measured. The
cost of its parts is printed too: two ``psutil`` RSS reads, the Prometheus counter and histogram, the header.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

TARGET_US = 200.0


def ping(request: HttpRequest, n: int) -> HttpResponse:
    return HttpResponse(b"pong", content_type="text/plain")


urlpatterns = [path("ping/<int:n>/", ping, name="ping")]


def configure() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-not-secret",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            USE_TZ=True,
        )
        django.setup()


def resolving_view() -> Callable[[HttpRequest], HttpResponse]:
    """What Django's handler does below the middleware for this request: resolve the path, call the view."""
    from django.urls import get_resolver

    resolver = get_resolver()

    def get_response(request: HttpRequest) -> HttpResponse:
        match = resolver.resolve(request.path_info)
        request.resolver_match = match
        response: HttpResponse = match.func(request, *match.args, **match.kwargs)
        return response

    return get_response


def run_arm(handler: Callable[[HttpRequest], Any], requests: list[HttpRequest], count: int) -> float:
    """Seconds for ``count`` calls of ``handler`` cycling through ``requests``."""
    pool = len(requests)
    gc.collect()
    start = time.perf_counter()
    for n in range(count):
        handler(requests[n % pool])
    return time.perf_counter() - start


def part_costs(loops: int = 20_000) -> dict[str, float]:
    """µs per call of the middleware's own parts, for the explanation of the overhead."""
    from aspects_app import metrics, middleware, timing

    def per_call(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        return (time.perf_counter() - start) / loops * 1e6

    response = HttpResponse()
    counter = metrics.REQUESTS.labels(view="bench-part", method="GET", status="200")
    histogram = metrics.REQUEST_SECONDS.labels(view="bench-part")

    def contextvar() -> None:
        token = timing.current.set(timing.RequestTimings())
        timing.current.reset(token)

    def header() -> None:
        response["Server-Timing"] = 'app;dur=0.12, rss;desc="+0 KiB"'

    return {
        "psutil RSS read (x2 per request)": per_call(middleware._PROCESS.memory_info),
        "counter labels().inc()": per_call(lambda: metrics.REQUESTS.labels(view="x", method="GET", status="200").inc()),
        "counter inc() (bound child)": per_call(counter.inc),
        "histogram labels().observe()": per_call(lambda: metrics.REQUEST_SECONDS.labels(view="x").observe(0.001)),
        "histogram observe() (bound child)": per_call(lambda: histogram.observe(0.001)),
        "context variable set + reset": per_call(contextvar),
        "Server-Timing header set": per_call(header),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="Requests per arm (default: %(default)s).")
    parser.add_argument("--rounds", type=int, default=10, help="Alternating rounds (default: %(default)s).")
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="Set PROMETHEUS_MULTIPROC_DIR (a temporary directory) first: samples go to memory-mapped files.",
    )
    args = parser.parse_args()
    if args.multiprocess:
        # Before prometheus_client is imported (below, through the middleware): it picks its value class then.
        assert "prometheus_client" not in sys.modules
        directory = tempfile.TemporaryDirectory(prefix="prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory.name
    configure()

    from django.test import RequestFactory

    from aspects_app.middleware import MonitoringMiddleware

    bare = resolving_view()
    monitored = MonitoringMiddleware(bare)
    factory = RequestFactory()
    requests = [factory.get(f"/ping/{n}/") for n in range(100)]

    # Both arms must really work: the view answers, the middleware labels it and adds its header.
    plain_response = bare(requests[0])
    response = monitored(requests[0])
    assert plain_response.status_code == 200 and "Server-Timing" not in plain_response
    assert response.status_code == 200 and response["Server-Timing"].startswith("app;dur="), response.headers
    assert requests[0].resolver_match is not None and requests[0].resolver_match.view_name == "ping"

    per_round = max(1, args.requests // args.rounds)
    run_arm(bare, requests, min(per_round, 2000))  # warm-up: caches, branch predictors, allocator
    run_arm(monitored, requests, min(per_round, 2000))
    bare_us: list[float] = []
    monitored_us: list[float] = []
    for _ in range(args.rounds):
        bare_us.append(run_arm(bare, requests, per_round) / per_round * 1e6)
        monitored_us.append(run_arm(monitored, requests, per_round) / per_round * 1e6)

    total = per_round * args.rounds
    bare_median, monitored_median = statistics.median(bare_us), statistics.median(monitored_us)
    overhead = monitored_median - bare_median
    overheads = sorted(m - b for m, b in zip(monitored_us, bare_us, strict=True))
    mode = "multi-process" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single-process"
    print(
        f"MonitoringMiddleware overhead ({mode} Prometheus): {total:,} requests per arm "
        f"in {args.rounds} alternating rounds"
    )
    print(
        f"  bare view (resolve + call):   {bare_median:8.2f} µs/request  (rounds {min(bare_us):.2f}–{max(bare_us):.2f})"
    )
    print(
        f"  with MonitoringMiddleware:    {monitored_median:8.2f} µs/request  "
        f"(rounds {min(monitored_us):.2f}–{max(monitored_us):.2f})"
    )
    print(
        f"  overhead:                     {overhead:8.2f} µs/request  "
        f"(per-round {overheads[0]:.2f}–{overheads[-1]:.2f}); ratio {monitored_median / bare_median:.2f}x"
    )
    verdict = "OK" if overhead < TARGET_US else "OVER TARGET"
    print(f"  target: < {TARGET_US:.0f} µs overhead per request: {verdict}")
    print("parts of the overhead (µs per call):")
    for name, cost in part_costs().items():
        print(f"  {name:36s} {cost:8.2f}")
    return 0 if overhead < TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
