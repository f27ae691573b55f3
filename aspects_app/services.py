"""Request-time work: the one module that joins models, positions and the engine for a request, including the
visibility rules views need. Views and commands call these functions; batch runs are :mod:`aspects_app.jobs`'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import F, QuerySet, TextField, Window
from django.db.models.functions import Cast, RowNumber
from django.utils.dateparse import parse_date, parse_datetime

from . import ephemeris, features, live_index, metrics, results, transit_windows
from .cache import result_cache, result_key
from .calculators import calculator, shared_calculators
from .conf import get_config
from .engine import (
    ENGINE_VERSION,
    AspectConfig,
    AspectHits,
    MemoryOptimizedVectorizedCalculator,
    SkyEvents,
    TransitEvents,
)
from .engine.aspects import ASPECT_ANGLES, ASPECT_NAMES, ORB_PRESETS, STANDARD_POINTS
from .engine.errors import FieldError
from .engine.patterns import DEFAULT_STELLIUM_MIN_POINTS, StelliumRule
from .engine.transit_events import SIGNS, SKY_EVENT_KINDS
from .engine.transits import TRACK_BODIES, TRANSIT_ORBS
from .houses import HouseCusps
from .models import AspectResult, Chart, ChartQuerySet, Match, TransitEvent, id_batches, stacked_positions
from .profiling import silk_profile
from .sky_track import TRACK_PADDING_DAYS
from .timing import timed

# The name this error had before it moved into the engine; host code may still catch it.
ServiceError = FieldError


class ChartNotFound(FieldError):
    """A chart id in ``field`` that does not exist or that the caller may not see (the API answers 404, the same
    for both, so that ids reveal nothing)."""


# -- configuration ---------------------------------------------------------------------------------------------


def aspect_config(orbs: str | Mapping[str, float] | None = None, aspects: Sequence[str] | None = None) -> AspectConfig:
    """The configuration a request asks for: an orb preset name or a {aspect: orb} dict (default: settings'
    ``ORBS``, else kerykeion's defaults), optionally restricted to ``aspects``."""
    try:
        if orbs is None:
            configured = get_config().orbs
            config = AspectConfig() if configured is None else AspectConfig.from_orbs(configured)
        elif isinstance(orbs, str):
            config = AspectConfig.preset(orbs)
        else:
            config = AspectConfig.from_orbs(orbs)
    except FieldError as exc:
        raise _request_error(exc, "orbs") from exc
    if aspects is not None:
        try:
            config = config.only(aspects)
        except ValueError as exc:
            raise FieldError("aspects", str(exc)) from exc
    return config


def describe_configuration() -> dict[str, Any]:
    return {
        "aspects": [{"name": name, "angle": angle} for name, angle in ASPECT_ANGLES.items()],
        "orb_presets": {name: dict(orbs) for name, orbs in ORB_PRESETS.items()},
        "default_orbs": dict(aspect_config().orbs),
        "points": list(STANDARD_POINTS),
        "score_methods": ["discepolo", "weighted"],
        "engine_version": ENGINE_VERSION,
        "max_charts_per_request": get_config().max_charts_per_request,
    }


def monitoring_summary() -> dict[str, Any]:
    """The metrics as JSON, with this process's cache figures per level."""
    return {"metrics": metrics.summary(), "cache": result_cache().stats()}


def metrics_exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    return metrics.exposition()


def may_read_metrics(user: Any, bearer_token: str | None) -> bool:
    """Staff, or a caller presenting ``ASPECTS["METRICS_TOKEN"]`` (a Prometheus scraper)."""
    token = get_config().metrics_token
    if token and bearer_token is not None and secrets.compare_digest(bearer_token, str(token)):
        return True
    return bool(user and user.is_staff)


def cache_stats() -> dict[str, Any]:
    """Figures of every level: this process's LRU, the shared cache (with its server's, when Redis) and the
    persisted rows."""
    stats = result_cache().stats()
    stats["shared"]["server"] = _redis_server_stats(get_config().cache_alias)
    stats["database"] = {kind: AspectResult.objects.filter(kind=kind).count() for kind in AspectResult.Kind.values}
    return stats


def _redis_server_stats(alias: str) -> dict[str, Any] | None:
    """Redis INFO figures of the shared cache, when it is Redis and answers."""
    try:
        from django_redis import get_redis_connection

        connection = get_redis_connection(alias)
        info = connection.info()
        policy = connection.config_get("maxmemory-policy")
    except Exception:  # not Redis, or down: the figures are optional
        return None
    return {
        "keyspace_hits": info.get("keyspace_hits"),
        "keyspace_misses": info.get("keyspace_misses"),
        "evicted_keys": info.get("evicted_keys"),
        "used_memory": info.get("used_memory"),
        "maxmemory": info.get("maxmemory"),
        "maxmemory_policy": policy.get("maxmemory-policy"),
    }


def clear_cache(persisted: bool) -> int:
    """Forget every cached result; with ``persisted``, delete the stored rows too (returns how many)."""
    result_cache().clear()
    return AspectResult.objects.all().delete()[0] if persisted else 0


def forget_chart(chart_id: int, persisted: bool) -> tuple[int, int]:
    """Forget one chart's cached results (and with ``persisted`` its stored rows): (cached, stored) counts."""
    chart = Chart.objects.filter(pk=chart_id).first()
    if chart is None:
        raise ChartNotFound("chart", f"no chart {chart_id}")
    forgotten = result_cache().forget_charts([chart.pk])
    return forgotten, results.invalidate_results(chart) if persisted else 0


# -- visibility ------------------------------------------------------------------------------------------------


def visible_charts(user: Any) -> ChartQuerySet:
    """The charts ``user`` may see (anonymous users: public ones)."""
    return Chart.objects.visible_to(user)


def visible_charts_by_field(user: Any, ids: Mapping[str, int]) -> dict[str, Chart]:
    """The chart of each field, in one query, all visible to ``user``; else :class:`ChartNotFound` on the first
    field whose chart is missing or private (the two look the same)."""
    found = {c.pk: c for c in visible_charts(user).filter(pk__in=set(ids.values()))}
    for field, chart_id in ids.items():
        if chart_id not in found:
            raise ChartNotFound(field, "no such chart, or not visible")
    return {field: found[chart_id] for field, chart_id in ids.items()}


def visible_charts_by_id(user: Any, ids: Sequence[int], field: str) -> list[Chart]:
    """The charts ``ids`` in the given order, all visible to ``user``, else a :class:`ChartNotFound` on ``field``
    listing the ones that are not (unknown and private look the same)."""
    found: dict[int, Chart] = {}
    for batch in id_batches(sorted(set(ids))):
        found.update((c.pk, c) for c in visible_charts(user).filter(pk__in=batch))
    _check_all_found(ids, found.keys(), field)
    return [found[i] for i in ids]


def visible_chart_ids(user: Any, ids: Sequence[int], field: str) -> list[int]:
    """``ids``, ascending and deduplicated, after checking that ``user`` may see every one (ids only: no
    positions are loaded)."""
    unique = sorted(set(ids))
    found: set[int] = set()
    for batch in id_batches(unique):
        found.update(visible_charts(user).filter(pk__in=batch).values_list("pk", flat=True))
    _check_all_found(unique, found, field)
    return unique


def _check_all_found(ids: Sequence[int], found: Collection[int], field: str) -> None:
    missing = [i for i in ids if i not in found]
    if missing:
        # 404, as for a chart named in the path or the query (the schema documents it for these fields too).
        raise ChartNotFound(field, f"unknown or not visible: {missing[:20]}")


@dataclass(frozen=True)
class MatchCandidates:
    """The candidates that have ``points``, as arrays: ids ascending (one per row) and their (N, P) longitudes.
    Top-k needs no speeds, so none are loaded."""

    points: tuple[str, ...]
    ids: npt.NDArray[np.int64]
    longitudes: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(
        cls, points: Sequence[str], rows: Iterable[tuple[int, Sequence[str], bytes | memoryview]]
    ) -> MatchCandidates:
        """From (id, points, longitudes bytes) rows, skipping those with other points (or, a row written around
        ``set_positions``, a different number of longitudes)."""
        wanted = list(points)
        size = len(wanted) * np.dtype(np.float64).itemsize
        ids: list[int] = []
        blobs: list[bytes | memoryview] = []
        for pk, row_points, blob in rows:
            if row_points == wanted and len(blob) == size:
                ids.append(pk)
                blobs.append(blob)
        return cls(tuple(wanted), np.asarray(ids, dtype=np.int64), stacked_positions(blobs, len(wanted)))

    @classmethod
    def from_charts(cls, points: Sequence[str], charts: Iterable[Chart]) -> MatchCandidates:
        return cls.from_rows(points, ((int(c.pk), list(c.points), c.longitudes) for c in charts))


def match_candidates(user: Any, chart: Chart) -> MatchCandidates:
    """Every chart ``user`` may see but ``chart`` that has ``chart``'s points, up to ``MAX_MATCH_CANDIDATES``
    visible ones (more is a batch job's), in one query: ids, points and longitudes only, never model instances
    (a deferred field read back per chart was one query per candidate)."""
    limit = get_config().max_match_candidates
    # The points as the database's text, decoded once per distinct list: JSONField decodes every row's (most of
    # the time of 50,000 rows otherwise).
    candidates = visible_charts(user).exclude(pk=chart.pk).order_by("pk")
    text = candidates.annotate(points_text=Cast("points", TextField()))
    rows = list(text.values_list("pk", "points_text", "longitudes")[: limit + 1])
    if len(rows) > limit:
        raise FieldError("k", f"more than {limit} candidates; use manage.py compute_aspects for this")
    decoded: dict[str, list[str]] = {}

    def points_of(value: str) -> list[str]:
        found = decoded.get(value)
        if found is None:
            found = decoded[value] = json.loads(value)
        return found

    return MatchCandidates.from_rows(chart.points, ((pk, points_of(t), blob) for pk, t, blob in rows))


def stored_matches(
    user: Any, chart: Chart | None = None, run_id: int | None = None, of_list: tuple[str, str] | None = None
) -> QuerySet[Match, dict[str, Any]]:
    """Stored ``Match`` rows (batch top-k) that ``user`` may see: of ``chart``, of the run ``run_id`` and/or of
    the list ``of_list`` (method, configuration hash), in rank order per chart and list, as dicts. A row whose
    chart or partner the caller may not see is left out, and ``position`` is the rank among the rows kept, so a
    gap reveals no hidden partner."""
    visible = visible_charts(user).values("pk")
    rows = Match.objects.filter(chart__in=visible, partner__in=visible)
    if chart is not None:
        rows = rows.filter(chart=chart)
    if run_id is not None:
        rows = rows.filter(run_id=run_id)
    if of_list is not None:
        rows = rows.filter(method=of_list[0], config_hash=of_list[1])
    lists = [F("chart"), F("method"), F("config_hash")]
    ranked = rows.annotate(position=Window(RowNumber(), partition_by=lists, order_by=F("rank").asc()))
    fields = ("chart", "partner", "score", "method", "config_hash", "run", "computed_at", "position")
    listed: QuerySet[Match, dict[str, Any]] = ranked.order_by("chart", "method", "config_hash", "rank").values(*fields)
    return listed


def stored_natal_results(user: Any, chart_ids: Sequence[int], config_hash: str) -> list[dict[str, Any]]:
    """The stored natal results of ``chart_ids`` (few: a page of them) under ``config_hash`` and this engine
    version, for the charts ``user`` may see: chart, aspects (point names) and when each was computed."""
    rows = AspectResult.objects.filter(
        kind=AspectResult.Kind.NATAL,
        chart_a__in=visible_charts(user).filter(pk__in=list(chart_ids)).values("pk"),
        config_hash=config_hash,
        engine_version=ENGINE_VERSION,
    ).order_by("chart_a")
    return [
        {
            "chart": row.chart_a_id,
            "computed_at": row.computed_at,
            "aspects": [
                {key: value for key, value in record.items() if key != "i"}
                for record in AspectHits.from_bytes(bytes(row.payload)).to_records(point_names=True)
            ],
        }
        for row in rows
    ]


def latest_match_list(chart: Chart, method: str | None = None) -> Match | None:
    """A row of ``chart``'s most recently stored match list (of ``method``, if given), naming the list's method,
    configuration and run; None when no run stored one."""
    rows = Match.objects.filter(chart=chart)
    if method is not None:
        rows = rows.filter(method=method)
    return rows.order_by("-computed_at", "-pk").first()


# -- charts ----------------------------------------------------------------------------------------------------


def positions_from_birth(
    birth_datetimes: Sequence[datetime], latitudes: Sequence[float], longitudes: Sequence[float]
) -> ephemeris.Positions:
    try:
        return ephemeris.compute_positions(list(birth_datetimes), list(latitudes), list(longitudes))
    except FieldError as exc:
        # The ephemeris names its own arguments; an API caller knows the chart's fields.
        raise exc.renamed(_EPHEMERIS_FIELDS.get(exc.field, "birth_datetime")) from exc


_EPHEMERIS_FIELDS = {"datetimes_utc": "birth_datetime", "lat": "latitude", "lon": "longitude"}


def chart_houses(chart: Chart, system: str | None = None) -> HouseCusps | None:
    """House cusps of ``chart`` in ``system`` (the ``HOUSE_SYSTEM`` setting when None), or None for a chart given by
    positions only: houses need the birth moment and place. The cusps stored with the chart when they are of that
    system, else computed (and stored, lazily, when they are the setting's: charts saved before cusps were stored,
    or under another setting)."""
    return charts_houses([chart], system)[0]


def charts_houses(charts: Sequence[Chart], system: str | None = None) -> list[HouseCusps | None]:
    """:func:`chart_houses` of many charts (a page of a list), those not stored computed in one ephemeris call."""
    configured = get_config().house_system
    wanted = configured if system is None else system
    found: list[HouseCusps | None] = [None] * len(charts)
    missing: list[int] = []
    for n, chart in enumerate(charts):
        if chart.birth_datetime is None or chart.latitude is None or chart.longitude is None:
            continue
        stored = _stored_cusps(chart) if chart.house_system == wanted else None
        if stored is None:
            missing.append(n)
        else:
            found[n] = stored
    if not missing:
        return found
    computed = _houses_from_birth([charts[n] for n in missing], wanted)
    for row, n in enumerate(missing):
        found[n] = _house_row(computed, row)
        if wanted == configured:
            _store_houses_lazily(charts[n], computed, row)
    return found


def _houses_from_birth(charts: Sequence[Chart], system: str) -> HouseCusps:
    try:
        return ephemeris.compute_houses(
            [c.birth_datetime for c in charts],  # type: ignore[misc]
            np.array([c.latitude for c in charts], dtype=np.float64),
            np.array([c.longitude for c in charts], dtype=np.float64),
            system,
        )
    except FieldError as exc:
        field = "houses" if exc.field == "system" else _EPHEMERIS_FIELDS.get(exc.field, "birth_datetime")
        raise exc.renamed(field) from exc


def _set_houses(chart: Chart, houses: HouseCusps, row: int) -> None:
    chart.house_system = houses.system
    chart.house_cusps = {
        "cusps": houses.cusps[row].tolist(),
        "asc": float(houses.asc[row]),
        "mc": float(houses.mc[row]),
        "fallback": bool(houses.fallback[row]),
        "clockwise": bool(houses.clockwise[row]),
    }


def _store_houses_lazily(chart: Chart, houses: HouseCusps, row: int) -> None:
    """Store computed cusps on a chart that had none of this system; only if its positions are still the ones
    loaded (a concurrent edit recomputed both), and without touching ``updated_at`` (nothing the host set
    changed)."""
    _set_houses(chart, houses, row)
    if chart.pk is not None:
        Chart.objects.filter(pk=chart.pk, positions_hash=chart.positions_hash).update(
            house_system=chart.house_system, house_cusps=chart.house_cusps
        )


def _house_row(houses: HouseCusps, row: int) -> HouseCusps:
    picked = slice(row, row + 1)
    return _read_only_houses(
        houses.system, houses.cusps[picked], houses.fallback[picked], houses.asc[picked], houses.mc[picked],
        houses.clockwise[picked],
    )  # fmt: skip


def _stored_cusps(chart: Chart) -> HouseCusps | None:
    """The chart's stored cusps as a one-chart HouseCusps; None when there are none or the row holds something
    else (written around the app): they are then computed again."""
    stored = chart.house_cusps
    try:
        cusps = np.asarray(stored["cusps"], dtype=np.float64)  # type: ignore[index]
        angles = np.asarray([stored["asc"], stored["mc"]], dtype=np.float64)  # type: ignore[index]
        flags = [stored["fallback"], stored["clockwise"]]  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
    if cusps.shape != (12,) or not np.isfinite(cusps).all() or not np.isfinite(angles).all():
        return None
    if not all(isinstance(flag, bool) for flag in flags):
        return None
    return _read_only_houses(
        chart.house_system, cusps[None, :], np.asarray([flags[0]]), angles[:1], angles[1:], np.asarray([flags[1]])
    )


def _read_only_houses(
    system: str,
    cusps: npt.NDArray[np.float64],
    fallback: npt.NDArray[np.bool_],
    asc: npt.NDArray[np.float64],
    mc: npt.NDArray[np.float64],
    clockwise: npt.NDArray[np.bool_],
) -> HouseCusps:
    floats = [np.array(values, dtype=np.float64) for values in (cusps, asc, mc)]
    flags = [np.array(values, dtype=np.bool_) for values in (fallback, clockwise)]
    for array in (*floats, *flags):
        array.setflags(write=False)
    return HouseCusps(
        cusps=floats[0], system=system, fallback=flags[0], asc=floats[1], mc=floats[2], clockwise=flags[1]
    )


@dataclass(frozen=True)
class ChartInput:
    """Validated input for one chart: birth data, or positions given by the host."""

    name: str = ""
    is_public: bool = False
    birth_datetime: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    time_zone: str = ""
    points: tuple[str, ...] | None = None
    longitudes: tuple[float, ...] | None = None
    speeds: tuple[float, ...] | None = None


def create_charts(owner: Any, inputs: Sequence[ChartInput]) -> list[Chart]:
    """Create charts, computing positions from birth data in one vectorised ephemeris call."""
    if not inputs:
        return []
    charts = [_unsaved_chart(owner, item) for item in inputs]
    _fill_positions([c for c, item in zip(charts, inputs, strict=True) if item.points is None])
    for chart in charts:  # bulk_create skips save(), which checks this
        chart.check_positions()
    with transaction.atomic():
        created = Chart.objects.bulk_create(charts) if len(charts) > 1 else [_save(charts[0])]
        features.store_features(created)  # matching reads them; the live index and fresh lists follow on commit
        return created


def _save(chart: Chart) -> Chart:
    chart.save()
    return chart


def _unsaved_chart(owner: Any, item: ChartInput) -> Chart:
    chart = Chart(
        owner=owner if owner is not None and owner.is_authenticated else None,
        name=item.name,
        is_public=item.is_public,
        birth_datetime=item.birth_datetime,
        latitude=item.latitude,
        longitude=item.longitude,
        time_zone=item.time_zone,
    )
    if item.points is not None:
        chart.set_positions(item.points, item.longitudes, item.speeds)
    return chart


def _fill_positions(charts: Sequence[Chart]) -> None:
    if not charts:
        return
    positions = positions_from_birth(
        [c.birth_datetime for c in charts],  # type: ignore[misc]
        [c.latitude for c in charts],  # type: ignore[misc]
        [c.longitude for c in charts],  # type: ignore[misc]
    )
    # The cusps with the positions, from the same birth data, in the setting's system.
    houses = _houses_from_birth(charts, get_config().house_system)
    for n, chart in enumerate(charts):
        chart.set_positions(positions.points, positions.longitudes[n], positions.speeds[n])
        _set_houses(chart, houses, n)


def fill_positions_from_birth(chart: Chart) -> None:
    """Compute an unsaved ``chart``'s positions from its birth data (the admin's form, before it validates)."""
    if chart.birth_datetime is None or chart.latitude is None or chart.longitude is None:
        raise FieldError("birth_datetime", "birth_datetime, latitude and longitude are all needed")
    _fill_positions([chart])


def save_chart(chart: Chart, old_hash: str) -> Chart:
    """Save an edited ``chart``; results computed from other positions than its own are removed."""
    with transaction.atomic():
        chart.save()
        if old_hash and chart.positions_hash != old_hash:
            results.invalidate_results(chart)
        if chart.positions_hash != old_hash:
            features.store_features([chart])
    return chart


def recompute_positions(charts: Iterable[Chart]) -> int:
    """Compute again, from their birth data, the positions of those of ``charts`` that have it (after an
    ephemeris upgrade, say): how many were recomputed. Results of charts whose positions changed are removed."""
    with_birth = [c for c in charts if None not in (c.birth_datetime, c.latitude, c.longitude)]
    old_hashes = [c.positions_hash for c in with_birth]
    _fill_positions(with_birth)
    with transaction.atomic():
        for chart, old_hash in zip(with_birth, old_hashes, strict=True):
            save_chart(chart, old_hash)
    return len(with_birth)


def update_chart(chart: Chart, changes: ChartInput, fields: Iterable[str]) -> Chart:
    """Apply ``fields`` of ``changes``; positions are recomputed (or replaced) and stale results removed."""
    fields = set(fields)
    for name in ("name", "is_public", "birth_datetime", "latitude", "longitude", "time_zone"):
        if name in fields:
            setattr(chart, name, getattr(changes, name))
    old_hash = chart.positions_hash
    if changes.points is not None:
        chart.set_positions(changes.points, changes.longitudes, changes.speeds)
        # Given positions replace computed ones: birth data they were not computed from would misinform.
        chart.birth_datetime = chart.latitude = chart.longitude = None
    elif fields & {"birth_datetime", "latitude", "longitude"}:
        if chart.birth_datetime is None or chart.latitude is None or chart.longitude is None:
            raise FieldError("birth_datetime", "birth_datetime, latitude and longitude are all needed")
        _fill_positions([chart])
    return save_chart(chart, old_hash)


@dataclass(frozen=True)
class ChartArrays:
    ids: list[int]
    points: tuple[str, ...]
    longitudes: npt.NDArray[np.float64]
    speeds: npt.NDArray[np.float64] | None


def chart_arrays(charts: Sequence[Chart], field: str = "charts") -> ChartArrays:
    """Stack charts' positions into (N, P) arrays; all must have the same points."""
    if not charts:
        raise FieldError(field, "no charts selected")
    points = tuple(charts[0].points)
    for chart in charts:
        if tuple(chart.points) != points:
            raise FieldError(field, f"chart {chart.pk} has points {chart.points}, others have {list(points)}")
    longitudes = np.stack([c.longitude_array for c in charts])
    speed_rows = [c.speed_array for c in charts]
    speeds = None if any(s is None for s in speed_rows) else np.stack(speed_rows)  # type: ignore[arg-type]
    return ChartArrays([int(c.pk) for c in charts], points, longitudes, speeds)


# -- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AspectsResult:
    points: tuple[str, ...]
    hits: AspectHits
    cached: bool
    config: AspectConfig
    source: str = "computed"  # "local", "shared", "database" or "computed"

    def aspects(self) -> list[dict[str, Any]]:
        return [
            {key: value for key, value in record.items() if key not in ("i", "j")}
            for record in self.hits.to_records(point_names=True)
        ]


def natal_aspects(chart: Chart, config: AspectConfig) -> AspectsResult:
    return _persisted_aspects(AspectResult.Kind.NATAL, chart, chart, config)


def synastry_aspects(chart_a: Chart, chart_b: Chart, config: AspectConfig) -> AspectsResult:
    if tuple(chart_a.points) != tuple(chart_b.points):
        raise FieldError("chart_b", f"chart_b has points {chart_b.points} but chart_a has {chart_a.points}")
    return _persisted_aspects(AspectResult.Kind.SYNASTRY, chart_a, chart_b, config)


def _persisted_aspects(kind: str, chart_a: Chart, chart_b: Chart, config: AspectConfig) -> AspectsResult:
    """Through the cache levels: in-process LRU, shared cache, AspectResult rows, and only then the engine."""
    config_hash = config.config_hash()
    # Scoped per chart (ids besides positions): a hit never tells a caller that someone else computed the same
    # birth data (README, "Security").
    key = result_key(
        kind,
        config_hash,
        ENGINE_VERSION,
        (chart_a.pk, chart_a.positions_hash),
        (chart_b.pk, chart_b.positions_hash),
    )
    from_database = False

    def load_or_compute() -> bytes:
        nonlocal from_database
        stored = results.stored_payload(kind, chart_a, chart_b, config_hash)
        if stored is not None:
            from_database = True
            return stored
        start = time.perf_counter()
        hits = _compute(kind, chart_a, chart_b, config)
        payload = hits.to_bytes()
        row = results.result_row(
            kind,
            chart_a.pk,
            chart_b.pk,
            config_hash,
            payload,
            len(hits),
            results.combined_positions_hash(chart_a.positions_hash, chart_b.positions_hash),
            (time.perf_counter() - start) * 1000.0,
        )
        results.save_results([row], timed=True)
        return payload

    payload, level = result_cache().get_or_compute(key, load_or_compute)
    source = "database" if from_database else level
    metrics.CACHE_LOOKUPS.labels(level=source).inc()
    return AspectsResult(tuple(chart_a.points), AspectHits.from_bytes(payload), source != "computed", config, source)


def _compute(kind: str, chart_a: Chart, chart_b: Chart, config: AspectConfig) -> AspectHits:
    calc = calculator(config)
    points = tuple(chart_a.points)
    try:
        with engine_call(calc, f"{kind} aspects") as record:
            if kind == AspectResult.Kind.NATAL:
                hits = calc.natal(chart_a.longitude_array[None, :], _row(chart_a.speed_array), points=points)
            else:
                hits = calc.synastry(
                    chart_a.longitude_array[None, :],
                    chart_b.longitude_array[None, :],
                    _row(chart_a.speed_array),
                    _row(chart_b.speed_array),
                    points=points,
                )
            record(charts=1 if kind == AspectResult.Kind.NATAL else 2, pairs=1, hits=len(hits))
            return hits
    except FieldError as exc:
        raise _request_error(exc, "orbs") from exc


@contextmanager
def engine_call(calc: MemoryOptimizedVectorizedCalculator, name: str) -> Iterator[Callable[..., None]]:
    """Engine time for the request's Server-Timing, a silk profile when silk records the request, and the work
    counted in the metrics (the block calls the yielded function with charts, pairs, hits)."""
    chunks_before = calc.monitor.counters.get("chunks", 0)
    amounts: dict[str, float] = {}
    try:
        with timed("engine"), silk_profile(name):
            yield lambda **counts: amounts.update(counts)
    finally:
        shared_calculators.trim()
    amounts["chunks"] = calc.monitor.counters.get("chunks", 0) - chunks_before
    metrics.record_engine("api", calc.backend.name, **amounts)


# Engine arguments that a request names the same way; any other engine field is reported on the caller's field.
_REQUEST_FIELDS = frozenset({"method", "orbs", "aspects", "k"})


def _request_error(exc: FieldError, default_field: str) -> FieldError:
    return exc.renamed(exc.field if exc.field in _REQUEST_FIELDS else default_field)


def _row(speeds: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64] | None:
    return None if speeds is None else speeds[None, :]


def inline_synastry(
    points: Sequence[str],
    longitudes_a: Sequence[float],
    longitudes_b: Sequence[float],
    speeds_a: Sequence[float] | None,
    speeds_b: Sequence[float] | None,
    config: AspectConfig,
) -> AspectsResult:
    """Synastry between two position sets that are not stored (hosts that keep charts elsewhere). Computed every
    time, never cached: its only possible key is the positions themselves, and a hit on it would tell one caller
    that another sent the same (birth) data (README, "Security")."""
    names = tuple(points)
    calc = calculator(config)
    try:
        with engine_call(calc, "inline synastry") as record:
            hits = calc.synastry(
                np.asarray([longitudes_a], dtype=np.float64),
                np.asarray([longitudes_b], dtype=np.float64),
                None if speeds_a is None else np.asarray([speeds_a], dtype=np.float64),
                None if speeds_b is None else np.asarray([speeds_b], dtype=np.float64),
                points=names,
            )
            record(charts=2, pairs=1, hits=len(hits))
    except FieldError as exc:
        raise _request_error(exc, "points") from exc
    return AspectsResult(names, hits, False, config, "computed")


def scores(chart: Chart, others: Sequence[Chart], method: str, config: AspectConfig) -> list[dict[str, Any]]:
    """Score of ``chart`` against each of ``others``, in their order."""
    a = chart_arrays([chart], "chart")
    b = chart_arrays(others, "charts")
    if a.points != b.points:
        raise FieldError("charts", f"the charts' points {list(b.points)} differ from the chart's {list(a.points)}")
    calc = calculator(config)
    try:
        with engine_call(calc, "scores") as record:
            values = calc.scores(a.longitudes, b.longitudes, method=method, points=a.points)
            record(charts=1 + len(b.ids), pairs=len(b.ids))
    except FieldError as exc:
        raise _request_error(exc, "method") from exc
    return [{"chart": chart_id, "score": _number(v)} for chart_id, v in zip(b.ids, values[0].tolist(), strict=True)]


def top_matches(
    chart: Chart, candidates: MatchCandidates | Sequence[Chart], k: int, method: str, config: AspectConfig
) -> list[dict[str, Any]]:
    """The ``k`` best partners of ``chart`` among ``candidates`` (:func:`match_candidates`, or charts), the chart
    itself and charts with other points left out; ties go to the earlier candidate."""
    points = tuple(chart.points)
    if not isinstance(candidates, MatchCandidates):
        candidates = MatchCandidates.from_charts(points, candidates)
    elif candidates.points != points:
        candidates = MatchCandidates(points, candidates.ids[:0], candidates.longitudes[:0])
    others = candidates.ids != chart.pk
    ids, longitudes = candidates.ids[others], candidates.longitudes[others]
    if not len(ids):
        return []
    calc = calculator(config)
    try:
        with engine_call(calc, "top matches") as record:
            best = calc.top_k(chart.longitude_array[None, :], longitudes, k=k, method=method, points=points)
            record(charts=1 + len(ids), pairs=len(ids))
    except FieldError as exc:
        raise _request_error(exc, "method") from exc
    return [
        {"rank": rank + 1, "chart": int(ids[j]), "score": _number(score)}
        for rank, (j, score) in enumerate(zip(best.indices[0].tolist(), best.scores[0].tolist(), strict=True))
    ]


def harmonic_matches(user: Any, chart: Chart, k: int) -> list[dict[str, Any]]:
    """The ``k`` best partners of ``chart`` by the ``"harmonic"`` score among the charts ``user`` may see that
    have its points, from stored features (never recomputed): an exact matrix-vector product up to
    ``INDEX_MIN_CANDIDATES`` visible candidates (and ``MAX_MATCH_CANDIDATES``); above, the match index of the
    configuration when one is built (docs in :mod:`aspects_app.live_index`), else the exact product up to
    ``MAX_MATCH_CANDIDATES``, and beyond that a 400 on ``k`` as for the other methods."""
    settings = get_config()
    candidates = visible_charts(user).exclude(pk=chart.pk)
    count = candidates.count()
    own = features.features_of_ids([chart.pk], chart.points, "a")
    if not len(own):
        raise FieldError("chart", f"chart {chart.pk} has no usable positions")
    best: list[tuple[int, float]] | None = None
    if count > min(settings.index_min_candidates, settings.max_match_candidates):
        best = live_index.search(candidates, chart, own.features[0], own.config_hash, k)
    if best is None:
        if count > settings.max_match_candidates:
            limit = settings.max_match_candidates
            raise FieldError("k", f"more than {limit} candidates; use manage.py compute_aspects for this, or build "
                             "the match index (manage.py aspects_index build)")  # fmt: skip
        best = features.top_k_against(features.load_features(candidates, chart.points, "b"), own.features[0], k)
    return [{"rank": rank + 1, "chart": pk, "score": _number(score)} for rank, (pk, score) in enumerate(best)]


def _number(value: float | int) -> float | int:
    return value if isinstance(value, int) else round(float(value), 6)


# A budget that holds one chart pair of any size the API allows (255 points: a few MiB): 1 TiB.
ESTIMATE_PROBE_BUDGET_MB = 2.0**20


def estimate(
    num_charts1: int,
    num_charts2: int | None,
    num_planets: int,
    operation: str,
    method: str,
    working_memory_mb: float | None = None,
) -> dict[str, Any]:
    """The engine's memory plan (default budget: the settings'), with ``fits`` and ``minimum_working_memory_mb``
    (the budget that holds one chart pair). A budget under that minimum is reported, not refused (the question
    is whether it fits, and each field alone is valid): ``fits`` is false and the plan is the one at the
    minimum. Other errors name the engine's argument, which the API names the same way."""
    settings = get_config()
    budget = settings.working_memory_mb if working_memory_mb is None else working_memory_mb

    def plan_with(budget_mb: float) -> dict[str, Any]:
        calc = MemoryOptimizedVectorizedCalculator(backend=settings.backend, working_memory_mb=budget_mb)
        return calc.estimate_memory_usage(num_charts1, num_charts2, num_planets, operation=operation, method=method)

    try:
        plan = plan_with(budget)
        fits = True
    except FieldError as exc:
        if exc.field != "working_memory_mb":
            raise
        # Planning allocates nothing, so any budget can be asked; one that holds a pair tells a pair's bytes.
        pair_bytes = plan_with(ESTIMATE_PROBE_BUDGET_MB)["bytes_per_chart_pair"]
        plan = plan_with((math.ceil(pair_bytes) + 1) / 2**20)  # + 1 byte: the budget's MiB round to bytes
        plan["working_memory_mb"] = budget
        fits = False
    return {**plan, "fits": fits, "minimum_working_memory_mb": plan["bytes_per_chart_pair"] / 2**20}


def warm_natal(chart_ids: Sequence[int], config: AspectConfig, batch_size: int = 2000) -> dict[str, int]:
    """Natal results of many charts into every cache level and the database: the cache is asked once per batch
    (``get_many``), the engine once for all the misses, and the results go back with ``set_many``."""
    cache = result_cache()
    config_hash = config.config_hash()
    counts = {"cached": 0, "computed": 0}
    for batch in id_batches(chart_ids, batch_size):
        charts = list(Chart.objects.filter(pk__in=batch).order_by("pk"))
        keys = {
            c.pk: result_key("natal", config_hash, ENGINE_VERSION, (c.pk, c.positions_hash), (c.pk, c.positions_hash))
            for c in charts
        }
        found = cache.get_many(keys.values())
        missing = [c for c in charts if keys[c.pk] not in found]
        counts["cached"] += len(charts) - len(missing)
        by_points: dict[tuple[str, ...], list[Chart]] = {}
        for chart in missing:
            by_points.setdefault(tuple(chart.points), []).append(chart)
        for points, group in by_points.items():
            arrays = chart_arrays(group)
            try:
                hits = calculator(config).natal(arrays.longitudes, arrays.speeds, points=points)
            finally:
                shared_calculators.trim()
            parts = hits.split()
            empty = AspectHits.empty(points, natal=True)
            payloads = {keys[c.pk]: parts.get(n, empty).to_bytes() for n, c in enumerate(group)}
            rows = [
                results.result_row(
                    AspectResult.Kind.NATAL,
                    c.pk,
                    c.pk,
                    config_hash,
                    payloads[keys[c.pk]],
                    len(parts.get(n, empty)),
                    results.combined_positions_hash(c.positions_hash, c.positions_hash),
                )
                for n, c in enumerate(group)
            ]
            results.save_results(rows)
            cache.set_many(payloads)
            counts["computed"] += len(group)
    return counts


# -- patterns -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternsResult:
    """Aspect patterns of a chart (or of a pair's combined points): records ``pattern`` and ``points`` (names),
    synastry adds ``sides`` (``"a"``/``"b"`` per point). Stellia by sign when ``stellium_span`` is None."""

    points: tuple[str, ...]
    config: AspectConfig
    stellium_span: float | None
    patterns: list[dict[str, Any]]
    cached: bool
    source: str  # "local", "shared" or "computed"


def chart_patterns(chart: Chart, config: AspectConfig, stellium_span: float | None = None) -> PatternsResult:
    """Grand trines, T-squares, grand crosses, yods, kites, mystic rectangles and stellia of ``chart``'s points
    under ``config`` (docs/patterns.md), through the result cache with per-chart keys (as natal aspects)."""
    return _cached_patterns("patterns", config, stellium_span, chart)


def synastry_patterns(
    chart_a: Chart, chart_b: Chart, config: AspectConfig, stellium_span: float | None = None
) -> PatternsResult:
    """The patterns of both charts' points together that have points of each (a figure within one chart is its
    natal pattern), from both natal aspect sets and the synastry aspects."""
    if tuple(chart_a.points) != tuple(chart_b.points):
        raise FieldError("chart_b", f"chart_b has points {chart_b.points} but chart_a has {chart_a.points}")
    return _cached_patterns("synastry-patterns", config, stellium_span, chart_a, chart_b)


def _cached_patterns(kind: str, config: AspectConfig, stellium_span: float | None, *charts: Chart) -> PatternsResult:
    try:
        rule = StelliumRule.make(stellium_span, DEFAULT_STELLIUM_MIN_POINTS)
    except FieldError as exc:
        raise exc.renamed("stellium_span") from exc
    variant = hashlib.sha256(json.dumps([config.config_hash(), rule.span]).encode()).hexdigest()[:16]
    key = result_key(kind, variant, ENGINE_VERSION, *((c.pk, c.positions_hash) for c in charts))
    payload, source = result_cache().get_or_compute(key, lambda: _patterns_payload(config, rule.span, charts))
    metrics.CACHE_LOOKUPS.labels(level=source).inc()
    records: list[dict[str, Any]] = json.loads(payload)
    return PatternsResult(tuple(charts[0].points), config, rule.span, records, source != "computed", source)


def _patterns_payload(config: AspectConfig, stellium_span: float | None, charts: Sequence[Chart]) -> bytes:
    calc = calculator(config)
    points = tuple(charts[0].points)
    rows = [c.longitude_array[None, :] for c in charts]
    try:
        with engine_call(calc, "patterns") as record:
            if len(rows) == 1:
                found = calc.patterns(rows[0], points=points, stellium_span=stellium_span)
            else:
                found = calc.synastry_patterns(rows[0], rows[1], points=points, stellium_span=stellium_span)
            record(charts=len(rows), pairs=1, hits=len(found))
    except FieldError as exc:
        raise _request_error(exc, "orbs") from exc
    records = [{k: v for k, v in r.items() if k != "i"} for r in found.to_records(point_names=True)]
    return json.dumps(records, separators=(",", ":")).encode()


# -- transits --------------------------------------------------------------------------------------------------

# A request computes at most this span of sky (a leap year); longer calendars are batch runs.
MAX_TRANSIT_DAYS = 366


def transit_config(orbs: str | Mapping[str, float] | None = None, aspects: Sequence[str] | None = None) -> AspectConfig:
    """The aspects and orbs of a transit search: ``orbs`` as :func:`aspect_config` takes them, by default the
    predictive preset :data:`~aspects_app.engine.transits.TRANSIT_ORBS` (the five majors at 3°), optionally
    restricted to ``aspects`` (which must then have an orb)."""
    if orbs is not None:
        return aspect_config(orbs, aspects)
    config = AspectConfig.from_orbs(TRANSIT_ORBS)
    if aspects is None:
        return config
    unknown = [name for name in aspects if name not in ASPECT_ANGLES]
    if unknown:
        raise FieldError("aspects", f"unknown aspect(s) {unknown}; known aspects: {', '.join(ASPECT_ANGLES)}")
    orbless = [name for name in aspects if name not in TRANSIT_ORBS]
    if orbless:
        raise FieldError(
            "aspects",
            f"{orbless} have no orb in the transit preset ({', '.join(TRANSIT_ORBS)}); give orbs for them",
        )
    return config.only(aspects)


def transit_bodies(bodies: Sequence[str] | None) -> tuple[str, ...] | None:
    """``bodies`` checked against the bodies a track can carry (None: the track's default, Sun … Pluto)."""
    if bodies is None:
        return None
    names = tuple(bodies)
    unknown = [name for name in names if name not in TRACK_BODIES]
    if unknown or not names:
        raise FieldError("bodies", f"unknown or missing body(ies) {unknown}; known: {', '.join(TRACK_BODIES)}")
    if len(set(names)) != len(names):
        raise FieldError("bodies", f"duplicate names in {list(names)}")
    return names


def parse_moment(field: str, value: str | datetime) -> datetime:
    """An ISO 8601 date or date-time (or a datetime) as an aware UTC datetime: a date is midnight UTC, a time
    without an offset is UTC. A :class:`FieldError` on ``field`` otherwise."""
    moment = value if isinstance(value, datetime) else _parse_iso(value) if isinstance(value, str) else None
    if moment is None:
        raise FieldError(field, f"expected an ISO 8601 date or date-time, got {value!r}")
    try:
        return moment.astimezone(UTC) if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)
    except OverflowError as exc:  # 9999-12-31T23:00-05:00 is past the calendar's end in UTC
        raise FieldError(field, "outside the supported range of dates") from exc


