"""Request hygiene (issue 13): booleans are not numbers, unknown fields and unknown boolean spellings are errors,
local times in a DST gap or fold need an explicit ``fold``, orbs carry no float noise, and the schema documents the
constraints the server enforces."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from aspects_app.models import Chart

from .conftest import ChartFactory, birth_payload, positions_payload

API = "/api/aspects"
CHARTS = f"{API}/charts/"


def assert_400(response: Any, *path: str | int) -> Any:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    body = response.json()
    for key in path:
        assert key in body, body
        body = body[key]
    return body


# -- booleans are not numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["latitude", "longitude"])
def test_a_boolean_coordinate_is_refused(alice_client: APIClient, field: str) -> None:
    assert_400(alice_client.post(CHARTS, birth_payload(**{field: True}), format="json"), field)
    assert not Chart.objects.exists()


def test_boolean_longitudes_and_speeds_are_refused(alice_client: APIClient) -> None:
    body = {"position_input": {"points": ["Sun", "Moon"], "longitudes": [10.0, True]}}
    assert_400(alice_client.post(CHARTS, body, format="json"), "position_input", "longitudes")
    body = {"position_input": {"points": ["Sun"], "longitudes": [10.0], "speeds": [False]}}
    assert_400(alice_client.post(CHARTS, body, format="json"), "position_input", "speeds")


def test_a_boolean_working_memory_is_refused(anon_client: APIClient) -> None:
    response = anon_client.post(f"{API}/estimate/", {"num_charts1": 10, "working_memory_mb": True}, format="json")
    assert_400(response, "working_memory_mb")


# -- unknown fields -----------------------------------------------------------------------------------------------


def test_an_unknown_chart_field_is_named(alice_client: APIClient) -> None:
    body = assert_400(alice_client.post(CHARTS, birth_payload(is_publc=True), format="json"), "is_publc")
    assert list(body) == ["unknown field"]
    assert not Chart.objects.exists()


def test_unknown_fields_inside_position_input_and_bulk_items_are_named(alice_client: APIClient) -> None:
    body = positions_payload()
    body["position_input"]["speed"] = [1.0]
    assert_400(alice_client.post(CHARTS, body, format="json"), "position_input", "speed")
    response = alice_client.post(f"{CHARTS}bulk/", {"charts": [birth_payload(colour="red")]}, format="json")
    assert "colour" in str(assert_400(response, "charts"))
    assert_400(alice_client.post(f"{CHARTS}bulk/", {"charts": [birth_payload()], "dry": 1}, format="json"), "dry")


def test_an_unknown_field_in_a_patch_is_named(alice_client: APIClient, make_chart: ChartFactory, alice: Any) -> None:
    chart = make_chart(alice)
    assert_400(alice_client.patch(f"{CHARTS}{chart.pk}/", {"nmae": "x"}, format="json"), "nmae")


def test_read_only_fields_sent_back_are_still_accepted(alice_client: APIClient) -> None:
    created = alice_client.post(CHARTS, birth_payload(), format="json").json()
    echoed = {**created, "name": "renamed"}
    del echoed["owner"]
    response = alice_client.put(f"{CHARTS}{created['id']}/", echoed, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"


def test_an_unknown_field_in_a_scores_body_is_named(alice_client: APIClient, make_chart: ChartFactory) -> None:
    a, b = make_chart(is_public=True), make_chart(is_public=True)
    response = alice_client.post(f"{CHARTS}{a.pk}/scores/", {"charts": [b.pk], "metod": "x"}, format="json")
    assert_400(response, "metod")


# -- booleans in the list filter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["is_public", "mine"])
def test_an_unknown_boolean_spelling_in_the_filter_is_refused(anon_client: APIClient, param: str) -> None:
    assert_400(anon_client.get(CHARTS, {param: "maybe"}), param)


def test_the_filter_still_reads_true_false_and_nothing(alice_client: APIClient, make_chart: ChartFactory) -> None:
    public, private = make_chart(is_public=True), make_chart(is_public=False)
    ids = {v: [c["id"] for c in alice_client.get(CHARTS, {"is_public": v}).json()["results"]] for v in ("true", "0")}
    assert ids == {"true": [public.pk], "0": []}  # alice sees no private chart of others
    assert [c["id"] for c in alice_client.get(CHARTS).json()["results"]] == [public.pk]
    assert private.pk not in ids["0"]


# -- DST gaps and folds -------------------------------------------------------------------------------------------

GAP = "2021-03-28T02:30:00"  # Paris skipped 02:00–03:00
FOLD = "2021-10-31T02:30:00"  # Paris showed 02:00–03:00 twice


@pytest.mark.parametrize("local", [GAP, FOLD])
def test_a_local_time_in_a_gap_or_fold_is_refused_without_fold(alice_client: APIClient, local: str) -> None:
    body = birth_payload(birth_datetime=local, time_zone="Europe/Paris")
    message = str(assert_400(alice_client.post(CHARTS, body, format="json"), "birth_datetime"))
    assert "fold" in message and "DST" in message
    assert not Chart.objects.exists()


@pytest.mark.parametrize(
    ("local", "fold", "utc"),
    [
        (FOLD, 0, "2021-10-31T00:30:00Z"),
        (FOLD, 1, "2021-10-31T01:30:00Z"),
        (GAP, 0, "2021-03-28T01:30:00Z"),  # read with the offset before the change (+01:00)
        (GAP, 1, "2021-03-28T00:30:00Z"),  # and with the one after (+02:00)
    ],
)
def test_fold_resolves_the_local_time(alice_client: APIClient, local: str, fold: int, utc: str) -> None:
    body = birth_payload(birth_datetime=local, time_zone="Europe/Paris", fold=fold)
    response = alice_client.post(CHARTS, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["birth_datetime"] == utc
    assert "fold" not in response.json()


def test_an_ordinary_local_time_needs_no_fold_and_fold_must_be_0_or_1(alice_client: APIClient) -> None:
    body = birth_payload(birth_datetime="2021-06-01T12:00:00", time_zone="Europe/Paris")
    assert alice_client.post(CHARTS, body, format="json").json()["birth_datetime"] == "2021-06-01T10:00:00Z"
    assert_400(alice_client.post(CHARTS, {**body, "fold": 2}, format="json"), "fold")
    assert_400(alice_client.post(CHARTS, {**body, "fold": True}, format="json"), "fold")


# -- float noise --------------------------------------------------------------------------------------------------


def test_orbs_in_responses_carry_no_float_noise(anon_client: APIClient, make_chart: ChartFactory) -> None:
    chart = make_chart(is_public=True, points=["Sun", "Moon"], longitudes=[0.0, 120.3], speeds=None)
    assert abs(120.3 - 120.0) != 0.3  # the noise the engine's own arithmetic carries
    body = anon_client.get(f"{CHARTS}{chart.pk}/natal/").json()
    assert [(a["aspect"], a["orb"]) for a in body["aspects"]] == [("trine", 0.3)]


# -- the schema matches the server --------------------------------------------------------------------------------


@pytest.fixture
def schema(anon_client: APIClient) -> dict[str, Any]:
    response = anon_client.get(f"{API}/schema/", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _orbs_object(field_schema: dict[str, Any]) -> dict[str, Any]:
    (obj,) = [option for option in field_schema["oneOf"] if option.get("type") == "object"]
    return obj


def test_the_schema_refuses_empty_orbs_as_the_server_does(
    schema: dict[str, Any], anon_client: APIClient, make_chart: ChartFactory
) -> None:
    orbs = schema["components"]["schemas"]["ScoresRequestRequest"]["properties"]["orbs"]
    assert _orbs_object(orbs)["minProperties"] == 1
    (strings,) = [option for option in orbs["oneOf"] if option.get("type") == "string"]
    assert "" not in strings["enum"]
    chart = make_chart(is_public=True)
    for orbs_value in ({}, ""):
        response = anon_client.post(
            f"{CHARTS}{chart.pk}/scores/", {"charts": [chart.pk], "orbs": orbs_value}, format="json"
        )
        assert_400(response, "orbs")


def test_the_natal_query_is_documented_from_its_serializer(schema: dict[str, Any]) -> None:
    natal = schema["paths"]["/api/aspects/charts/{id}/natal/"]["get"]
    params = {p["name"]: p for p in natal["parameters"]}
    # In a query an object is JSON text (aspects_app.api.schema.ORBS_QUERY_PARAMETER); in a body, an object.
    assert params["orbs"]["schema"]["enum"] == ["default", "all"]
    body = schema["components"]["schemas"]["ScoresRequestRequest"]["properties"]["orbs"]
    assert _orbs_object(body)["minProperties"] == 1


def test_the_schema_documents_fold(schema: dict[str, Any]) -> None:
    fold = schema["components"]["schemas"]["ChartRequest"]["properties"]["fold"]
    assert "PEP 495" in fold["description"]


BEYOND_64_BITS = 2**63  # names no row; SQLite raised OverflowError (a 500) when it reached a query


@pytest.mark.parametrize(
    "method, path, payload, field",
    [
        ("post", "charts/{id}/scores/", {"charts": [BEYOND_64_BITS]}, "charts"),
        ("post", "jobs/", {"modes": ["natal"], "charts": [BEYOND_64_BITS]}, "charts"),
        ("post", "jobs/", {"modes": ["natal"], "with_charts": [BEYOND_64_BITS]}, "with_charts"),
        ("get", f"synastry/?chart_a={BEYOND_64_BITS}&chart_b=1", None, "chart_a"),
        ("get", f"charts/{{id}}/matches/?stored=1&run={BEYOND_64_BITS}", None, "run"),
    ],
)
def test_an_id_beyond_64_bits_is_a_400_naming_it(
    alice_client: APIClient, make_chart: ChartFactory, method: str, path: str, payload: Any, field: str
) -> None:
    chart = make_chart(is_public=True)
    url = f"{API}/{path.replace('{id}', str(chart.pk))}"
    response = alice_client.post(url, payload, format="json") if method == "post" else alice_client.get(url)
    assert_400(response, field)
