# The suite's host loads its Celery app with Django, as Celery's Django guide has a project do (the demo project's
# app, which the distributed tests' workers run): without one, check aspects_app.E006 fails and POST jobs/ is 503.
from project.celery import app as celery_app

__all__ = ["celery_app"]
