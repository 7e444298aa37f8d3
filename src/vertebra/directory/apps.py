"""The public clinic directory (/clinics/) and the clinic admin's page that publishes it."""

from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "vertebra.directory"
    label = "directory"
    verbose_name = "Clinic directory"
