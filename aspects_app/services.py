"""The one module that joins models, positions and the engine. Views and commands call these functions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import transaction

from . import ephemeris, metrics
from .cache import result_cache, result_key
from .conf import get_config
from .engine import (
    ENGINE_VERSION,
    AspectConfig,
    AspectHits,
    MemoryOptimizedVectorizedCalculator,
)
from .engine.aspects import ASPECT_ANGLES, ORB_PRESETS, STANDARD_POINTS
from .models import AspectResult, Chart, positions_hash
from .profiling import silk_profile
from .timing import timed


class ServiceError(ValueError):
    """Bad input found by a service; ``field`` names the offending input for a 400 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- configuration ---------------------------------------------------------------------------------------------


def aspect_config(orbs: str | Mapping[str, float] | None = None, aspects: Sequence[str] | None = None) -> AspectConfig:
    """The configuration a request asks for: an orb preset name or a {aspect: orb} dict (default: settings'
    ``ORBS``, else kerykeion's defaults), optionally restricted to ``aspects``."""
    try:
        if orbs is None:
            configured = get_config()["ORBS"]
            config = AspectConfig() if configured is None else AspectConfig.from_orbs(configured)
        elif isinstance(orbs, str):
            config = AspectConfig.preset(orbs)
        else:
            config = AspectConfig.from_orbs(orbs)
    except ValueError as exc:
        raise ServiceError("orbs", str(exc)) from exc
    if aspects is not None:
        try:
            config = config.only(aspects)
        except ValueError as exc:
            raise ServiceError("aspects", str(exc)) from exc
    return config


@lru_cache(maxsize=32)
def _calculator(
    config: AspectConfig, backend: str, working_memory_mb: float, device_memory_limit_mb: float | None
) -> MemoryOptimizedVectorizedCalculator:
    # Calculators keep their buffer pool and kernel tables warm between requests with the same configuration.
    return MemoryOptimizedVectorizedCalculator(
        config=config,
        backend=backend,
        working_memory_mb=working_memory_mb,
        device_memory_limit_mb=device_memory_limit_mb,
    )


def calculator(config: AspectConfig) -> MemoryOptimizedVectorizedCalculator:
    settings = get_config()
    limit = settings["DEVICE_MEMORY_LIMIT_MB"]
    return _calculator(
        config, settings["BACKEND"], float(settings["WORKING_MEMORY_MB"]), None if limit is None else float(limit)
    )


def describe_configuration() -> dict[str, Any]:
    return {
        "aspects": [{"name": name, "angle": angle} for name, angle in ASPECT_ANGLES.items()],
        "orb_presets": {name: dict(orbs) for name, orbs in ORB_PRESETS.items()},
        "default_orbs": dict(aspect_config().orbs),
        "points": list(STANDARD_POINTS),
        "score_methods": ["discepolo", "weighted"],
        "engine_version": ENGINE_VERSION,
        "max_charts_per_request": get_config()["MAX_CHARTS_PER_REQUEST"],
    }


def monitoring_summary() -> dict[str, Any]:
    """The metrics as JSON, with this process's cache figures per level."""
    return {"metrics": metrics.summary(), "cache": result_cache().stats()}


# -- charts ----------------------------------------------------------------------------------------------------


def positions_from_birth(
    birth_datetimes: Sequence[datetime], latitudes: Sequence[float], longitudes: Sequence[float]
) -> ephemeris.Positions:
    try:
        return ephemeris.compute_positions(list(birth_datetimes), list(latitudes), list(longitudes))
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        # The ephemeris names its own arguments; an API caller knows the chart's fields.
        field = _EPHEMERIS_FIELDS.get(field, "birth_datetime")
        raise ServiceError(field, message or str(exc)) from exc


_EPHEMERIS_FIELDS = {"datetimes_utc": "birth_datetime", "lat": "latitude", "lon": "longitude"}


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
    with transaction.atomic():
        return Chart.objects.bulk_create(charts) if len(charts) > 1 else [_save(charts[0])]


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
    for n, chart in enumerate(charts):
        chart.set_positions(positions.points, positions.longitudes[n], positions.speeds[n])


