"""Stored batch results through the API: no endpoint read ``Match`` rows (``GET charts/{id}/matches/`` recomputed
live and answered other partners than the stored run) and a job's ``links.matches`` was the literal template
``.../charts/{id}/matches/``. Now ``?stored=1[&run=ID]`` reads the stored list, and a job's links are real,
fetchable URLs of its stored matches and natal results, under the same visibility rules as every other read."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import override_settings

from aspects_app import distributed, jobs
from aspects_app.models import BatchRun, Chart, Match, TransitEvent

from .conftest import ChartFactory, client_for

API = "/api/aspects"


def finished_job(owner: Any, chart_ids: list[int], modes: list[str], k: int = 3, **spec_fields: Any) -> BatchRun:
    """A job of ``owner``'s, computed block by block here as the workers would (no broker involved)."""
    spec = jobs.JobSpec(modes=modes, group_a=chart_ids, k=k, backend="numpy", **spec_fields)
    run = jobs.create(spec, owner=owner, distributed=True)
    # A worker keeps its last run's charts by run id, and SQLite gives a rolled-back test's ids out again.
    distributed._loaded.clear()
    for block in distributed.plan(run, "unused"):
        assert distributed.run_block(run.pk, block.mode, block.start, block.stop) == "done"
    run.refresh_from_db()
    assert run.status == BatchRun.Status.DONE
    return run


def stored_list(chart: int) -> list[tuple[int, float]]:
    return list(Match.objects.filter(chart=chart).order_by("rank").values_list("partner", "score"))


@pytest.fixture
def population(alice: Any, bob: Any, make_chart: ChartFactory) -> dict[str, list[int]]:
    return {
        "alice": [make_chart(alice, is_public=True).pk for _ in range(6)],
        "bob_private": [make_chart(bob).pk for _ in range(3)],
    }


def test_stored_matches_are_the_runs_list_not_a_live_computation(
    alice: Any, population: dict[str, list[int]], make_chart: ChartFactory
) -> None:
    ids = population["alice"]
    run = finished_job(alice, ids, ["top-k"])
    # Charts added since the run change the live answer, not the stored one.
    for _ in range(20):
        make_chart(alice, is_public=True)
    chart = ids[0]
    body = client_for(alice).get(f"{API}/charts/{chart}/matches/?stored=1").json()
    assert body["stored"] is True and body["run"] == run.pk and body["method"] == "discepolo"
    assert body["computed_at"] is not None
    assert [(m["chart"], m["score"]) for m in body["matches"]] == stored_list(chart)
    assert [m["rank"] for m in body["matches"]] == [1, 2, 3]
    assert body["k"] == 3
    assert client_for(alice).get(f"{API}/charts/{chart}/matches/?stored=1&run={run.pk}").json() == body
    assert client_for(alice).get(f"{API}/charts/{chart}/matches/?stored=1&k=2").json()["matches"] == body["matches"][:2]
    live = client_for(alice).get(f"{API}/charts/{chart}/matches/?k=3").json()
    assert "stored" not in live


def test_a_partner_the_caller_may_not_see_is_never_shown(
    staff: Any, alice: Any, bob: Any, population: dict[str, list[int]]
) -> None:
    everyone = population["alice"] + population["bob_private"]
    run = finished_job(staff, everyone, ["top-k"], k=8)
    chart = population["alice"][0]
    private = set(population["bob_private"])
    assert private & {partner for partner, _ in stored_list(chart)}  # the stored list does name them
    for user in (None, alice):
        body = client_for(user).get(f"{API}/charts/{chart}/matches/?stored=1").json()
        partners = [m["chart"] for m in body["matches"]]
        assert partners and not private & set(partners)
        assert [p for p, _ in stored_list(chart) if p not in private] == partners
        assert [m["rank"] for m in body["matches"]] == list(range(1, len(partners) + 1))  # no gap
    assert set(population["bob_private"]) & {
        m["chart"] for m in client_for(bob).get(f"{API}/charts/{chart}/matches/?stored=1").json()["matches"]
    }
    # A job's rows: nor there.
    rows = client_for(staff).get(f"{API}/jobs/{run.pk}/matches/?page_size=500").json()["results"]
    assert private & {row["partner"] for row in rows}


def test_bad_or_hidden_stored_queries(alice: Any, bob: Any, population: dict[str, list[int]]) -> None:
    run = finished_job(alice, population["alice"], ["top-k"])
    chart = population["alice"][0]
    url = f"{API}/charts/{chart}/matches/"
    for query, field in (("stored=maybe", "stored"), ("stored=1&run=abc", "run"), ("run=1", "run")):
        response = client_for(alice).get(f"{url}?{query}")
        assert response.status_code == 400 and field in response.json(), (query, response.content)
    assert client_for(bob).get(f"{url}?stored=1&run={run.pk}").status_code == 404  # not bob's job
    anonymous = client_for(None)
    anonymous.raise_request_exception = False
    # A run is nobody's to show anonymously; the owner filter took AnonymousUser and raised (a 500).
    assert anonymous.get(f"{url}?stored=1&run={run.pk}").status_code == 404
    assert client_for(alice).get(f"{url}?stored=1&run=999999").status_code == 404
    hidden = population["bob_private"][0]
    assert client_for(alice).get(f"{API}/charts/{hidden}/matches/?stored=1").status_code == 404
    # A chart no run stored a list for.
    none = client_for(bob).get(f"{API}/charts/{hidden}/matches/?stored=1").json()
    assert none["matches"] == [] and none["run"] is None and none["method"] is None


