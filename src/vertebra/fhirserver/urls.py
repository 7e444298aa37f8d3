"""``/fhir/``: CapabilityStatement, search and read (vertebra.fhirserver.views)."""

from django.urls import path

from vertebra.fhirserver import views

app_name = "fhir"

urlpatterns = [
    path("metadata", views.metadata, name="metadata"),
    path("<str:resource_type>", views.type_search, name="search"),
    path("<str:resource_type>/<str:resource_id>", views.instance, name="read"),
]
