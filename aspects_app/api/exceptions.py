"""The API's own error answers, and DRF's exception handler extended to Django's request-size limits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .parsers import too_big


class BrokerUnavailable(APIException):
    """503: the batch broker could not take a job's blocks; the job is marked failed and resumable."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The job broker is unavailable; try again later."
    default_code = "broker_unavailable"
    wait = 30  # DRF's handler sends it as Retry-After

    def __init__(self, detail: str, job: int | None = None) -> None:
        super().__init__(detail)
        self.job = job


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a JSON 400 where Django would answer its HTML one for a body over its limits (read
    when DRF parses the body), and the job's id in a 503 from the broker."""
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError(too_big(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = ParseError(str(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, BrokerUnavailable) and exc.job is not None:
        response.data["job"] = exc.job
    return response
