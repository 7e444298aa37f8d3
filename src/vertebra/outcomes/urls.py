"""URLs of the outcome pages, mounted at /clinic/outcomes/ (namespace ``outcomes``)."""

from django.urls import URLPattern, URLResolver, path

from vertebra.outcomes import views

app_name = "outcomes"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.dashboard, name="dashboard"),
    path("report.pdf", views.report_pdf, name="report-pdf"),
    path("report.json", views.report_json, name="report-json"),
    path("ready.json", views.ready_json, name="ready-json"),
    path("patient/<int:patient_id>/", views.patient_trajectory, name="patient"),
]
