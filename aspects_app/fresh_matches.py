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
- One upkeep for all of a transaction's charts: the ids are gathered until it commits
  (:func:`aspects_app.commit_batches.on_commit_batched`), and :func:`refresh` loads each point set's
  population features once for all of them, so a bulk create or the admin's recompute of N charts is not N loads.

Lists are written through :func:`aspects_app.results.replace_matches`, the one writer of ``Match`` rows. The
upkeep runs after the commit, inline or as a Celery task (``FRESH_MATCHES_CELERY``); each call loads the
population's features (N × D floats) once, so it is a worker's job for large populations. A chart with no stored list
counts as an empty one: turning the upkeep on for an existing population needs one batch run with the same K.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from django.db import models, transaction

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
    ``FRESH_MATCHES_K``; a task carries its sender's); a no-op when neither is set.

    All of them at once: each point set's population features are loaded once, however many charts changed (a
    bulk create, the admin's recompute), and each list is written once."""
    k = k or enabled_k()
    if k is None:
        return 0
    config_hash = list_config_hash()
    moved = _points_of(changed)  # those that still exist
    # Computed in full: the lists that lost a partner, those that held a changed chart (its score there changed,
    # or its points did), and the changed charts' own.
    full = _points_of({*map(int, repair), *_holders_of_any(moved, config_hash), *moved})
    kth = _kth_entries(k, config_hash)  # read before anything is written
    lists: dict[int, list[tuple[int, float]]] = {}
    for points in sorted(set(full.values())):
        fa = features.load_features(Chart.objects.all(), points, "a")
        fb = features.load_features(Chart.objects.all(), points, "b")
        lists.update(_full_lists(fb, fa, [pk for pk, p in full.items() if p == points], k))
        entering = [pk for pk, p in moved.items() if p == points]
        lists.update(_entered_lists(fa, fb, entering, set(full), kth, k, config_hash))
    return _write(lists, config_hash)


def _points_of(chart_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, tuple[str, ...]] = {}
    for batch in id_batches(sorted({int(pk) for pk in chart_ids})):
        found.update((pk, tuple(p)) for pk, p in Chart.objects.filter(pk__in=list(batch)).values_list("pk", "points"))
    return found


def _holders_of_any(chart_ids: Iterable[int], config_hash: str) -> set[int]:
    """Charts whose stored list holds any of ``chart_ids`` (other than itself)."""
    found: set[int] = set()
    for batch in id_batches(sorted(chart_ids)):
        rows = Match.objects.filter(partner_id__in=list(batch), method=METHOD, config_hash=config_hash)
        found.update(rows.exclude(chart_id=models.F("partner_id")).values_list("chart_id", flat=True))
    return found


def _kth_entries(k: int, config_hash: str) -> dict[int, tuple[float, int]]:
    """Each full stored list's k-th (worst kept) score and partner, by chart."""
    rows = Match.objects.filter(method=METHOD, config_hash=config_hash, rank=k)
    return {pk: (score, partner) for pk, partner, score in
            rows.values_list("chart_id", "partner_id", "score").iterator(chunk_size=5000)}  # fmt: skip


def _full_lists(
    fb: features.FeatureMatrix, fa: features.FeatureMatrix, members: Sequence[int], k: int
) -> dict[int, list[tuple[int, float]]]:
    """The full lists of ``members`` (rows of ``fa``) among the population ``fb``, each chart not its own partner."""
    row_of = {int(pk): n for n, pk in enumerate(fa.ids.tolist())}
    lists: dict[int, list[tuple[int, float]]] = {}
    for pk in members:
        if pk not in row_of:
            continue
        others = fb.ids != pk
        candidates = features.FeatureMatrix(fb.points, fb.config_hash, fb.ids[others], fb.features[others])
        lists[pk] = features.top_k_against(candidates, fa.features[row_of[pk]], k)
    return lists


def _entered_lists(
    fa: features.FeatureMatrix,
    fb: features.FeatureMatrix,
    entering: Sequence[int],
    computed: set[int],
    kth: dict[int, tuple[float, int]],
    k: int,
    config_hash: str,
) -> dict[int, list[tuple[int, float]]]:
    """The stored lists (other than ``computed``, written in full) that the changed charts ``entering`` enter.

    Such a list holds none of them, so it is still the top k of the rest, and a changed chart belongs in its new
    top k only if it beats the list's k-th (:func:`~aspects_app.engine.harmonic.fold_in`, one product over the
    population's F per chart): the new list is the best k of the stored one and the charts that entered it."""
    if not entering:
        return {}
    keep = ~np.isin(fa.ids, np.fromiter(computed, np.int64, len(computed)))
    population, population_f = fa.ids[keep], fa.features[keep]
    kth_scores = np.full(population.shape[0], -np.inf)  # -inf: a list shorter than k takes anyone
    kth_ids = np.full(population.shape[0], _NO_ID, np.int64)
    for n, pk in enumerate(population.tolist()):
        if pk in kth:
            kth_scores[n], kth_ids[n] = kth[pk]
    row_of = {int(pk): n for n, pk in enumerate(fb.ids.tolist())}
    entered: dict[int, list[tuple[int, float]]] = {}
    for chart_id in entering:
        if chart_id not in row_of:
            continue
        found = fold_in(population_f, fb.features[row_of[chart_id]], chart_id, kth_scores, kth_ids)
        for r, score in zip(found.rows.tolist(), found.scores.tolist(), strict=True):
            entered.setdefault(int(population[r]), []).append((chart_id, float(score)))
    current = _stored_lists(list(entered), config_hash)
    changed = set(entering)
    lists: dict[int, list[tuple[int, float]]] = {}
    for pk, new in entered.items():
        merged = [item for item in current.get(pk, []) if item[0] not in changed] + new
        lists[pk] = sorted(merged, key=lambda item: (-item[1], item[0]))[:k]
    return lists


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
