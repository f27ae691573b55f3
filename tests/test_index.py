"""The match index: exact kind equal to the engine's harmonic top-k, upkeep equal to a recompute, files, recall of the
approximate kinds, bad input; and the engine's fold-in against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aspects_app.engine import STANDARD_POINTS, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.errors import FieldError
from aspects_app.engine.harmonic import HarmonicConfig, fold_in
from aspects_app.index import FORMAT_VERSION, IndexParams, MatchIndex, read_index_metadata

CALC = MemoryOptimizedVectorizedCalculator(backend="numpy")
CONFIG_HASH = HarmonicConfig().config_hash(STANDARD_POINTS)
K = 10
# Scores from float32-stored features against calc.scores' float64: within ‖f‖·‖g‖·2⁻²⁴ (about 6e-6 here).
SCORE_TOLERANCE = 1e-5

Longitudes = npt.NDArray[np.float64]


def charts(n: int, seed: int) -> Longitudes:
    return np.random.default_rng(seed).uniform(0.0, 360.0, (n, len(STANDARD_POINTS)))


def chart_ids(n: int) -> npt.NDArray[np.int64]:
    """Ids that are neither positions nor sorted like them, so a mix-up of the two shows."""
    return (np.random.default_rng(99).permutation(n) * 7 + 3).astype(np.int64)


def features(lon: Longitudes, side: str) -> npt.NDArray[np.float64]:
    return CALC.harmonic_features(lon, side=side)


def exact_top_k(queries: Longitudes, population: Longitudes, ids: npt.NDArray[np.int64], k: int, exclude: bool):
    """The engine's top-k, as chart ids, ordered as the index orders them: score, then the lower chart id."""
    scores = CALC.scores(queries, population, method="harmonic")
    if exclude:
        scores[np.arange(queries.shape[0]), np.arange(queries.shape[0])] = -np.inf
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def population() -> Longitudes:
    return charts(2000, seed=1)


def test_the_exact_kind_equals_the_engines_top_k(population: Longitudes) -> None:
    ids = np.arange(population.shape[0], dtype=np.int64)  # positions as ids: the engine's indices compare directly
    index = MatchIndex.build(ids, features(population, "b"), CONFIG_HASH, kind="exact")
    queries = population[:150]
    found = index.search(features(queries, "a"), K, exclude_self_ids=ids[:150])
    expected = CALC.top_k(queries, population, k=K, method="harmonic", exclude_self=True)
    np.testing.assert_array_equal(found.ids, expected.indices)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=0, atol=SCORE_TOLERANCE)


def test_exact_ties_go_to_the_lower_chart_id() -> None:
    distinct = charts(40, seed=2)
    lon = np.concatenate([distinct, distinct, distinct])  # every chart three times: exact ties
    ids = chart_ids(lon.shape[0])
    index = MatchIndex.build(ids, features(lon, "b"), CONFIG_HASH, kind="exact")
    found = index.search(features(distinct[:10], "a"), 7)
    _, expected = exact_top_k(distinct[:10], lon, ids, 7, exclude=False)
    np.testing.assert_array_equal(found.ids, expected)
    # Each best score is held by three charts, listed by ascending id.
    assert (np.diff(found.ids[:, :3], axis=1) > 0).all()


