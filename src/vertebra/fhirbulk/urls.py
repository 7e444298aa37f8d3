"""Bulk Data ``$export`` and SMART Backend Services URLs (included from the site root, before
the FHIR REST server's ``fhir/`` include so these paths resolve here)."""

from django.urls import path

from vertebra.fhirbulk import views

app_name = "fhirbulk"

urlpatterns = [
    path("fhir/$export", views.export_system, name="export"),
    path("fhir/Patient/$export", views.export_patient, name="export-patient"),
    path("fhir/Group/<str:group_id>/$export", views.export_group, name="export-group"),
    path("fhir/bulk-status/<uuid:job_id>", views.status, name="status"),
    path("fhir/bulk-files/<uuid:job_id>/<str:name>", views.download, name="file"),
    path("fhir/auth/token", views.token, name="token"),
    path(
        "fhir/.well-known/smart-configuration",
        views.smart_configuration,
        name="smart-configuration",
    ),
]
