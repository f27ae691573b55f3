"""Fresh stored matches: the ``"harmonic"`` match lists (``Match`` rows) kept equal to a full batch top-k run as
charts are created, moved and deleted, without rerunning it (``FRESH_MATCHES_K``; README "Harmonic matching").

The lists are those a batch run ``compute_aspects --mode top-k --method harmonic --k K`` over all charts stores:
per chart, its K best partners among every chart with the same points (visibility is applied when lists are read,
as for batch lists), under the settings' aspect configuration hash, ties to the lower chart id.

- A chart created or moved (:func:`refresh`): its own list is computed from the stored features (one
  matrix-vector product over its population); every list that held it is computed again (its old score there is
  gone); it enters every other list where it beats the k-th (:func:`~aspects_app.engine.harmonic.fold_in`, one
  matrix-vector product over the population's F features).
- A chart deleted: the lists that held it are computed again (``Match`` rows naming it went with it).

Lists are written through :func:`aspects_app.results.replace_matches`, the one writer of ``Match`` rows. The
upkeep runs after the commit, inline or as a Celery task (``FRESH_MATCHES_CELERY``); each call loads the
population's features (N × D floats), so it is a worker's job for large populations. A chart with no stored list
counts as an empty one: turning the upkeep on for an existing population needs one batch run with the same K.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from django.db import transaction

from . import features, results, services
from .conf import get_config
from .engine.harmonic import fold_in
from .models import Chart, Match, id_batches

METHOD = "harmonic"
_NO_ID = np.iinfo(np.int64).max


def list_config_hash() -> str:
    """The configuration hash batch runs store harmonic lists under with the default orbs (the settings')."""
    return services.aspect_config().config_hash()


def enabled_k() -> int | None:
    k = get_config().fresh_matches_k
    return k if k else None


def holders_of(chart_id: int) -> list[int]:
    """Charts whose stored harmonic list holds ``chart_id`` (other than itself)."""
    rows = Match.objects.filter(partner_id=chart_id, method=METHOD, config_hash=list_config_hash())
    return sorted(set(rows.exclude(chart_id=chart_id).values_list("chart_id", flat=True)))


def refresh(changed: Sequence[int], repair: Sequence[int] = (), k: int | None = None) -> int:
    """Bring the stored lists up to date after the charts ``changed`` were created or moved and the lists of
    ``repair`` lost a partner (deleted); returns the lists written. ``k``: the lists' length (default
    ``FRESH_MATCHES_K``; a task carries its sender's); a no-op when neither is set."""
    k = k or enabled_k()
    if k is None:
        return 0
    written = recompute_lists(repair, k)
    for chart_id in changed:
        written += _fold_in_chart(int(chart_id), k)
    return written


def _points_of(chart_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, tuple[str, ...]] = {}
    for batch in id_batches(sorted(set(chart_ids))):
        found.update((pk, tuple(p)) for pk, p in Chart.objects.filter(pk__in=list(batch)).values_list("pk", "points"))
    return found


def recompute_lists(chart_ids: Iterable[int], k: int) -> int:
    """The full lists of ``chart_ids`` (those that still exist), computed from the stored features and written."""
    by_points: dict[tuple[str, ...], list[int]] = {}
    for pk, points in _points_of(chart_ids).items():
        by_points.setdefault(points, []).append(pk)
    written = 0
    config_hash = list_config_hash()
    for points, members in by_points.items():
        fa = features.load_features(Chart.objects.all(), points, "a")
        fb = features.load_features(Chart.objects.all(), points, "b")
        row_of = {int(pk): n for n, pk in enumerate(fa.ids.tolist())}
        lists: dict[int, list[tuple[int, float]]] = {}
        for pk in members:
            if pk not in row_of:
                continue
            others = fb.ids != pk
            candidates = features.FeatureMatrix(fb.points, fb.config_hash, fb.ids[others], fb.features[others])
            lists[pk] = features.top_k_against(candidates, fa.features[row_of[pk]], k)
        written += _write(lists, config_hash)
    return written


def _fold_in_chart(chart_id: int, k: int) -> int:
    points = _points_of([chart_id]).get(chart_id)
    if points is None:  # deleted since
        return 0
    config_hash = list_config_hash()
    holders = set(holders_of(chart_id))
    written = recompute_lists(holders, k)  # its score there changed (or its points did)
    fa = features.load_features(Chart.objects.all(), points, "a")
    fb = features.load_features(Chart.objects.all(), points, "b")
    own = np.flatnonzero(fb.ids == chart_id)
    if own.size == 0:
        return written
    row = int(own[0])
    others = fb.ids != chart_id
    candidates = features.FeatureMatrix(fb.points, fb.config_hash, fb.ids[others], fb.features[others])
    lists = {chart_id: features.top_k_against(candidates, fa.features[row], k)}
    # Its entry into the others' lists: each list's k-th (−inf where shorter than k), one product over their F.
    population = fa.ids[others]
    kth_scores = np.full(population.shape[0], -np.inf)
    kth_ids = np.full(population.shape[0], _NO_ID, np.int64)
    position = {int(pk): n for n, pk in enumerate(population.tolist())}
    kth_rows = Match.objects.filter(method=METHOD, config_hash=config_hash, rank=k).values_list(
        "chart_id", "partner_id", "score"
    )
    for pk, partner, score in kth_rows.iterator(chunk_size=5000):
        n = position.get(pk)
        if n is not None:
            kth_scores[n], kth_ids[n] = score, partner
    entered = fold_in(fa.features[others], fb.features[row], chart_id, kth_scores, kth_ids)
    entering = {int(population[r]): float(s) for r, s in zip(entered.rows.tolist(), entered.scores.tolist(),
                                                              strict=True)}  # fmt: skip
    for pk in holders:  # computed in full above
        entering.pop(pk, None)
    current = _stored_lists(list(entering), config_hash)
    for pk, score in entering.items():
        merged = [(p, s) for p, s in current.get(pk, []) if p != chart_id] + [(chart_id, score)]
        lists[pk] = sorted(merged, key=lambda item: (-item[1], item[0]))[:k]
    return written + _write(lists, config_hash)


def _stored_lists(chart_ids: Sequence[int], config_hash: str) -> dict[int, list[tuple[int, float]]]:
    found: dict[int, list[tuple[int, float]]] = {}
    for batch in id_batches(sorted(chart_ids)):
        rows = Match.objects.filter(chart_id__in=list(batch), method=METHOD, config_hash=config_hash).order_by(
            "chart_id", "rank"
        )
        for pk, partner, score in rows.values_list("chart_id", "partner_id", "score"):
            found.setdefault(pk, []).append((partner, score))
    return found


def _write(lists: dict[int, list[tuple[int, float]]], config_hash: str) -> int:
    if not lists:
        return 0
    rows = [
        Match(chart_id=pk, partner_id=partner, rank=rank + 1, score=score, method=METHOD, config_hash=config_hash)
        for pk, best in lists.items()
        for rank, (partner, score) in enumerate(best)
    ]
    with transaction.atomic():  # a reader sees the old lists or the new, never one half-written
        for batch in id_batches(sorted(lists)):
            chosen = set(batch)
            results.replace_matches(list(batch), METHOD, config_hash, [m for m in rows if m.chart_id in chosen])
    return len(lists)
