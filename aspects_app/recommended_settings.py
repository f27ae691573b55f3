"""Settings a host project needs for the app's API and its distributed batch runs, to import into its own settings:

    from aspects_app.recommended_settings import *  # REST_FRAMEWORK, SPECTACULAR_SETTINGS, CELERY_*

or copy and adapt. The demo project and the test suite both start from these.
"""

import os

# -- DRF and drf-spectacular (the API and its OpenAPI schema) ---------------------------------------------------

REST_FRAMEWORK = {
    # drf-spectacular's, documenting the error answers (400, 401/403, 404, 415, 429) of each operation.
    "DEFAULT_SCHEMA_CLASS": "aspects_app.api.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's, with a session cookie holding a NUL (a 500 on PostgreSQL) treated as no session.
        "aspects_app.api.authentication.SessionAuthentication",
        # DRF's, refusing credentials no account can have (a NUL byte, say) before they reach the database, and
        # answering 429 without hashing once an address or a username has failed THROTTLE_FAILED_LOGINS times.
        "aspects_app.api.authentication.BasicAuthentication",
    ],
    # JSON only: form and multipart bodies cannot carry the nested fields (position_input was silently dropped),
    # so any other content type is a 415. DRF's JSON parser, with a nesting-depth limit (deep nesting made
    # Python's json raise RecursionError).
    "DEFAULT_PARSER_CLASSES": ["aspects_app.api.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",  # APIClient's default (multipart) would be refused
    # Proxies in front of the server that append to X-Forwarded-For: 0 (the default here) trusts REMOTE_ADDR
    # only. DRF's default (None) takes the whole header from the client, so anyone could pick a fresh address
    # per request and escape every per-address throttle. Behind one reverse proxy set ASPECTS_NUM_PROXIES=1.
    "NUM_PROXIES": int(os.environ.get("ASPECTS_NUM_PROXIES", "0")),
    # DRF's, with a JSON 400 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (Django's own 400 is an HTML page).
    "EXCEPTION_HANDLER": "aspects_app.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "aspects_app API",
    "DESCRIPTION": "Planetary aspects, synastry and compatibility scores.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# -- Celery (distributed batch runs) -------------------------------------------------------------------------

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
# Seconds to connect to the broker (Celery's default is 4); enqueueing a job also bounds each broker command by it,
# so POST jobs/ answers 503 within seconds when the broker is down or stopped, instead of hanging.
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CELERY_BROKER_CONNECTION_TIMEOUT", "2"))
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
