"""WSGI entry point for the demo project."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
if os.environ["DJANGO_SETTINGS_MODULE"] == "project.settings":
    from project.settings import require_secret_key

    require_secret_key()  # at start-up, not on the first request that signs a cookie

application = get_wsgi_application()
