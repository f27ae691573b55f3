"""django-silk, when the host installs it (the ``silk`` extra): service calls become named profile blocks of the
request being recorded. Without silk, or outside a recorded request, the wrapper costs nothing."""

from __future__ import annotations

import contextlib
from typing import Any

from django.apps import apps


def silk_profile(name: str) -> Any:
    """A silk profile block named ``name`` while silk records the current request; otherwise nothing (silk's own
    wrapper would log a warning on every call in a request it does not record)."""
    if not apps.is_installed("silk"):
        return contextlib.nullcontext()
    from silk.collector import DataCollector
    from silk.profiling.profiler import silk_profile as profile

    if DataCollector().request is None:
        return contextlib.nullcontext()
    return profile(name=name)
