"""``manage.py seed_host EMAIL PASSWORD N``: a user of the host's e-mail user model and N charts of theirs, made from
birth data through the app's services (the ephemeris shipped in the wheel)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from aspects_app import demo_data, services


class Command(BaseCommand):
    help = "Create an e-mail user and N charts owned by them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("password")
        parser.add_argument("count", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.create_user(options["email"], options["password"])
        charts = services.create_charts(user, demo_data.demo_charts(options["count"], seed=7))
        self.stdout.write(f"user {user.get_username()}: {len(charts)} charts")
