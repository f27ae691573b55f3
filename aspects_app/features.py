"""Stored ``"harmonic"`` features: the one place that computes, writes and reads :class:`ChartFeatures` rows.

score(A, B) = F(A) · G(B) (:mod:`aspects_app.engine.harmonic`), so a chart's F and G vectors are computed once,
when its positions are stored (:func:`store_features`, from the services' write paths), and every match reads
them (:func:`load_features`). Rows are versioned: a row of another configuration (the ``HARMONIC`` setting
changed) or of other positions (a chart written around the services) is stale, and is computed again, and
stored, when a read meets it; a read never serves one.

After features are stored and the transaction commits, :data:`features_stored` is sent once with all its chart ids: the
live index and the fresh match lists follow from there (:mod:`aspects_app.signals`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import django.dispatch
import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import F, FilteredRelation, Q, QuerySet

from .calculators import calculator, harmonic_config
from .commit_batches import on_commit_batched
from .engine import AspectConfig
from .engine.harmonic import HarmonicConfig, round_to_grid, select_top_k_pruned
from .models import Chart, ChartFeatures, id_batches, stacked_positions

FORMAT_VERSION = 1
_DTYPE = np.dtype("<f8")

# Sent on commit after features were stored for new charts or changed positions: ``chart_ids`` (list of int).
features_stored = django.dispatch.Signal()


def settings_hash(config: HarmonicConfig | None = None) -> str:
    """The configuration's hash without columns: which configuration a row belongs to, whatever its points."""
    return (config or harmonic_config()).config_hash(())


def config_hash(points: Sequence[str], config: HarmonicConfig | None = None) -> str:
    """What features of charts with ``points`` are computed for (configuration and columns)."""
    return (config or harmonic_config()).config_hash(tuple(points))


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of charts with ``points``: ``ids`` ascending, one row each, in the configuration's dtype."""

    points: tuple[str, ...]
    config_hash: str
    ids: npt.NDArray[np.int64]
    features: npt.NDArray[np.floating]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _compute(points: Sequence[str], longitudes: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    calc = calculator(AspectConfig())
    return tuple(
        np.asarray(calc.harmonic_features(longitudes, side=side, points=list(points)), dtype=np.float64)
        for side in ("a", "b")
    )


def store_features(charts: Iterable[Chart]) -> list[int]:
    """Compute and store (upsert) the features of saved ``charts`` (one engine call per point set), and have
    :data:`features_stored` sent for them when the transaction commits; returns their ids."""
    by_points: dict[tuple[str, ...], list[Chart]] = {}
    for chart in charts:
        by_points.setdefault(tuple(chart.points), []).append(chart)
    ids = _store_groups({points: [(int(c.pk), c.positions_hash, bytes(c.longitudes)) for c in group]
                         for points, group in by_points.items()})  # fmt: skip
    if ids:
        # Once per transaction, for all its charts (followers load whole populations); robust: the write has
        # committed by then, and a follower's failure (the broker down) is logged, not raised as a 500 that a
        # client would retry into a second chart.
        on_commit_batched("features_stored", ids, _send_features_stored)
    return ids


def _send_features_stored(chart_ids: list[int]) -> None:
    features_stored.send(sender=ChartFeatures, chart_ids=chart_ids)


def _store_groups(groups: dict[tuple[str, ...], list[tuple[int, str, bytes]]]) -> list[int]:
    config = harmonic_config()
    version = settings_hash(config)
    rows: list[ChartFeatures] = []
    for points, members in groups.items():
        if not members:
            continue
        longitudes = stacked_positions([blob for _, _, blob in members], len(points))
        fa, fb = _compute(points, longitudes)
        digest = config_hash(points, config)
        rows.extend(
            ChartFeatures(chart_id=pk, config_hash=digest, settings_hash=version, positions_hash=positions,
                          format_version=FORMAT_VERSION, dimension=fa.shape[1],
                          features_a=fa[n].astype(_DTYPE).tobytes(), features_b=fb[n].astype(_DTYPE).tobytes())
            for n, (pk, positions, _) in enumerate(members)
        )  # fmt: skip
    stored = [row.chart_id for row in rows]
    for batch in id_batches(stored):  # rows of an earlier configuration: never served again, so not kept
        ChartFeatures.objects.filter(chart_id__in=list(batch)).exclude(settings_hash=version).delete()
    ChartFeatures.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["chart", "settings_hash"],
        update_fields=["config_hash", "positions_hash", "format_version", "dimension", "features_a", "features_b",
                       "updated_at"],
        batch_size=500,
    )  # fmt: skip
    return stored


