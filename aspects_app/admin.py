from django.contrib import admin

from .models import AspectResult, BatchRun, Chart


@admin.register(Chart)
class ChartAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "is_public", "birth_datetime", "updated_at"]
    list_filter = ["is_public"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["owner"]
    readonly_fields = ["positions_hash", "created_at", "updated_at"]


@admin.register(AspectResult)
class AspectResultAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "chart_a", "chart_b", "config_hash", "engine_version", "hit_count", "computed_at"]
    list_filter = ["kind", "engine_version"]
    raw_id_fields = ["chart_a", "chart_b"]
    # The payload is binary; results are written by the services only.
    exclude = ["payload"]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(BatchRun)
class BatchRunAdmin(admin.ModelAdmin):
    list_display = ["id", "mode", "status", "progress_done", "progress_total", "backend", "created_at"]
    list_filter = ["status", "mode", "backend"]
    readonly_fields = ["created_at", "started_at", "finished_at"]
