"""The match index: live top-k partners by the ``"harmonic"`` score over very large populations, on faiss.

The harmonic score is an inner product, ``score(A, B) = F(A) · G(B)`` (:mod:`aspects_app.engine.harmonic`), so a
chart's best partners are a maximum-inner-product search (MIPS) of its F features among the population's G
features. A :class:`MatchIndex` holds the G features of one population under chart ids and answers that search:

- ``"exact"``: ``IndexFlatIP`` (brute force by BLAS, float32), then every candidate that could be in the top k
  within float32's error is rescored in float64: the result is the exact top-k of the stored features, ties to the
  lower chart id, as :meth:`~aspects_app.engine.MemoryOptimizedVectorizedCalculator.top_k` orders them.
- ``"hnsw"`` (``IndexHNSWFlat``) and ``"ivf"`` (``IndexIVFFlat``): approximate, with the MIPS → L2 reduction
  (below), and the candidates rescored in float64 as well, so the scores they return are exact; only some of the
  true best may be missing (recall measured in docs/index.md).

MIPS → L2 (Bachrach et al. 2014): HNSW's graph and IVF's clusters are built for a metric; inner product is not
one, and HNSW with METRIC_INNER_PRODUCT plateaus at low recall on these features (measured: 0.87 at efSearch 256
against 0.97 with the reduction, 100,000 charts). Every stored g gets one more coordinate sqrt(M² − ‖g‖²), with M
the norm bound, and queries a 0; then ‖f − g'‖² = ‖f‖² + M² − 2 f·g, so the L2-nearest are the highest scores.
M is fixed when the index is created (the largest norm of the first features added, unless given); a later
vector beyond it is stored with 0 there, which only lowers its chance of being found (a rebuild resets M).

Chart ids are non-negative integers. Internally every stored vector has a slot (its faiss id, wrapped in
``IndexIDMap2`` for the exact and HNSW kinds, IVF's own ids); an update is a remove and an add. HNSW cannot delete
from its graph: a removed slot is a tombstone, filtered out of every search by an ``IDSelector``, until
:meth:`MatchIndex.compact` (or a rebuild) drops them; :attr:`MatchIndex.tombstones` says how many there are.

The file (:meth:`MatchIndex.save`) is one NumPy ``.npz`` archive written atomically: ``meta`` (JSON: format
version, kind, dimension, harmonic configuration hash, parameters, norm bound), ``slot_ids`` (the chart id of each
slot, −1 for a tombstone) and ``faiss`` (``faiss.serialize_index``). :func:`read_index_metadata` reads the meta
alone; :meth:`MatchIndex.load` checks it against what the caller expects (ValueError naming each mismatch).

faiss is the optional extra ``aspects_app[index]``: it is imported when an index is made or loaded, with a clear
error when it is missing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .engine.errors import FieldError
from .engine.harmonic import GRID_SCALE, round_to_grid

FORMAT_VERSION = 1
KINDS: tuple[str, ...] = ("exact", "hnsw", "ivf")
APPROXIMATE_KINDS: tuple[str, ...] = ("hnsw", "ivf")
# faiss computes in float32: an inner product of D terms is off by at most about D·2⁻²⁴·‖f‖·‖g‖ (plus the
# rounding of f itself); twice that is the margin within which a candidate the float32 pass ranked below the
# k-th could still belong in the exact top k.
_FLOAT32_EPSILON = 2.0**-24
# Bytes per entry of the bookkeeping beside the vectors, for the memory estimate: slot -> chart id (int64), the
# Python dict chart id -> slot (two ints and a hash entry), IndexIDMap2's id map and reverse hash map.
_SLOT_BYTES = 8
_DICT_BYTES = 100
_ID_MAP_BYTES = 8 + 40

FloatArray = npt.NDArray[np.float64]
IdArray = npt.NDArray[np.int64]


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError as exc:  # the optional extra is not installed
        raise ImportError(
            "the match index needs faiss: install the extra, pip install 'aspects_app[index]' (faiss-cpu)"
        ) from exc
    return faiss


@dataclass(frozen=True)
class IndexParams:
    """Parameters of the approximate kinds. HNSW: ``hnsw_m`` neighbours per node, ``ef_construction`` and
    ``ef_search`` (candidate list while building and searching; a search uses at least the candidates it
    needs). IVF: ``nlist`` clusters (0: 4·√N of the first N features added, which train it, at most N/39) and
    ``nprobe`` clusters searched. Both: ``rerank`` × k candidates are rescored exactly, the best k kept.
    ``norm_bound`` M of the MIPS → L2 reduction (0: the largest norm of the first features added)."""

    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 384
    nlist: int = 0
    nprobe: int = 48
    rerank: int = 2
    norm_bound: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "rerank"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FieldError(name, f"must be a positive integer, got {value!r}")
        if isinstance(self.nlist, bool) or not isinstance(self.nlist, int) or self.nlist < 0:
            raise FieldError("nlist", f"must be an integer >= 0, got {self.nlist!r}")
        if not math.isfinite(self.norm_bound) or self.norm_bound < 0:
            raise FieldError("norm_bound", f"must be finite and >= 0, got {self.norm_bound!r}")


@dataclass(frozen=True)
class IndexMatches:
    """``ids[q]`` are the best partners of query ``q``, best first (chart ids), ``scores[q]`` their harmonic
    scores, on the scale and grid of ``calc.scores(..., method="harmonic")``."""

    scores: FloatArray
    ids: IdArray


@dataclass(frozen=True)
class IndexMetadata:
    """What an index file was built for (its ``meta`` entry)."""

    format_version: int
    kind: str
    dimension: int
    config_hash: str
    params: IndexParams = field(default_factory=IndexParams)
    count: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexMetadata:
        data = json.loads(text)
        return cls(**{**data, "params": IndexParams(**data["params"])})


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise FieldError(name, f"must be a positive integer, got {value!r}")
    return int(value)


def _chart_ids(name: str, ids: object, rows: int | None = None) -> IdArray:
    array = np.asarray(ids)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise FieldError(name, f"expected a 1-D array of integer chart ids, got shape {array.shape} {array.dtype}")
    if rows is not None and array.shape[0] != rows:
        raise FieldError(name, f"expected {rows} ids (one per row of features), got {array.shape[0]}")
    if array.size and array.min() < 0:
        raise FieldError(name, f"chart ids must be >= 0, got {int(array.min())}")
    return array.astype(np.int64)


class MatchIndex:
    """Top-k partners by the harmonic score among the stored G features of a population, by chart id.

    ``MatchIndex(dimension, config_hash, kind)`` is empty; :meth:`build` fills one. ``config_hash`` names the
    harmonic configuration and columns the features came from (``HarmonicConfig.config_hash(points)``): features of
    another configuration would give scores of another score, so :meth:`load` refuses a file built for another."""

    def __init__(self, dimension: int, config_hash: str, kind: str = "hnsw", params: IndexParams | None = None) -> None:
        self._faiss = _faiss()
        if kind not in KINDS:
            raise FieldError("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(config_hash, str) or not config_hash:
            raise FieldError("config_hash", f"expected a non-empty string, got {config_hash!r}")
        self.dimension = _positive_int("dimension", dimension)
        self.kind = kind
        self.config_hash = config_hash
        self.params = params or IndexParams()
        self._slot_ids: IdArray = np.empty(0, np.int64)  # chart id per slot, −1: removed (a tombstone in HNSW)
        self._slot_of: dict[int, int] = {}
        self._max_norm = 0.0  # the largest norm of any stored vector: bounds the float32 error of the exact kind
        self._index: Any = None if kind == "ivf" else self._new_faiss_index(0)

    # -- building ---------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: object,
        features_b: object,
        config_hash: str,
        kind: str = "hnsw",
        params: IndexParams | None = None,
    ) -> MatchIndex:
        """An index of the charts ``ids`` with their G features ``features_b`` (N, D)
        (``calc.harmonic_features(lon, side="b")``)."""
        matrix = np.asarray(features_b)
        if matrix.ndim != 2:
            raise FieldError("features_b", f"expected a 2-D (charts, dimension) array, got shape {matrix.shape}")
        index = cls(matrix.shape[1], config_hash, kind, params)
        index.add(ids, matrix)
        return index

    def _new_faiss_index(self, training_rows: int) -> Any:
        faiss, p = self._faiss, self.params
        if self.kind == "exact":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dimension + 1, p.hnsw_m)  # L2 after the reduction
            hnsw.hnsw.efConstruction = p.ef_construction
            hnsw.hnsw.efSearch = p.ef_search
            return faiss.IndexIDMap2(hnsw)
        nlist = p.nlist or max(1, min(training_rows // 39, round(4 * math.sqrt(training_rows))))  # k-means: 39/cluster
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dimension + 1), self.dimension + 1, nlist)
        ivf.nprobe = p.nprobe
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        return ivf

    def _features(self, name: str, features: object, rows: int | None = None) -> FloatArray:
        matrix = np.asarray(features)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimension:
            raise FieldError(name, f"expected shape (charts, {self.dimension}), got {matrix.shape}")
        if rows is not None and matrix.shape[0] != rows:
            raise FieldError(name, f"expected {rows} rows, got {matrix.shape[0]}")
        if not np.issubdtype(matrix.dtype, np.floating) and not np.issubdtype(matrix.dtype, np.integer):
            raise FieldError(name, f"expected real numbers, got {matrix.dtype}")
        matrix = matrix.astype(np.float64, copy=False)
        if not np.isfinite(matrix).all():
            raise FieldError(name, "features must be finite (no NaN or infinity)")
        return matrix

    def _stored(self, features: FloatArray) -> npt.NDArray[np.float32]:
        """The float32 vectors faiss stores: G itself (exact) or G with the reduction's extra coordinate."""
        if self.kind == "exact":
            return np.ascontiguousarray(features, dtype=np.float32)
        bound = self.params.norm_bound
        norms_squared = np.einsum("ij,ij->i", features, features)
        extra = np.sqrt(np.maximum(bound * bound - norms_squared, 0.0))
        return np.ascontiguousarray(np.hstack([features, extra[:, None]]), dtype=np.float32)

    def add(self, ids: object, features_b: object) -> None:
        """Store new charts: ``ids`` (N,) not in the index yet, distinct, with their G features (N, D)."""
        chart_ids = _chart_ids("ids", ids)
        matrix = self._features("features_b", features_b, chart_ids.shape[0])
        if np.unique(chart_ids).shape[0] != chart_ids.shape[0]:
            raise FieldError("ids", "duplicate chart ids in one add")
        present = [int(i) for i in chart_ids if int(i) in self._slot_of]
        if present:
            raise FieldError("ids", f"already in the index (use update): {present[:10]}")
        if chart_ids.size == 0:
            return
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if self.kind != "exact" and not self.params.norm_bound:  # the first features fix the reduction's M
            self.params = IndexParams(**{**asdict(self.params), "norm_bound": float(norms.max()) or 1.0})
        if self._index is None:  # IVF trains on its first features
            self._index = self._new_faiss_index(chart_ids.shape[0])
            self._index.train(self._stored(matrix))
        slots = np.arange(self._slot_ids.shape[0], self._slot_ids.shape[0] + chart_ids.shape[0], dtype=np.int64)
        self._index.add_with_ids(self._stored(matrix), slots)
        self._slot_ids = np.concatenate([self._slot_ids, chart_ids])
        self._slot_of.update(zip(chart_ids.tolist(), slots.tolist(), strict=True))
        self._max_norm = max(self._max_norm, float(norms.max()))

    def remove(self, ids: object) -> None:
        """Forget the charts ``ids`` (each must be in the index)."""
        chart_ids = _chart_ids("ids", ids)
        if np.unique(chart_ids).shape[0] != chart_ids.shape[0]:
            raise FieldError("ids", "duplicate chart ids in one remove")
        unknown = [int(i) for i in chart_ids if int(i) not in self._slot_of]
        if unknown:
            raise FieldError("ids", f"not in the index: {unknown[:10]}")
        slots = np.array([self._slot_of.pop(int(i)) for i in chart_ids], dtype=np.int64)
        if slots.size and self.kind != "hnsw":  # HNSW keeps them as tombstones (its graph cannot delete)
            # IDSelectorArray: the one IVF's hash-table direct map can remove with (it reads ``slots`` in place).
            self._index.remove_ids(self._faiss.IDSelectorArray(slots.shape[0], self._faiss.swig_ptr(slots)))
        self._slot_ids[slots] = -1

    def update(self, ids: object, features_b: object) -> None:
        """New features for charts already in the index (their positions changed): a remove and an add."""
        chart_ids = _chart_ids("ids", ids)
        matrix = self._features("features_b", features_b, chart_ids.shape[0])
        unknown = [int(i) for i in chart_ids if int(i) not in self._slot_of]
        if unknown:
            raise FieldError("ids", f"not in the index (use add): {unknown[:10]}")
        self.remove(chart_ids)
        self.add(chart_ids, matrix)

    def compact(self) -> None:
        """Rebuild the faiss index from the live charts only: drops HNSW's tombstones and renumbers the slots
        (minutes for millions of HNSW charts: a job for a worker, not a request)."""
        live = self._slot_ids >= 0
        chart_ids = self._slot_ids[live]
        features = self.features_of(chart_ids)
        fresh = MatchIndex(self.dimension, self.config_hash, self.kind, self.params)
        fresh.add(chart_ids, features)
        self.__dict__.update(fresh.__dict__)

    # -- reading ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, chart_id: object) -> bool:
        return isinstance(chart_id, int | np.integer) and int(chart_id) in self._slot_of

    @property
    def ntotal(self) -> int:
        """Vectors faiss holds, tombstones included."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def tombstones(self) -> int:
        return self.ntotal - len(self)

    def ids(self) -> IdArray:
        """The chart ids in the index, ascending."""
        return np.sort(self._slot_ids[self._slot_ids >= 0])

    def memory_bytes(self) -> int:
        """An estimate of the index's memory: the float32 vectors, HNSW's links (2·M int32 on level 0, ~1/M of
        the nodes higher up) or IVF's ids, the id maps and the Python bookkeeping."""
        n, width = self.ntotal, self.dimension + (0 if self.kind == "exact" else 1)
        total = n * width * 4 + self._slot_ids.shape[0] * _SLOT_BYTES + len(self) * _DICT_BYTES
        if self.kind == "hnsw":
            m = self.params.hnsw_m
            total += n * (2 * m * 4 + 8 + 4) + n * m * 4 // max(1, m - 1) + n * _ID_MAP_BYTES
        elif self.kind == "ivf":
            total += n * (8 + 16)  # list ids and the direct map's hash entry
        else:
            total += n * _ID_MAP_BYTES
        return int(total)

    def features_of(self, ids: object) -> FloatArray:
        """The stored G features (float32, as float64) of the charts ``ids``."""
        chart_ids = _chart_ids("ids", ids)
        unknown = [int(i) for i in chart_ids if int(i) not in self._slot_of]
        if unknown:
            raise FieldError("ids", f"not in the index: {unknown[:10]}")
        slots = np.array([self._slot_of[int(i)] for i in chart_ids], dtype=np.int64)
        return self._reconstruct(slots)

    def _reconstruct(self, slots: IdArray) -> FloatArray:
        if slots.size == 0:
            return np.empty((0, self.dimension))
        vectors = self._index.reconstruct_batch(np.ascontiguousarray(slots, dtype=np.int64))
        return np.asarray(vectors[:, : self.dimension], dtype=np.float64)

    # -- searching --------------------------------------------------------------------------------------------

    def search(self, features_a: object, k: int, exclude_self_ids: object = None) -> IndexMatches:
        """The ``k`` best charts for each query, by F·G: ``features_a`` (Q, D) are the queries' F features
        (``calc.harmonic_features(lon, side="a")``); ``exclude_self_ids`` (Q,) leaves out one chart id per query
        (its own; −1: none). ``k`` is capped at the charts there are (less one when excluding), as ``top_k``
        caps it; ties go to the lower chart id."""
        k_checked = _positive_int("k", k)
        queries = self._features("features_a", features_a)
        excluded = (
            np.full(queries.shape[0], -1, np.int64)
            if exclude_self_ids is None
            else _excluded_ids(exclude_self_ids, queries.shape[0])
        )
        k_eff = min(k_checked, len(self) - (1 if bool((excluded >= 0).any()) else 0))
        if k_eff <= 0 or queries.shape[0] == 0:
            return IndexMatches(np.empty((queries.shape[0], 0)), np.empty((queries.shape[0], 0), np.int64))
        if self.kind == "exact":
            return self._search_exact(queries, k_eff, excluded)
        return self._search_approximate(queries, k_eff, excluded)

    def _candidates(self, queries: FloatArray, width: int) -> tuple[npt.NDArray[np.float32], IdArray]:
        """faiss's ``width`` best slots per query (−1 where it has fewer), and its float32 scores or distances."""
        stored = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind != "exact":
            stored = np.ascontiguousarray(np.hstack([stored, np.zeros((stored.shape[0], 1), np.float32)]))
        params = None
        if self.kind == "hnsw":
            params = self._faiss.SearchParametersHNSW()
            params.efSearch = max(self.params.ef_search, width)
            if self.tombstones:
                dead = np.flatnonzero(self._slot_ids < 0).astype(np.int64)
                params.sel = self._faiss.IDSelectorNot(self._faiss.IDSelectorBatch(dead))
        elif self.kind == "ivf":
            params = self._faiss.SearchParametersIVF()
            params.nprobe = self.params.nprobe
        distances, slots = self._index.search(stored, min(width, self.ntotal), params=params)
        return distances, slots.astype(np.int64)

    def _rescored(self, queries: FloatArray, slots: IdArray, excluded: IdArray) -> tuple[FloatArray, IdArray]:
        """Exact scores (float64, rounded to the grid) and chart ids of the candidate slots; −inf and −1 for
        missing candidates and each query's excluded chart."""
        valid = slots >= 0
        vectors = np.zeros((*slots.shape, self.dimension))
        vectors[valid] = self._reconstruct(slots[valid])
        scores = round_to_grid(np, np.einsum("qd,qcd->qc", queries, vectors))
        chart_ids = np.where(valid, self._slot_ids[np.where(valid, slots, 0)], -1)
        drop = ~valid | (chart_ids < 0) | (chart_ids == excluded[:, None])
        scores[drop] = -np.inf
        chart_ids[drop] = -1
        return scores, chart_ids

    def _search_exact(self, queries: FloatArray, k: int, excluded: IdArray) -> IndexMatches:
        out_scores = np.empty((queries.shape[0], k))
        out_ids = np.empty((queries.shape[0], k), np.int64)
        # float32 error bound per query, on the ±100 scale, plus half a grid step for the rounding.
        margin = (
            2.0 * (self.dimension + 2) * _FLOAT32_EPSILON * np.linalg.norm(queries, axis=1) * self._max_norm
            + 1.0 / GRID_SCALE
        )
        pending = np.arange(queries.shape[0])
        width = k + 1 + 8
        while pending.size:
            distances, slots = self._candidates(queries[pending], width)
            scores, chart_ids = self._rescored(queries[pending], slots, excluded[pending])
            best_scores, best_ids = _best(scores, chart_ids, k)
            # Done where every stored vector faiss left out scores, even with float32's error, below the k-th.
            complete = (slots.shape[1] >= self.ntotal) | (distances[:, -1] + margin[pending] < best_scores[:, -1])
            out_scores[pending[complete]] = best_scores[complete]
            out_ids[pending[complete]] = best_ids[complete]
            pending = pending[~complete]
            width *= 4
        return IndexMatches(out_scores, out_ids)

    def _search_approximate(self, queries: FloatArray, k: int, excluded: IdArray) -> IndexMatches:
        _, slots = self._candidates(queries, self.params.rerank * k + 1)
        scores, chart_ids = self._rescored(queries, slots, excluded)
        best_scores, best_ids = _best(scores, chart_ids, k)
        return IndexMatches(best_scores, best_ids)

    # -- files ------------------------------------------------------------------------------------------------

    def metadata(self) -> IndexMetadata:
        return IndexMetadata(FORMAT_VERSION, self.kind, self.dimension, self.config_hash, self.params, len(self))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (one ``.npz`` archive), atomically: a reader sees the old file or the new."""
        target = Path(path)
        payload = np.frombuffer(b"", np.uint8) if self._index is None else self._faiss.serialize_index(self._index)
        meta = {"max_norm": self._max_norm, **json.loads(self.metadata().to_json())}
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                         slot_ids=self._slot_ids, faiss=payload)  # fmt: skip
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        config_hash: str | None = None,
        kind: str | None = None,
        dimension: int | None = None,
    ) -> MatchIndex:
        """The index saved at ``path``. Each of ``config_hash``, ``kind`` and ``dimension`` given must match what
        the file was built for, and its format version this code's: ValueError naming every mismatch."""
        with np.load(Path(path), allow_pickle=False) as archive:
            meta = json.loads(bytes(archive["meta"]).decode())
            metadata = _metadata_of(meta)
            expected = {"format_version": FORMAT_VERSION, "config_hash": config_hash, "kind": kind,
                        "dimension": dimension}  # fmt: skip
            mismatches = [
                f"{name}: the file has {getattr(metadata, name)!r}, expected {want!r}"
                for name, want in expected.items()
                if want is not None and getattr(metadata, name) != want
            ]
            if mismatches:
                field_name = next(m.split(":")[0] for m in mismatches)
                raise FieldError(field_name, f"index file {path} does not match: " + "; ".join(mismatches))
            index = cls(metadata.dimension, metadata.config_hash, metadata.kind, metadata.params)
            payload = archive["faiss"]
            index._index = index._faiss.deserialize_index(payload) if payload.size else None
            index._slot_ids = archive["slot_ids"].astype(np.int64)
        index._slot_of = {int(c): s for s, c in enumerate(index._slot_ids.tolist()) if c >= 0}
        index._max_norm = float(meta["max_norm"])
        return index


