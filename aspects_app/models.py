"""Charts, their persisted aspect results, and batch runs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# Positions are stored as little-endian float64 bytes: compact, exact, and independent of the database.
_POSITION_DTYPE = np.dtype("<f8")
# id__in lists are split so SQLite's bound-parameter limit is never reached.
ID_BATCH = 900
T = TypeVar("T")


def id_batches(ids: Sequence[T], size: int = ID_BATCH) -> Iterator[Sequence[T]]:
    """``ids`` in slices short enough for one ``pk__in`` query on every database."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def stacked_positions(blobs: Sequence[bytes | memoryview], width: int) -> npt.NDArray[np.float64]:
    """Stored position fields (``longitudes`` or ``speeds``) of many charts as one (N, ``width``) array, decoded
    at once rather than chart by chart."""
    flat = np.frombuffer(b"".join(blobs), dtype=_POSITION_DTYPE).astype(np.float64)
    return flat.reshape(len(blobs), width)


def positions_hash(points: list[str] | tuple[str, ...], longitudes: npt.NDArray[Any], speeds: Any) -> str:
    """Content hash of a chart's positions: cache keys and result invalidation rest on it."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(points).encode())
    digest.update(np.ascontiguousarray(longitudes, dtype=_POSITION_DTYPE).tobytes())
    if speeds is not None:
        digest.update(b"speeds")
        digest.update(np.ascontiguousarray(speeds, dtype=_POSITION_DTYPE).tobytes())
    return digest.hexdigest()


class ChartQuerySet(models.QuerySet["Chart"]):
    def visible_to(self, user: Any) -> ChartQuerySet:
        """Public charts, plus the user's own; staff see everything."""
        if user is not None and user.is_authenticated:
            if user.is_staff:
                return self
            return self.filter(models.Q(is_public=True) | models.Q(owner=user))
        return self.filter(is_public=True)