def current_rows(charts: QuerySet[Chart]) -> QuerySet[ChartFeatures]:
    """The current feature rows of ``charts``: this configuration and format, the charts' present positions."""
    return ChartFeatures.objects.filter(
        chart__in=charts.values("pk"),
        settings_hash=settings_hash(),
        format_version=FORMAT_VERSION,
        positions_hash=F("chart__positions_hash"),
    )


def fill_missing(charts: QuerySet[Chart]) -> int:
    """Compute and store the features of those of ``charts`` that have no current row (charts stored before
    features were, or under another configuration); how many were computed. Lazily, on a read: no signal."""
    stale = charts.exclude(pk__in=current_rows(charts).values("chart_id")).order_by("pk")
    found = list(stale.values_list("pk", "points", "positions_hash", "longitudes"))
    groups: dict[tuple[str, ...], list[tuple[int, str, bytes]]] = {}
    for pk, points, positions, blob in found:
        if isinstance(points, list) and points and len(bytes(blob)) == len(points) * _DTYPE.itemsize:
            groups.setdefault(tuple(points), []).append((pk, positions, bytes(blob)))
    with transaction.atomic():
        return len(_store_groups(groups))


def load_features(charts: QuerySet[Chart], points: Sequence[str], side: str) -> FeatureMatrix:
    """Side ``side`` ("a": F, "b": G) features of those of ``charts`` that have ``points``, ids ascending, missing
    or stale ones computed (and stored) first. One query: the charts joined to their current rows."""
    if side not in ("a", "b"):
        raise ValueError(f"side: expected 'a' or 'b', got {side!r}")
    config = harmonic_config()
    digest = config_hash(points, config)
    column = "features_a" if side == "a" else "features_b"
    current = Q(
        harmonic_features__settings_hash=settings_hash(config),
        harmonic_features__format_version=FORMAT_VERSION,
        harmonic_features__positions_hash=F("positions_hash"),
    )
    joined = charts.annotate(current=FilteredRelation("harmonic_features", condition=current)).order_by("pk")
    ids: list[int] = []
    blobs: list[bytes] = []
    missing = False
    for pk, row_hash, blob in joined.values_list("pk", "current__config_hash", f"current__{column}").iterator(
        chunk_size=5000
    ):
        if row_hash == digest:
            ids.append(pk)
            blobs.append(bytes(blob))
        missing = missing or row_hash is None
    if missing and fill_missing(charts):  # rare: charts stored around the services, or a new configuration
        return load_features(charts, points, side)
    dimension = 2 * sum(1 for c in config.harmonics.values() if c) * len(points)
    matrix = np.frombuffer(b"".join(blobs), dtype=_DTYPE).reshape(len(ids), dimension)
    return FeatureMatrix(tuple(points), digest, np.asarray(ids, np.int64), matrix.astype(config.dtype))


def features_of_ids(chart_ids: Sequence[int], points: Sequence[str], side: str) -> FeatureMatrix:
    """:func:`load_features` of the charts ``chart_ids`` (those that exist and have ``points``)."""
    found: list[FeatureMatrix] = [
        load_features(Chart.objects.filter(pk__in=list(batch)), points, side) for batch in id_batches(list(chart_ids))
    ]
    if not found:
        empty = load_features(Chart.objects.none(), points, side)
        return empty
    ids = np.concatenate([m.ids for m in found])
    order = np.argsort(ids, kind="stable")
    return FeatureMatrix(found[0].points, found[0].config_hash, ids[order],
                         np.concatenate([m.features for m in found])[order])  # fmt: skip


def scores_against(candidates: FeatureMatrix, feature_a: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Harmonic scores of one chart (its F vector) against every candidate (their G rows), in the configuration's
    dtype and rounded to the engine's grid, as ``calc.scores(..., method="harmonic")`` gives them."""
    vector = np.asarray(feature_a).astype(candidates.features.dtype, copy=False)
    products = np.matmul(candidates.features, vector).astype(np.float64)
    rounded: npt.NDArray[np.float64] = round_to_grid(np, products)
    return rounded


def top_k_against(candidates: FeatureMatrix, feature_a: npt.NDArray[np.floating], k: int) -> list[tuple[int, float]]:
    """The ``k`` best (chart id, score) of ``candidates`` for one chart by the exact harmonic score (one BLAS
    matrix-vector product), ties to the lower chart id as the engine's top-k."""
    if not len(candidates) or k < 1:
        return []
    vector = np.asarray(feature_a).astype(candidates.features.dtype, copy=False)
    products = np.matmul(candidates.features, vector).astype(np.float64)[None, :]
    columns, values = select_top_k_pruned(np, products, min(k, len(candidates)))
    return [(int(candidates.ids[j]), float(v)) for j, v in zip(columns[0].tolist(), values[0].tolist(), strict=True)]