def test_a_jobs_links_resolve_to_its_results(alice: Any, bob: Any, population: dict[str, list[int]]) -> None:
    ids = population["alice"]
    run = finished_job(alice, ids, ["natal", "top-k"])
    client = client_for(alice)
    body = client.get(f"{API}/jobs/{run.pk}/").json()
    assert set(body["links"]) == {"self", "matches", "natal"}
    assert body["output"] is None
    for link in body["links"].values():
        assert "{" not in link and client.get(link).status_code == 200, link

    matches = client.get(body["links"]["matches"] + "?page_size=5").json()
    assert matches["count"] == len(ids) * 3 and len(matches["results"]) == 5 and matches["next"]
    stored = [
        (row["chart"], row["rank"], row["partner"]) for row in client.get(body["links"]["matches"]).json()["results"]
    ]
    expected = Match.objects.filter(run=run).order_by("chart", "rank").values_list("chart", "rank", "partner")
    assert stored == list(expected)

    natal = client.get(body["links"]["natal"]).json()
    assert natal["count"] == len(ids)
    assert [row["chart"] for row in natal["results"]] == ids
    first = Chart.objects.get(pk=ids[0])
    live = client.get(f"{API}/charts/{first.pk}/natal/").json()["aspects"]
    stored_aspects = natal["results"][0]["aspects"]
    assert [{**a, "orb": pytest.approx(a["orb"], abs=1e-9)} for a in stored_aspects] == live  # live orbs: rounded

    assert client_for(bob).get(body["links"]["matches"]).status_code == 404
    assert client_for(bob).get(body["links"]["natal"]).status_code == 404


def test_a_transits_jobs_link_lists_its_stored_events(alice: Any, bob: Any, population: dict[str, list[int]]) -> None:
    ids = population["alice"]
    week = {"start": "2027-01-01T00:00:00+00:00", "end": "2027-01-08T00:00:00+00:00"}
    run = finished_job(alice, ids, ["transits"], **week)
    other = finished_job(alice, ids[:2], ["transits"], **week, orbs={"conjunction": 1.0})  # the same charts again
    client = client_for(alice)
    body = client.get(f"{API}/jobs/{run.pk}/").json()
    assert set(body["links"]) == {"self", "transit_events"}
    link = body["links"]["transit_events"]
    assert link == f"http://testserver{API}/transit-events/?run={run.pk}"
    listed = client.get(link + "&page_size=500").json()
    stored = TransitEvent.objects.filter(run=run)
    assert listed["count"] == stored.count() == run.rows_written > 0
    assert {row["run"] for row in listed["results"]} == {run.pk}
    assert TransitEvent.objects.filter(run=other).exists()  # left out of run's list above
    assert client_for(bob).get(link).status_code == 404


def test_links_appear_only_once_the_job_is_done(alice: Any, population: dict[str, list[int]]) -> None:
    spec = jobs.JobSpec(modes=["top-k"], group_a=population["alice"], k=2, backend="numpy")
    run = jobs.create(spec, owner=alice, distributed=True)
    distributed.plan(run, "unused")
    assert set(client_for(alice).get(f"{API}/jobs/{run.pk}/").json()["links"]) == {"self"}


def test_a_file_run_says_where_its_file_is(staff: Any, alice: Any, make_chart: ChartFactory, tmp_path: Path) -> None:
    for _ in range(4):
        make_chart(alice)
    target = tmp_path / "hits.jsonl"
    call_command("compute_aspects", mode=["natal"], output=str(target), no_progress=True, stdout=io.StringIO())
    run = BatchRun.objects.get()
    body = client_for(staff).get(f"{API}/jobs/{run.pk}/").json()
    assert body["output"] == {"path": str(target), "format": "jsonl", "complete": True}
    assert set(body["links"]) == {"self"}  # the file is not served
    assert client_for(alice).get(f"{API}/jobs/{run.pk}/").status_code == 404  # an operator's run


@override_settings(ASPECTS={"THROTTLE_ANON": None, "THROTTLE_USER": None})
def test_the_schema_documents_the_stored_reads(anon_client: Any) -> None:
    schema = yaml.safe_load(anon_client.get(f"{API}/schema/").content)
    paths = schema["paths"]
    parameters = {p["name"] for p in paths["/api/aspects/charts/{id}/matches/"]["get"]["parameters"]}
    assert {"stored", "run"} <= parameters
    for kind in ("matches", "natal"):
        answers = paths[f"/api/aspects/jobs/{{id}}/{kind}/"]["get"]["responses"]
        assert {"200", "404"} <= set(answers)
    job_post = paths["/api/aspects/jobs/"]["post"]["responses"]
    assert {"202", "400", "429", "503"} <= set(job_post)
    assert "output" in schema["components"]["schemas"]["JobResults"]["properties"]
