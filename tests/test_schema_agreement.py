"""The OpenAPI schema says what the server answers: error responses, bulk/'s plain list, JSON-only bodies, and a
metrics 403 that reads as text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

API = "/api/aspects/"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    raw = SchemaGenerator().get_schema(request=None, public=True)
    result: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(raw))
    return result


def operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    result: dict[str, Any] = document["paths"][f"{API}{path}"][method]
    return result


def test_error_responses_are_documented(document: dict[str, Any]) -> None:
    detail = operation(document, "charts/{id}/", "patch")["responses"]
    assert {"400", "403", "404", "415", "429"} <= set(detail)
    assert detail["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationError")
    assert detail["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "Retry-After" in detail["429"]["headers"]
    synastry = operation(document, "synastry/", "get")["responses"]
    assert {"400", "403", "404", "429"} <= set(synastry)  # charts named in the query may be invisible
    configuration = operation(document, "configuration/", "get")["responses"]
    assert "400" not in configuration and "404" not in configuration
    assert {"403", "429"} <= set(configuration)  # bad Basic credentials, and their throttle
    metrics = operation(document, "metrics/", "get")["responses"]["403"]
    assert set(metrics["content"]) == {"text/plain"}


def test_bodies_are_json_only(document: dict[str, Any], alice_client: APIClient) -> None:
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if "requestBody" in op:
                assert set(op["requestBody"]["content"]) == {"application/json"}, (method, path)
    body = {"name": "x", "position_input": json.dumps({"longitudes": [1.0, 2.0], "points": ["Sun", "Moon"]})}
    response = alice_client.post(f"{API}charts/", body, format="multipart")
    assert response.status_code == 415
    assert "detail" in response.json()


def test_bulk_answers_the_plain_list_the_schema_says(document: dict[str, Any], alice_client: APIClient) -> None:
    created = operation(document, "charts/bulk/", "post")["responses"]["201"]["content"]["application/json"]
    assert created["schema"]["type"] == "array"
    assert "parameters" not in operation(document, "charts/bulk/", "post")  # the list's filters do not apply
    body = {"charts": [{"name": "x", "position_input": {"longitudes": [10.0, 20.0], "points": ["Sun", "Moon"]}}]}
    response = alice_client.post(f"{API}charts/bulk/", body, format="json")
    assert response.status_code == 201
    assert isinstance(response.json(), list)


def test_metrics_refusal_reads_as_text() -> None:
    response = APIClient().get(f"{API}metrics/")
    assert response.status_code == 403
    text = response.content.decode()
    assert "ErrorDetail" not in text and "{" not in text
    assert text.strip() == "Authentication credentials were not provided."


def test_matches_query_bounds_and_methods_match_the_server(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p["schema"] for p in operation(document, "charts/{id}/matches/", "get")["parameters"]}
    assert parameters["k"]["minimum"] == 1 and parameters["k"]["maximum"] == 100  # k=0 is a 400
    assert set(parameters["method"]["enum"]) == {"discepolo", "weighted", "harmonic"}


def test_an_unknown_path_under_the_prefix_is_a_json_404(settings: Any) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]  # as hosts have
    client = APIClient(enforce_csrf_checks=True)
    client.cookies["sessionid"] = "x"  # a browser's cookie must not turn it into CSRF's HTML 403
    for path in ("jobs/2.5e-181/", "charts/1.5/natal/", "no-such-thing/", "charts/-1/wheel.svg"):
        response = client.delete(f"{API}{path}") if path.startswith("jobs") else client.get(f"{API}{path}")
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "Not found."}


def test_list_filters_pages_and_throttle_answers_are_documented_as_served(document: dict[str, Any]) -> None:
    listing = operation(document, "charts/", "get")
    parameters = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert parameters["mine"]["type"] == "boolean"  # the server refuses anything but true/false/1/0
    assert parameters["updated_after"] == {"type": "string", "format": "date-time"}
    assert "404" in listing["responses"]  # page past the end: DRF's "Invalid page."
    quota = document["components"]["schemas"]["QuotaError"]
    assert "limit" not in quota.get("required", [])  # a failed-login 429 on POST jobs/ carries only detail


def test_an_empty_updated_after_is_a_400_naming_it(alice_client: APIClient) -> None:
    """The schema says date-time; django-filter read ``updated_after=`` as "no filter" and listed every chart."""
    response = alice_client.get(f"{API}charts/?updated_after=")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["updated_after"]
    assert alice_client.get(f"{API}charts/?updated_after=2020-01-01T00:00:00Z").status_code == 200


def test_a_budget_too_small_for_one_pair_is_reported_not_refused(
    document: dict[str, Any], anon_client: APIClient
) -> None:
    """Each field alone is valid, so the answer is a plan saying it does not fit (a 400 for a valid body is what
    schemathesis' positive_data_acceptance flags), and the smallest budget that does."""
    body = {"num_charts1": 10, "num_charts2": 10, "num_planets": 255, "working_memory_mb": 1}
    response = anon_client.post(f"{API}estimate/", body, format="json")
    assert response.status_code == 200, response.content
    plan = response.json()
    assert plan["fits"] is False
    assert plan["working_memory_mb"] == 1
    assert plan["minimum_working_memory_mb"] > 1
    at_minimum = anon_client.post(
        f"{API}estimate/", {**body, "working_memory_mb": plan["minimum_working_memory_mb"] + 0.01}, format="json"
    ).json()
    assert at_minimum["fits"] is True
    assert at_minimum["chunks"] == plan["chunks"]  # the plan shown was the one at the minimum
    assert {"fits", "minimum_working_memory_mb"} <= set(
        document["components"]["schemas"]["EstimateResponse"]["required"]
    )


def test_request_bodies_say_what_the_server_refuses(document: dict[str, Any]) -> None:
    """Found by schemathesis' positive_data_acceptance against gunicorn (tests/test_api_live_fuzz.py)."""
    schemas = document["components"]["schemas"]
    for name in ("EstimateRequest", "ChartRequest", "PatchedChartRequest", "BulkChartRequest", "JobRequestRequest"):
        assert schemas[name]["additionalProperties"] is False, name  # unknown fields are 400s
    assert schemas["BulkChartRequest"]["properties"]["charts"]["minItems"] == 1
    matches = {p["name"]: p["schema"] for p in operation(document, "charts/{id}/matches/", "get")["parameters"]}
    assert sorted(matches["orbs"]["enum"]) == ["all", "default"]  # orbs= (empty) was a schema-valid 400


@pytest.mark.parametrize("value", ["7.5e-143", "0", "-3", "ten", ""])
def test_a_page_size_that_is_not_a_positive_integer_is_a_400(alice_client: APIClient, value: str) -> None:
    """DRF served the default page for any of these; the schema says an integer of at least 1."""
    response = alice_client.get(f"{API}charts/?page_size={value}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["page_size"]
    assert alice_client.get(f"{API}charts/?page_size=1000").status_code == 200  # above 500: pages of 500


def test_orbs_in_a_query_is_documented_as_text(document: dict[str, Any]) -> None:
    """As an object schema, clients spread it over the query (``trine=6``), which the server ignores."""
    natal = {p["name"]: p for p in operation(document, "charts/{id}/natal/", "get")["parameters"]}
    assert natal["orbs"]["schema"] == {"type": "string", "enum": ["default", "all"]}
    assert "JSON" in natal["orbs"]["description"]
