"""Follow-up: schedules, patient links, questionnaires, reminders and ticklers."""

from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "vertebra.followup"
    label = "followup"
    verbose_name = "Vertebra follow-up"