def update_chart(chart: Chart, changes: ChartInput, fields: Iterable[str]) -> Chart:
    """Apply ``fields`` of ``changes``; positions are recomputed (or replaced) and stale results removed."""
    fields = set(fields)
    for name in ("name", "is_public", "birth_datetime", "latitude", "longitude", "time_zone"):
        if name in fields:
            setattr(chart, name, getattr(changes, name))
    old_hash = chart.positions_hash
    if changes.points is not None:
        chart.set_positions(changes.points, changes.longitudes, changes.speeds)
    elif fields & {"birth_datetime", "latitude", "longitude"}:
        if chart.birth_datetime is None or chart.latitude is None or chart.longitude is None:
            raise ServiceError("birth_datetime", "birth_datetime, latitude and longitude are all needed")
        _fill_positions([chart])
    with transaction.atomic():
        chart.save()
        if chart.positions_hash != old_hash:
            invalidate_results(chart, old_hash)
    return chart


def invalidate_results(chart: Chart, positions_hash: str | None = None) -> int:
    """Delete every persisted and cached result that involves ``chart`` (cached ones under ``positions_hash``,
    default: the chart's current one)."""
    deleted, _ = AspectResult.objects.filter(chart_a=chart).delete()
    more, _ = AspectResult.objects.filter(chart_b=chart).delete()
    doomed = positions_hash or chart.positions_hash
    transaction.on_commit(lambda: result_cache().invalidate(doomed))
    return deleted + more


@dataclass(frozen=True)
class ChartArrays:
    ids: list[int]
    points: tuple[str, ...]
    longitudes: npt.NDArray[np.float64]
    speeds: npt.NDArray[np.float64] | None


def chart_arrays(charts: Sequence[Chart], field: str = "charts") -> ChartArrays:
    """Stack charts' positions into (N, P) arrays; all must have the same points."""
    if not charts:
        raise ServiceError(field, "no charts selected")
    points = tuple(charts[0].points)
    for chart in charts:
        if tuple(chart.points) != points:
            raise ServiceError(field, f"chart {chart.pk} has points {chart.points}, others have {list(points)}")
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


def combined_positions_hash(*hashes: str) -> str:
    """What a result over several charts was computed from."""
    return positions_hash(list(hashes), np.empty(0), None)


def _combined_hash(*charts: Chart) -> str:
    return combined_positions_hash(*(c.positions_hash for c in charts))


def natal_aspects(chart: Chart, config: AspectConfig) -> AspectsResult:
    return _persisted_aspects(AspectResult.Kind.NATAL, chart, chart, config)


def synastry_aspects(chart_a: Chart, chart_b: Chart, config: AspectConfig) -> AspectsResult:
    if tuple(chart_a.points) != tuple(chart_b.points):
        raise ServiceError("chart_b", f"chart_b has points {chart_b.points} but chart_a has {chart_a.points}")
    return _persisted_aspects(AspectResult.Kind.SYNASTRY, chart_a, chart_b, config)


def _persisted_aspects(kind: str, chart_a: Chart, chart_b: Chart, config: AspectConfig) -> AspectsResult:
    """Through the cache levels: in-process LRU, shared cache, AspectResult rows, and only then the engine."""
    combined = _combined_hash(chart_a, chart_b)
    config_hash = config.config_hash()
    key = result_key(kind, config_hash, ENGINE_VERSION, chart_a.positions_hash, chart_b.positions_hash)
    from_database = False

    def load_or_compute() -> bytes:
        nonlocal from_database
        row = {"kind": kind, "chart_a": chart_a, "chart_b": chart_b, "config_hash": config_hash}
        stored = AspectResult.objects.filter(**row, engine_version=ENGINE_VERSION, positions_hash=combined).first()
        if stored is not None:
            from_database = True
            return bytes(stored.payload)
        start = time.perf_counter()
        payload = _compute(kind, chart_a, chart_b, config).to_bytes()
        AspectResult.objects.update_or_create(
            **row,
            engine_version=ENGINE_VERSION,
            defaults={
                "positions_hash": combined,
                "payload": payload,
                "hit_count": _hit_count(payload),
                "duration_ms": (time.perf_counter() - start) * 1000.0,
            },
        )
        return payload

    payload, level = result_cache().get_or_compute(key, load_or_compute)
    source = "database" if from_database else level
    metrics.CACHE_LOOKUPS.labels(level=source).inc()
    return AspectsResult(tuple(chart_a.points), AspectHits.from_bytes(payload), source != "computed", config, source)


