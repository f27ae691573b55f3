"""django-silk, when the host installs it (the ``silk`` extra): service calls become named profile blocks of the
request being recorded. Without silk, or outside a recorded request, the wrapper costs nothing."""

from __future__ import annotations

import contextlib
from typing import Any

from django.apps import apps


def silk_profile(name: str) -> Any:
    """A silk profile block named ``name`` (silk itself skips it when the request is not being recorded)."""
    if not apps.is_installed("silk"):
        return contextlib.nullcontext()
    from silk.profiling.profiler import silk_profile as profile

    return profile(name=name)
