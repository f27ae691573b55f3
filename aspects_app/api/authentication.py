"""HTTP Basic authentication that checks the credentials before they reach the database.

DRF's ``BasicAuthentication`` decodes the header's base64 and looks the user up with whatever it finds. A NUL
byte hidden in the base64 then reaches the query, and PostgreSQL refuses NUL in text (``psycopg.DataError``, a
500 on every endpoint, before any permission is checked). Credentials no account can have are refused here
instead, as any wrong credentials are (``AuthenticationFailed``).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions
from rest_framework.request import Request

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
        return super().authenticate_credentials(userid, password, request)


class BasicAuthenticationScheme(BasicScheme):  # type: ignore[no-untyped-call]  # drf-spectacular is untyped
    """The same ``basicAuth`` security scheme in the OpenAPI document as DRF's class gets."""

    target_class = "aspects_app.api.authentication.BasicAuthentication"
