from django.apps import AppConfig


class AspectsAppConfig(AppConfig):
    name = "aspects_app"
    label = "aspects_app"
    verbose_name = "Aspects"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the system checks and signal receivers (and, through conf, setting_changed's).
        from aspects_app import checks, signals  # noqa: F401

        signals.time_open_connections()
