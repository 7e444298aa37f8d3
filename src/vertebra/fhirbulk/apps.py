"""FHIR Bulk Data export and SMART Backend Services."""

from django.apps import AppConfig


class FhirBulkConfig(AppConfig):
    name = "vertebra.fhirbulk"
    label = "fhirbulk"
    verbose_name = "Vertebra FHIR Bulk Data"
