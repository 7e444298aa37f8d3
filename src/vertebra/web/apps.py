"""The web shell: public pages, layout, static assets and the API root."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "vertebra.web"
    label = "web"
    verbose_name = "Vertebra web"

    def ready(self) -> None:
        """Let the 503 page know which audited writes a request committed (see unavailable)."""
        from django.db.models.signals import post_save

        from vertebra.registry.models import AuditEvent
        from vertebra.web.unavailable import note_committed_audit_row

        post_save.connect(
            note_committed_audit_row, sender=AuditEvent, dispatch_uid="vertebra-committed-audit"
        )
