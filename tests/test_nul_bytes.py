"""A NUL byte in any request value that reaches the database: PostgreSQL refuses NUL in text (psycopg.DataError, a
500), SQLite accepts it. Each must answer a 4xx, or be treated as absent, on both. CI runs this file with
ASPECTS_TEST_DB=postgres too (tests/test_abuse.py checks that the variable really selects PostgreSQL).

* The session cookie: its value is the key of the session row looked up for every request with a cookie, so a NUL
  in it was a 500 on every endpoint for anonymous callers. It now counts as no session, and the answer deletes it.
* Query parameters whose values meet the database (``name``, ``updated_after``, ``run``, ``chart_a``...): each
  is parsed (integer, date-time, boolean) or validated (text refuses NUL) before it reaches a query.
* Basic credentials with NUL are tests/test_abuse.py's.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from aspects_app.models import Chart

from .conftest import ChartFactory, client_for, positions_payload

API = "/api/aspects"
CHARTS = f"{API}/charts/"
NUL_SESSION_KEYS = {
    "nul inside": "abcdefgh\x00ijklmnopqrstuvwxyz012345",
    "only nuls": "\x00" * 32,
    "escape character": "abcdefgh\x1bijklmnopqrstuvwxyz012345",
}


def lenient(client: APIClient) -> APIClient:
    """A client that returns a server error's response instead of raising the view's exception."""
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize("key", list(NUL_SESSION_KEYS.values()), ids=list(NUL_SESSION_KEYS))
def test_a_session_cookie_with_a_control_character_is_no_session(db: None, key: str) -> None:
    client = lenient(APIClient())
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    listed = client.get(CHARTS)
    assert listed.status_code == 200, listed.content  # anonymous: the public charts
    # The session the request ends with is empty, so the session middleware tells the client to drop the cookie.
    assert listed.cookies[settings.SESSION_COOKIE_NAME].value == ""
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    created = client.post(CHARTS, positions_payload(), format="json")
    assert created.status_code == 403, created.content  # writing needs an account; nothing was looked up
    assert created["Content-Type"].startswith("application/json")
    assert not Chart.objects.exists()


def test_a_session_cookie_with_a_control_character_does_not_hide_basic_credentials(alice: Any) -> None:
    client = lenient(client_for(alice))
    client.cookies[settings.SESSION_COOKIE_NAME] = NUL_SESSION_KEYS["nul inside"]
    response = client.post(CHARTS, positions_payload(), format="json")
    assert response.status_code == 201, response.content


def test_a_real_session_still_authenticates(alice: Any) -> None:
    client = lenient(APIClient())
    client.force_login(alice)
    response = client.post(CHARTS, positions_payload(), format="json")
    assert response.status_code == 201, response.content
    assert Chart.objects.get().owner == alice


def test_an_unknown_session_key_is_no_session(db: None) -> None:
    client = lenient(APIClient())
    client.cookies[settings.SESSION_COOKIE_NAME] = "abcdefghijklmnopqrstuvwxyz012345"
    assert client.post(CHARTS, positions_payload(), format="json").status_code == 403


NUL_QUERIES = {
    "name": ("", "name=a%00b", "name"),
    "updated_after": ("", "updated_after=2020-01-01T00:00:00%00", "updated_after"),
    "is_public": ("", "is_public=true%00", "is_public"),
    "run": ("{id}/matches/", "stored=1&run=1%00", "run"),
    "k": ("{id}/matches/", "k=1%00", "k"),
    "method": ("{id}/matches/", "method=weighted%00", "method"),
    "orbs": ("{id}/natal/", "orbs=default%00", "orbs"),
}


@pytest.mark.parametrize("path, query, field", list(NUL_QUERIES.values()), ids=list(NUL_QUERIES))
def test_a_query_parameter_with_a_nul_is_a_400_naming_it(
    alice: Any, make_chart: ChartFactory, path: str, query: str, field: str
) -> None:
    chart = make_chart(owner=alice)
    response = lenient(client_for(alice)).get(f"{CHARTS}{path.format(id=chart.pk)}?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_synastry_chart_ids_with_a_nul_are_a_400_naming_them(alice: Any, make_chart: ChartFactory) -> None:
    a, b = make_chart(owner=alice), make_chart(owner=alice)
    response = lenient(client_for(alice)).get(f"{API}/synastry/?chart_a={a.pk}%00&chart_b={b.pk}")
    assert response.status_code == 400, response.content
    assert "chart_a" in response.json()


@pytest.mark.parametrize("url", [f"{CHARTS}1%00/", f"{API}/jobs/1%00/"])
def test_an_id_with_a_nul_is_a_404(alice: Any, url: str) -> None:
    response = lenient(client_for(alice)).get(url)
    assert response.status_code == 404, response.content
