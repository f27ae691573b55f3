"""Deleting a chart (through the ORM, the admin or a cascade) forgets its cached results too."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .cache import result_cache
from .models import Chart


@receiver(post_delete, sender=Chart)
def forget_cached_results(sender: type[Chart], instance: Chart, **kwargs: Any) -> None:
    # Persisted rows go by cascade; cached ones are keyed by the positions hash.
    doomed = instance.positions_hash
    transaction.on_commit(lambda: result_cache().invalidate(doomed))
