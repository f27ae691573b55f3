"""HTTP Basic authentication that checks the credentials before they reach the database.

DRF's ``BasicAuthentication`` decodes the header's base64 and looks the user up with whatever it finds. A NUL
byte hidden in the base64 then reaches the query, and PostgreSQL refuses NUL in text (``psycopg.DataError``, a
500 on every endpoint, before any permission is checked). Credentials no account can have are refused here
instead, as any wrong credentials are (``AuthenticationFailed``).

Checking a password costs a deliberately slow hash (PBKDF2: about 0.3 s of a core), for unknown users too
(Django hashes a dummy password so that timing does not tell which usernames exist): four connections sending
bogus credentials took a server from 1,088 to 9.6 requests a second. Failed logins are therefore counted per
client address and per username (``THROTTLE_FAILED_LOGINS``, in the shared ``THROTTLE_ALIAS``); past the limit
an attempt answers 429 with ``Retry-After`` before anything is hashed, so bad credentials cost a bounded number
of hashes per address, and per username, in each window.

A session cookie goes to the database the same way (the session row is looked up by the cookie's value): one
with a NUL made every endpoint a 500 on PostgreSQL. ``SessionAuthentication`` treats a cookie no session can
have as no session, and the response deletes it.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.authentication import BasicScheme, SessionScheme
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ..conf import get_config
from .throttling import WindowCounter, client_address

# Django's old cap on passwords (it hashed anything before 1.5.5's fix); no password manager comes near it.
MAX_PASSWORD_LENGTH = 4096
# Where the user model does not say (a USERNAME_FIELD without max_length): the longest e-mail address.
DEFAULT_MAX_USERNAME_LENGTH = 254


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in value)


def max_username_length() -> int:
    model = get_user_model()
    length = getattr(model._meta.get_field(model.USERNAME_FIELD), "max_length", None)
    return int(length) if length else DEFAULT_MAX_USERNAME_LENGTH


class BasicAuthentication(authentication.BasicAuthentication):
    """DRF's HTTP Basic authentication, refusing (``AuthenticationFailed``) credentials no account can have
    before looking anyone up: a username with a control character (NUL, ESC, C1 controls) or longer than the user
    model's username field, a password with a NUL (Django's password forms refuse NUL, but allow other controls)
    or longer than 4,096 characters."""

    def authenticate_credentials(self, userid: str, password: str, request: Request | None = None) -> Any:
        if len(userid) > max_username_length() or len(password) > MAX_PASSWORD_LENGTH:
            raise exceptions.AuthenticationFailed("Invalid basic header. Credentials too long.")
        if _has_control_character(userid) or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid basic header. Credentials contain control characters.")
        counter, idents = _failed_logins(userid, request)
        if counter is None:
            return super().authenticate_credentials(userid, password, request)
        if any(counter.exhausted(ident) for ident in idents):
            raise exceptions.Throttled(
                wait=counter.retry_after(),
                detail="Too many failed logins from this address or for this username; no password was checked.",
            )
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            for ident in idents:
                counter.hit(ident)
            raise


def _failed_logins(userid: str, request: Request | None) -> tuple[WindowCounter | None, list[str]]:
    """The failed-login counter (None when ``THROTTLE_FAILED_LOGINS`` is off) and the idents a failure counts
    against: the client's address and the username."""
    config = get_config()
    if config.throttle_failed_logins is None:
        return None, []
    counter = WindowCounter.from_rate(config.throttle_alias, "aspects_failed_login", config.throttle_failed_logins)
    idents = [f"user-{userid}"]
    if request is not None:
        idents.append(f"addr-{client_address(request)}")
    return counter, idents


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, with a session cookie holding a control character (NUL, which PostgreSQL
    refuses in text) treated as no session: the request is anonymous, and the session middleware deletes the
    cookie from the client since the session it ends with is empty. No session engine makes such keys."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        django_request = request._request
        session = getattr(django_request, "session", None)
        # ``session_key`` is the cookie's value as given; reading it loads nothing from the database.
        key = getattr(session, "session_key", None)
        if session is not None and isinstance(key, str) and _has_control_character(key):
            django_request.session = type(session)()
            django_request.user = AnonymousUser()
        return super().authenticate(request)


class BasicAuthenticationScheme(BasicScheme):  # type: ignore[no-untyped-call]  # drf-spectacular is untyped
    """The same ``basicAuth`` security scheme in the OpenAPI document as DRF's class gets."""

    target_class = "aspects_app.api.authentication.BasicAuthentication"


class SessionAuthenticationScheme(SessionScheme):  # type: ignore[no-untyped-call]  # drf-spectacular is untyped
    """The same ``cookieAuth`` security scheme in the OpenAPI document as DRF's class gets."""

    target_class = "aspects_app.api.authentication.SessionAuthentication"
