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


class JobsUnavailable(APIException):
    """503: the job API takes no jobs (switched off, or no Celery app and broker); nothing was stored."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Jobs are unavailable on this server."
    default_code = "jobs_unavailable"


class QuotaExceeded(APIException):
    """A job over a quota: the answer names the limit (the ASPECTS key) and its value besides the detail."""

    def __init__(self, detail: Any, limit: str, maximum: int, status_code: int) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.limit = limit
        self.maximum = maximum


class JobTooLarge(QuotaExceeded):
    """400: the job is bigger than MAX_JOB_PAIRS, MAX_JOB_ROWS or MAX_JOB_SYNASTRY_PAIRS allow."""

    def __init__(self, field: str, message: str, limit: str, maximum: int) -> None:
        super().__init__({field: [message]}, limit, maximum, status.HTTP_400_BAD_REQUEST)


class TooManyJobs(QuotaExceeded):
    """429: the user has MAX_ACTIVE_JOBS_PER_USER jobs pending or running."""

    wait = 60  # sent as Retry-After

    def __init__(self, message: str, limit: str, maximum: int) -> None:
        super().__init__(message, limit, maximum, status.HTTP_429_TOO_MANY_REQUESTS)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with a JSON 400 where Django would answer its HTML one for a body over its limits (read
    when DRF parses the body), the job's id in a 503 from the broker, and the limit named in a quota's answer."""
    if isinstance(exc, RequestDataTooBig):
        exc = ParseError(too_big(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = ParseError(str(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, BrokerUnavailable) and exc.job is not None:
        response.data["job"] = exc.job
    if response is not None and isinstance(exc, QuotaExceeded):
        response.data["limit"] = exc.limit
        response.data["maximum"] = exc.maximum
    return response
