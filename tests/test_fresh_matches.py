"""Fresh stored harmonic matches (FRESH_MATCHES_K): after random creates, position edits and deletes, the stored
lists equal a full batch rerun (compute_aspects --mode top-k --method harmonic), inline and on a real Celery
worker; the lists are readable through the matches endpoint with visibility applied."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from aspects_app import features, fresh_matches, services
from aspects_app.models import Chart, Match
from tests.conftest import PLANETS
from tests.test_distributed import QUEUE, Workers, wait_for

K = 4
StoredLists = dict[int, list[tuple[int, float]]]


def stored_lists() -> StoredLists:
    lists: StoredLists = {}
    rows = Match.objects.filter(method="harmonic", config_hash=fresh_matches.list_config_hash())
    for chart, rank, partner, score in rows.order_by("chart", "rank").values_list("chart", "rank", "partner", "score"):
        assert rank == len(lists.get(chart, [])) + 1
        lists.setdefault(chart, []).append((partner, score))
    return lists


def batch_rerun() -> StoredLists:
    call_command("compute_aspects", "--mode", "top-k", "--method", "harmonic", "-k", str(K), verbosity=0)
    return stored_lists()


def assert_same_lists(fresh: StoredLists, batch: StoredLists) -> None:
    assert fresh.keys() == batch.keys()
    for chart, best in batch.items():
        assert [p for p, _ in fresh[chart]] == [p for p, _ in best], chart
        np.testing.assert_allclose([s for _, s in fresh[chart]], [s for _, s in best], atol=1e-9, rtol=0)


def new_input(rng: np.random.Generator, owner_public: bool) -> services.ChartInput:
    return services.ChartInput(
        name="c", is_public=owner_public, points=PLANETS, longitudes=tuple(rng.uniform(0, 360, len(PLANETS)).tolist())
    )


def random_operations(rng: np.random.Generator, owner: Any, steps: int, run: Any = None) -> None:
    """Creates (one or a bulk of several), position edits and deletes in random order; ``run`` wraps each."""
    wrap = run or (lambda: _Nothing())
    for _ in range(steps):
        live = list(Chart.objects.order_by("pk"))
        choice = rng.choice(["create", "bulk", "edit", "delete"]) if len(live) > 3 else "create"
        with wrap():
            if choice == "create":
                services.create_charts(owner, [new_input(rng, bool(rng.integers(2)))])
            elif choice == "bulk":
                services.create_charts(owner, [new_input(rng, True) for _ in range(int(rng.integers(2, 5)))])
            elif choice == "edit":
                chart = live[int(rng.integers(len(live)))]
                moved = services.ChartInput(points=PLANETS, longitudes=tuple(rng.uniform(0, 360, len(PLANETS))))
                services.update_chart(chart, moved, ["points"])
            else:
                live[int(rng.integers(len(live)))].delete()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


@pytest.fixture
def fresh_inline() -> Iterator[None]:
    with override_settings(ASPECTS={"FRESH_MATCHES_K": K, "THROTTLE_ANON": None, "THROTTLE_USER": None}):
        yield


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inline_lists_equal_a_batch_rerun(
    fresh_inline: None, alice: Any, django_capture_on_commit_callbacks: Any, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    random_operations(rng, alice, 30, run=lambda: django_capture_on_commit_callbacks(execute=True))
    fresh = stored_lists()
    assert fresh and all(len(best) == min(K, Chart.objects.count() - 1) for best in fresh.values())
    assert_same_lists(fresh, batch_rerun())


def test_off_by_default(alice: Any, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.create_charts(alice, [new_input(np.random.default_rng(0), True) for _ in range(5)])
    assert not Match.objects.exists()


def test_a_deleted_chart_leaves_no_gap_and_lists_read_through_the_api(
    fresh_inline: None, alice: Any, bob: Any, alice_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    rng = np.random.default_rng(9)
    with django_capture_on_commit_callbacks(execute=True):
        mine = services.create_charts(alice, [new_input(rng, False) for _ in range(6)])
        bobs = services.create_charts(bob, [new_input(rng, bool(n % 2)) for n in range(6)])
    holders = fresh_matches.holders_of(bobs[0].pk)
    assert holders
    with django_capture_on_commit_callbacks(execute=True):
        bobs[0].delete()
    lists = stored_lists()
    assert all(bobs[0].pk not in {p for p, _ in lists[h]} and len(lists[h]) == K for h in holders)
    assert_same_lists(lists, batch_rerun())
    body = alice_client.get(f"/api/aspects/charts/{mine[0].pk}/matches/", {"stored": 1, "method": "harmonic"}).json()
    hidden = {c.pk for c in bobs if not c.is_public}
    shown = [m["chart"] for m in body["matches"]]
    assert body["method"] == "harmonic" and not set(shown) & hidden
    assert shown == [p for p, _ in lists[mine[0].pk] if p not in hidden]


@pytest.mark.django_db(transaction=True)
def test_celery_worker_keeps_lists_equal_to_a_batch_rerun(django_user_model: Any) -> None:
    owner = django_user_model.objects.create_user("fresh", password="pw")
    settings = {"FRESH_MATCHES_K": K, "FRESH_MATCHES_CELERY": True, "CPU_QUEUE": QUEUE}
    pool = Workers()
    with override_settings(ASPECTS=settings):
        from project.celery import app

        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(QUEUE)
        pool.start()
        try:
            random_operations(np.random.default_rng(5), owner, 15)
            # Each operation's task; done when no more arrive and the lists stop changing.
            expected = {c.pk for c in Chart.objects.all()}
            wait_for(lambda: set(stored_lists()) == expected and _settled(), 60, "the worker's lists")
        finally:
            pool.stop_all()
        assert_same_lists(stored_lists(), batch_rerun())


def _settled() -> bool:
    """True once two looks a second apart see the same lists, and no task is waiting in the queue."""
    import time

    from project.celery import app

    first = stored_lists()
    time.sleep(1.0)
    with app.connection_for_write() as conn:
        waiting = conn.default_channel.client.llen(QUEUE)
    return waiting == 0 and stored_lists() == first


@pytest.mark.django_db(transaction=True)
def test_a_broker_down_after_the_commit_does_not_fail_the_committed_write(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The upkeep runs once the chart's transaction has committed: a failure there (the broker unreachable) must
    # not turn a stored chart into a 500, which a client would retry into a duplicate; it is logged.
    from kombu.exceptions import OperationalError

    from aspects_app import tasks
    from tests.conftest import positions_payload

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(tasks.refresh_matches, "apply_async", unreachable)
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("writer", password="pw"))
    settings = {"FRESH_MATCHES_K": K, "FRESH_MATCHES_CELERY": True, "THROTTLE_ANON": None, "THROTTLE_USER": None}
    with override_settings(ASPECTS=settings):
        created = client.post("/api/aspects/charts/", positions_payload(seed=3), format="json")
        assert created.status_code == 201, created.content[:300]
        assert Chart.objects.filter(pk=created.json()["id"]).exists()
        other = client.post("/api/aspects/charts/", positions_payload(seed=4), format="json")
        assert other.status_code == 201, other.content[:300]
        assert client.delete(f"/api/aspects/charts/{created.json()['id']}/").status_code == 204
    assert not Chart.objects.filter(pk=created.json()["id"]).exists()
    assert "broker unreachable" in caplog.text


@pytest.fixture
def population_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sides of every population feature load the upkeep makes."""
    loads: list[str] = []
    real = features.load_features

    def counting(charts: Any, points: Any, side: str) -> Any:
        loads.append(side)
        return real(charts, points, side)

    monkeypatch.setattr(features, "load_features", counting)
    return loads


