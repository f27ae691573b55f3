"""What a batch run computes: the job spec (stored with the run so that it can be resumed) and the selection of
charts it runs over. Bad values raise :class:`FieldError` on the spec's field; the job API and the command name
the field their own way."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .. import calculators, services
from ..conf import get_config
from ..engine import AspectConfig
from ..engine.errors import FieldError
from ..engine.patterns import DEFAULT_STELLIUM_MIN_POINTS, PATTERN_NAMES, StelliumRule
from ..models import Chart, id_batches
from .population import split_by_points

MODES: tuple[str, ...] = ("natal", "synastry", "scores", "top-k", "transits", "patterns")
FORMATS: tuple[str, ...] = ("jsonl", "csv", "npz")
# The engine's name of each mode's operation (memory plans). The engine plans no memory for transits: it chunks
# the charts under the budget by itself, and a run's blocks are sized by the rows they store (see job.py).
OPERATIONS: dict[str, str] = {
    "natal": "natal", "synastry": "synastry", "scores": "scores", "top-k": "top_k", "transits": "transits",
    "patterns": "patterns",  # its natal aspects, then the search on the host (usually the larger per chart)
}  # fmt: skip
UNPLANNED_MODES = frozenset({"transits"})


class BatchError(ValueError):
    """A run that cannot go on as it stands (already done, its charts deleted meanwhile)."""


def owner_lookup(owner: str) -> dict[str, str]:
    """Charts of the user whose natural key (the user model's USERNAME_FIELD: a username, or an e-mail address
    for a model that logs in by e-mail) is ``owner``."""
    return {f"owner__{get_user_model().USERNAME_FIELD}": owner}


@dataclass
class Selection:
    """Which charts: explicit ids, an owner's, changed since a moment, or all (ids ascending)."""

    ids: list[int] | None = None
    owner: str | None = None
    changed_since: datetime | None = None

    def queryset(self) -> QuerySet[Chart]:
        charts = Chart.objects.all()
        if self.ids is not None:
            charts = charts.filter(pk__in=self.ids)
        if self.owner is not None:
            charts = charts.filter(**owner_lookup(self.owner))
        if self.changed_since is not None:
            charts = charts.filter(updated_at__gte=self.changed_since)
        return charts.order_by("pk")

    def resolve(self, field: str) -> list[int]:
        """The selected ids, ascending; an empty selection, an owner without charts or an unknown id is a
        :class:`FieldError` on ``field``."""
        if self.owner is not None and not Chart.objects.filter(**owner_lookup(self.owner)).exists():
            raise FieldError(field, f"no charts owned by {self.owner!r}")
        if self.ids is not None:
            found: set[int] = set()
            for batch in id_batches(self.ids):
                narrowed = Selection(list(batch), self.owner, self.changed_since)
                found.update(narrowed.queryset().values_list("pk", flat=True))
            missing = sorted(set(self.ids) - found)
            if missing:
                raise FieldError(field, f"unknown chart ids (or outside the other filters): {missing[:20]}")
            return sorted(found)
        ids = list(self.queryset().values_list("pk", flat=True))
        if not ids:
            raise FieldError(field, "the selection is empty")
        return ids


