"""URLs for the in-process tests of the 503 page: views that fail the way a database does.

Used with ``override_settings(ROOT_URLCONF="tests.reliability.fault_urls")``; the error
handlers are the project's own (``vertebra.urls``).
"""

from __future__ import annotations

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from vertebra.followup.services import WORKER_ACTOR
from vertebra.registry.audit import record_audit


def read_fails(request: HttpRequest) -> HttpResponse:
    """A page whose query finds the database locked."""
    raise OperationalError("database is locked")


def api_write_fails(request: HttpRequest) -> HttpResponse:
    """An API write whose connection was closed under it."""
    raise InterfaceError("connection already closed")


def bug(request: HttpRequest) -> HttpResponse:
    """A programming error, not an unavailable database: stays a 500."""
    raise IntegrityError("UNIQUE constraint failed: followup_submission.idempotency_key")


def _audited_write() -> None:
    record_audit(actor=WORKER_ACTOR, action="create", object_type="reliability_probe")


def saved_then_fails(request: HttpRequest) -> HttpResponse:
    """An audited write commits, then the database fails before the answer is built."""
    with transaction.atomic():
        _audited_write()
    raise OperationalError("server closed the connection unexpectedly")


def commit_fails(request: HttpRequest) -> HttpResponse:
    """The connection dies between the last statement and COMMIT (PostgreSQL): the COMMIT
    raises, and the app cannot know whether the server committed."""
    import psycopg
    from django.conf import settings

    with transaction.atomic():
        _audited_write()
        pid = connection.connection.info.backend_pid
        params = connection.get_connection_params()
        params["dbname"] = settings.DATABASES["default"]["NAME"]
        with psycopg.connect(**params, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", [pid])
    return HttpResponse("unreachable")


urlpatterns = [
    path("p/read-fails/", read_fails),
    path("api/v1/write-fails", api_write_fails),
    path("p/bug/", bug),
    path("p/saved-then-fails/", saved_then_fails),
    path("p/commit-fails/", commit_fails),
    path("clinic/read-fails/", read_fails),
    path("", include("vertebra.urls")),  # the real pages, for the layout's links
]

handler400 = "vertebra.web.unavailable.bad_request"
handler500 = "vertebra.web.unavailable.server_error"
