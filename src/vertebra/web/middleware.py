"""Response headers Django 5.2 does not set by itself."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

#: Paths whose responses may carry patient data: never stored by browsers or proxies.
NO_STORE_PREFIXES = (
    "/clinic/",
    "/api/v1/patients",
    "/api/v1/episodes",
    "/api/v1/harvests",
    "/api/v1/adverse-events",
)


class SecurityHeadersMiddleware:
    """Add a Content-Security-Policy and a Permissions-Policy to every response, and
    ``Cache-Control: no-store`` to responses under :data:`NO_STORE_PREFIXES`.

    Every asset is served by the app itself, so a strict ``'self'`` policy holds; a view that
    needs something else sets its own header and this middleware leaves it alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"
        )
        if request.path.startswith(NO_STORE_PREFIXES):
            add_never_cache_headers(response)  # Cache-Control: no-store (PHI)
        return response
