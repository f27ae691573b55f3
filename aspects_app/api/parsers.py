"""DRF's JSON parser with limits: a nesting depth, and Django's body-size limit.

Python's ``json`` recurses once per nested array or object, so about 1,000 levels (a 2 KB body) raised
``RecursionError``: a 500. No request of this API nests deeper than a few levels, so anything deeper than
:data:`MAX_DEPTH` is a 400 naming the problem, found without parsing (one pass in C over the body).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64

# A JSON string (escapes included), and everything that is not a bracket.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count). On malformed input,
    an upper bound of how deep a parser would recurse before finding the error."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; a body nested deeper than ``max_depth`` or larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    is a ``ParseError`` (400) saying so."""

    max_depth = MAX_DEPTH

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        context = parser_context or {}
        encoding = context.get("encoding", settings.DEFAULT_CHARSET)
        # DRF hands over request.body, which Django has already held to the limit; a raw stream is held here.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            raise ParseError(too_big(limit))
        try:
            text = body.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if nesting_depth(text) > self.max_depth:
            raise ParseError(f"JSON parse error - nested deeper than {self.max_depth} levels")
        return super().parse(io.BytesIO(body), media_type, parser_context)


def too_big(limit: int) -> str:
    return f"Request body larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)"
