# Celery's Django guide: the app loads with the project, so jobs find it.
from .celery import app as celery_app

__all__ = ["celery_app"]