def test_one_upkeep_per_transaction_loads_the_population_once(
    fresh_inline: None, alice: Any, django_capture_on_commit_callbacks: Any, population_loads: list[str]
) -> None:
    # Run inline, the upkeep loaded the whole population's features once per changed chart: a bulk create of
    # 1,000 charts, or the admin's recompute of 1,000, was ~N^2 work in one request.
    rng = np.random.default_rng(12)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_charts(alice, [new_input(rng, True) for _ in range(8)])
    population_loads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.create_charts(alice, [new_input(rng, bool(n % 2)) for n in range(30)])
    assert sorted(population_loads) == ["a", "b"]
    population_loads.clear()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():  # saved one by one, as the admin
        for chart in Chart.objects.order_by("pk")[:12]:
            moved = services.ChartInput(points=PLANETS, longitudes=tuple(rng.uniform(0, 360, len(PLANETS))))
            services.update_chart(chart, moved, ["points"])
    assert sorted(population_loads) == ["a", "b"]
    population_loads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        Chart.objects.filter(pk__in=list(Chart.objects.order_by("-pk").values_list("pk", flat=True)[:6])).delete()
    assert sorted(population_loads) == ["a", "b"]
    assert_same_lists(stored_lists(), batch_rerun())


def test_the_admin_recompute_of_many_charts_is_one_upkeep(
    fresh_inline: None, alice: Any, django_capture_on_commit_callbacks: Any, population_loads: list[str]
) -> None:
    born = [
        services.ChartInput(name=f"b{n}", is_public=True, latitude=52.5, longitude=13.4,
                            birth_datetime=datetime(1950 + n, 1 + n % 12, 1 + n % 28, n % 24, tzinfo=UTC))
        for n in range(12)
    ]  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        charts = services.create_charts(alice, born)
    Chart.objects.update(birth_datetime=datetime(2001, 1, 1, 12, tzinfo=UTC))  # positions no longer its own
    population_loads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recompute_positions(Chart.objects.filter(pk__in=[c.pk for c in charts])) == 12
    assert sorted(population_loads) == ["a", "b"]
    assert_same_lists(stored_lists(), batch_rerun())


@pytest.mark.parametrize("seed", [4, 6])
def test_transactions_of_mixed_writes_equal_a_batch_rerun(
    fresh_inline: None, alice: Any, django_capture_on_commit_callbacks: Any, seed: int
) -> None:
    # Several creates, edits and deletes per transaction: one upkeep takes them all (charts entering the same
    # lists together, lists repaired and changed in one go).
    rng = np.random.default_rng(seed)
    for _ in range(6):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            random_operations(rng, alice, 5)
    assert_same_lists(stored_lists(), batch_rerun())
