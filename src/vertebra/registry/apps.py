"""The registry: clinics, memberships, patients, the treatment pathway and the audit trail."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "vertebra.registry"
    label = "registry"
    verbose_name = "Vertebra registry"
