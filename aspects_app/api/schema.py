"""drf-spectacular's AutoSchema with the API's error answers documented on each operation that can give them.

drf-spectacular documents the success answers only, so a client (or schemathesis) met undocumented 400s, 403s and
404s. Which errors an operation can answer follows from the view, not from a list kept by hand:

* 400 ``ValidationError``: the operation takes a body or query parameters (each key names a field);
* 401 / 403 ``Error``: every operation, since credentials are checked before anything else (401 when the first
  authentication class sends a challenge, e.g. Basic first; with SessionAuthentication first DRF answers 403);
  403 is also a permission refused;
* 404 ``Error``: a path parameter, or charts named by id in the query or body (``chart_a``, ``charts``...);
* 415 ``Error``: the operation takes a body, and the API parses JSON only;
* 429 ``Error`` with ``Retry-After``: the view is throttled, or Basic credentials are accepted (failed logins
  are throttled before any password is hashed).

Request bodies whose serializer refuses unknown fields (``RejectUnknownFields``) are ``additionalProperties:
false``.

Answers an operation declares itself (``@extend_schema(responses=...)``) are kept; one declared without a body
gets the error body. Views that render plain text (the Prometheus metrics) document their errors as text.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.authentication import BaseAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.serializers import IntegerField, ListField, ListSerializer, Serializer

from ..conf import get_config
from ..engine.aspects import ORB_PRESETS
from .authentication import BasicAuthentication
from .serializers import RejectUnknownFields

# Query or body fields that name stored charts by id: a chart the caller may not see answers 404.
CHART_REFERENCE_FIELDS = frozenset({"chart_a", "chart_b", "charts", "with_charts"})

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong, for a person to read."}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Each key names an offending field (`non_field_errors`: the body as a whole) with its "
    "messages; fields of nested objects and lists nest the same shape. A body that cannot be parsed answers "
    "`{detail}` instead.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
            {"type": "object"},
            {"type": "string"},
        ]
    },
}
RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the limit lets a request through."}
}

# ``orbs`` in a query string: a preset name, or an object as JSON text. Its body schema (a preset or an object)
# would tell clients to spread the object over the query (``trine=6&square=5``), which the server ignores.
ORBS_QUERY_PARAMETER: dict[str, Any] = {
    "schema": {"type": "string", "enum": list(ORB_PRESETS)},
    "description": "An orb preset (default, all), or an object {aspect: orb} as JSON text: "
    '``orbs={"trine": 6}`` (URL-encoded).',
}

DESCRIPTIONS = {
    "400": "Invalid input: the offending fields are named.",
    "401": "Credentials missing or wrong.",
    "403": "Credentials missing or wrong, or the caller may not do this.",
    "404": "No such object, or one the caller may not see (the same answer either way).",
    "415": "The body is not JSON (Content-Type other than application/json).",
    "429": "Throttled: too many requests, or too many failed logins (no password was checked).",
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers of each operation (module docstring)."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter["name"] == "orbs" and "oneOf" in parameter["schema"]:
                parameter.update(ORBS_QUERY_PARAMETER)
        responses: dict[str, Any] = operation["responses"]
        for code in self._error_codes(operation):
            entry = responses.setdefault(code, {"description": DESCRIPTIONS[code]})
            if "content" not in entry:
                entry["content"] = self._error_content(code)
            if code == "429":
                entry.setdefault("headers", {}).update(RETRY_AFTER)
        return operation

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)  # type: ignore[no-untyped-call]
        # Bodies that refuse unknown fields say so: a schema-valid body with extra keys was answered 400.
        if direction == "request" and isinstance(serializer, RejectUnknownFields):
            schema["additionalProperties"] = False
        # drf-spectacular leaves out a nested list's bounds (``many=True, min_length=...``).
        for name, field in serializer.fields.items():
            prop = schema.get("properties", {}).get(name)
            if isinstance(field, ListSerializer) and prop is not None and prop.get("type") == "array":
                # The stubs lack DRF 3.14's min_length / max_length on ListSerializer.
                for attribute, keyword in (("min_length", "minItems"), ("max_length", "maxItems")):
                    bound = getattr(field, attribute, None)
                    if bound is not None:
                        prop[keyword] = bound
        return schema

    def get_filter_backends(self) -> list[Any]:
        # A viewset filters its list action only (drf-spectacular also gave bulk/ the list's query parameters).
        action = getattr(self.view, "action", None)
        return [] if action not in (None, "list") else list(super().get_filter_backends())

    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        takes_body = "requestBody" in operation
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p.get("in") == "query"}
        codes = []
        if takes_body or query:
            codes.append("400")
        if self._challenges():
            codes.append("401")
        codes.append("403")
        in_path = any(p.get("in") == "path" for p in parameters)
        body_fields = self._body_fields() if takes_body else set()
        # A paginated list answers 404 for a page past the end (DRF's "Invalid page.").
        paginated = self._is_list_view() and getattr(self.view, "pagination_class", None) is not None
        if in_path or paginated or (query | body_fields) & CHART_REFERENCE_FIELDS:
            codes.append("404")
        if takes_body:
            codes.append("415")
        if self.view.get_throttles() or self._failed_logins_throttled():
            codes.append("429")
        return codes

    def _challenges(self) -> bool:
        """Whether DRF answers 401 (not 403) to missing or bad credentials: its first authenticator has a
        ``WWW-Authenticate`` challenge."""
        authenticators = self.view.get_authenticators()
        if not authenticators:
            return False
        return type(authenticators[0]).authenticate_header is not BaseAuthentication.authenticate_header

    def _failed_logins_throttled(self) -> bool:
        basic = any(isinstance(a, BasicAuthentication) for a in self.view.get_authenticators())
        return basic and get_config().throttle_failed_logins is not None

    def _body_fields(self) -> set[str]:
        """Names of the body's fields that hold chart ids (integers, or lists of them)."""
        serializer = self.get_request_serializer()
        if isinstance(serializer, type):
            serializer = serializer()
        if not isinstance(serializer, Serializer):
            return set()
        return {
            name
            for name, field in serializer.fields.items()
            if isinstance(field.child if isinstance(field, ListField) else field, IntegerField)
        }

    def _error_content(self, code: str) -> dict[str, Any]:
        if not any(isinstance(r, JSONRenderer) for r in self.view.get_renderers()):
            # The renderer writes an error's message as a line of text.
            return {"text/plain": {"schema": {"type": "string"}}}
        name, schema = ("ValidationError", VALIDATION_ERROR_SCHEMA) if code == "400" else ("Error", ERROR_SCHEMA)
        component = ResolvedComponent(  # type: ignore[no-untyped-call]  # drf-spectacular is untyped
            name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name
        )
        self.registry.register_on_missing(component)
        return {"application/json": {"schema": component.ref}}
