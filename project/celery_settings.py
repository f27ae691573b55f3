"""Celery settings of distributed batch runs, shared by the demo project and the test settings."""

import os

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
CELERY_TASK_ACKS_LATE = True  # a block is acknowledged when done: a killed worker's block is delivered again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # blocks are long: no worker hoards them
# Unacknowledged blocks (their worker died) return to the queue after visibility_timeout, which must exceed
# the longest block; workers look for them every unacked_restore_interval x unacked_restore_throttle seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600")),
    "unacked_restore_interval": int(os.environ.get("CELERY_UNACKED_RESTORE_INTERVAL", "10")),
    "unacked_restore_throttle": int(os.environ.get("CELERY_UNACKED_RESTORE_THROTTLE", "10")),
}
CELERY_TASK_TIME_LIMIT = 3600
CELERY_TASK_SOFT_TIME_LIMIT = 3300
CELERY_TASK_DEFAULT_QUEUE = "aspects-cpu"
CELERY_TASK_IGNORE_RESULT = True  # progress and results live in BatchRun and the result tables
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
