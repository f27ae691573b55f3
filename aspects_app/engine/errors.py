"""The error every public entry raises for bad input: a ``ValueError`` that carries the offending field as data."""

from __future__ import annotations


class FieldError(ValueError):
    """Bad input in ``field``. Callers map the field to their own names (an API field, a command-line flag)
    instead of parsing the message; ``str()`` still names the field for a reader of a traceback."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def renamed(self, field: str) -> FieldError:
        """The same problem under the caller's name for the field."""
        error = FieldError(field, self.message)
        error.__cause__ = self
        return error
