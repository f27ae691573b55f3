"""Rate limits of the compute endpoints, configured in ``settings.ASPECTS`` so the host need not edit DRF's."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from ..conf import get_config


class ComputeRateThrottle(SimpleRateThrottle):
    """Per user (or per client address when anonymous); rates from ``THROTTLE_USER`` / ``THROTTLE_ANON``."""

    scope = "aspects_compute"

    def __init__(self) -> None:
        # The rate depends on the caller, so it is resolved per request in allow_request.
        pass

    def allow_request(self, request: Request, view: Any) -> bool:
        authenticated = bool(request.user and request.user.is_authenticated)
        config = get_config()
        self.rate = config.throttle_user if authenticated else config.throttle_anon
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"anon-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
