"""The harmonic match indexes of this process: built into ``INDEX_PATH`` by ``manage.py aspects_index``, loaded
lazily, kept up to date on chart writes, and searched with the caller's visibility applied.

One index per (configuration, kind): the file ``harmonic-<config hash>-<kind>.npz`` (:meth:`MatchIndex.save`),
with a sidecar ``.json`` naming its points and the moment its features were read (``snapshot``). The config hash
is ``HarmonicConfig.config_hash(points)``, so an index serves the charts of one point set under one ``HARMONIC``
setting; a setting change leaves the old files unused until a rebuild.

Correctness does not rest on the index being current in every process:

- every candidate it returns is rescored from the stored features (:mod:`aspects_app.features`), so a chart whose
  positions changed scores by its present positions, and a deleted chart (no row) drops out;
- charts whose features changed since the snapshot (created or moved, in any process) are scored too, exactly;
  the snapshot is taken SNAPSHOT_MARGIN before the build reads, so a write stamped before the read but committed
  after it (its transaction still open then: invisible to the read) counts as changed;
- this process applies its own writes to its loaded copy (:func:`apply_writes`, :func:`forget_chart`), and
  reloads a file that a rebuild replaced.

Visibility: the index holds every chart, public or not (one index serves all callers). A search over-fetches and
keeps only the charts the caller may see (the ``visible`` queryset): asking faiss for 4 × k, then 16 × k … until
k visible ones are found or the index is exhausted. A private chart of another user is never returned, whatever
the index holds; a caller who sees few of the charts costs more index work (at worst a scan of the index).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import QuerySet
from django.utils import timezone

from . import features
from .conf import get_config
from .index import KINDS, MatchIndex, read_index_metadata
from .models import Chart, ChartFeatures, id_batches

OVERFETCH = 4
# How much earlier than a build's read its snapshot is taken: the longest a chart-writing transaction plausibly
# stays open between stamping its features' updated_at and committing. A longer one's charts are missed by the
# index and the delta until the next rebuild; a wider margin only scores a few more recent charts exactly.
SNAPSHOT_MARGIN = timedelta(minutes=10)
_lock = threading.Lock()


@dataclass
class LoadedIndex:
    index: MatchIndex
    points: tuple[str, ...]
    snapshot: datetime
    mtime_ns: int


_loaded: dict[tuple[str, str], LoadedIndex] = {}


def index_dir() -> Path | None:
    """``INDEX_PATH`` as a path, or None when no index is configured."""
    path = get_config().index_path
    return None if not path else Path(path)


def index_file(directory: Path, config_hash: str, kind: str) -> Path:
    return directory / f"harmonic-{config_hash}-{kind}.npz"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def reset() -> None:
    """Forget the loaded indexes (tests; a setting change)."""
    with _lock:
        _loaded.clear()


# -- building ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildReport:
    config_hash: str
    points: tuple[str, ...]
    kind: str
    count: int
    path: Path
    built: bool  # False: a current file was there (build without rebuild)


def feature_groups() -> dict[str, tuple[str, ...]]:
    """The configuration hashes of the stored current features, with their points."""
    rows = features.current_rows(Chart.objects.all()).values_list("config_hash", "chart__points").distinct()
    return {digest: tuple(points) for digest, points in rows}


def build(
    directory: Path,
    kind: str,
    rebuild: bool,
    progress: Callable[[str], None] | None = None,
) -> list[BuildReport]:
    """An index of every stored chart per configuration (features computed first where missing), written to
    ``directory``; with ``rebuild`` false, configurations that already have a file are left as they are."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    directory.mkdir(parents=True, exist_ok=True)
    computed = fill_all_missing(progress)
    if progress and computed:
        progress(f"computed features of {computed} charts")
    reports: list[BuildReport] = []
    for digest, points in sorted(feature_groups().items()):
        path = index_file(directory, digest, kind)
        if path.exists() and not rebuild:
            reports.append(BuildReport(digest, points, kind, read_index_metadata(path).count, path, False))
            continue
        # Before the read, by the margin: a change during the build, or committed after the read by a transaction
        # already under way, is in the delta after it.
        snapshot = timezone.now() - SNAPSHOT_MARGIN
        matrix = features.load_features(Chart.objects.all(), points, "b")
        if progress:
            progress(f"building a {kind} index of {len(matrix)} charts ({digest}, {len(points)} points)")
        index = MatchIndex.build(matrix.ids, matrix.features.astype(np.float64), digest, kind)
        index.save(path)
        _write_sidecar(path, points, snapshot)
        reports.append(BuildReport(digest, points, kind, len(index), path, True))
    return reports


def fill_all_missing(progress: Callable[[str], None] | None = None, batch: int = 20000) -> int:
    """Features of every chart that has none current, computed in id ranges (bounded memory)."""
    done = 0
    last = 0
    while True:
        ids = list(Chart.objects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return done
        done += features.fill_missing(Chart.objects.filter(pk__gte=ids[0], pk__lte=ids[-1]))
        last = ids[-1]
        if progress:
            progress(f"features checked up to chart {last}")


def _write_sidecar(path: Path, points: Sequence[str], snapshot: datetime) -> None:
    target = _sidecar(path)
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"points": list(points), "snapshot": snapshot.isoformat()}))
    os.replace(temporary, target)  # after the index: an old sidecar with a new index only widens the delta


