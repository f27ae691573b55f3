"""The monitoring layer: ``MonitoringMiddleware`` (Server-Timing, Prometheus metrics by view and status, sync and
async), the metrics endpoints and their permission, prometheus-client's multi-process mode, the django-silk
integration and the monitoring system checks.

Metric values are read as deltas of the process-wide registry (other tests count into it too), through
``prometheus_client.REGISTRY.get_sample_value``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.test import AsyncRequestFactory, Client, RequestFactory, override_settings
from django.urls import ResolverMatch
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from aspects_app import checks, timing
from aspects_app.cache import result_cache

# Imported at collection, before pytest-django opens the test database's connection (see
# test_db_time_is_measured_on_a_connection_opened_before_the_first_request for the other order).
from aspects_app.middleware import MonitoringMiddleware
from aspects_app.models import Chart

from .conftest import ChartFactory

ROOT = Path(__file__).resolve().parents[1]
NATAL_VIEW = "aspects_api:chart-natal"
SYNASTRY_VIEW = "aspects_api:synastry"
MONITORING = "aspects_app.middleware.MonitoringMiddleware"
SILK = "silk.middleware.SilkyMiddleware"
ENTRY = re.compile(r"^(?P<name>[a-z]+);(?:dur=(?P<dur>\d+\.\d+)|desc=\"(?P<desc>[^\"]*)\")$")


# -- helpers -------------------------------------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float:
    """One sample's value in the default registry; 0 when it has not been created yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def total(name: str, **labels: str) -> float:
    """The sum over every sample called ``name`` whose labels include ``labels`` (e.g. all backends)."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def requests_total(view: str, status: str, method: str = "GET") -> float:
    """``aspects_requests_total`` of one view, status and method."""
    return sample("aspects_requests_total", view=view, method=method, status=status)


def server_timing(response: Any) -> dict[str, str]:
    """The ``Server-Timing`` header as {name: dur or desc}; every entry must be well formed."""
    assert response.has_header("Server-Timing"), dict(response.headers)
    parsed: dict[str, str] = {}
    for entry in response["Server-Timing"].split(", "):
        match = ENTRY.match(entry)
        assert match, f"malformed Server-Timing entry {entry!r} in {response['Server-Timing']!r}"
        parsed[match["name"]] = match["dur"] if match["dur"] is not None else match["desc"]
    return parsed


def natal_url(chart: Chart) -> str:
    return f"/api/aspects/charts/{chart.pk}/natal/"


def synastry_url(a: Chart, b: Chart) -> str:
    return f"/api/aspects/synastry/?chart_a={a.pk}&chart_b={b.pk}"


def resolved(request: HttpRequest, url_name: str, view: Callable[..., Any]) -> HttpRequest:
    """What URL resolution leaves on a request: the middleware labels metrics by ``resolver_match.view_name``."""
    request.resolver_match = ResolverMatch(view, (), {}, url_name=url_name)
    return request


@pytest.fixture
def charts(make_chart: ChartFactory) -> tuple[Chart, Chart]:
    return make_chart(is_public=True), make_chart(is_public=True)


# -- Server-Timing after real requests -----------------------------------------------------------------------------


def test_server_timing_of_a_computing_natal_request(anon_client: APIClient, charts: tuple[Chart, Chart]) -> None:
    response = anon_client.get(natal_url(charts[0]))
    assert response.status_code == 200
    assert response.json()["source"] == "computed"
    timings = server_timing(response)
    assert {"app", "engine", "db", "rss"} <= set(timings), response["Server-Timing"]
    app = float(timings["app"])
    assert 0 < float(timings["engine"]) <= app
    assert 0 < float(timings["db"]) <= app
    assert re.fullmatch(r"[+-]\d+ KiB", timings["rss"]), timings["rss"]


def test_server_timing_of_a_computing_synastry_request(anon_client: APIClient, charts: tuple[Chart, Chart]) -> None:
    response = anon_client.get(synastry_url(*charts))
    assert response.status_code == 200
    assert response.json()["source"] == "computed"
    timings = server_timing(response)
    assert {"app", "engine", "db", "rss"} <= set(timings), response["Server-Timing"]
    assert float(timings["engine"]) <= float(timings["app"])


def test_a_request_served_from_the_cache_has_no_engine_part(
    anon_client: APIClient, charts: tuple[Chart, Chart]
) -> None:
    assert anon_client.get(synastry_url(*charts)).json()["source"] == "computed"
    response = anon_client.get(synastry_url(*charts))
    assert response.json()["source"] == "local"
    timings = server_timing(response)
    assert "engine" not in timings, response["Server-Timing"]
    assert {"app", "rss"} <= set(timings)


def test_every_response_has_server_timing_even_errors(anon_client: APIClient) -> None:
    for url, status in [("/api/aspects/charts/999999/natal/", 404), ("/no/such/page/", 404)]:
        response = anon_client.get(url)
        assert response.status_code == status
        assert {"app", "rss"} <= set(server_timing(response))
    response = anon_client.get("/api/aspects/configuration/")
    assert "engine" not in server_timing(response)


def test_db_time_is_measured_on_a_connection_opened_before_the_first_request() -> None:
    """A database connection opened before the middleware module was first imported (as a test runner, a
    management command or a query in an AppConfig.ready() does) must have its queries timed too."""
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment
        setup_test_environment()
        call_command("migrate", verbosity=0)  # opens the connection: the middleware is not imported yet
        from aspects_app.models import Chart
        chart = Chart(name="x", is_public=True)
        chart.set_positions(("Sun", "Moon", "Mercury"), [0.0, 120.0, 183.0], None)
        chart.save()
        response = Client().get(f"/api/aspects/charts/{chart.pk}/natal/")
        print(response.status_code, response["Server-Timing"])
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "ASPECTS_TEST_DB": "sqlite"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    status, header = done.stdout.strip().split(" ", 1)
    assert status == "200"
    assert "engine;dur=" in header, header
    assert "db;dur=" in header, f"queries on the already open connection were not timed: {header}"


# -- request metrics -----------------------------------------------------------------------------------------------


def test_request_counter_counts_exactly_the_requests_made(anon_client: APIClient, charts: tuple[Chart, Chart]) -> None:
    natal_before = requests_total(NATAL_VIEW, "200")
    synastry_before = requests_total(SYNASTRY_VIEW, "200")
    histogram_before = sample("aspects_request_seconds_count", view=NATAL_VIEW)
    sum_before = sample("aspects_request_seconds_sum", view=NATAL_VIEW)
    for _ in range(3):
        assert anon_client.get(natal_url(charts[0])).status_code == 200
    for _ in range(2):
        assert anon_client.get(synastry_url(*charts)).status_code == 200
    assert requests_total(NATAL_VIEW, "200") - natal_before == 3
    assert requests_total(SYNASTRY_VIEW, "200") - synastry_before == 2
    assert sample("aspects_request_seconds_count", view=NATAL_VIEW) - histogram_before == 3
    assert sample("aspects_request_seconds_sum", view=NATAL_VIEW) > sum_before
    # Every observation lands in the +Inf bucket, which equals the count.
    assert sample("aspects_request_seconds_bucket", view=NATAL_VIEW, le="+Inf") == sample(
        "aspects_request_seconds_count", view=NATAL_VIEW
    )


def test_error_statuses_are_labelled(
    anon_client: APIClient, alice_client: APIClient, charts: tuple[Chart, Chart]
) -> None:
    # DRF answers an anonymous write 401 or 403 depending on the first authenticator: ask once which.
    refused = str(anon_client.post("/api/aspects/charts/", {}, format="json").status_code)
    assert refused in ("401", "403")
    expected = {  # (view, status, method): requests
        (NATAL_VIEW, "404", "GET"): 1,
        (SYNASTRY_VIEW, "400", "GET"): 1,
        (SYNASTRY_VIEW, "404", "GET"): 1,
        ("unresolved", "404", "GET"): 2,
        ("aspects_api:chart-list", refused, "POST"): 1,
        ("aspects_api:chart-detail", refused, "PUT"): 1,
        ("aspects_api:chart-list", "400", "POST"): 1,
        (NATAL_VIEW, "200", "GET"): 0,
        ("unresolved", "200", "GET"): 0,
    }
    before = {key: requests_total(*key) for key in expected}
    assert anon_client.get("/api/aspects/charts/999999/natal/").status_code == 404
    assert anon_client.get("/api/aspects/synastry/?chart_a=x").status_code == 400
    assert anon_client.get(f"/api/aspects/synastry/?chart_a={charts[0].pk}&chart_b=999999").status_code == 404
    assert anon_client.get("/no/such/page/").status_code == 404
    assert anon_client.get("/neither/").status_code == 404
    assert str(anon_client.post("/api/aspects/charts/", {}, format="json").status_code) == refused
    assert str(anon_client.put(f"/api/aspects/charts/{charts[0].pk}/", {}, format="json").status_code) == refused
    assert alice_client.post("/api/aspects/charts/", {"name": "x"}, format="json").status_code == 400
    after = {key: requests_total(*key) for key in expected}
    assert {key: after[key] - before[key] for key in expected} == expected


def test_engine_work_and_part_seconds_after_a_computing_request(
    anon_client: APIClient, charts: tuple[Chart, Chart]
) -> None:
    hits_before = total("aspects_engine_work_total", kind="hits", source="api")
    pairs_before = total("aspects_engine_work_total", kind="pairs", source="api")
    engine_seconds_before = sample("aspects_request_part_seconds_total", part="engine")
    body = anon_client.get(synastry_url(*charts)).json()
    assert body["source"] == "computed"
    assert len(body["aspects"]) > 0
    assert total("aspects_engine_work_total", kind="hits", source="api") - hits_before == len(body["aspects"])
    assert total("aspects_engine_work_total", kind="pairs", source="api") - pairs_before == 1
    assert sample("aspects_request_part_seconds_total", part="engine") > engine_seconds_before
    # Served from the cache: no engine work is counted.
    hits_cached = total("aspects_engine_work_total", kind="hits", source="api")
    assert anon_client.get(synastry_url(*charts)).json()["source"] == "local"
    assert total("aspects_engine_work_total", kind="hits", source="api") == hits_cached


def test_cache_lookups_are_counted_per_level(anon_client: APIClient, charts: tuple[Chart, Chart]) -> None:
    levels = ("computed", "local", "shared", "database")
    before = {level: sample("aspects_cache_lookups_total", level=level) for level in levels}
    url = natal_url(charts[0])
    assert anon_client.get(url).json()["source"] == "computed"
    assert anon_client.get(url).json()["source"] == "local"
    result_cache().local.clear()  # the in-process level forgets: the shared cache answers
    assert anon_client.get(url).json()["source"] == "shared"
    result_cache().clear()  # both cache levels forget: the AspectResult row answers
    assert anon_client.get(url).json()["source"] == "database"
    deltas = {level: sample("aspects_cache_lookups_total", level=level) - before[level] for level in levels}
    assert deltas == dict.fromkeys(levels, 1)


# -- the metrics endpoints -----------------------------------------------------------------------------------------

METRICS_URL = "/api/aspects/metrics/"
SUMMARY_URL = "/api/aspects/metrics/summary/"


@pytest.mark.parametrize("url", [METRICS_URL, SUMMARY_URL])
def test_metrics_refuse_anonymous_and_normal_users(url: str, anon_client: APIClient, alice_client: APIClient) -> None:
    assert anon_client.get(url).status_code in (401, 403)
    assert alice_client.get(url).status_code == 403


def test_metrics_for_staff_is_prometheus_text(
    staff_client: APIClient, anon_client: APIClient, charts: tuple[Chart, Chart]
) -> None:
    anon_client.get(synastry_url(*charts))  # at least one request and some engine work to expose
    # Prometheus' own Accept header.
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = staff_client.get(METRICS_URL, HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    for name in (
        "aspects_requests",
        "aspects_request_seconds",
        "aspects_request_part_seconds",
        "aspects_engine_work",
        "aspects_cache_lookups",
    ):
        assert name in families, sorted(families)
    assert families["aspects_requests"].type == "counter"
    assert families["aspects_request_seconds"].type == "histogram"
    synastry = [
        s
        for s in families["aspects_requests"].samples
        if s.name == "aspects_requests_total" and s.labels.get("view") == SYNASTRY_VIEW
    ]
    assert synastry and all(s.labels["status"] and s.labels["method"] == "GET" for s in synastry)
    assert synastry[0].value >= 1


def test_metrics_summary_is_json(staff_client: APIClient, anon_client: APIClient, charts: tuple[Chart, Chart]) -> None:
    anon_client.get(natal_url(charts[0]))
    response = staff_client.get(SUMMARY_URL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"metrics", "cache"}
    assert "aspects_requests" in body["metrics"]
    assert all(name.startswith("aspects_") for name in body["metrics"])
    views = {s["labels"].get("view") for s in body["metrics"]["aspects_requests"]}
    assert NATAL_VIEW in views
    assert {"local", "shared"} <= set(body["cache"])
    assert body["cache"]["local"]["sets"] >= 1


@override_settings(ASPECTS={"METRICS_TOKEN": "s3cret"})
@pytest.mark.parametrize("url", [METRICS_URL, SUMMARY_URL])
def test_metrics_token(url: str, db: None) -> None:
    scraper = APIClient()
    scraper.credentials(HTTP_AUTHORIZATION="Bearer s3cret")
    assert scraper.get(url).status_code == 200
    for wrong in ("Bearer s3cre", "Bearer s3cret2", "Bearer ", "Token s3cret", "s3cret", "bearer s3cret"):
        intruder = APIClient()
        intruder.credentials(HTTP_AUTHORIZATION=wrong)
        assert intruder.get(url).status_code in (401, 403), wrong


@pytest.mark.parametrize("configured", [None, ""])
def test_no_token_configured_admits_no_bearer(configured: str | None, db: None) -> None:
    with override_settings(ASPECTS={"METRICS_TOKEN": configured}):
        for header in ("Bearer None", "Bearer ", "Bearer"):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=header)
            assert client.get(METRICS_URL).status_code in (401, 403), header


# -- multi-process mode --------------------------------------------------------------------------------------------

INCREMENT = """
import os, sys
from aspects_app import metrics
n = int(sys.argv[1])
for _ in range(n):
    metrics.REQUESTS.labels(view="mp-view", method="GET", status="200").inc()
    metrics.REQUEST_SECONDS.labels(view="mp-view").observe(0.003)
