"""Stored harmonic features (computed on writes, versioned, read by matching), ``GET charts/{id}/matches/`` with
``method=harmonic`` (exact product and match index, visibility), the live index's upkeep and ``aspects_index``."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from aspects_app import features, live_index
from aspects_app.engine import MemoryOptimizedVectorizedCalculator
from aspects_app.engine.harmonic import HarmonicConfig
from aspects_app.models import ID_BATCH, Chart, ChartFeatures
from tests.conftest import PLANETS, ChartFactory, positions_payload, random_positions

API = "/api/aspects"
CHARTS = f"{API}/charts/"
NO_THROTTLE = {"THROTTLE_ANON": None, "THROTTLE_USER": None}


def matches_url(pk: int) -> str:
    return f"{CHARTS}{pk}/matches/"


@pytest.fixture(autouse=True)
def _fresh_indexes() -> Iterator[None]:
    live_index.reset()
    yield
    live_index.reset()


@pytest.fixture
def crowd(make_chart: ChartFactory, alice: Any, bob: Any) -> dict[str, list[Chart]]:
    return {
        "alice": [make_chart(alice, seed=200 + n, is_public=n % 2 == 0) for n in range(6)],
        "bob private": [make_chart(bob, seed=300 + n) for n in range(8)],
        "bob public": [make_chart(bob, seed=400 + n, is_public=True) for n in range(5)],
        "other points": [make_chart(bob, seed=500, is_public=True, points=PLANETS[:7])],
    }


def expected_top(chart: Chart, others: list[Chart], k: int, config: HarmonicConfig | None = None) -> list[Any]:
    """The engine's harmonic top-k of ``chart`` among ``others``, as (chart id, score)."""
    calc = MemoryOptimizedVectorizedCalculator(backend="numpy", harmonic=config)
    ordered = sorted(others, key=lambda c: c.pk)
    best = calc.top_k(
        chart.longitude_array[None, :], np.stack([c.longitude_array for c in ordered]), k=k, method="harmonic"
    )
    return [(ordered[j].pk, round(float(s), 6)) for j, s in zip(best.indices[0], best.scores[0], strict=True)]


def got(response: Any) -> list[Any]:
    assert response.status_code == 200, response.json()
    return [(m["chart"], m["score"]) for m in response.json()["matches"]]


def visible_to_alice(crowd: dict[str, list[Chart]], me: Chart) -> list[Chart]:
    return [c for c in [*crowd["alice"], *crowd["bob public"]] if c.pk != me.pk]


# -- stored features ---------------------------------------------------------------------------------------------


def test_features_are_stored_on_create_and_position_change(alice_client: APIClient) -> None:
    with override_settings(ASPECTS=NO_THROTTLE):
        created = alice_client.post(CHARTS, positions_payload(seed=3), format="json").json()
        chart = Chart.objects.get(pk=created["id"])
        row = ChartFeatures.objects.get(chart=chart)
        calc = MemoryOptimizedVectorizedCalculator(backend="numpy")
        for side, blob in (("a", row.features_a), ("b", row.features_b)):
            stored = np.frombuffer(bytes(blob), dtype="<f8")
            np.testing.assert_array_equal(stored, calc.harmonic_features(chart.longitude_array[None, :], side)[0])
        assert (row.positions_hash, row.config_hash) == (chart.positions_hash, features.config_hash(PLANETS))
        renamed = alice_client.patch(f"{CHARTS}{chart.pk}/", {"name": "renamed"}, format="json")
        assert renamed.status_code == 200
        assert ChartFeatures.objects.get(chart=chart).updated_at == row.updated_at  # positions unchanged
        moved = positions_payload(seed=4)
        body = {key: moved[key] for key in ("position_input",)} if "position_input" in moved else moved
        assert alice_client.patch(f"{CHARTS}{chart.pk}/", body, format="json").status_code == 200
        chart.refresh_from_db()
        again = ChartFeatures.objects.get(chart=chart)
        assert again.positions_hash == chart.positions_hash != row.positions_hash
        np.testing.assert_array_equal(
            np.frombuffer(bytes(again.features_b), dtype="<f8"),
            calc.harmonic_features(chart.longitude_array[None, :], "b")[0],
        )


def test_bulk_create_stores_features(alice_client: APIClient) -> None:
    body = {"charts": [positions_payload(seed=n) for n in range(5)]}
    response = alice_client.post(f"{CHARTS}bulk/", body, format="json")
    assert response.status_code == 201, response.json()
    ids = sorted(c["id"] for c in response.json())
    assert sorted(ChartFeatures.objects.values_list("chart_id", flat=True)) == ids


