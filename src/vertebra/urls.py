"""Top-level URL map: public pages, staff login, admin and the JSON API."""

from django.contrib import admin
from django.urls import include, path

from vertebra.web.api import api

urlpatterns = [
    # Bulk Data $export and SMART Backend Services: before any generic fhir/ include.
    path("", include("vertebra.fhirbulk.urls")),
    path("", include("vertebra.web.urls")),
    path("clinic/outcomes/", include("vertebra.outcomes.urls")),
    path("clinic/directory/", include("vertebra.directory.staff_urls")),
    path("clinic/", include("vertebra.registry.urls")),
    path("p/", include("vertebra.followup.urls")),
    path("accounts/mfa/", include("vertebra.mfa.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("clinics/", include("vertebra.directory.urls")),
    path("api/v1/", api.urls),
    path("fhir/", include("vertebra.fhirserver.urls")),
]

# An unavailable database answers 503 with a plain message (web/unavailable.py), whether it
# failed in a view (500 path) or in the session save (Django's 400 path); other errors unchanged.
handler400 = "vertebra.web.unavailable.bad_request"
handler500 = "vertebra.web.unavailable.server_error"
