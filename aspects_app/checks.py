"""System checks for ``settings.ASPECTS``: bad values show up in ``manage.py check``, not mid-request."""

import math
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from aspects_app.conf import get_config
from aspects_app.engine.backend import BACKEND_NAMES
from aspects_app.houses import HOUSE_SYSTEMS

BACKENDS = frozenset(BACKEND_NAMES)


@checks.register("aspects_app")
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        config = get_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="aspects_app.E000")]
    errors: list[checks.CheckMessage] = []
    backend = config.backend
    if backend not in BACKENDS:
        errors.append(
            checks.Error(
                f"ASPECTS['BACKEND'] is {backend!r}.",
                hint=f"Use one of: {', '.join(sorted(BACKENDS))}.",
                id="aspects_app.E001",
            )
        )
    budget = config.working_memory_mb
    # bool is an int subclass, but True is not a memory budget; NaN and inf are not budgets either.
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not (0 < budget < math.inf):
        errors.append(
            checks.Error(
                f"ASPECTS['WORKING_MEMORY_MB'] is {budget!r}.",
                hint="Use a positive number of MiB, e.g. 256.",
                id="aspects_app.E002",
            )
        )
    limit = config.device_memory_limit_mb
    bad_limit = isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit < math.inf
    if limit is not None and bad_limit:
        errors.append(
            checks.Error(
                f"ASPECTS['DEVICE_MEMORY_LIMIT_MB'] is {limit!r}.",
                hint="Use a positive number of MiB, or None for no cap.",
                id="aspects_app.E005",
            )
        )
    if config.house_system not in HOUSE_SYSTEMS:
        errors.append(
            checks.Error(
                f"ASPECTS['HOUSE_SYSTEM'] is {config.house_system!r}.",
                hint=f"Use one of: {', '.join(HOUSE_SYSTEMS)}.",
                id="aspects_app.E007",
            )
        )
    return errors


def _is_redis(alias: str) -> bool:
    return "redis" in str(settings.CACHES.get(alias, {}).get("BACKEND", "")).lower()