def _parse_iso(text: str) -> datetime | None:
    text = text.strip()
    try:
        moment = parse_datetime(text)
        day = None if moment is not None else parse_date(text)
    except ValueError:  # well formed, impossible (2027-02-30)
        return None
    if moment is not None:
        return moment
    return None if day is None else datetime(day.year, day.month, day.day)


def transit_range(
    start: datetime, end: datetime, max_days: float | None = MAX_TRANSIT_DAYS
) -> tuple[datetime, datetime]:
    """[``start``, ``end``) in UTC, checked: aware, ``end`` after ``start``, at most ``max_days`` long, and inside
    the ephemeris with the track's padding (a :class:`FieldError` on ``start`` or ``end`` otherwise)."""
    for field, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise FieldError(field, "expected a moment with a UTC offset")
    first, last = start.astimezone(UTC), end.astimezone(UTC)
    if last <= first:
        raise FieldError("end", f"must be after start ({first.isoformat()})")
    if max_days is not None and last - first > timedelta(days=max_days):
        raise FieldError("end", f"at most {max_days:g} days after start, got {(last - first) / timedelta(days=1):g}")
    lowest, highest = ephemeris.supported_range()
    pad = timedelta(days=TRACK_PADDING_DAYS)
    # The padding moves the ephemeris' ends, not the range: first - pad overflows datetime at year 1.
    if first < lowest + pad:
        raise FieldError("start", f"the ephemeris (DE421) starts at {lowest.isoformat()}; start a day after that")
    if last > highest - pad:
        raise FieldError("end", f"the ephemeris (DE421) ends at {highest.isoformat()}; end a day before that")
    return first, last


