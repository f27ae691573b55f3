"""``MonitoringMiddleware``: per request wall time, time in the database, cache and engine, process memory, a
``Server-Timing`` header, and Prometheus counters and histograms by view and status.

Put it first in ``MIDDLEWARE`` so it times everything below it (system check ``aspects_app.W003``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from . import metrics, timing

_PROCESS = psutil.Process()
PARTS = ("db", "cache", "engine")


class MonitoringMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        timings, token, start, rss = self._begin()
        response: HttpResponseBase | None = None
        try:
            response = self.get_response(request)
            return response
        finally:
            self._end(request, response, timings, token, start, rss)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        timings, token, start, rss = self._begin()
        response: HttpResponseBase | None = None
        try:
            response = await self.get_response(request)
            return response
        finally:
            self._end(request, response, timings, token, start, rss)

    @staticmethod
    def _begin() -> tuple[timing.RequestTimings, Any, float, int]:
        timings = timing.RequestTimings()
        token = timing.current.set(timings)
        return timings, token, time.perf_counter(), _PROCESS.memory_info().rss

    @staticmethod
    def _end(
        request: HttpRequest,
        response: HttpResponseBase | None,
        timings: timing.RequestTimings,
        token: Any,
        start: float,
        rss_before: int,
    ) -> None:
        try:
            elapsed = time.perf_counter() - start
            growth_kib = (_PROCESS.memory_info().rss - rss_before) / 1024
            match = getattr(request, "resolver_match", None)
            view = (match.view_name or match._func_path) if match is not None else "unresolved"
            status = str(response.status_code) if response is not None else "500"  # raised past every handler
            metrics.REQUESTS.labels(view=view, method=request.method or "", status=status).inc()
            metrics.REQUEST_SECONDS.labels(view=view).observe(elapsed)
            for part in PARTS:
                if part in timings.seconds:
                    metrics.REQUEST_PART_SECONDS.labels(part=part).inc(timings.seconds[part])
            if response is not None:
                entries = [f"app;dur={elapsed * 1000:.2f}"]
                entries += [f"{p};dur={timings.seconds[p] * 1000:.2f}" for p in PARTS if p in timings.seconds]
                entries.append(f'rss;desc="{growth_kib:+.0f} KiB"')
                response["Server-Timing"] = ", ".join(entries)
        finally:
            timing.current.reset(token)
