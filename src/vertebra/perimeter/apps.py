"""App config of the perimeter (throttle counters live in its table)."""

from django.apps import AppConfig


class PerimeterConfig(AppConfig):
    name = "vertebra.perimeter"
    label = "perimeter"
    verbose_name = "Vertebra perimeter (throttles)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the deployment checks (perimeter.W001)."""
        from vertebra.perimeter import checks  # noqa: F401
