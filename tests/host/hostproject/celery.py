"""The host's Celery app, as Celery's Django guide makes it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproject.settings")

app = Celery("hostproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
