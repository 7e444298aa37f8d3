"""Public shell pages. Views parse input, call a service or selector, and render."""

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_GET, require_safe


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: what Vertebra is and where each kind of user goes next."""
    return render(request, "vertebra/home.html")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database readiness for load balancers and the demo launcher."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return JsonResponse({"status": "ok", "database": "ok"})
    except Exception:  # the point is to report, not to raise
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for by themselves: redirect to the site icon, so
    pages without a ``<link rel="icon">`` (the Django admin) log no 404."""
    response = redirect(static("vertebra/favicon.png"))
    response["Cache-Control"] = "public, max-age=86400"
    return response