class Chart(models.Model):
    """A natal chart: birth data (optional) and the positions computed from it or given by the host."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="aspect_charts"
    )
    name = models.CharField(max_length=200, blank=True)
    is_public = models.BooleanField(default=False, help_text="Readable by anyone, anonymous users included.")
    birth_datetime = models.DateTimeField(null=True, blank=True, help_text="Moment of birth (stored in UTC).")
    latitude = models.FloatField(null=True, blank=True, help_text="Degrees, north positive.")
    longitude = models.FloatField(null=True, blank=True, help_text="Degrees, east positive.")
    time_zone = models.CharField(max_length=64, blank=True, help_text="IANA name of the birth place's zone.")
    points = models.JSONField(default=list, help_text="Names of the stored positions, in column order.")
    longitudes = models.BinaryField(help_text="Ecliptic longitudes, float64 little-endian, one per point.")
    speeds = models.BinaryField(null=True, blank=True, help_text="Daily speeds, float64, or null.")
    positions_hash = models.CharField(max_length=64, db_index=True, editable=False)
    # House cusps computed with the positions (same birth data), in the system named; blank/null for charts given
    # by positions. ``house_cusps``: {"cusps": [12 degrees], "asc", "mc", "fallback", "clockwise"}, JSON floats
    # round-trip exactly. Charts stored before these fields existed are filled lazily (services.chart_houses).
    house_system = models.CharField(max_length=16, blank=True, editable=False)
    house_cusps = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ChartQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "updated_at"]), models.Index(fields=["is_public", "id"])]

    def __str__(self) -> str:
        return self.name or f"Chart {self.pk}"

    @property
    def has_birth_data(self) -> bool:
        return self.birth_datetime is not None

    def set_positions(self, points: list[str] | tuple[str, ...], longitudes: Any, speeds: Any = None) -> None:
        lon = np.asarray(longitudes, dtype=_POSITION_DTYPE)
        spd = None if speeds is None else np.asarray(speeds, dtype=_POSITION_DTYPE)
        self.points = list(points)
        self.longitudes = lon.tobytes()
        self.speeds = None if spd is None else spd.tobytes()
        self.positions_hash = positions_hash(self.points, lon, spd)
        # Cusps belong to the positions they were computed with; whoever computes positions from birth data sets
        # them again (services), positions given by the host have none.
        self.house_system, self.house_cusps = "", None

    def positions_problem(self) -> str | None:
        """Why the stored positions cannot be served (none, or points, longitudes and speeds that disagree), or
        None when they are consistent."""
        longitudes = bytes(self.longitudes or b"")
        if not isinstance(self.points, list) or not all(isinstance(p, str) and p for p in self.points):
            return "points must be a list of names"
        if not self.points or not longitudes:
            return "a chart needs positions: birth data to compute them from, or position_input"
        if len(set(self.points)) != len(self.points):
            return "point names must be unique"
        width = _POSITION_DTYPE.itemsize
        if len(longitudes) != width * len(self.points):
            return f"{len(self.points)} points but {len(longitudes) / width:g} longitudes"
        if self.speeds is not None and len(bytes(self.speeds)) != width * len(self.points):
            return f"{len(self.points)} points but {len(bytes(self.speeds)) / width:g} speeds"
        return None

    def check_positions(self) -> None:
        """Raise ``ValidationError`` unless the positions are consistent; then make the hash theirs. Every write
        goes through it (``save()``, and the services before ``bulk_create``), so no stored row can carry a hash
        of other positions, or points without their longitudes."""
        problem = self.positions_problem()
        if problem is not None:
            # Not keyed by field: the admin's form does not show the binary fields an error could name.
            raise ValidationError(f"positions: {problem}", code="positions")
        self.positions_hash = positions_hash(self.points, self.longitude_array, self.speed_array)

    def clean(self) -> None:
        super().clean()
        self.check_positions()

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_positions()
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"points", "longitudes", "speeds"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "positions_hash", "house_system", "house_cusps"}
        super().save(*args, **kwargs)

    @property
    def longitude_array(self) -> npt.NDArray[np.float64]:
        return np.frombuffer(bytes(self.longitudes), dtype=_POSITION_DTYPE).astype(np.float64)

    @property
    def speed_array(self) -> npt.NDArray[np.float64] | None:
        if self.speeds is None:
            return None
        return np.frombuffer(bytes(self.speeds), dtype=_POSITION_DTYPE).astype(np.float64)


class AspectResult(models.Model):
    """A computed result, persisted so that it is served rather than recomputed.

    One row per (kind, charts, aspect configuration, engine version): recomputation overwrites. The positions
    hash records what it was computed from, so a row that outlived an edit is recognisably stale.
    """

    class Kind(models.TextChoices):
        NATAL = "natal"
        SYNASTRY = "synastry"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    chart_a = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="+")
    # Natal results name the same chart twice: no nulls, so the unique constraint holds on every database.
    chart_b = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="+")
    config_hash = models.CharField(max_length=32)
    engine_version = models.CharField(max_length=32)
    positions_hash = models.CharField(max_length=64)
    payload = models.BinaryField(help_text="The result's columns, compressed (AspectHits.to_bytes).")
    hit_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField(auto_now=True)
    duration_ms = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "chart_a", "chart_b", "config_hash", "engine_version"], name="aspect_result_unique"
            )
        ]
        indexes = [models.Index(fields=["chart_b"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.chart_a_id}/{self.chart_b_id} ({self.config_hash})"


class BatchRun(models.Model):
    """One batch job: what was asked, how far it got, what it cost."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    mode = models.CharField(max_length=32)
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(default=0)
    pairs_computed = models.BigIntegerField(default=0)
    hits = models.BigIntegerField(default=0)
    rows_written = models.BigIntegerField(default=0)
    backend = models.CharField(max_length=16, blank=True)
    # Why the backend that did the work is not the one asked for: "auto" found no GPU, or the device failed
    # (out of memory after retries, a driver error) and the work moved to the CPU.
    backend_note = models.TextField(blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.mode} run {self.pk} ({self.status})"

    @property
    def progress_fraction(self) -> float:
        return self.progress_done / self.progress_total if self.progress_total else 0.0

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Match(models.Model):
    """One of a chart's best partners, as a batch top-k run ranked them.

    Unique per (chart, method, config, rank): a re-run replaces a chart's list instead of adding to it.
    """

    chart = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="matches")
    partner = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveSmallIntegerField(help_text="1 is the best partner.")
    score = models.FloatField()
    method = models.CharField(max_length=16)
    config_hash = models.CharField(max_length=32)
    run = models.ForeignKey(BatchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chart", "method", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["chart", "method", "config_hash", "rank"], name="match_unique_rank")
        ]
        indexes = [models.Index(fields=["partner"])]

    def __str__(self) -> str:
        return f"{self.chart_id} #{self.rank}: {self.partner_id} ({self.score:g})"


