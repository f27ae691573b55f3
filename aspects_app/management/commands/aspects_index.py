"""``manage.py aspects_index build|status|rebuild``: the harmonic match index files (``INDEX_PATH``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aspects_app import live_index
from aspects_app.conf import get_config
from aspects_app.index import KINDS


class Command(BaseCommand):
    help = (
        "build: an index of the stored charts' harmonic features for each configuration and point set that has "
        "none yet (features computed first where missing); rebuild: all of them anew (drops HNSW tombstones, "
        "takes a changed HARMONIC setting); status: what each index file holds and how current it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["build", "status", "rebuild"])
        parser.add_argument(
            "--kind", choices=KINDS, default=None, help="Index kind (default: the INDEX_KIND setting, hnsw)."
        )
        parser.add_argument("--path", default=None, help="Directory of the index files (default: INDEX_PATH).")

    def handle(self, *args: Any, **options: Any) -> None:
        given = options["path"] or get_config().index_path
        if not given:
            raise CommandError("no index directory: set ASPECTS['INDEX_PATH'] or pass --path")
        directory = Path(given)
        if directory.exists() and not directory.is_dir():
            raise CommandError(f"--path: {directory} is not a directory")
        kind = options["kind"] or get_config().index_kind
        if kind not in KINDS:
            raise CommandError(f"INDEX_KIND: expected one of {', '.join(KINDS)}, got {kind!r}")
        verbosity = int(options["verbosity"])
        if options["action"] == "status":
            self._status(directory)
            return
        progress = (lambda line: self.stdout.write(line)) if verbosity >= 2 else None
        try:
            reports = live_index.build(directory, kind, rebuild=options["action"] == "rebuild", progress=progress)
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        live_index.reset()  # this process reloads the new files
        if verbosity >= 1:
            if not reports:
                self.stdout.write("no charts with positions: nothing to index")
            for report in reports:
                verb = "built" if report.built else "kept (current; rebuild to replace)"
                self.stdout.write(
                    self.style.SUCCESS(f"{verb}: {report.path.name}, {report.kind}, {report.count} charts, ")
                    + f"{len(report.points)} points"
                )

    def _status(self, directory: Path) -> None:
        if not directory.is_dir():
            raise CommandError(f"--path: {directory} does not exist (nothing built yet)")
        found = live_index.status(directory)
        if not found:
            self.stdout.write("no index files")
        for entry in found:
            state = "current" if entry.current else "stale (another HARMONIC setting or points; rebuild)"
            self.stdout.write(
                f"{entry.path.name}: {entry.kind}, {entry.count} charts, {len(entry.points)} points, "
                f"snapshot {entry.snapshot or '?'}, {entry.changed_since} changed since, {state}"
            )
