"""The Django admin: charts are edited by their birth data only (positions follow through the services); results,
runs, matches and their counters are the app's and only shown."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import services
from .engine.errors import FieldError
from .models import AspectResult, BatchRun, Chart, Match, TransitEvent

# django-stubs makes ModelAdmin generic in its model; at run time it takes no type argument.
if TYPE_CHECKING:
    _ChartAdmin = admin.ModelAdmin[Chart]
    _ReadOnlyAdmin = admin.ModelAdmin[Any]
    _ChartForm = forms.ModelForm[Chart]
else:
    _ChartAdmin = _ReadOnlyAdmin = admin.ModelAdmin
    _ChartForm = forms.ModelForm

BIRTH_FIELDS = ("birth_datetime", "latitude", "longitude")
SIGNS = (
    "Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo",
    "Libra", "Scorpio", "Sagittarius", "Capricorn", "Aquarius", "Pisces",
)  # fmt: skip
# Id lists longer than this are shown as a count and their ends, not one by one.
SHOWN_IDS = 10


def zodiac_position(longitude: float) -> tuple[str, str]:
    """(sign, degree within it as 12°34′56″) of an ecliptic longitude."""
    seconds = round((longitude % 360.0) * 3600.0) % (360 * 3600)
    sign, within = divmod(seconds, 30 * 3600)
    degrees, rest = divmod(within, 3600)
    return SIGNS[sign], f"{degrees}°{rest // 60:02d}′{rest % 60:02d}″"


class ChartAdminForm(_ChartForm):
    """Birth data in, positions computed from it (through the services) before the chart validates: the admin
    can neither store a chart without positions nor positions that its birth data contradicts."""

    class Meta:
        model = Chart
        fields = ["name", "owner", "is_public", "birth_datetime", "latitude", "longitude", "time_zone"]

    old_positions_hash = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        chart = self.instance
        self.old_positions_hash = chart.positions_hash
        given = [f for f in BIRTH_FIELDS if cleaned.get(f) is not None]
        if given and len(given) < len(BIRTH_FIELDS):
            for field in BIRTH_FIELDS:
                if field not in given and field not in self.errors:
                    self.add_error(field, "required with the rest of the birth data")
            return cleaned
        if not given:
            if chart.has_birth_data:
                raise forms.ValidationError("the positions are computed from the birth data: it cannot be removed")
            if chart.positions_problem() is not None:
                raise forms.ValidationError(
                    "give birth_datetime, latitude and longitude (positions are computed from them); charts "
                    "with positions given instead are created through the API"
                )
            return cleaned
        if chart.positions_problem() is None and not set(BIRTH_FIELDS) & set(self.changed_data):
            return cleaned
        for field in BIRTH_FIELDS:
            setattr(chart, field, cleaned[field])
        try:
            services.fill_positions_from_birth(chart)
        except FieldError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


@admin.register(Chart)
class ChartAdmin(_ChartAdmin):
    form = ChartAdminForm
    list_display = ["id", "name", "owner", "is_public", "birth_datetime", "updated_at"]
    list_filter = ["is_public"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    fields = [
        "name",
        "owner",
        "is_public",
        "birth_datetime",
        "latitude",
        "longitude",
        "time_zone",
        "positions_table",
        "houses_table",
        "positions_hash",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["positions_table", "houses_table", "positions_hash", "created_at", "updated_at"]
    actions = ["recompute_positions"]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        # The user model's own login field: a host's model may log in by email and have no username.
        return ["name", f"owner__{get_user_model().USERNAME_FIELD}"]

    @admin.display(description="positions")
    def positions_table(self, chart: Chart) -> SafeString | str:
        problem = chart.positions_problem()
        if problem is not None:
            return "—" if chart.pk is None else problem
        speeds = chart.speed_array
        rows = []
        for n, (name, longitude) in enumerate(zip(chart.points, chart.longitude_array.tolist(), strict=True)):
            sign, degree = zodiac_position(longitude)
            speed = "" if speeds is None else f"{speeds[n]:+.4f}"
            retrograde = "R" if speeds is not None and speeds[n] < 0 else ""
            rows.append((name, sign, degree, f"{longitude:.6f}", speed, retrograde))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><thead><tr><th>point</th><th>sign</th><th>degree in sign</th><th>longitude</th>"
            "<th>speed (°/day)</th><th>retrograde</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="house cusps")
    def houses_table(self, chart: Chart) -> SafeString | str:
        # The cusps stored with the positions (the HOUSE_SYSTEM setting's; computed and stored if missing).
        if chart.pk is None or chart.positions_problem() is not None:
            return "—"
        try:
            houses = services.chart_houses(chart)
        except FieldError as exc:
            return f"{exc.field}: {exc.message}"
        if houses is None:
            return "none: the positions were given, not computed from birth data"
        rows = []
        for house, cusp in enumerate(houses.cusps[0].tolist(), start=1):
            sign, degree = zodiac_position(cusp)
            rows.append((house, sign, degree, f"{cusp:.6f}"))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        note = " (undefined at this latitude: Porphyry's cusps)" if houses.fallback[0] else ""
        return format_html(
            "<p>{}{}</p><table><thead><tr><th>house</th><th>sign</th><th>degree in sign</th><th>cusp</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            houses.system,
            note,
            body,
        )

    def save_model(self, request: HttpRequest, obj: Chart, form: Any, change: bool) -> None:
        # Removes the results (persisted and cached) of the positions the chart no longer has.
        services.save_chart(obj, getattr(form, "old_positions_hash", ""))

    @admin.action(description="Recompute positions from birth data")
    def recompute_positions(self, request: HttpRequest, queryset: QuerySet[Chart]) -> None:
        try:
            count = services.recompute_positions(queryset)
        except FieldError as exc:
            self.message_user(request, f"{exc.field}: {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"Recomputed the positions of {count} chart(s) with birth data.")


class ReadOnlyAdmin(_ReadOnlyAdmin):
    """The app writes these rows; the admin shows them (and may delete them)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AspectResult)
class AspectResultAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "chart_a", "chart_b", "config_hash", "engine_version", "hit_count", "computed_at"]
    list_filter = ["kind", "engine_version"]
    list_select_related = ["chart_a", "chart_b"]
    # The payload is binary.
    exclude = ["payload"]


def compact(value: Any) -> Any:
    """``value`` with long id lists shortened to their count and ends (a run's selection can hold millions)."""
    if isinstance(value, dict):
        return {key: compact(item) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) > SHOWN_IDS and all(isinstance(item, int) for item in value):
            return f"{len(value)} ids: {', '.join(map(str, value[:3]))} … {', '.join(map(str, value[-3:]))}"
        return [compact(item) for item in value]
    return value


@admin.register(BatchRun)
class BatchRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "mode", "status", "progress_done", "progress_total", "backend", "created_at"]
    list_filter = ["status", "mode", "backend"]
    list_select_related = ["owner"]
    exclude = ["parameters"]
    readonly_fields = ["selection"]

    @admin.display(description="parameters")
    def selection(self, run: BatchRun) -> SafeString:
        return format_html(
            "<pre>{}</pre>", json.dumps(compact(run.parameters), indent=2, sort_keys=True, ensure_ascii=False)
        )


@admin.register(Match)
class MatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "chart", "rank", "partner", "score", "method", "run", "computed_at"]
    list_filter = ["method"]
    list_select_related = ["chart", "partner", "run"]
    raw_id_fields = ["chart", "partner", "run"]


@admin.register(TransitEvent)
class TransitEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "chart", "body", "aspect", "point", "exact", "retrograde", "run"]
    list_filter = ["body", "aspect"]
    list_select_related = ["chart", "run"]
    raw_id_fields = ["chart", "run"]
    # Millions of rows: found by their chart (an exact id), not by text.
    search_fields = ["=chart__id"]
    search_help_text = "A chart's id."