@dataclass(frozen=True)
class IndexStatus:
    path: Path
    kind: str
    config_hash: str
    points: tuple[str, ...]
    count: int
    snapshot: str
    current: bool  # built for the present HARMONIC setting
    changed_since: int  # charts whose features changed after the snapshot (scored exactly meanwhile)


def status(directory: Path) -> list[IndexStatus]:
    found: list[IndexStatus] = []
    for path in sorted(directory.glob("harmonic-*.npz")):
        meta = read_index_metadata(path)
        side: dict[str, Any] = json.loads(_sidecar(path).read_text()) if _sidecar(path).exists() else {}
        points = tuple(side.get("points", ()))
        snapshot = str(side.get("snapshot", ""))
        current = bool(points) and features.config_hash(points) == meta.config_hash
        changed = 0
        if snapshot:
            moment = datetime.fromisoformat(snapshot)
            changed = ChartFeatures.objects.filter(config_hash=meta.config_hash, updated_at__gte=moment).count()
        found.append(IndexStatus(path, meta.kind, meta.config_hash, points, meta.count, snapshot, current, changed))
    return found


# -- loading and upkeep --------------------------------------------------------------------------------------------


def loaded(config_hash: str) -> LoadedIndex | None:
    """This process's index of ``config_hash`` (the configured kind), loaded on first use and again when its file
    was replaced; None when there is none."""
    directory = index_dir()
    if directory is None:
        return None
    kind = get_config().index_kind
    path = index_file(directory, config_hash, kind)
    try:
        sidecar = json.loads(_sidecar(path).read_text())  # first: see _write_sidecar
        mtime_ns = path.stat().st_mtime_ns
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    key = (config_hash, kind)
    with _lock:
        found = _loaded.get(key)
        if found is not None and found.mtime_ns == mtime_ns:
            return found
    index = MatchIndex.load(path, config_hash=config_hash, kind=kind)
    fresh = LoadedIndex(index, tuple(sidecar["points"]), datetime.fromisoformat(sidecar["snapshot"]), mtime_ns)
    with _lock:
        _loaded[key] = fresh
    return fresh


def apply_writes(chart_ids: Sequence[int]) -> None:
    """Charts whose features were just stored: added to (or updated in) the loaded indexes of their
    configuration. Indexes not loaded here need nothing: they are loaded with the delta since their snapshot."""
    with _lock:
        targets = list(_loaded.values())
    for target in targets:
        matrix = features.features_of_ids(chart_ids, target.points, "b")
        if matrix.config_hash != target.index.config_hash:  # an index of another setting: not served any more
            continue
        kept = set(matrix.ids.tolist())
        with _lock:
            gone = [int(i) for i in chart_ids if int(i) not in kept and int(i) in target.index]
            if gone:  # deleted meanwhile, or moved to another point set
                target.index.remove(np.array(gone, np.int64))
            present = np.array([int(i) in target.index for i in matrix.ids.tolist()], dtype=bool)
            vectors = matrix.features.astype(np.float64)
            if present.any():
                target.index.update(matrix.ids[present], vectors[present])
            if (~present).any():
                target.index.add(matrix.ids[~present], vectors[~present])


def forget_chart(chart_id: int) -> None:
    """A deleted chart, out of the loaded indexes (other processes' copies drop it when rescoring finds no row)."""
    with _lock:
        for target in _loaded.values():
            if chart_id in target.index:
                target.index.remove(np.array([chart_id], np.int64))


# -- searching -----------------------------------------------------------------------------------------------------


def search(
    visible: QuerySet[Chart], chart: Chart, feature_a: npt.NDArray[np.floating], config_hash: str, k: int
) -> list[tuple[int, float]] | None:
    """The ``k`` best (chart id, score) partners of ``chart`` among ``visible`` (the caller's visible charts, the
    chart itself excluded), by the index of ``config_hash``; None when there is no index for it."""
    found = loaded(config_hash)
    if found is None:
        return None
    index = found.index
    delta = set(
        ChartFeatures.objects.filter(config_hash=config_hash, updated_at__gte=found.snapshot)
        .exclude(chart_id=chart.pk)
        .values_list("chart_id", flat=True)
    )
    width = OVERFETCH * k
    query = np.asarray(feature_a, dtype=np.float64)[None, :]
    asked = set(delta)
    shown = _visible_ids(visible, delta)
    while True:
        with _lock:
            hits = index.search(query, min(width, max(1, len(index))), exclude_self_ids=np.array([chart.pk]))
            exhausted = width >= len(index)
        # Each id's visibility is asked once, however often a wider search returns it again.
        fresh = {int(i) for i in hits.ids[0].tolist() if i >= 0} - asked
        asked |= fresh
        shown |= _visible_ids(visible, fresh)
        shown.discard(chart.pk)
        if len(shown - delta) >= k or exhausted:
            break
        width *= OVERFETCH
    if not shown:
        return []
    matrix = features.features_of_ids(sorted(shown), found.points, "b")
    scores = features.scores_against(matrix, feature_a)
    order = np.lexsort((matrix.ids, -scores))[:k]
    return [(int(matrix.ids[j]), float(scores[j])) for j in order]


def _visible_ids(visible: QuerySet[Chart], ids: set[int]) -> set[int]:
    """Those of ``ids`` in ``visible``, asked in id batches: a search that widened to the whole index (a caller
    who sees few of its charts) holds as many ids as the index."""
    found: set[int] = set()
    for batch in id_batches(sorted(ids)):
        found.update(visible.filter(pk__in=list(batch)).values_list("pk", flat=True))
    return found