def test_add_update_remove_then_search_equal_a_recompute(population: Longitudes) -> None:
    rng = np.random.default_rng(3)
    lon = population[:600].copy()
    ids = chart_ids(lon.shape[0])
    index = MatchIndex.build(ids[:500], features(lon[:500], "b"), CONFIG_HASH, kind="exact")
    index.add(ids[500:], features(lon[500:], "b"))
    moved = rng.choice(600, 40, replace=False)
    lon[moved] = charts(40, seed=4)
    index.update(ids[moved], features(lon[moved], "b"))
    gone = rng.choice(np.setdiff1d(np.arange(600), moved), 60, replace=False)
    index.remove(ids[gone])
    keep = np.setdiff1d(np.arange(600), gone)
    assert len(index) == keep.shape[0] == index.ntotal
    np.testing.assert_array_equal(index.ids(), np.sort(ids[keep]))

    queries = lon[keep[:80]]
    found = index.search(features(queries, "a"), K, exclude_self_ids=ids[keep[:80]])
    scores, expected = exact_top_k(queries, lon[keep], ids[keep], K, exclude=True)
    np.testing.assert_array_equal(found.ids, expected)
    np.testing.assert_allclose(found.scores, scores, rtol=0, atol=SCORE_TOLERANCE)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_upkeep_matches_a_fresh_index(population: Longitudes, kind: str) -> None:
    """Removed and replaced charts never come back (HNSW's tombstones are filtered), and compaction drops them."""
    lon = population[:1500].copy()
    ids = chart_ids(lon.shape[0])
    index = MatchIndex.build(ids, features(lon, "b"), CONFIG_HASH, kind=kind)
    queries = features(lon[:50], "a")
    best = index.search(queries, 3).ids[:, 0]
    index.remove(np.unique(best))
    lon[:5] = charts(5, seed=5)
    index.update(ids[:5], features(lon[:5], "b"))
    found = index.search(queries, K)
    assert not np.isin(found.ids, best).any()
    assert len(index) == lon.shape[0] - np.unique(best).shape[0]
    assert index.tombstones == (np.unique(best).shape[0] + 5 if kind == "hnsw" else 0)
    np.testing.assert_allclose(index.features_of(ids[:5]), features(lon[:5], "b"), rtol=0, atol=1e-5)
    index.compact()
    assert index.tombstones == 0 and index.ntotal == len(index)
    assert not np.isin(index.search(queries, K).ids, best).any()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_at_10_is_at_least_095(kind: str) -> None:
    lon = charts(4000, seed=6)
    ids = chart_ids(lon.shape[0])
    index = MatchIndex.build(ids, features(lon, "b"), CONFIG_HASH, kind=kind)
    queries = lon[:200]
    found = index.search(features(queries, "a"), K, exclude_self_ids=ids[:200])
    exact_scores, expected = exact_top_k(queries, lon, ids, K, exclude=True)
    recall = np.mean([np.isin(f, e).sum() / K for f, e in zip(found.ids, expected, strict=True)])
    assert recall >= 0.95, recall
    # Scores are exact wherever a chart was found: rescored in float64 from the stored features.
    hit = found.ids == expected
    np.testing.assert_allclose(found.scores[hit], exact_scores[hit], rtol=0, atol=SCORE_TOLERANCE)
    assert (np.diff(found.scores, axis=1) <= 0).all()


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_save_and_load_round_trip(tmp_path: Path, population: Longitudes, kind: str) -> None:
    lon = population[:800]
    ids = chart_ids(lon.shape[0])
    index = MatchIndex.build(ids, features(lon, "b"), CONFIG_HASH, kind=kind, params=IndexParams(ef_search=128))
    index.remove(ids[:10])
    queries = features(lon[:30], "a")
    before = index.search(queries, K)
    path = tmp_path / "matches.index"
    index.save(path)
    loaded = MatchIndex.load(path, config_hash=CONFIG_HASH, kind=kind, dimension=index.dimension)
    assert (len(loaded), loaded.ntotal, loaded.kind, loaded.params) == (len(index), index.ntotal, kind, index.params)
    after = loaded.search(queries, K)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.scores, before.scores)
    meta = read_index_metadata(path)
    assert (meta.format_version, meta.kind, meta.config_hash, meta.count) == (FORMAT_VERSION, kind, CONFIG_HASH, 790)
    loaded.add(ids[:10], features(lon[:10], "b"))  # a loaded index goes on being kept up to date
    assert len(loaded) == 800


def test_load_names_every_mismatch(tmp_path: Path, population: Longitudes) -> None:
    path = tmp_path / "matches.index"
    MatchIndex.build(np.arange(50), features(population[:50], "b"), CONFIG_HASH, kind="exact").save(path)
    other_hash = HarmonicConfig(harmonics={3: 1.0}).config_hash(STANDARD_POINTS)
    with pytest.raises(FieldError, match="config_hash") as caught:
        MatchIndex.load(path, config_hash=other_hash)
    assert caught.value.field == "config_hash"
    with pytest.raises(ValueError, match=r"kind: .*'exact'.*'hnsw'.*dimension: .*208.*100") as caught:
        MatchIndex.load(path, config_hash=CONFIG_HASH, kind="hnsw", dimension=100)
    assert caught.value.field == "kind"  # type: ignore[attr-defined]
    # A file from another format version is refused too.
    with np.load(path) as archive:
        entries = {name: archive[name] for name in archive.files}
    meta = bytes(entries["meta"]).decode().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99')
    entries["meta"] = np.frombuffer(meta.encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **entries)
    with pytest.raises(FieldError, match="format_version: the file has 99"):
        MatchIndex.load(tmp_path / "old.npz")


def test_the_config_hash_follows_the_configuration_and_columns() -> None:
    base = HarmonicConfig().config_hash(STANDARD_POINTS)
    assert base == HarmonicConfig().config_hash(list(STANDARD_POINTS))
    assert base != HarmonicConfig(dtype="float32").config_hash(STANDARD_POINTS)
    assert base != HarmonicConfig().config_hash(STANDARD_POINTS[:10])
    assert base != HarmonicConfig(pair_emphasis={("Sun", "Moon"): 3.0}).config_hash(STANDARD_POINTS)