metrics.REQUESTS.labels(view="mp-view", method="GET", status=f"worker-{os.getpid()}").inc()
metrics.ENGINE_PEAK_MEMORY.labels(source="batch").set(float(sys.argv[2]))
metrics.record_engine("api", "numpy", hits=n * 10, pairs=n)
"""

COLLECT = """
import json, sys
from aspects_app import metrics
body, content_type = metrics.exposition()
sys.stdout.write(json.dumps({"body": body.decode(), "content_type": content_type, "summary": metrics.summary()}))
"""


def test_multiprocess_workers_add_up(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}

    def python(code: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    python(INCREMENT, "3", "5.0")
    python(INCREMENT, "4", "9.0")
    assert len(list(directory.glob("*.db"))) >= 2  # each worker wrote its own files
    collected = json.loads(python(COLLECT))
    assert collected["content_type"].startswith("text/plain")
    samples = [s for f in text_string_to_metric_families(collected["body"]) for s in f.samples]

    def value(name: str, **labels: str) -> float:
        found = [s.value for s in samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    assert value("aspects_requests_total", view="mp-view", method="GET", status="200") == 7
    workers = [s for s in samples if s.name == "aspects_requests_total" and s.labels["status"].startswith("worker-")]
    assert len(workers) == 2 and all(s.value == 1 for s in workers)
    assert value("aspects_request_seconds_count", view="mp-view") == 7
    assert value("aspects_request_seconds_bucket", view="mp-view", le="0.005") == 7
    assert value("aspects_request_seconds_bucket", view="mp-view", le="0.0025") == 0
    assert value("aspects_engine_work_total", kind="hits", backend="numpy", source="api") == 70
    assert value("aspects_engine_work_total", kind="pairs", backend="numpy", source="api") == 7
    assert value("aspects_engine_peak_memory_mb", source="batch") == 9.0  # multiprocess_mode="max"
    summary = collected["summary"]["aspects_requests"]
    assert sum(s["value"] for s in summary if s["labels"].get("status") == "200") == 7


# -- the middleware called directly: async stack, exceptions -------------------------------------------------------


def test_middleware_in_an_async_stack() -> None:
    async def engine_view(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.005)  # let the other requests start: their timings are open at the same time
        timings = timing.current.get()
        assert timings is not None
        timings.add("engine", float(request.GET["engine"]))  # exact amounts, to see any mixing
        with timing.timed("cache"):
            await asyncio.sleep(0.02)
        return HttpResponse("computed")

    async def plain_view(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.03)  # still running while the others record their engine time
        return HttpResponse("plain")

    engine_mw, plain_mw = MonitoringMiddleware(engine_view), MonitoringMiddleware(plain_view)
    assert iscoroutinefunction(engine_mw) and iscoroutinefunction(plain_mw)
    factory = AsyncRequestFactory()
    before = {
        "engine": requests_total("async-engine", "200"),
        "plain": requests_total("async-plain", "200"),
        "histogram": sample("aspects_request_seconds_count", view="async-engine"),
    }

    async def concurrently() -> list[HttpResponse]:
        return await asyncio.gather(
            engine_mw(resolved(factory.get("/engine/?engine=0.02"), "async-engine", engine_view)),
            plain_mw(resolved(factory.get("/plain/"), "async-plain", plain_view)),
            engine_mw(resolved(factory.get("/engine/?engine=0.05"), "async-engine", engine_view)),
        )

    first, plain, second = asyncio.run(concurrently())
    for response, engine in ((first, "20.00"), (second, "50.00")):
        timings = server_timing(response)
        assert timings["engine"] == engine, "timings mixed between concurrent requests: " + response["Server-Timing"]
        assert float(timings["cache"]) >= 15.0, response["Server-Timing"]  # timed() around an await
        assert float(timings["app"]) >= float(timings["cache"])
        assert re.fullmatch(r"[+-]\d+ KiB", timings["rss"])
    plain_timings = server_timing(plain)
    assert "engine" not in plain_timings, "timings leaked between concurrent requests: " + plain["Server-Timing"]
    assert "cache" not in plain_timings, plain["Server-Timing"]
    assert float(plain_timings["app"]) >= 25.0
    assert requests_total("async-engine", "200") - before["engine"] == 2
    assert requests_total("async-plain", "200") - before["plain"] == 1
    assert sample("aspects_request_seconds_count", view="async-engine") - before["histogram"] == 2
    assert timing.current.get() is None


def test_async_view_that_raises() -> None:
    async def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("async boom")

    middleware = MonitoringMiddleware(broken)
    before = requests_total("async-broken", "500")
    with pytest.raises(RuntimeError, match="async boom"):
        asyncio.run(middleware(resolved(AsyncRequestFactory().get("/broken/"), "async-broken", broken)))
    assert requests_total("async-broken", "500") - before == 1
    assert timing.current.get() is None


def test_sync_path_records_and_sets_the_header() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        assert timing.current.get() is not None  # the request's timings are open below the middleware
        with timing.timed("cache"):
            pass
        return HttpResponse(status=201)

    middleware = MonitoringMiddleware(view)
    assert not iscoroutinefunction(middleware)
    before = requests_total("sync-ok", "201", method="POST")
    response = middleware(resolved(RequestFactory().post("/ok/"), "sync-ok", view))
    assert {"app", "cache", "rss"} <= set(server_timing(response))
    assert "engine" not in server_timing(response)
    assert requests_total("sync-ok", "201", method="POST") - before == 1
    assert timing.current.get() is None


def test_sync_exception_propagates_is_counted_as_500_and_resets_the_timings() -> None:
    seen: list[timing.RequestTimings | None] = []

    def broken(request: HttpRequest) -> HttpResponse:
        request.resolver_match = ResolverMatch(broken, (), {}, url_name="sync-broken")
        seen.append(timing.current.get())
        with timing.timed("engine"):
            raise ValueError("sync boom")

    middleware = MonitoringMiddleware(broken)
    before = requests_total("sync-broken", "500")
    engine_before = sample("aspects_request_part_seconds_total", part="engine")
    assert timing.current.get() is None
    with pytest.raises(ValueError, match="sync boom"):
        middleware(RequestFactory().get("/broken/"))
    assert seen and seen[0] is not None
    assert requests_total("sync-broken", "500") - before == 1
    assert sample("aspects_request_part_seconds_total", part="engine") > engine_before
    assert timing.current.get() is None  # reset: the next request in this thread starts clean


def test_timed_outside_a_request_only_runs_the_block() -> None:
    assert timing.current.get() is None
    ran = []
    with timing.timed("engine"):
        ran.append(1)
    assert ran == [1]
    assert timing.current.get() is None


# -- django-silk ---------------------------------------------------------------------------------------------------


@pytest.fixture
def silk_rows(db: None) -> Callable[[], tuple[int, int]]:
    from silk.models import Profile, Request

    return lambda: (Request.objects.count(), Profile.objects.count())


def test_silk_records_a_request_and_its_service_call_when_enabled(
    anon_client: APIClient, charts: tuple[Chart, Chart], silk_rows: Callable[[], tuple[int, int]]
) -> None:
    from silk.models import Profile, Request

    assert silk_rows() == (0, 0)
    url = natal_url(charts[0])
    with override_settings(SILK_RECORDING=True):
        response = anon_client.get(url)
        assert response.status_code == 200
        assert response.json()["source"] == "computed"
        synastry = anon_client.get(synastry_url(*charts))
        assert synastry.status_code == 200
    recorded = Request.objects.get(path=url)
    assert recorded.method == "GET"
    assert recorded.response.status_code == 200
    names = sorted(Profile.objects.values_list("name", flat=True))
    assert names == ["natal aspects", "synastry aspects"], names
    profile = Profile.objects.get(name="natal aspects")
    assert profile.request_id == recorded.pk
    assert profile.end_time is not None and profile.end_time >= profile.start_time
    assert Request.objects.count() == 2


def test_silk_records_nothing_when_disabled(
    anon_client: APIClient, charts: tuple[Chart, Chart], silk_rows: Callable[[], tuple[int, int]]
) -> None:
    assert anon_client.get(natal_url(charts[0])).json()["source"] == "computed"
    assert anon_client.get(synastry_url(*charts)).json()["source"] == "computed"
    assert silk_rows() == (0, 0)


def test_silk_wrapper_is_silent_outside_a_recorded_request(
    anon_client: APIClient, charts: tuple[Chart, Chart], caplog: pytest.LogCaptureFixture
) -> None:
    """profiling.silk_profile promises to cost nothing when the request is not recorded: no log record either
    (a WARNING per engine call would flood the logs and alerting of every host that installs silk)."""
    caplog.set_level(logging.DEBUG)
    assert anon_client.get(natal_url(charts[0])).json()["source"] == "computed"
    noise = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name.startswith("silk")]
    assert noise == []


def test_silk_ui_is_for_staff_only(alice: Any, staff: Any) -> None:
    anonymous = Client()
    response = anonymous.get("/silk/")
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert "/silk/" not in response["Location"].split("?")[0]
    normal = Client()
    normal.force_login(alice)
    assert normal.get("/silk/").status_code == 403
    admin = Client()
    admin.force_login(staff)
    assert admin.get("/silk/").status_code == 200


def test_silk_ui_refuses_basic_auth_of_a_normal_user(alice_client: APIClient) -> None:
    assert alice_client.get("/silk/").status_code in (302, 403)


# -- system checks -------------------------------------------------------------------------------------------------


def ids() -> list[str]:
    return [message.id for message in checks.check_monitoring()]


def test_no_monitoring_messages_for_the_test_settings() -> None:
    assert checks.check_monitoring() == []


def test_w003_when_monitoring_is_not_first() -> None:
    from django.conf import settings

    rest = [m for m in settings.MIDDLEWARE if m != MONITORING]
    with override_settings(MIDDLEWARE=[rest[0], MONITORING, *rest[1:]]):
        assert ids() == ["aspects_app.W003"]
    with override_settings(MIDDLEWARE=[*rest, MONITORING]):
        assert ids() == ["aspects_app.W003"]
    with override_settings(MIDDLEWARE=[MONITORING, *rest]):
        assert ids() == []
    with override_settings(MIDDLEWARE=rest):  # not installed at all: nothing to order
        assert "aspects_app.W003" not in ids()


def test_e004_when_silk_is_installed_without_its_middleware() -> None:
    with override_settings(MIDDLEWARE=[MONITORING, "django.contrib.sessions.middleware.SessionMiddleware"]):
        messages = checks.check_monitoring()
    assert [m.id for m in messages] == ["aspects_app.E004"]
    assert messages[0].is_serious()


@pytest.mark.parametrize("setting", ["SILKY_AUTHORISATION", "SILKY_AUTHENTICATION"])
def test_w004_when_silk_is_open(setting: str) -> None:
    with override_settings(**{setting: False}):
        assert ids() == ["aspects_app.W004"]


def test_no_silk_messages_when_silk_is_not_installed() -> None:
    from django.conf import settings

    apps_without_silk = [a for a in settings.INSTALLED_APPS if a != "silk"]
    middleware = [m for m in settings.MIDDLEWARE if m != SILK]
    with override_settings(INSTALLED_APPS=apps_without_silk, MIDDLEWARE=middleware, SILKY_AUTHORISATION=False):
        assert ids() == []


def test_checks_are_registered_with_django() -> None:
    from django.core.checks import run_checks

    with override_settings(SILKY_AUTHORISATION=False):
        assert "aspects_app.W004" in [m.id for m in run_checks()]