@dataclass(frozen=True)
class TransitsResult:
    """One chart's transit events over [start, end), and the sky's own events (ingresses, stations) there, as
    the JSON arrays the API serves (kept as bytes: a cached answer is neither decoded nor rendered again)."""

    start: datetime
    end: datetime
    bodies: tuple[str, ...]
    config: AspectConfig
    events_json: bytes
    sky_json: bytes
    cached: bool
    source: str  # "local", "shared" or "computed"

    @property
    def events(self) -> list[dict[str, Any]]:
        """``point``, ``body``, ``aspect``, ``exact``, ``starts``, ``ends`` (ISO 8601 UTC, milliseconds; None
        outside the range), ``retrograde``."""
        records: list[dict[str, Any]] = json.loads(self.events_json)
        return records

    @property
    def sky(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = json.loads(self.sky_json)
        return records


def chart_transits(
    chart: Chart, start: datetime, end: datetime, bodies: Sequence[str] | None, config: AspectConfig
) -> TransitsResult:
    """The transits of ``chart`` over [``start``, ``end``) (at most :data:`MAX_TRANSIT_DAYS`), through the result
    cache. Keys are scoped per chart with its positions hash, so an edit (or forgetting the chart) makes the old
    entry unreachable, as natal aspects'."""
    first, last = transit_range(start, end)
    names = transit_bodies(bodies)
    config_hash = config.config_hash()
    query = json.dumps([config_hash, first.isoformat(), last.isoformat(), names], separators=(",", ":"))
    variant = hashlib.sha256(query.encode()).hexdigest()[:16]
    key = result_key("transits", variant, ENGINE_VERSION, (chart.pk, chart.positions_hash))
    payload, source = result_cache().get_or_compute(key, lambda: _transit_payload(chart, first, last, names, config))
    metrics.CACHE_LOOKUPS.labels(level=source).inc()
    # The payload: the bodies (one line), then the events' and the sky's JSON arrays (one line each).
    head, events_json, sky_json = payload.split(b"\n", 2)
    return TransitsResult(
        first, last, tuple(json.loads(head)), config, events_json, sky_json, source != "computed", source
    )


def _transit_payload(
    chart: Chart, start: datetime, end: datetime, bodies: tuple[str, ...] | None, config: AspectConfig
) -> bytes:
    calc = calculator(config)
    try:
        track = transit_windows.track_for(start, end, bodies)
        with engine_call(calc, "transits") as record:
            events = calc.transits(chart.longitude_array[None, :], track, points=tuple(chart.points))
            record(charts=1, hits=len(events))
        sky = transit_windows.sky_for(track)
    except FieldError as exc:
        raise (exc if exc.field in ("start", "end", "bodies") else _request_error(exc, "orbs")) from exc
    lines = (list(track.bodies), _event_records(events), _sky_records(sky))
    # JSON escapes newlines inside strings, so the three lines split back unambiguously.
    return b"\n".join(json.dumps(line, separators=(",", ":")).encode() for line in lines)


def _iso_ms(times: npt.NDArray[np.datetime64]) -> list[str | None]:
    """UTC moments as ISO 8601 with milliseconds (the Moon moves 0.0005″ in one), NaT as None; vectorised, as
    formatting datetime objects one by one cost more than the search."""
    text: list[str] = np.datetime_as_string(times, unit="ms").tolist()
    return [None if value == "NaT" else value + "Z" for value in text]


def _names(names: Sequence[str], codes: npt.NDArray[Any]) -> list[str]:
    picked: list[str] = np.asarray(names, dtype=object)[codes].tolist()
    return picked


def _event_records(events: TransitEvents) -> list[dict[str, Any]]:
    columns = {
        "point": _names(events.points, events.point),
        "body": _names(events.bodies, events.body),
        "aspect": _names(ASPECT_NAMES, events.aspect),
        "exact": _iso_ms(events.exact),
        "starts": _iso_ms(events.starts),
        "ends": _iso_ms(events.ends),
        "retrograde": events.retrograde.tolist(),
    }
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _sky_records(sky: SkyEvents) -> list[dict[str, Any]]:
    columns = {
        "body": _names(sky.bodies, sky.body),
        "kind": _names(SKY_EVENT_KINDS, sky.kind),
        "time": _iso_ms(sky.time),
        "longitude": sky.longitude.tolist(),
        "sign": _names(SIGNS, sky.sign),
        "retrograde": sky.retrograde.tolist(),
    }
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def stored_transit_events(
    user: Any,
    chart_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    run_id: int | None = None,
) -> QuerySet[TransitEvent]:
    """Stored transit events (batch runs) of the charts ``user`` may see, of ``chart_id`` when given (a chart the
    caller may not see is :class:`ChartNotFound`), exact in [``start``, ``end``), stored by the run ``run_id``
    when given (whether the caller may see that run is the job layer's to check), by chart and time."""
    visible = visible_charts(user)
    if chart_id is not None:
        if not visible.filter(pk=chart_id).exists():
            raise ChartNotFound("chart", "no such chart, or not visible")
        rows = TransitEvent.objects.filter(chart_id=chart_id)
    else:
        rows = TransitEvent.objects.filter(chart__in=visible.values("pk"))
    if start is not None and end is not None and end <= start:
        raise FieldError("end", "must be after start")
    if run_id is not None:
        rows = rows.filter(run_id=run_id)
    if start is not None:
        rows = rows.filter(exact__gte=start)
    if end is not None:
        rows = rows.filter(exact__lt=end)
    return rows.order_by("chart", "exact", "id")
