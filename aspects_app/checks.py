"""System checks for ``settings.ASPECTS``: bad values show up in ``manage.py check``, not mid-request."""

import math
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from aspects_app.conf import get_config
from aspects_app.engine.backend import BACKEND_NAMES

BACKENDS = frozenset(BACKEND_NAMES)


@checks.register("aspects_app")
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        config = get_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="aspects_app.E000")]
    errors: list[checks.CheckMessage] = []
    backend = config["BACKEND"]
    if backend not in BACKENDS:
        errors.append(
            checks.Error(
                f"ASPECTS['BACKEND'] is {backend!r}.",
                hint=f"Use one of: {', '.join(sorted(BACKENDS))}.",
                id="aspects_app.E001",
            )
        )
    budget = config["WORKING_MEMORY_MB"]
    # bool is an int subclass, but True is not a memory budget; NaN and inf are not budgets either.
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not (0 < budget < math.inf):
        errors.append(
            checks.Error(
                f"ASPECTS['WORKING_MEMORY_MB'] is {budget!r}.",
                hint="Use a positive number of MiB, e.g. 256.",
                id="aspects_app.E002",
            )
        )
    return errors
