"""``manage.py aspects_cache stats|clear|warm``: look at, empty or fill the result cache."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aspects_app import jobs, services
from aspects_app.management.fields import command_errors


class Command(BaseCommand):
    help = (
        "stats: hits, misses and evictions per cache level (this process's, the shared cache's server, and the "
        "persisted rows); clear: forget cached results of --chart ID or of all charts (--persisted also deletes "
        "the stored rows); warm: compute natal results of a selection into every level."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["stats", "clear", "warm"])
        parser.add_argument("--chart", type=int, help="clear: only this chart's results.")
        parser.add_argument("--persisted", action="store_true", help="clear: also delete AspectResult rows.")
        parser.add_argument("--ids", help="warm: comma-separated chart ids (default: all charts).")
        parser.add_argument("--owner", help="warm: the charts of this user (the user model's USERNAME_FIELD).")
        parser.add_argument("--orbs", help="warm: orb preset or JSON (default: settings).")
        parser.add_argument("--json", action="store_true", help="stats: print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        with command_errors():
            if action == "stats":
                self._stats(options["json"])
            elif action == "clear":
                self._clear(options["chart"], options["persisted"])
            else:
                self._warm(options["ids"], options["owner"], options["orbs"])

    def _stats(self, as_json: bool) -> None:
        stats = services.cache_stats()
        if as_json:
            self.stdout.write(json.dumps(stats, indent=2, default=str))
            return
        local, shared = stats["local"], stats["shared"]
        self.stdout.write(
            f"local (this process): {local['entries']} entries, {local['bytes'] / 2**20:.1f} MiB; "
            f"{local['hits']} hits, {local['misses']} misses, {local['evictions']} evictions"
        )
        self.stdout.write(
            f"shared ({shared['alias']}): {shared['hits']} hits, {shared['misses']} misses, "
            f"{shared['errors']} errors in this process; server: {shared['server'] or 'no figures (not Redis)'}"
        )
        self.stdout.write("database: " + ", ".join(f"{k} {v}" for k, v in stats["database"].items()))

    def _clear(self, chart_id: int | None, persisted: bool) -> None:
        if chart_id is None:
            deleted = services.clear_cache(persisted)
            self.stdout.write(f"cleared every cached result; {deleted} stored rows deleted")
            return
        forgotten, deleted = services.forget_chart(chart_id, persisted)
        # The shared level forgets by generation token (no count without a scan); this process's LRU counts.
        self.stdout.write(
            f"chart {chart_id}: cached results forgotten (shared level; {forgotten} in this process), "
            f"{deleted} stored rows deleted"
        )

    def _warm(self, ids: str | None, owner: str | None, orbs: str | None) -> None:
        try:
            parsed = None if ids is None else sorted({int(x) for x in ids.split(",") if x.strip()})
        except ValueError as exc:
            raise CommandError(f"--ids: expected comma-separated integers, got {ids!r}") from exc
        try:
            parsed_orbs = json.loads(orbs) if orbs and orbs.lstrip().startswith("{") else orbs
        except ValueError as exc:
            raise CommandError(f"--orbs: not valid JSON ({exc})") from exc
        config = services.aspect_config(parsed_orbs)
        chart_ids = jobs.Selection(ids=parsed, owner=owner).resolve("group_a")
        warmed = services.warm_natal(chart_ids, config)
        self.stdout.write(f"warmed {warmed['computed']} natal results ({warmed['cached']} were already cached)")