def _hit_count(payload: bytes) -> int:
    return len(AspectHits.from_bytes(payload))


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
    except ValueError as exc:
        raise ServiceError("orbs", str(exc)) from exc


@contextmanager
def engine_call(calc: MemoryOptimizedVectorizedCalculator, name: str) -> Iterator[Callable[..., None]]:
    """Engine time for the request's Server-Timing, a silk profile when silk records the request, and the work
    counted in the metrics (the block calls the yielded function with charts, pairs, hits)."""
    chunks_before = calc.monitor.counters.get("chunks", 0)
    amounts: dict[str, float] = {}
    with timed("engine"), silk_profile(name):
        yield lambda **counts: amounts.update(counts)
    amounts["chunks"] = calc.monitor.counters.get("chunks", 0) - chunks_before
    metrics.record_engine("api", calc.backend.name, **amounts)


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
    """Synastry between two position sets that are not stored (hosts that keep charts elsewhere)."""
    names = tuple(points)
    key = result_key(
        "synastry",
        config.config_hash(),
        ENGINE_VERSION,
        positions_hash(names, np.asarray(longitudes_a), None if speeds_a is None else np.asarray(speeds_a)),
        positions_hash(names, np.asarray(longitudes_b), None if speeds_b is None else np.asarray(speeds_b)),
    )

    def compute() -> bytes:
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
        except ValueError as exc:
            raise ServiceError("points", str(exc)) from exc
        return hits.to_bytes()

    payload, level = result_cache().get_or_compute(key, compute)
    return AspectsResult(names, AspectHits.from_bytes(payload), level != "computed", config, level)


def scores(chart: Chart, others: Sequence[Chart], method: str, config: AspectConfig) -> list[dict[str, Any]]:
    """Score of ``chart`` against each of ``others``, in their order."""
    a = chart_arrays([chart], "chart")
    b = chart_arrays(others, "charts")
    if a.points != b.points:
        raise ServiceError("charts", f"the charts' points {list(b.points)} differ from the chart's {list(a.points)}")
    calc = calculator(config)
    try:
        with engine_call(calc, "scores") as record:
            values = calc.scores(a.longitudes, b.longitudes, method=method, points=a.points)
            record(charts=1 + len(b.ids), pairs=len(b.ids))
    except ValueError as exc:
        raise ServiceError("method", str(exc)) from exc
    return [{"chart": chart_id, "score": _number(v)} for chart_id, v in zip(b.ids, values[0].tolist(), strict=True)]


def top_matches(
    chart: Chart, candidates: Sequence[Chart], k: int, method: str, config: AspectConfig
) -> list[dict[str, Any]]:
    """The ``k`` best partners of ``chart`` among ``candidates`` (the chart itself excluded)."""
    others = [c for c in candidates if c.pk != chart.pk and tuple(c.points) == tuple(chart.points)]
    if not others:
        return []
    a = chart_arrays([chart], "chart")
    b = chart_arrays(others, "candidates")
    calc = calculator(config)
    try:
        with engine_call(calc, "top matches") as record:
            best = calc.top_k(a.longitudes, b.longitudes, k=k, method=method, points=a.points)
            record(charts=1 + len(b.ids), pairs=len(b.ids))
    except ValueError as exc:
        raise ServiceError("method", str(exc)) from exc
    return [
        {"rank": rank + 1, "chart": b.ids[int(j)], "score": _number(score)}
        for rank, (j, score) in enumerate(zip(best.indices[0].tolist(), best.scores[0].tolist(), strict=True))
    ]


def _number(value: float | int) -> float | int:
    return value if isinstance(value, int) else round(float(value), 6)


def estimate(
    num_charts1: int, num_charts2: int | None, num_planets: int, operation: str, method: str, working_memory_mb: float
) -> dict[str, Any]:
    settings = get_config()
    try:
        calc = MemoryOptimizedVectorizedCalculator(backend=settings["BACKEND"], working_memory_mb=working_memory_mb)
        return calc.estimate_memory_usage(num_charts1, num_charts2, num_planets, operation=operation, method=method)
    except ValueError as exc:
        raise ServiceError(str(exc).split(":", 1)[0], str(exc)) from exc