def test_matching_reads_stored_features_and_never_recomputes_them(
    alice_client: APIClient, crowd: dict[str, list[Chart]], monkeypatch: pytest.MonkeyPatch
) -> None:
    me = crowd["alice"][0]
    first = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 5}))  # fills them lazily
    seen = [*crowd["alice"], *crowd["bob public"], *crowd["other points"]]  # what alice may see, and hers
    assert sorted(ChartFeatures.objects.values_list("chart_id", flat=True)) == sorted(c.pk for c in seen)

    def no_compute(*args: Any) -> Any:
        raise AssertionError("features recomputed")

    monkeypatch.setattr(features, "_compute", no_compute)
    assert got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 5})) == first


def test_a_configuration_change_recomputes_features_lazily(
    alice_client: APIClient, crowd: dict[str, list[Chart]]
) -> None:
    me = crowd["alice"][0]
    got(alice_client.get(matches_url(me.pk), {"method": "harmonic"}))
    before = set(ChartFeatures.objects.values_list("settings_hash", flat=True))
    other = {"harmonics": {"3": 1.0, "4": -1.0}, "pair_emphasis": [["Sun", "Moon", 3.0]]}
    with override_settings(ASPECTS={"HARMONIC": other}):
        changed = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 4}))
        config = HarmonicConfig(harmonics={3: 1.0, 4: -1.0}, pair_emphasis={("Sun", "Moon"): 3.0})
        assert changed == expected_top(me, visible_to_alice(crowd, me), 4, config)
        after = set(ChartFeatures.objects.values_list("settings_hash", flat=True))
    assert after == {features.settings_hash(config)} != before  # the old configuration's rows replaced


def test_stale_features_of_a_chart_written_around_the_services_are_not_served(
    alice_client: APIClient, crowd: dict[str, list[Chart]]
) -> None:
    me = crowd["alice"][0]
    got(alice_client.get(matches_url(me.pk), {"method": "harmonic"}))
    moved = crowd["bob public"][0]
    moved.set_positions(PLANETS, np.random.default_rng(7).uniform(0, 360, len(PLANETS)))
    moved.save()  # no services: its stored features are of the old positions
    result = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 30}))
    assert result == expected_top(me, visible_to_alice(crowd, me), 30)


# -- GET matches?method=harmonic -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 100])
def test_exact_harmonic_matches_equal_the_engine_over_visible_charts(
    alice_client: APIClient, anon_client: APIClient, crowd: dict[str, list[Chart]], k: int
) -> None:
    me = crowd["alice"][0]  # public
    assert got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": k})) == expected_top(
        me, visible_to_alice(crowd, me), k
    )
    public = [c for c in [*crowd["alice"], *crowd["bob public"]] if c.is_public and c.pk != me.pk]
    assert got(anon_client.get(matches_url(me.pk), {"method": "harmonic", "k": k})) == expected_top(me, public, k)


def test_harmonic_over_the_candidate_limit_without_an_index_is_a_400(
    alice_client: APIClient, crowd: dict[str, list[Chart]]
) -> None:
    with override_settings(ASPECTS={"MAX_MATCH_CANDIDATES": 3}):
        response = alice_client.get(matches_url(crowd["alice"][0].pk), {"method": "harmonic"})
    assert response.status_code == 400 and "k" in response.json()


@pytest.fixture
def index_settings(tmp_path: Path) -> Iterator[dict[str, Any]]:
    values: dict[str, Any] = {"INDEX_PATH": str(tmp_path / "indexes"), "INDEX_MIN_CANDIDATES": 0, **NO_THROTTLE}
    yield values


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_index_answers_above_the_bound_and_never_shows_private_charts(
    alice_client: APIClient,
    bob_client: APIClient,
    anon_client: APIClient,
    crowd: dict[str, list[Chart]],
    index_settings: dict[str, Any],
    kind: str,
) -> None:
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": kind, "MAX_MATCH_CANDIDATES": 3}):
        call_command("aspects_index", "build", verbosity=0)
        me = crowd["alice"][0]
        for k in (2, 100):
            # Above MAX_MATCH_CANDIDATES, so only the index can answer; small populations are searched exactly.
            assert got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": k})) == expected_top(
                me, visible_to_alice(crowd, me), k
            )
        assert live_index._loaded  # the index was loaded and used
        private = {c.pk for c in crowd["bob private"]} | {c.pk for c in crowd["alice"] if not c.is_public}
        every = got(anon_client.get(matches_url(me.pk), {"method": "harmonic", "k": 100}))
        assert every and not {pk for pk, _ in every} & private
        bobs = got(bob_client.get(matches_url(crowd["bob private"][0].pk), {"method": "harmonic", "k": 100}))
        alice_private = {c.pk for c in crowd["alice"] if not c.is_public}
        assert not {pk for pk, _ in bobs} & alice_private
        assert {c.pk for c in crowd["bob private"][1:]} <= {pk for pk, _ in bobs}  # his own private ones he sees