def read_index_metadata(path: str | os.PathLike[str]) -> IndexMetadata:
    """What the index file at ``path`` was built for, without loading its vectors."""
    with np.load(Path(path), allow_pickle=False) as archive:
        return _metadata_of(json.loads(bytes(archive["meta"]).decode()))


def _metadata_of(meta: dict[str, Any]) -> IndexMetadata:
    fields = {name: meta[name] for name in ("format_version", "kind", "dimension", "config_hash", "count")}
    return IndexMetadata(**fields, params=IndexParams(**meta["params"]))


def _excluded_ids(values: object, rows: int) -> IdArray:
    array = np.asarray(values)
    if array.shape != (rows,) or not np.issubdtype(array.dtype, np.integer):
        raise FieldError("exclude_self_ids", f"expected {rows} integer chart ids (one per query), got {array.shape}")
    if (array < -1).any():
        raise FieldError("exclude_self_ids", "chart ids must be >= 0 (or -1: none)")
    return array.astype(np.int64)


def _best(scores: FloatArray, chart_ids: IdArray, k: int) -> tuple[FloatArray, IdArray]:
    """The k best (score descending, then chart id ascending) of each row; missing entries (−1) sort last."""
    order = np.lexsort((np.where(chart_ids < 0, np.iinfo(np.int64).max, chart_ids), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(chart_ids, order, axis=1)