@dataclass
class JobSpec:
    """Everything a run needs to be repeated or resumed; stored in ``BatchRun.parameters``."""

    modes: list[str]
    group_a: list[int]
    group_b: list[int] | None = None  # None: pairs within group A
    orbs: str | dict[str, float] | None = None
    aspects: list[str] | None = None
    method: str = "discepolo"
    k: int = 10
    backend: str | None = None  # None: the settings' (resolved when the spec is made, so the run keeps it)
    working_memory_mb: float | None = None  # None: the settings'
    chunk_size: int | None = None
    output: str = "db"  # "db" or a file path
    file_format: str | None = None
    # Transits: the range (ISO 8601, UTC once checked; stored as text so the spec stays JSON) and the bodies
    # (None: Sun … Pluto).
    start: str | None = None
    end: str | None = None
    bodies: list[str] | None = None
    # Patterns: only these (None: all of PATTERN_NAMES), stellia within this span (None: by sign).
    patterns: list[str] | None = None
    stellium_span: float | None = None

    def __post_init__(self) -> None:
        settings = get_config()
        if self.backend is None:
            self.backend = settings.backend
        if self.working_memory_mb is None:
            self.working_memory_mb = settings.working_memory_mb
        self._check_modes()
        if self.output != "db":
            self._check_file_output()
        elif "scores" in self.modes:
            raise FieldError("modes", "scores writes a dense matrix: give --output PATH.npz (or .csv / .jsonl)")
        elif "patterns" in self.modes:
            # Patterns have no table of their own: they are listings for a file.
            raise FieldError("output", "patterns are listed to a file: give --output PATH.jsonl or PATH.csv")
        self._check_sizes()
        self._check_transits()
        self._check_patterns()
        self.config()  # validate orbs and aspects now, not after the first block

    def _check_modes(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise FieldError("modes", f"unknown or missing mode(s) {unknown}; choose from {', '.join(MODES)}")

    def _check_file_output(self) -> None:
        self.file_format = self.file_format or Path(self.output).suffix.lstrip(".").lower()
        if self.file_format not in FORMATS:
            raise FieldError("file_format", f"unknown output format {self.file_format!r}; use {', '.join(FORMATS)}")
        if len(self.modes) > 1:
            raise FieldError("output", "a file takes one mode; run the command once per mode")
        if self.file_format == "npz" and self.modes != ["scores"]:
            raise FieldError("file_format", "npz holds dense score matrices: use it with --mode scores")
        directory = Path(self.output).resolve().parent
        if not directory.is_dir() or not os.access(directory, os.W_OK):
            raise FieldError("output", f"cannot write into {directory}")

    def _check_sizes(self) -> None:
        if self.k < 1:
            raise FieldError("k", f"must be at least 1, got {self.k}")
        budget = self.working_memory_mb
        if budget is None or not math.isfinite(budget) or budget <= 0:
            raise FieldError("working_memory_mb", f"must be positive and finite, got {budget}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise FieldError("chunk_size", f"must be at least 1, got {self.chunk_size}")

    def _check_transits(self) -> None:
        if "transits" not in self.modes:
            for name in ("start", "end", "bodies"):
                if getattr(self, name) is not None:
                    raise FieldError(name, "only with mode transits")
            return
        if self.modes != ["transits"]:
            raise FieldError("modes", "transits is a mode of its own (its orbs are predictive ones): run it alone")
        if self.group_b is not None:
            raise FieldError("group_b", "transits take one group of charts (the sky is the other side)")
        for name in ("start", "end"):
            if getattr(self, name) is None:
                raise FieldError(name, "transits need a range: give start and end")
        first, last = services.transit_range(
            services.parse_moment("start", self.start or ""), services.parse_moment("end", self.end or ""), None
        )
        self.start, self.end = first.isoformat(), last.isoformat()
        names = services.transit_bodies(self.bodies)
        self.bodies = None if names is None else list(names)

    def _check_patterns(self) -> None:
        if "patterns" not in self.modes:
            for name, field in (("patterns", "pattern"), ("stellium_span", "stellium_span")):
                if getattr(self, name) is not None:
                    raise FieldError(field, "only with mode patterns")
            return
        if self.group_b is not None:
            raise FieldError("group_b", "patterns take one group of charts (each chart's own aspects)")
        if self.patterns is not None:
            # grand_trine reads as grand-trine: shells and Python names prefer underscores.
            names = [str(name).replace("_", "-") for name in self.patterns]
            unknown = [name for name in names if name not in PATTERN_NAMES]
            if unknown or not names:
                known = ", ".join(PATTERN_NAMES)
                raise FieldError("pattern", f"unknown or missing pattern(s) {unknown}; known: {known}")
            self.patterns = list(dict.fromkeys(names))
        StelliumRule.make(self.stellium_span, DEFAULT_STELLIUM_MIN_POINTS)

    @property
    def within_one_group(self) -> bool:
        return self.group_b is None

    def config(self) -> AspectConfig:
        if self.modes == ["transits"]:
            return services.transit_config(self.orbs, self.aspects)
        return services.aspect_config(self.orbs, self.aspects)

    def transit_window(self) -> tuple[datetime, datetime] | None:
        """[start, end) of a transits run (UTC), None for the other modes."""
        if self.start is None or self.end is None:
            return None
        return datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)

    def to_parameters(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> JobSpec:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in parameters.items() if k in known})


def check_plan(spec: JobSpec) -> None:
    """Fail before anything is stored: a group B none of whose charts has the run's points (charts with other
    points are skipped, not an error: :func:`.population.split_by_points`), or a budget that cannot hold one chart
    pair of some mode (a :class:`FieldError` on the engine's argument, e.g. ``working_memory_mb``)."""
    split = split_by_points(spec.group_a, spec.group_b)
    first = list(split.points) or None
    # Checked against the NumPy path's plan: it needs no device, and it holds more per pair than the fused kernels.
    calc = calculators.calculator(spec.config(), "numpy", spec.working_memory_mb, spec.chunk_size)
    columns = len(split.group_a if split.group_b is None else split.group_b)
    for mode in spec.modes:
        if mode in UNPLANNED_MODES:
            continue
        calc.estimate_memory_usage(
            len(split.group_a), columns, max(len(first or []), 1), OPERATIONS[mode], spec.method, points=first
        )
