"""Top-level URL map: public pages, staff login, admin and the JSON API."""

from django.contrib import admin
from django.urls import include, path

from vertebra.web.api import api

urlpatterns = [
    path("", include("vertebra.web.urls")),
    path("clinic/outcomes/", include("vertebra.outcomes.urls")),
    path("clinic/", include("vertebra.registry.urls")),
    path("p/", include("vertebra.followup.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
