"""``manage.py compute_aspects``: natal aspects, synastry, scores, top-k matches and transits for many charts."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from aspects_app import demo_data, jobs
from aspects_app.engine.backend import BACKEND_NAMES, BackendUnavailable
from aspects_app.engine.scoring import SCORE_METHODS
from aspects_app.management.fields import command_errors
from aspects_app.models import BatchRun

# Options a resumed run takes from its own parameters instead.
RUN_PARAMETERS = (
    "mode",
    "ids",
    "owner",
    "changed_since",
    "with_ids",
    "with_owner",
    "with_changed_since",
    "orbs",
    "aspects",
    "demo",
    "backend",
    "working_memory_mb",
    "chunk_size",
    "format",
    "start",
    "end",
    "bodies",
    "pattern",
    "stellium_span",
)


class Command(BaseCommand):
    help = (
        "Compute natal aspects, synastry, compatibility scores, top-k matches, transits or aspect patterns for a "
        "selection of charts, in chunks under a memory budget, into the database or a file. Every run is a "
        "BatchRun; an interrupted run (Ctrl-C, kill, crash) continues with --resume RUN_ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--mode",
            action="append",
            choices=jobs.MODES,
            help="natal, synastry, scores, top-k, transits or patterns; repeat for several (run in the order given; "
            "transits runs alone; patterns lists the charts' aspect patterns to --output FILE).",
        )
        group = parser.add_argument_group("selection (group A; default: all charts)")
        group.add_argument("--ids", help="Comma-separated chart ids.")
        group.add_argument("--owner", help="Charts of this user (the user model's USERNAME_FIELD, e.g. an e-mail).")
        group.add_argument("--changed-since", help="Charts updated at or after this ISO datetime.")
        other = parser.add_argument_group("second group B for synastry, scores, top-k (default: within group A)")
        other.add_argument("--with-ids", help="Comma-separated chart ids.")
        other.add_argument("--with-owner", help="Charts of this user (as --owner).")
        other.add_argument("--with-changed-since", help="Charts updated at or after this ISO datetime.")
        other.add_argument("--with-all", action="store_true", help="All charts as group B.")
        compute = parser.add_argument_group("computation")
        compute.add_argument("--orbs", help='Orb preset ("default", "all") or JSON {aspect: orb}. Default: settings.')
        compute.add_argument("--aspects", help="Comma-separated aspect names to keep.")
        compute.add_argument(
            "--method", choices=SCORE_METHODS, default="discepolo", help="Score (default: %(default)s)."
        )
        compute.add_argument("-k", type=int, default=10, help="Partners per chart for top-k (default: %(default)s).")
        compute.add_argument("--backend", choices=BACKEND_NAMES, help="Engine backend (default: settings, auto).")
        compute.add_argument("--working-memory-mb", type=float, help="Chunk budget in MiB (default: settings, 256).")
        compute.add_argument("--chunk-size", type=int, help="Rows per engine chunk, overriding the budget.")
        sky = parser.add_argument_group("transits (--mode transits; default orbs: the five majors at 3°)")
        sky.add_argument("--start", help="Start of the range, ISO date or date-time (UTC unless an offset is given).")
        sky.add_argument("--end", help="End of the range (excluded), as --start.")
        sky.add_argument("--bodies", help="Comma-separated transiting bodies (default: Sun … Pluto).")
        figures = parser.add_argument_group("patterns (--mode patterns; into .jsonl or .csv, one row per pattern)")
        figures.add_argument(
            "--pattern",
            action="append",
            help="Only this pattern (grand_trine, t_square, grand_cross, yod, kite, mystic_rectangle, stellium; "
            "hyphens work too); repeat for several. Default: all.",
        )
        figures.add_argument(
            "--stellium-span",
            type=float,
            help="Stellia: 3+ points within this many degrees (0 < span < 360). Default: 3+ points in one sign.",
        )
        output = parser.add_argument_group("output")
        output.add_argument("--output", default="db", help='"db" (default) or a file path (.jsonl, .csv, .npz).')
        output.add_argument("--format", choices=jobs.FORMATS, help="File format (default: from the extension).")
        actions = parser.add_argument_group("actions")
        actions.add_argument("--estimate", action="store_true", help="Print the memory plan and a time estimate.")
        actions.add_argument("--demo", type=int, metavar="N", help="First create N demo charts (seeded, idempotent).")
        actions.add_argument("--seed", type=int, default=0, help="Seed of the demo charts (default: %(default)s).")
        actions.add_argument("--resume", type=int, metavar="RUN_ID", help="Continue an interrupted or failed run.")
        actions.add_argument("--no-progress", action="store_true", help="No progress bar.")
        spread = parser.add_argument_group("work spread over machines (Celery workers; database output)")
        spread.add_argument("--distributed", action="store_true", help="Enqueue the run's blocks for the workers.")
        spread.add_argument("--queue", help="Celery queue (default: aspects-gpu for --backend cupy, else aspects-cpu).")
        spread.add_argument("--no-wait", action="store_true", help="Enqueue and exit instead of following progress.")
        spread.add_argument("--cancel", type=int, metavar="RUN_ID", help="Cancel a distributed run.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        self.show_progress = self.verbosity > 0 and not options["no_progress"]
        with command_errors():
            if options["cancel"] is not None:
                self._cancel(options["cancel"])
            elif options["resume"] is not None:
                self._resume(options)
            else:
                self._new_run(options)

    # -- the three ways in -------------------------------------------------------------------------------------

    def _cancel(self, run_id: int) -> None:
        run = jobs.find_run(run_id, "cancel")
        if not jobs.cancel(run):
            raise CommandError(f"--cancel: run {run_id} is already {run.status}")
        self.stdout.write(f"run {run_id} cancelled; its queued blocks will be skipped")

    def _resume(self, options: dict[str, Any]) -> None:
        self._refuse_with_resume(options)
        run = jobs.resumable(options["resume"])
        if jobs.is_distributed(run):
            self._distribute(run, options)
        else:
            self._execute(run)

    def _new_run(self, options: dict[str, Any]) -> None:
        if options["demo"] is not None:
            self._create_demo(options["demo"], options["seed"])
        if not options["mode"]:
            if options["demo"] is not None:
                return
            raise CommandError("--mode: give at least one of " + ", ".join(jobs.MODES))
        spec = self._spec(options)
        if options["estimate"]:
            self._print_estimate(jobs.estimate(spec))
            return
        run = jobs.create(spec, distributed=options["distributed"])
        if options["distributed"]:
            self._distribute(run, options)
        else:
            self._execute(run)

    # -- options -----------------------------------------------------------------------------------------------

    def _refuse_with_resume(self, options: dict[str, Any]) -> None:
        conflicting = [name for name in RUN_PARAMETERS if options.get(name)]
        if options["estimate"] or options["with_all"] or options["output"] != "db" or options["distributed"]:
            conflicting.append("estimate/with-all/output/distributed")
        if conflicting:
            names = ", ".join("--" + n.replace("_", "-") for n in conflicting)
            raise CommandError(f"--resume takes the run's own parameters; drop {names}")

    def _spec(self, options: dict[str, Any]) -> jobs.JobSpec:
        group_a = self._selection(options["ids"], options["owner"], options["changed_since"], "")
        with_any = any(options[n] for n in ("with_ids", "with_owner", "with_changed_since")) or options["with_all"]
        group_b = (
            self._selection(options["with_ids"], options["with_owner"], options["with_changed_since"], "with-")
            if with_any
            else None
        )
        return jobs.JobSpec(
            modes=list(dict.fromkeys(options["mode"])),
            group_a=group_a.resolve("group_a"),
            group_b=None if group_b is None else group_b.resolve("group_b"),
            orbs=self._orbs(options["orbs"]),
            aspects=None if options["aspects"] is None else options["aspects"].split(","),
            method=options["method"],
            k=options["k"],
            backend=options["backend"],
            working_memory_mb=options["working_memory_mb"],
            chunk_size=options["chunk_size"],
            output=options["output"],
            file_format=options["format"],
            start=options["start"],
            end=options["end"],
            bodies=None if options["bodies"] is None else options["bodies"].split(","),
            patterns=options["pattern"],
            stellium_span=options["stellium_span"],
        )

    def _selection(self, ids: str | None, owner: str | None, since: str | None, prefix: str) -> jobs.Selection:
        parsed_ids = None
        if ids is not None:
            try:
                parsed_ids = sorted({int(part) for part in ids.split(",") if part.strip()})
            except ValueError as exc:
                raise CommandError(f"--{prefix}ids: expected comma-separated integers, got {ids!r}") from exc
            if not parsed_ids:
                raise CommandError(f"--{prefix}ids: no ids given")
        moment: datetime | None = None
        if since is not None:
            moment = parse_datetime(since)
            if moment is None:
                raise CommandError(f"--{prefix}changed-since: not an ISO datetime: {since!r}")
            if moment.tzinfo is None:
                raise CommandError(f"--{prefix}changed-since: give a UTC offset, e.g. {since}+00:00")
        return jobs.Selection(ids=parsed_ids, owner=owner, changed_since=moment)

    @staticmethod
    def _orbs(value: str | None) -> str | dict[str, float] | None:
        if value is None or not value.lstrip().startswith("{"):
            return value
        try:
            orbs = json.loads(value)
        except ValueError as exc:
            raise CommandError(f"--orbs: not valid JSON ({exc})") from exc
        if not isinstance(orbs, dict):
            raise CommandError("--orbs: expected a JSON object {aspect: orb}")
        return orbs

    # -- actions -----------------------------------------------------------------------------------------------

    def _create_demo(self, count: int, seed: int) -> None:
        if count < 1:
            raise CommandError(f"--demo: must be at least 1, got {count}")
        start = time.perf_counter()
        created = demo_data.create_demo_charts(count, seed)
        seconds = time.perf_counter() - start
        if self.verbosity:
            rate = f" ({created / seconds:,.0f} charts/s)" if created and seconds > 0 else ""
            self.stdout.write(f"demo charts: {created:,} created{rate}, {count - created:,} already present")

    def _print_estimate(self, report: dict[str, Any]) -> None:
        self.stdout.write(f"backend: {report['backend']}")
        for mode, plan in report["modes"].items():
            if mode == "transits":
                self.stdout.write(
                    f"transits: {plan['units']:,} charts, ~{plan['events_per_chart']:,} events each "
                    f"(~{plan['estimated_rows']:,} rows) in {plan['blocks']:,} blocks of {plan['block_rows']:,} "
                    f"charts; ~{plan['estimated_seconds']:,.1f} s at {plan['units_per_second']:,.0f} charts/s"
                )
                continue
            self.stdout.write(
                f"{mode}: {plan['units']:,} units in {plan['chunks']:,} chunks of {plan['chunk_rows']:,} rows;"
                f" chunk memory {plan['chunked_mb']:.1f} MiB (unchunked {plan['unchunked_mb']:,.1f} MiB,"
                f" {plan['memory_savings_percent']:.1f}% saved); result ~{plan['result_bytes'] / 2**20:,.1f} MiB;"
                f" ~{plan['estimated_seconds']:,.1f} s at {plan['units_per_second']:,.0f} units/s"
            )

    def _progress_bar(self, total: int, desc: str | None = None) -> Any:
        stream = getattr(self.stderr, "_out", sys.stderr)  # tqdm needs the raw stream, not Django's wrapper
        return tqdm(total=total, unit="pair", unit_scale=True, file=stream, disable=not self.show_progress, desc=desc)

    def _execute(self, run: BatchRun) -> None:
        try:
            self._execute_with_progress(run)
        except BackendUnavailable as exc:  # the run is marked failed and resumes where the backend can run
            raise CommandError(f"--backend: {exc}; run {run.pk} failed (continue with --resume {run.pk})") from exc

    def _execute_with_progress(self, run: BatchRun) -> None:
        bar = self._progress_bar(0, run.mode)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        with self._stop_on_signals() as stop:
            try:
                summary = jobs.run_here(run, progress=progress, should_stop=stop)
            except jobs.BatchInterrupted as exc:
                raise CommandError(f"{exc}; continue with --resume {run.pk}") from exc
            finally:
                bar.close()
        self._print_summary(summary)

    @contextmanager
    def _stop_on_signals(self) -> Iterator[Callable[[], bool]]:
        """Ctrl-C or SIGTERM asks the job to stop after its current block (a second Ctrl-C stops at once)."""
        requested: list[int] = []

        def ask(signum: int, frame: Any) -> None:
            if requested:
                raise KeyboardInterrupt
            requested.append(signum)
            self.stderr.write("stopping after the current block…")

        if threading.current_thread() is not threading.main_thread():  # signals can only be caught there
            yield lambda: False
            return
        previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield lambda: bool(requested)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _distribute(self, run: BatchRun, options: dict[str, Any]) -> None:
        try:
            enqueued = jobs.start(run, options["queue"])
        except jobs.EnqueueFailed as exc:
            raise CommandError(f"{exc}; --resume {run.pk} when the broker is up") from exc
        if self.verbosity:
            self.stdout.write(f"run {run.pk}: {enqueued} blocks enqueued on {run.parameters['distributed']['queue']!r}")
        if not options["no_wait"]:
            self._follow(run)

    def _follow(self, run: BatchRun) -> None:
        bar = self._progress_bar(run.progress_total)
        start = time.perf_counter()
        try:
            while True:
                run.refresh_from_db()
                bar.update(run.progress_done - bar.n)
                if run.status != BatchRun.Status.RUNNING:
                    break
                time.sleep(0.25)
        except KeyboardInterrupt:
            raise CommandError(f"stopped following run {run.pk}; it goes on (--cancel {run.pk} stops it)") from None
        finally:
            bar.close()
        if run.status != BatchRun.Status.DONE:
            raise CommandError(f"run {run.pk} {run.status}: {run.error or 'see the BatchRun'}")
        seconds = time.perf_counter() - start
        if self.verbosity:
            self.stdout.write(
                self.style.SUCCESS(
                    f"run {run.pk} done on the workers: {run.pairs_computed:,} pairs, {run.hits:,} hits, "
                    f"{run.rows_written:,} rows written in {seconds:.2f} s "
                    f"({run.pairs_computed / max(seconds, 1e-9):,.0f} pairs/s); backend {run.backend}"
                )
            )
            self._print_skipped(run)

    def _print_skipped(self, run: BatchRun) -> None:
        skipped = run.parameters.get("skipped")
        if skipped:
            charts = skipped["charts"]
            listed = ", ".join(map(str, charts[:20])) + (", …" if len(charts) > 20 else "")
            self.stdout.write(
                self.style.WARNING(
                    f"{len(charts):,} charts skipped: other points than the run's {skipped['points']} "
                    f"(run them as a selection of their own): {listed}"
                )
            )

    def _print_summary(self, summary: jobs.Summary) -> None:
        if not self.verbosity:
            return
        run = BatchRun.objects.get(pk=summary.run_id)
        self.stdout.write(
            self.style.SUCCESS(
                f"run {summary.run_id} done: {', '.join(summary.modes)} on {summary.backend}; "
                f"{summary.pairs:,} pairs, {summary.hits:,} hits, {summary.rows_written:,} rows written "
                f"({run.rows_written:,} over the whole run) in {summary.seconds:.2f} s "
                f"({summary.pairs_per_second:,.0f} pairs/s); peak memory +{summary.peak_memory_mb:.0f} MiB; "
                f"output: {summary.output}"
            )
        )
        if run.backend_note:
            self.stdout.write(f"backend note: {run.backend_note}")
        self._print_skipped(run)
        if self.verbosity > 1:
            for mode, seconds in summary.per_mode_seconds.items():
                self.stdout.write(f"  {mode}: {seconds:.2f} s")