@checks.register("aspects_app", checks.Tags.caches)
def check_caches(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The results alias exists; locks (and DRF's throttle counters, in "default") are kept out of an evicting
    alias; a Redis results alias really evicts by LRU."""
    try:
        config = get_config()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    messages: list[checks.CheckMessage] = []
    aliases = (("CACHE_ALIAS", config.cache_alias), ("LOCK_ALIAS", config.lock_alias))
    for key, alias in (*aliases, ("THROTTLE_ALIAS", config.throttle_alias)):
        if alias not in settings.CACHES:
            messages.append(
                checks.Error(
                    f"ASPECTS['{key}'] is {alias!r}, which is not in settings.CACHES.",
                    hint=f"Use one of: {', '.join(settings.CACHES)}.",
                    id="aspects_app.E003",
                )
            )
    if messages:
        return messages
    results, locks = config.cache_alias, config.lock_alias
    if _is_redis(results) and results in (locks, "default"):
        messages.append(
            checks.Warning(
                f"The results cache alias {results!r} also holds locks or DRF's throttle counters.",
                hint="Give results their own alias (an allkeys-lru Redis database); keep 'default' and "
                "LOCK_ALIAS on a store that does not evict.",
                id="aspects_app.W001",
            )
        )
    if _is_redis(results):
        policy = _redis_policy(results)
        if policy is not None and policy != "allkeys-lru":
            messages.append(
                checks.Warning(
                    f"Redis behind cache alias {results!r} has maxmemory-policy {policy!r}, not allkeys-lru.",
                    hint="Run it as an LRU: maxmemory <size> and maxmemory-policy allkeys-lru (README, Caching).",
                    id="aspects_app.W002",
                )
            )
    return messages


def _redis_policy(alias: str) -> str | None:
    """The server's maxmemory-policy, or None when it cannot be asked (down, or CONFIG disabled)."""
    try:
        from django_redis import get_redis_connection

        reply = get_redis_connection(alias).config_get("maxmemory-policy")
    except Exception:  # a check must not fail because Redis is down at check time
        return None
    value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
    return value.decode() if isinstance(value, bytes) else value


MONITORING = "aspects_app.middleware.MonitoringMiddleware"
SILK = "silk.middleware.SilkyMiddleware"


@checks.register("aspects_app")
def check_monitoring(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The monitoring middleware times everything only when first; silk needs its middleware and must not be
    open to everyone."""
    messages: list[checks.CheckMessage] = []
    middleware = list(settings.MIDDLEWARE)
    if MONITORING in middleware and middleware.index(MONITORING) != 0:
        messages.append(
            checks.Warning(
                f"{MONITORING} is not the first middleware, so the time of those above it is not measured.",
                hint="Put it first in MIDDLEWARE.",
                id="aspects_app.W003",
            )
        )
    if apps.is_installed("silk"):
        if SILK not in middleware:
            messages.append(checks.Error(f"silk is installed but {SILK} is not in MIDDLEWARE.", id="aspects_app.E004"))
        if not getattr(settings, "SILKY_AUTHENTICATION", False) or not getattr(settings, "SILKY_AUTHORISATION", False):
            messages.append(
                checks.Warning(
                    "django-silk's UI is not restricted: anyone can read recorded requests (SQL, headers, bodies).",
                    hint="Set SILKY_AUTHENTICATION = True and SILKY_AUTHORISATION = True (staff only).",
                    id="aspects_app.W004",
                )
            )
    return messages


@checks.register("aspects_app")
def check_jobs(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """With the job API on (JOBS_ENABLED), its runs need a Celery app of the host's with a broker: Celery's
    fallback app would send every block to amqp://localhost, where the run waits for ever."""
    try:
        if not get_config().jobs_enabled:
            return []
    except ImproperlyConfigured:
        return []  # reported by check_settings
    from aspects_app.tasks import celery_problem  # the task module only once the apps are ready

    problem = celery_problem()
    if problem is None:
        return []
    return [
        checks.Error(
            f"Jobs are enabled but {problem}; POST jobs/ answers 503 until this is fixed.",
            hint="README, 'Work spread over machines (Celery)'; or set ASPECTS['JOBS_ENABLED'] = False.",
            id="aspects_app.E006",
        )
    ]


# Backends whose entries live in one process's memory: each worker would count throttles and hold locks alone.
PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.", "django.core.cache.backends.dummy.")


def _is_per_process(alias: str) -> bool:
    return str(settings.CACHES.get(alias, {}).get("BACKEND", "")).startswith(PER_PROCESS_CACHES)


@checks.register("aspects_app", checks.Tags.caches)
def check_shared_state(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Throttle counters and single-flight locks in a per-process cache while results are shared: a sign of
    several processes, each of which then lets the full rate through and computes what the others compute."""
    try:
        config = get_config()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    results = config.cache_alias
    if results not in settings.CACHES or _is_per_process(results):
        return []  # E003, or a single-process deployment
    local = {
        key: alias
        for key, alias in (("THROTTLE_ALIAS", config.throttle_alias), ("LOCK_ALIAS", config.lock_alias))
        if alias in settings.CACHES and _is_per_process(alias)
    }
    if not local:
        return []
    named = ", ".join(f"ASPECTS['{key}'] ({alias!r})" for key, alias in local.items())
    return [
        checks.Warning(
            f"{named} is a per-process cache while results ({results!r}) are shared: with several workers each "
            "counts throttles and holds locks alone (a 60/min limit lets 60/min through per worker).",
            hint="Point them at a shared store that does not evict, e.g. a Redis run with maxmemory-policy "
            "noeviction (README, Caching).",
            id="aspects_app.W005",
        )
    ]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@checks.register("aspects_app")
def check_harmonic(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The harmonic score's settings, its match index and the fresh match lists."""
    from aspects_app.calculators import harmonic_config
    from aspects_app.index import KINDS

    try:
        config = get_config()
    except ImproperlyConfigured:
        return []  # E000
    errors: list[checks.CheckMessage] = []
    try:
        harmonic_config()
    except ImproperlyConfigured as exc:
        hint = "Use HarmonicConfig's fields: harmonics {h: c}, point_weights, pair_emphasis [[p, q, e]], dtype."
        errors.append(checks.Error(str(exc), hint=hint, id="aspects_app.E008"))
    bound = config.index_min_candidates
    if config.index_kind not in KINDS or not (_positive_int(bound) or (bound == 0 and not isinstance(bound, bool))):
        errors.append(
            checks.Error(
                f"ASPECTS['INDEX_KIND'] is {config.index_kind!r}, INDEX_MIN_CANDIDATES "
                f"{config.index_min_candidates!r}.",
                hint=f"INDEX_KIND: one of {', '.join(KINDS)}; INDEX_MIN_CANDIDATES: an integer >= 0.",
                id="aspects_app.E009",
            )
        )
    k = config.fresh_matches_k
    if k is not None and (not _positive_int(k) or k > 100):
        errors.append(
            checks.Error(
                f"ASPECTS['FRESH_MATCHES_K'] is {k!r}.",
                hint="Use an integer from 1 to 100 (the matches endpoint's k), or None to turn the upkeep off.",
                id="aspects_app.E010",
            )
        )
    return errors
