"""The app's one settings dict, ``settings.ASPECTS``, read through :func:`get_config`."""

from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Compute backend: "auto" (CuPy if a GPU is usable, else NumPy), "numpy" or "cupy".
    "BACKEND": "auto",
    # Working-memory budget per chunk in MiB; decides how many rows a chunk holds (sklearn-style chunking).
    "WORKING_MEMORY_MB": 256,
    # Cap on the GPU memory pool in MiB (CuPy's MemoryPool.set_limit, per process); None: no cap beyond the device.
    "DEVICE_MEMORY_LIMIT_MB": None,
    # Orbs in degrees per aspect name, e.g. {"trine": 8}; None uses the engine's defaults.
    "ORBS": None,
    # Upper bound on charts in one API request, so one call cannot exhaust the server.
    "MAX_CHARTS_PER_REQUEST": 1000,
    # Upper bound on the candidates one /matches request scores; larger populations go to the batch command.
    "MAX_MATCH_CANDIDATES": 50000,
    # Rates of the compute endpoints (DRF syntax, e.g. "60/min") for anonymous and authenticated callers;
    # None switches throttling off for that group.
    "THROTTLE_ANON": "60/min",
    "THROTTLE_USER": "600/min",
    # Django cache alias for results: an evicting (LRU) Redis in production, see README "Caching".
    "CACHE_ALIAS": "default",
    # Alias for single-flight locks; it must not evict (keep it apart from an LRU results alias).
    "LOCK_ALIAS": "default",
    # Seconds a shared-cache entry lives; None: until evicted (keys are content-addressed, never stale).
    "CACHE_TIMEOUT": None,
    # After a cache failure (Redis down or slow), skip the shared level for this long before trying again.
    "CACHE_RETRY_SECONDS": 5.0,
    # How long a single-flight lock is held at most, and how long others wait for its result.
    "LOCK_SECONDS": 10.0,
    # The in-process LRU in front of the shared cache: bounded by entries and by MiB.
    "LOCAL_CACHE_ENTRIES": 4096,
    "LOCAL_CACHE_MB": 64,
    # Bearer token that may read the metrics endpoints besides staff users; None: staff only.
    "METRICS_TOKEN": None,
    # Celery queues of distributed batch runs: CPU workers consume the first, GPU workers the second.
    "CPU_QUEUE": "aspects-cpu",
    "GPU_QUEUE": "aspects-gpu",
}


@cache
def get_config() -> dict[str, Any]:
    """Return DEFAULTS overlaid with ``settings.ASPECTS``; cached until ASPECTS changes."""
    user: dict[str, Any] = getattr(settings, "ASPECTS", {}) or {}
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown key(s) in settings.ASPECTS: {', '.join(unknown)}. Valid keys: {', '.join(DEFAULTS)}."
        )
    return {**DEFAULTS, **user}


@receiver(setting_changed)
def _clear_config_cache(*, setting: str, **kwargs: Any) -> None:
    # override_settings(ASPECTS=...) in tests must be seen by the next get_config() call.
    if setting in ("ASPECTS", "CACHES"):
        get_config.cache_clear()
        from .cache import reset_result_cache  # the cache is built from the settings

        reset_result_cache()
