"""The app's one settings dict, ``settings.ASPECTS``, read through :func:`get_config` as a typed, frozen object.

Keys are documented on :class:`AspectsSettings` (README "Settings" lists them too). Values are taken as given and
checked by the system checks (``aspects_app.E001``…), so a bad value shows up in ``manage.py check``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class AspectsSettings:
    """``settings.ASPECTS`` with the defaults filled in; attributes are the keys in lower case."""

    # Compute backend: "auto" (CuPy if a GPU is usable, else NumPy), "numpy" or "cupy".
    backend: str = "auto"
    # Working-memory budget per chunk in MiB; decides how many rows a chunk holds (sklearn-style chunking).
    working_memory_mb: float = 256
    # Cap on the GPU memory pool in MiB (CuPy's MemoryPool.set_limit, per process); None: no cap beyond the device.
    device_memory_limit_mb: float | None = None
    # Orbs in degrees per aspect name, e.g. {"trine": 8}; None uses the engine's defaults.
    orbs: dict[str, float] | None = None
    # Upper bound on charts in one API request, so one call cannot exhaust the server.
    max_charts_per_request: int = 1000
    # Upper bound on the candidates one /matches request scores; larger populations go to the batch command.
    max_match_candidates: int = 50000
    # Rates of the compute endpoints (DRF syntax, e.g. "60/min") for anonymous and authenticated callers;
    # None switches throttling off for that group.
    throttle_anon: str | None = "60/min"
    throttle_user: str | None = "600/min"
    # Failed HTTP Basic logins allowed per client address and per username (DRF rate syntax) before further
    # attempts answer 429 without hashing a password; None: no limit.
    throttle_failed_logins: str | None = "10/min"
    # Alias of the throttle counters (compute and failed logins); like LOCK_ALIAS it must be shared by every
    # process and must not evict.
    throttle_alias: str = "default"
    # Django cache alias for results: an evicting (LRU) Redis in production, see README "Caching".
    cache_alias: str = "default"
    # Alias for single-flight locks; it must not evict (keep it apart from an LRU results alias).
    lock_alias: str = "default"
    # Seconds a shared-cache entry lives; None: until evicted (keys are content-addressed, never stale).
    cache_timeout: float | None = None
    # After a cache failure (Redis down or slow), skip the shared level for this long before trying again.
    cache_retry_seconds: float = 5.0
    # How long a single-flight lock is held at most, and how long others wait for its result.
    lock_seconds: float = 10.0
    # The in-process LRU in front of the shared cache: bounded by entries and by MiB.
    local_cache_entries: int = 4096
    local_cache_mb: float = 64
    # Bearer token that may read the metrics endpoints besides staff users; None: staff only.
    metrics_token: str | None = None
    # Celery queues of distributed batch runs: CPU workers consume the first, GPU workers the second.
    cpu_queue: str = "aspects-cpu"
    gpu_queue: str = "aspects-gpu"
    # The job API (POST jobs/): False refuses new jobs with a 503 and silences the Celery check (E006).
    jobs_enabled: bool = True
    # Quotas of the job API (compute_aspects, the operator's, is not bound by them); None lifts one. A job's size
    # is counted as the run counts it: pairs of the pair modes, and rows stored (a chart's natal row, a row per
    # synastry pair, k per chart for top-k).
    max_job_pairs: int | None = 100_000_000
    max_job_rows: int | None = 5_000_000
    # Pending or running jobs per user at once (staff are exempt).
    max_active_jobs_per_user: int | None = 3
    # Synastry stores a database row per pair: above this many pairs only staff may ask for it through the API
    # (others: compute_aspects --mode synastry --output FILE).
    max_job_synastry_pairs: int | None = 100_000
    # Longest transits range a job may ask for, in days (about 10 years; the workers build ~0.5 s of sky track per
    # year, and a row per event is stored): past it POST jobs/ answers 400 naming ``end``. None lifts it.
    max_job_transit_days: int | None = 3653
    # House system of chart payloads, stored cusps and pictures (aspects_app.houses.HOUSE_SYSTEMS); a request may
    # ask for another with ?houses=.
    house_system: str = "placidus"
    # The "harmonic" score's settings (aspects_app.engine.harmonic.HarmonicConfig's fields: harmonics {h: c_h},
    # point_weights, pair_emphasis [[p, q, e], ...], dtype); None: the engine's defaults. Stored features, match
    # indexes and fresh match lists are versioned by its hash: a change recomputes them lazily.
    harmonic: dict[str, Any] | None = None
    # Directory of the harmonic match index files (one per configuration and point set, built by
    # ``manage.py aspects_index``); None: no index, /matches?method=harmonic always answers exactly.
    index_path: str | None = None
    # Kind of index ``aspects_index build`` makes: "hnsw", "ivf" or "exact" (aspects_app.index).
    index_kind: str = "hnsw"
    # /matches?method=harmonic answers by an exact product over stored features up to this many visible
    # candidates (and up to MAX_MATCH_CANDIDATES); above it, from the index when one is built.
    index_min_candidates: int = 20000
    # Fresh stored matches: k of the harmonic match lists kept up to date on chart create, edit and delete;
    # None: off (lists change only by batch runs).
    fresh_matches_k: int | None = None
    # True: that upkeep is a Celery task on CPU_QUEUE; False: it runs in the request, after the commit.
    fresh_matches_celery: bool = False


# The documented defaults by key, as a host writes them in settings.ASPECTS.
DEFAULTS: dict[str, Any] = {f.name.upper(): f.default for f in dataclasses.fields(AspectsSettings)}


@cache
def get_config() -> AspectsSettings:
    """``settings.ASPECTS`` over the defaults; cached until ASPECTS changes."""
    user: dict[str, Any] = getattr(settings, "ASPECTS", {}) or {}
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown key(s) in settings.ASPECTS: {', '.join(unknown)}. Valid keys: {', '.join(DEFAULTS)}."
        )
    return AspectsSettings(**{key.lower(): value for key, value in user.items()})


@receiver(setting_changed)
def _clear_config_cache(*, setting: str, **kwargs: Any) -> None:
    # override_settings(ASPECTS=...) in tests must be seen by the next get_config() call; modules built from
    # the settings (the result cache) listen for themselves.
    if setting == "ASPECTS":
        get_config.cache_clear()
