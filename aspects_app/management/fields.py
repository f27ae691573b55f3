"""How the management commands name an owner's fields: by their flags (or the chart group they select), so a
:class:`FieldError` from the jobs or the services reads as a command-line error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError

from aspects_app.engine import BackendUnavailable
from aspects_app.engine.errors import FieldError
from aspects_app.jobs import BatchError

# Fields whose flag is not "--" + the field with dashes.
FLAGS = {"group_a": "selection", "group_b": "second group", "modes": "--mode", "k": "-k", "file_format": "--format"}


def flag(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


@contextmanager
def command_errors() -> Iterator[None]:
    """An owner's errors (and an unavailable engine backend) as CommandErrors, fields named by their flags."""
    try:
        yield
    except FieldError as exc:
        raise CommandError(f"{flag(exc.field)}: {exc.message}") from exc
    except BatchError as exc:
        raise CommandError(str(exc)) from exc
    except BackendUnavailable as exc:  # the engine's: --backend asked for one that cannot run here
        raise CommandError(f"--backend: {exc}") from exc
