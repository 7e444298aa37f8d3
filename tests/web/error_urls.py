"""URLs for the error-page tests: the real site, plus a view with a bug and one whose database
is unavailable. Used with ``pytest.mark.urls("tests.web.error_urls")``; the error handlers are
the project's own."""

from __future__ import annotations

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

import vertebra.urls


def bug(request: HttpRequest) -> HttpResponse:
    """A programming error in a view: the styled 500 page, never the error's text."""
    raise RuntimeError("secret internals: patient_id=42 in clinic_1")


def database_down(request: HttpRequest) -> HttpResponse:
    """The database cannot serve: still the 503 page of vertebra.web.unavailable."""
    raise OperationalError("database is locked")


urlpatterns = [
    path("learn/bug/", bug),
    path("learn/database-down/", database_down),
    path("", include("vertebra.urls")),
]

handler400 = vertebra.urls.handler400
handler500 = vertebra.urls.handler500
