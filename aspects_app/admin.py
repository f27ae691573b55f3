from typing import TYPE_CHECKING

from django.contrib import admin

from .models import AspectResult, BatchRun, Chart

# django-stubs makes ModelAdmin generic in its model; at run time it takes no type argument.
if TYPE_CHECKING:
    _ChartAdmin = admin.ModelAdmin[Chart]
    _AspectResultAdmin = admin.ModelAdmin[AspectResult]
    _BatchRunAdmin = admin.ModelAdmin[BatchRun]
else:
    _ChartAdmin = _AspectResultAdmin = _BatchRunAdmin = admin.ModelAdmin


@admin.register(Chart)
class ChartAdmin(_ChartAdmin):
    list_display = ["id", "name", "owner", "is_public", "birth_datetime", "updated_at"]
    list_filter = ["is_public"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["owner"]
    readonly_fields = ["positions_hash", "created_at", "updated_at"]


@admin.register(AspectResult)
class AspectResultAdmin(_AspectResultAdmin):
    list_display = ["id", "kind", "chart_a", "chart_b", "config_hash", "engine_version", "hit_count", "computed_at"]
    list_filter = ["kind", "engine_version"]
    raw_id_fields = ["chart_a", "chart_b"]
    # The payload is binary; results are written by the services only.
    exclude = ["payload"]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(BatchRun)
class BatchRunAdmin(_BatchRunAdmin):
    list_display = ["id", "mode", "status", "progress_done", "progress_total", "backend", "created_at"]
    list_filter = ["status", "mode", "backend"]
    readonly_fields = ["created_at", "started_at", "finished_at"]
