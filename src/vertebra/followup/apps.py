"""Follow-up: schedules, patient links, questionnaires, reminders and ticklers."""

from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "vertebra.followup"
    label = "followup"
    verbose_name = "Vertebra follow-up"

    def ready(self) -> None:
        # Follow-up answers join the registry's record types (correct, void, history).
        from vertebra.followup import corrections  # noqa: F401
