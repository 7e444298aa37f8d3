"""Outcomes: the registry's analysis tables, dashboards and reports (no models of its own)."""

from django.apps import AppConfig


class OutcomesConfig(AppConfig):
    name = "vertebra.outcomes"
    label = "outcomes"
    verbose_name = "Vertebra outcomes"