def test_index_follows_creates_moves_and_deletes(
    alice_client: APIClient,
    crowd: dict[str, list[Chart]],
    index_settings: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    me = crowd["alice"][0]
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": "exact", "MAX_MATCH_CANDIDATES": 3}):
        call_command("aspects_index", "build", verbosity=0)
        got(alice_client.get(matches_url(me.pk), {"method": "harmonic"}))  # loads it
        (loaded,) = live_index._loaded.values()
        twin = {"name": "twin", "is_public": True, "position_input": {"points": list(PLANETS),
                "longitudes": me.longitude_array.tolist()}}  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_client.post(CHARTS, twin, format="json")
        assert response.status_code == 201, response.json()
        twin_id = response.json()["id"]
        assert twin_id in loaded.index  # applied on commit in this process
        twin_chart = Chart.objects.get(pk=twin_id)
        assert got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 50})) == expected_top(
            me, [*visible_to_alice(crowd, me), twin_chart], 50
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert alice_client.delete(f"{CHARTS}{twin_id}/").status_code == 204
        assert twin_id not in loaded.index
        everyone = [*visible_to_alice(crowd, me)]
        assert got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 50})) == expected_top(
            me, everyone, 50
        )


def test_charts_changed_in_another_process_are_scored_from_the_delta(
    alice_client: APIClient, alice: Any, crowd: dict[str, list[Chart]], index_settings: dict[str, Any]
) -> None:
    me = crowd["alice"][0]
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": "hnsw", "MAX_MATCH_CANDIDATES": 3}):
        call_command("aspects_index", "build", verbosity=0)
        got(alice_client.get(matches_url(me.pk), {"method": "harmonic"}))
        # Another process's writes: features stored, but this process's index never told (no commit callbacks).
        twin = Chart(owner=alice, name="twin", is_public=False)
        twin.set_positions(PLANETS, me.longitude_array)
        twin.save()
        features.store_features([twin])
        moved = crowd["bob public"][1]
        moved.set_positions(PLANETS, (me.longitude_array + 0.5) % 360)
        moved.save()
        features.store_features([moved])
        (loaded,) = live_index._loaded.values()
        assert twin.pk not in loaded.index
        for k in (3, 100):
            result = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": k}))
            moved.refresh_from_db()
            assert result == expected_top(me, [*visible_to_alice(crowd, me), twin], k)
        assert twin.pk in {pk for pk, _ in result}


def test_a_write_committed_after_the_build_read_but_stamped_before_it_is_in_the_delta(
    alice_client: APIClient, alice: Any, crowd: dict[str, list[Chart]], index_settings: dict[str, Any]
) -> None:
    # A transaction that stamped its chart's features before the build took its snapshot and committed after the
    # build's read: the index never saw the chart, and with the snapshot at the read it was not "changed since"
    # either, so other processes missed it until a rebuild.
    me = crowd["alice"][0]
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": "exact", "MAX_MATCH_CANDIDATES": 3}):
        stamped = timezone.now() - timedelta(seconds=5)  # the transaction's stamp, a little before the build
        call_command("aspects_index", "build", verbosity=0)
        late = Chart(owner=alice, name="late", is_public=False)
        late.set_positions(PLANETS, me.longitude_array)
        late.save()
        features.store_features([late])  # its commit, after the build's read
        ChartFeatures.objects.filter(chart=late).update(updated_at=stamped)
        live_index.reset()  # another process: it loads the file and knows of the chart only from the delta
        (report,) = [r for r in live_index.status(Path(index_settings["INDEX_PATH"])) if r.points == PLANETS]
        assert report.changed_since >= 1
        result = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 100}))
        assert result == expected_top(me, [*visible_to_alice(crowd, me), late], 100)
        assert late.pk in {pk for pk, _ in result}


