"""Rate limits of the compute and write endpoints and of failed logins, counted in the cache ``THROTTLE_ALIAS``.

Counts are fixed windows aligned to the clock (``60/min``: at most 60 in each calendar minute), kept with the
cache's ``add`` and ``incr``: one atomic command each on Redis, so the limit holds across every worker and
machine sharing the alias. DRF's own throttles keep a list of timestamps read, changed and written back, which
loses concurrent updates; and in a per-process cache (LocMem) each worker counts alone, multiplying the limit
by the number of workers (system check ``aspects_app.W005``).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from ..conf import get_config

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """DRF's rate syntax, ``"60/min"`` → (60, 60): a count and a period named by its first letter."""
    count, period = rate.split("/")
    return int(count), PERIODS[period[0]]


@dataclass(frozen=True)
class WindowCounter:
    """At most ``limit`` hits per ``ident`` in each window of ``period`` seconds, counted in cache ``alias``."""

    alias: str
    scope: str
    limit: int
    period: int

    @classmethod
    def from_rate(cls, alias: str, scope: str, rate: str) -> WindowCounter:
        limit, period = parse_rate(rate)
        return cls(alias, scope, limit, period)

    def _key(self, ident: str, now: float) -> str:
        # Hashed: usernames and forwarded addresses may hold anything; a key must be short and plain.
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"aspects:throttle:{self.scope}:{digest}:{int(now // self.period)}"

    def exhausted(self, ident: str, now: float | None = None) -> bool:
        """Whether ``ident`` has used up this window (without counting a hit)."""
        now = time.time() if now is None else now
        return int(caches[self.alias].get(self._key(ident, now), 0)) >= self.limit

    def hit(self, ident: str, now: float | None = None) -> int:
        """Count one hit; the count in this window, this hit included."""
        now = time.time() if now is None else now
        cache, key = caches[self.alias], self._key(ident, now)
        # The key outlives its window by a little: it is never read after it, and must not expire within it.
        cache.add(key, 0, timeout=self.period + 1)
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=self.period + 1)
            return 1

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until the next window opens (at least 1)."""
        now = time.time() if now is None else now
        return max(1, math.ceil((int(now // self.period) + 1) * self.period - now))


def client_address(request: Request) -> str:
    """The client's address as DRF's throttles see it (``REST_FRAMEWORK["NUM_PROXIES"]`` decides whether
    ``X-Forwarded-For`` is trusted)."""
    return str(BaseThrottle().get_ident(request) or "")


class ComputeRateThrottle(BaseThrottle):
    """Per user (or per client address when anonymous); rates from ``THROTTLE_USER`` / ``THROTTLE_ANON``, shared
    by every compute and write endpoint."""

    scope = "aspects_compute"

    def __init__(self) -> None:
        self._counter: WindowCounter | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        config = get_config()
        authenticated = bool(request.user and request.user.is_authenticated)
        rate = config.throttle_user if authenticated else config.throttle_anon
        if rate is None:
            return True
        self._counter = WindowCounter.from_rate(config.throttle_alias, self.scope, rate)
        ident = f"user-{request.user.pk}" if authenticated else f"anon-{client_address(request)}"
        return self._counter.hit(ident) <= self._counter.limit

    def wait(self) -> float | None:
        return None if self._counter is None else self._counter.retry_after()
