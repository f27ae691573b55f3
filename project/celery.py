"""The demo project's Celery app: ``celery -A project worker -Q aspects-cpu`` (or ``aspects-gpu`` on a GPU host)."""

import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def worker_command(queue: str, name: str | None = None) -> list[str]:
    """The command line of one single-process worker on ``queue`` (the tests and benchmarks start these)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "project",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        "1",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return command if name is None else [*command, "-n", name]