def _largest_in_list(sql: str) -> int:
    """The most values any ``IN (...)`` list of literal ids in ``sql`` holds."""
    return max((group.count(",") + 1 for group in re.findall(r" IN \(([0-9, ]+)\)", sql)), default=0)


def test_a_caller_who_sees_few_of_the_indexed_charts_never_sends_an_unbounded_id_list(
    alice_client: APIClient, crowd: dict[str, list[Chart]], bob: Any, index_settings: dict[str, Any]
) -> None:
    # Many private charts in the index, few visible to alice: the over-fetch widens to the whole index. Its
    # visibility filter must go in id batches (ID_BATCH, what every database takes) and ask each id once: one IN
    # list of every index hit failed on SQLite's 999-variable builds and grows with the index everywhere.
    hidden = []
    for n in range(ID_BATCH + 300):
        chart = Chart(owner=bob, name=f"hidden {n}")
        chart.set_positions(PLANETS, random_positions(10_000 + n)[0])
        hidden.append(chart)
    features.store_features(Chart.objects.bulk_create(hidden))
    me = crowd["alice"][0]
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": "exact", "MAX_MATCH_CANDIDATES": 3}):
        call_command("aspects_index", "build", verbosity=0)
        with CaptureQueriesContext(connection) as queries:
            result = got(alice_client.get(matches_url(me.pk), {"method": "harmonic", "k": 100}))
    assert result == expected_top(me, visible_to_alice(crowd, me), 100)
    assert max(_largest_in_list(q["sql"]) for q in queries.captured_queries) <= ID_BATCH


# -- manage.py aspects_index -------------------------------------------------------------------------------------


def run(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command("aspects_index", *args, stdout=out, **options)
    return out.getvalue()


def test_command_builds_keeps_rebuilds_and_reports(
    crowd: dict[str, list[Chart]], index_settings: dict[str, Any]
) -> None:
    with override_settings(ASPECTS={**index_settings, "INDEX_KIND": "exact"}):
        first = run("build", verbosity=2)
        assert "computed features of" in first and first.count("built:") == 2  # two point sets
        assert run("build").count("kept") == 2
        assert run("rebuild").count("built:") == 2
        status = run("status")
        assert status.count("current") == 2 and "exact" in status
        counts = sorted(int(line.split(", ")[1].split()[0]) for line in status.splitlines())
        assert counts == [1, sum(len(v) for v in crowd.values()) - 1]
        assert run("build", verbosity=0) == ""
    with override_settings(ASPECTS={**index_settings, "HARMONIC": {"harmonics": {"3": 1.0}}}):
        assert run("status", kind="exact").count("stale") == 2


def test_command_errors(tmp_path: Path, crowd: dict[str, list[Chart]]) -> None:
    with pytest.raises(CommandError, match="INDEX_PATH"):
        run("build")
    file = tmp_path / "a-file"
    file.write_text("")
    with pytest.raises(CommandError, match="not a directory"):
        run("build", path=str(file))
    with override_settings(ASPECTS={"INDEX_PATH": str(tmp_path / "x"), "INDEX_KIND": "annoy"}):
        with pytest.raises(CommandError, match="INDEX_KIND"):
            run("build")
        with pytest.raises(CommandError, match="does not exist"):
            run("status", kind="exact")
    with pytest.raises(CommandError):
        run("compact")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"HARMONIC": {"harmonics": {"0": 1.0}}}, ["aspects_app.E008"]),
        ({"HARMONIC": {"colour": "red"}}, ["aspects_app.E008"]),
        ({"INDEX_KIND": "annoy"}, ["aspects_app.E009"]),
        ({"INDEX_MIN_CANDIDATES": -1}, ["aspects_app.E009"]),
        ({"INDEX_MIN_CANDIDATES": "many"}, ["aspects_app.E009"]),
        ({"FRESH_MATCHES_K": 0}, ["aspects_app.E010"]),
        ({"FRESH_MATCHES_K": 101}, ["aspects_app.E010"]),
        ({"HARMONIC": {"dtype": "float32"}, "INDEX_MIN_CANDIDATES": 0, "FRESH_MATCHES_K": 10}, []),
    ],
)
def test_system_checks(values: dict[str, Any], expected: list[str]) -> None:
    from aspects_app.checks import check_harmonic

    with override_settings(ASPECTS=values):
        assert [m.id for m in check_harmonic()] == expected
