"""URLs of the clinician pages under /clinic/ (namespace ``registry``)."""

from django.urls import URLPattern, URLResolver, path

from vertebra.registry import correction_views, views

app_name = "registry"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.patient_list, name="patients"),
    path("role/", views.choose_role, name="choose-role"),
    path("patients/new/", views.patient_create, name="patient-create"),
    path("patients/<int:patient_id>/", views.patient_detail, name="patient"),
    path("patients/<int:patient_id>/edit/", correction_views.patient_edit, name="patient-edit"),
    path("patients/<int:patient_id>/consents/new/", views.consent_create, name="consent-create"),
    path("consents/<int:consent_id>/withdraw/", views.consent_withdraw, name="consent-withdraw"),
    path(
        "patients/<int:patient_id>/diagnoses/new/",
        views.diagnosis_create,
        name="diagnosis-create",
    ),
    path(
        "patients/<int:patient_id>/prior-treatments/new/",
        views.prior_treatment_create,
        name="prior-treatment-create",
    ),
    path(
        "patients/<int:patient_id>/screenings/new/",
        views.screening_create,
        name="screening-create",
    ),
    path("patients/<int:patient_id>/episodes/new/", views.episode_create, name="episode-create"),
    path(
        "patients/<int:patient_id>/adverse-events/new/",
        views.adverse_event_create,
        name="adverse-event-create",
    ),
    path(
        "patients/<int:patient_id>/clinical-events/new/",
        views.clinical_event_create,
        name="clinical-event-create",
    ),
    path("episodes/<int:episode_id>/harvest/", views.harvest_create, name="harvest-create"),
    path(
        "episodes/<int:episode_id>/processing/",
        views.processing_create,
        name="processing-create",
    ),
    path(
        "episodes/<int:episode_id>/sterility/",
        views.sterility_record,
        name="sterility-record",
    ),
    path(
        "episodes/<int:episode_id>/injections/new/",
        views.injection_create,
        name="injection-create",
    ),
    path(
        "records/<slug:slug>/<int:object_id>/correct/",
        correction_views.correct,
        name="record-correct",
    ),
    path("records/<slug:slug>/<int:object_id>/void/", correction_views.void, name="record-void"),
    path(
        "records/<slug:slug>/<int:object_id>/history/",
        correction_views.history,
        name="record-history",
    ),
    path("adverse-events/", views.adjudication_queue, name="adjudication-queue"),
    path(
        "adverse-events/<int:adverse_event_id>/adjudicate/",
        views.adjudicate,
        name="adjudicate",
    ),
]