def warm_natal(chart_ids: Sequence[int], config: AspectConfig, batch_size: int = 2000) -> dict[str, int]:
    """Natal results of many charts into every cache level and the database: the cache is asked once per batch
    (``get_many``), the engine once for all the misses, and the results go back with ``set_many``."""
    cache = result_cache()
    config_hash = config.config_hash()
    counts = {"cached": 0, "computed": 0}
    for start in range(0, len(chart_ids), batch_size):
        charts = list(Chart.objects.filter(pk__in=chart_ids[start : start + batch_size]).order_by("pk"))
        keys = {
            c.pk: result_key("natal", config_hash, ENGINE_VERSION, c.positions_hash, c.positions_hash) for c in charts
        }
        found = cache.get_many(keys.values())
        missing = [c for c in charts if keys[c.pk] not in found]
        counts["cached"] += len(charts) - len(missing)
        by_points: dict[tuple[str, ...], list[Chart]] = {}
        for chart in missing:
            by_points.setdefault(tuple(chart.points), []).append(chart)
        for points, group in by_points.items():
            arrays = chart_arrays(group)
            hits = calculator(config).natal(arrays.longitudes, arrays.speeds, points=points)
            parts = hits.split()
            empty = AspectHits.empty(points, natal=True)
            payloads = {keys[c.pk]: parts.get(n, empty).to_bytes() for n, c in enumerate(group)}
            rows = [
                AspectResult(
                    kind=AspectResult.Kind.NATAL,
                    chart_a=c,
                    chart_b=c,
                    config_hash=config_hash,
                    engine_version=ENGINE_VERSION,
                    positions_hash=_combined_hash(c, c),
                    payload=payloads[keys[c.pk]],
                    hit_count=len(parts.get(n, empty)),
                )
                for n, c in enumerate(group)
            ]
            AspectResult.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["kind", "chart_a", "chart_b", "config_hash", "engine_version"],
                update_fields=["positions_hash", "payload", "hit_count", "computed_at"],
            )
            cache.set_many(payloads)
            counts["computed"] += len(group)
    return counts


def create_job(
    user: Any,
    modes: Sequence[str],
    charts: Sequence[int] | None,
    with_charts: Sequence[int] | None,
    orbs: Any,
    aspects: Sequence[str] | None,
    k: int,
    method: str,
) -> Any:
    """A distributed batch run over charts ``user`` can see (default: their own), enqueued for the workers."""
    from . import batch, distributed  # the batch layer builds on this module

    visible = Chart.objects.visible_to(user)
    groups = []
    for field, ids in (("charts", charts), ("with_charts", with_charts)):
        if ids is None:
            groups.append(
                None if field == "with_charts" else sorted(visible.filter(owner=user).values_list("pk", flat=True))
            )
            continue
        found = set(visible.filter(pk__in=ids).values_list("pk", flat=True))
        missing = sorted(set(ids) - found)
        if missing:
            raise ServiceError(field, f"unknown or not visible: {missing[:20]}")
        groups.append(sorted(found))
    if not groups[0]:
        raise ServiceError("charts", "no charts selected (you own none; list some visible ones)")
    settings = get_config()
    try:
        spec = batch.JobSpec(
            modes=list(dict.fromkeys(modes)),
            group_a=groups[0],
            group_b=groups[1],
            orbs=orbs,
            aspects=aspects,
            method=method,
            k=k,
            backend=settings["BACKEND"],
            working_memory_mb=float(settings["WORKING_MEMORY_MB"]),
        )
        batch.check_plan(spec)
    except batch.BatchError as exc:
        field, _, message = str(exc).partition(": ")
        field = {"selection": "charts", "second group": "with_charts"}.get(field, field.lstrip("-").replace("-", "_"))
        raise ServiceError(field or "modes", message or str(exc)) from exc
    run = batch.create_run(spec, owner=user)
    try:
        distributed.start(run)
    except batch.BatchError as exc:  # checked above; a chart deleted meanwhile
        raise ServiceError("charts", str(exc)) from exc
    run.refresh_from_db()
    return run