class BatchBlock(models.Model):
    """A finished row block of a distributed run, written in the same transaction as the block's results: a
    block delivered twice (a retried or duplicated task) finds its marker and does nothing."""

    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="blocks")
    mode = models.CharField(max_length=16)
    start = models.PositiveIntegerField()
    stop = models.PositiveIntegerField()
    units = models.BigIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    seconds = models.FloatField(default=0.0)
    completed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "mode", "start"], name="batch_block_unique")]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.mode} [{self.start}, {self.stop})"


class TransitEvent(models.Model):
    """One exact pass of a transiting body over a natal point's aspect target, precomputed by a batch run for
    hosts that build calendars and notifications from stored rows.

    ``config_hash`` names the aspects and orbs it was found with (orbs decide ``starts``/``ends``). The unique
    constraint leads with (chart, exact), so it is also the index of "events of these charts between two moments",
    and a block written twice (a resumed run) cannot add a second copy.
    """

    chart = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="transit_events")
    # As long as the point names a chart may have (the API takes 64 characters): PostgreSQL refuses longer ones.
    point = models.CharField(max_length=64, help_text="The natal point (e.g. Venus).")
    body = models.CharField(max_length=32, help_text="The transiting body (e.g. Mars).")
    aspect = models.CharField(max_length=16)
    exact = models.DateTimeField(help_text="When the body stands exactly at natal point ± aspect angle (UTC).")
    starts = models.DateTimeField(
        null=True, blank=True, help_text="When this pass enters the orb; null outside the run's range."
    )
    ends = models.DateTimeField(
        null=True, blank=True, help_text="When this pass leaves the orb; null outside the run's range."
    )
    retrograde = models.BooleanField(default=False, help_text="The body's direction at the exact moment.")
    config_hash = models.CharField(max_length=32)
    run = models.ForeignKey(BatchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["chart", "exact", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["chart", "exact", "body", "point", "aspect", "config_hash"], name="transit_event_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.chart_id}: {self.body} {self.aspect} {self.point} at {self.exact:%Y-%m-%d %H:%M}"


class ChartFeatures(models.Model):
    """A chart's ``"harmonic"`` feature vectors under one configuration, stored when its positions are, so that
    matching reads them instead of computing them (:mod:`aspects_app.features`).

    ``config_hash`` is ``HarmonicConfig.config_hash(points)`` (configuration and columns), ``settings_hash`` the
    same without the columns (which configuration, whatever the chart's points), ``positions_hash`` the chart's
    positions they came from: a row whose hashes are not the current ones is stale and computed again on use.
    ``features_a`` / ``features_b`` are F and G (float64 little-endian, ``dimension`` each)."""

    chart = models.ForeignKey(Chart, on_delete=models.CASCADE, related_name="harmonic_features")
    config_hash = models.CharField(max_length=32)
    settings_hash = models.CharField(max_length=32)
    positions_hash = models.CharField(max_length=64)
    format_version = models.PositiveSmallIntegerField()
    dimension = models.PositiveIntegerField()
    features_a = models.BinaryField()
    features_b = models.BinaryField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chart", "settings_hash"], name="chart_features_unique"),
        ]
        # A configuration's rows by chart (an index build), and those changed since a moment (an index's delta).
        indexes = [models.Index(fields=["config_hash", "chart"]), models.Index(fields=["config_hash", "updated_at"])]

    def __str__(self) -> str:
        return f"features of {self.chart_id} ({self.config_hash})"