def test_k_is_capped_and_an_empty_index_answers_nothing(population: Longitudes) -> None:
    empty = MatchIndex(208, CONFIG_HASH, kind="ivf")
    assert len(empty) == empty.ntotal == 0
    assert empty.search(features(population[:3], "a"), K).ids.shape == (3, 0)
    small = MatchIndex.build([4, 9, 2], features(population[:3], "b"), CONFIG_HASH, kind="exact")
    found = small.search(features(population[:3], "a"), K, exclude_self_ids=[4, 9, 2])
    assert found.ids.shape == (3, 2)
    assert not (found.ids == np.array([[4], [9], [2]])).any()


def test_bad_input_names_the_argument(population: Longitudes) -> None:
    g = features(population[:20], "b")
    index = MatchIndex.build(np.arange(20), g, CONFIG_HASH, kind="exact")
    f = features(population[:2], "a")
    cases = [
        (lambda: index.search(f, 0), "k"),
        (lambda: index.search(f, True), "k"),  # type: ignore[arg-type]
        (lambda: index.search(f[:, :100], K), "features_a"),
        (lambda: index.search(np.where(np.eye(2, 208) > 0, np.nan, f), K), "features_a"),
        (lambda: index.search(f, K, exclude_self_ids=[1]), "exclude_self_ids"),
        (lambda: index.add([5, 21], g[:2]), "ids"),  # 5 is already there
        (lambda: index.add([30, 30], g[:2]), "ids"),
        (lambda: index.add([-1], g[:1]), "ids"),
        (lambda: index.add([21, 22], g[:3]), "features_b"),
        (lambda: index.add([21], np.full((1, 208), np.inf)), "features_b"),
        (lambda: index.remove([3, 77]), "ids"),
        (lambda: index.update([77], g[:1]), "ids"),
        (lambda: MatchIndex(208, CONFIG_HASH, kind="annoy"), "kind"),
        (lambda: MatchIndex(0, CONFIG_HASH), "dimension"),
        (lambda: MatchIndex(208, ""), "config_hash"),
        (lambda: IndexParams(ef_search=0), "ef_search"),
        (lambda: IndexParams(norm_bound=float("nan")), "norm_bound"),
    ]
    for call, name in cases:
        with pytest.raises(FieldError) as caught:
            call()
        assert caught.value.field == name, (name, caught.value)
    assert len(index) == 20 and index.ntotal == 20  # nothing half-done by the refused calls


# -- fold-in ---------------------------------------------------------------------------------------------------


def test_fold_in_finds_exactly_the_lists_a_new_chart_enters() -> None:
    lon = charts(900, seed=7)
    ids = np.arange(900, dtype=np.int64)
    old, new = lon[:899], lon[899]
    before = CALC.top_k(old, k=K, method="harmonic", exclude_self=True)
    changed = fold_in(
        features(old, "a"), features(new[None, :], "b")[0], 899, before.scores[:, -1], before.indices[:, -1]
    )
    after = CALC.top_k(old, lon, k=K, method="harmonic", exclude_self=True)
    brute = np.flatnonzero((after.indices != before.indices).any(axis=1))
    np.testing.assert_array_equal(changed.rows, brute)
    assert brute.size  # the case is not vacuous
    # The new chart sits in each changed list with the score fold_in gave.
    rows, ranks = np.nonzero(after.indices == 899)
    np.testing.assert_array_equal(rows, changed.rows)
    np.testing.assert_array_equal(after.scores[rows, ranks], changed.scores)
    assert ids[899] not in before.indices


def test_fold_in_ties_lists_short_of_k_and_self() -> None:
    lon = charts(5, seed=8)
    fa = features(lon, "a")
    g = features(lon[2:3], "b")[0]  # chart 2 again, as a new chart with id 10
    scores = CALC.scores(lon, lon[2:3], method="harmonic")[:, 0]
    kth = scores.copy()
    kth_ids = np.array([11, 9, 12, 3, 20])
    kth[4] = -np.inf  # chart 4's list holds fewer than k
    result = fold_in(fa, g, 10, kth, kth_ids, self_row=2)
    # Equal scores: enters where the k-th's id is higher (0: 11), not where lower (1: 9, 3: 3); self never.
    np.testing.assert_array_equal(result.rows, [0, 4])
    with pytest.raises(FieldError) as caught:
        fold_in(fa, g[:-1], 10, kth, kth_ids)
    assert caught.value.field == "feature_b"
    with pytest.raises(FieldError) as caught:
        fold_in(fa, g, 10, kth[:3], kth_ids)
    assert caught.value.field == "kth_scores"
    with pytest.raises(FieldError) as caught:
        fold_in(fa, g, 10, kth, kth_ids, self_row=5)
    assert caught.value.field == "self_row"
