"""Answer 503 with an honest, plain message when the database fails, instead of a 500.

Contracts
---------
* :func:`server_error` is Django's ``handler500``. Django calls it for an exception raised
  anywhere in a request (view, template, a middleware), with the exception still being
  handled. A database that is unavailable (``OperationalError`` or ``InterfaceError`` in the
  exception's chain: full disk, lock wait over ``DATABASE_TIMEOUT``, refused or cut
  connection, connect timeout) gets **503** with ``Retry-After``; anything else keeps Django's
  plain 500 page. :func:`bad_request` (``handler400``) does the same for the session save,
  which Django reports as a 400. Neither body holds a traceback or the exception's text:
  operators read those in the server log (Django's ``django.request`` logger). With
  ``DEBUG`` on (development only) Django shows its debug page instead, as for any error.
* The page says whether the write happened, because a patient must know whether to send their
  answers again (:class:`WriteOutcome`). "Saved" is known from the audit trail: every
  clinical write commits together with its audit row, so :class:`CommittedWritesMiddleware`
  notes each audit row whose transaction committed during the request.
* The 503 page is rendered without the request (no context processors): those would load the
  session or the user, which needs the database that just failed.
* ``/api/`` paths get an RFC 9457 problem (``application/problem+json``, type
  ``urn:vertebra:problem:database-unavailable``) with ``code: "database_unavailable"`` and
  ``saved`` true, false, or null (unknown).
"""

from __future__ import annotations

import enum
import inspect
import sqlite3
import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import server_error as django_server_error

from vertebra.perimeter.problems import problem_response
from vertebra.registry.audit import seal_before_streaming

#: Seconds a client should wait before retrying (the ``Retry-After`` header).
RETRY_AFTER_SECONDS = 30

#: Exceptions meaning "the database cannot serve right now", as opposed to a bug in a query
#: (ProgrammingError, IntegrityError, DataError stay 500).
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)

#: The audit rows committed during the current request (see CommittedWritesMiddleware).
_committed_audit_rows: ContextVar[list[int] | None] = ContextVar(
    "vertebra_committed_audit_rows", default=None
)

# Code objects of the commit path: an error raised inside them happened while committing.
# ``commit`` is wrapped by ``async_unsafe``, whose wrapper code is shared by connect(),
# cursor() and others: take the wrapped function's own code.
_COMMIT_CODE = {
    inspect.unwrap(BaseDatabaseWrapper.commit).__code__,
    inspect.unwrap(BaseDatabaseWrapper._commit).__code__,  # type: ignore[attr-defined]
}
# SQLite primary result codes after which a failed COMMIT certainly stored nothing.
_SQLITE_NOT_COMMITTED = {5, 6, 13}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL


class WriteOutcome(enum.Enum):
    """What became of the request's write when the database failed."""

    NONE = "none"  # a read (GET/HEAD/OPTIONS): nothing was sent to be stored
    SAVED = "saved"  # an audited write committed before the failure
    NOT_SAVED = "not_saved"  # the failure came before any commit: nothing was stored
    UNKNOWN = "unknown"  # the connection failed during COMMIT itself: the app cannot tell


def unavailable_cause(exc: BaseException | None) -> BaseException | None:
    """The database-unavailable error behind ``exc``, or None when there is none.

    Follows the exception's cause and context: Django's session middleware turns a failed
    session save into ``SessionInterrupted`` (a 400) raised while handling the database error.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, UNAVAILABLE_ERRORS):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def note_committed_audit_row(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """``post_save`` receiver of AuditEvent: remember the row once its transaction commits.

    Outside a request (worker, CLI) there is nothing to remember, so it does nothing.
    """
    rows = _committed_audit_rows.get()
    if rows is None or not created:
        return
    row_id = int(instance.pk)  # the row's id: its seal (and seal seq) come after the commit
    transaction.on_commit(lambda: rows.append(row_id), using=kwargs.get("using"))


class CommittedWritesMiddleware:
    """Give each request a list of the audit rows it committed (``request.committed_audit``),
    so an error page can say truthfully whether the request's write was saved."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rows: list[int] = []
        request.committed_audit = rows  # type: ignore[attr-defined]
        token = _committed_audit_rows.set(rows)
        try:
            response = self.get_response(request)
        finally:
            _committed_audit_rows.reset(token)
        if getattr(response, "streaming", False):
            # The audit sealer waits for the response's close() (ADR 0021 §7); a stream's
            # comes only after its last byte, so seal before the streaming starts.
            seal_before_streaming()
        return response


def _raised_while_committing(tb: TracebackType | None) -> bool:
    """True when the traceback passes through Django's COMMIT."""
    while tb is not None:
        if tb.tb_frame.f_code in _COMMIT_CODE:
            return True
        tb = tb.tb_next
    return False


def _failed_commit_stored_nothing(exc: BaseException) -> bool:
    """True when the driver error behind a failed COMMIT proves the transaction was not
    committed: SQLite busy, locked or full (its commit is atomic), or a PostgreSQL
    transaction-rollback error (SQLSTATE class 40). A lost connection proves nothing."""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        return (getattr(cause, "sqlite_errorcode", -1) & 0xFF) in _SQLITE_NOT_COMMITTED
    sqlstate = getattr(cause, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("40")


def write_outcome(request: HttpRequest, exc: BaseException) -> WriteOutcome:
    """Whether the write of ``request`` happened, given that ``exc`` ended it.

    A read stays a read even when it committed its own ``read`` audit row.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return WriteOutcome.NONE
    if getattr(request, "committed_audit", None):
        return WriteOutcome.SAVED
    if _raised_while_committing(exc.__traceback__) and not _failed_commit_stored_nothing(exc):
        return WriteOutcome.UNKNOWN
    return WriteOutcome.NOT_SAVED


_DOWN = "The registry's database is not available right now"
_STOPPED = "The registry's database stopped responding"

#: What the reader is told, by (outcome, portal page?). Each says what became of what they sent
#: and what to do; none names the error (that is in the server log).
MESSAGES: dict[tuple[WriteOutcome, bool], str] = {
    (WriteOutcome.NONE, False): f"{_DOWN}. Nothing was changed. Please try again in a few minutes.",
    (WriteOutcome.NOT_SAVED, True): (
        f"{_DOWN}, so your answers were NOT saved. Please try again in a few minutes; answers "
        "you sent on earlier pages are kept."
    ),
    (WriteOutcome.NOT_SAVED, False): (
        f"{_DOWN}, so what you sent was NOT saved. Please try again in a few minutes."
    ),
    (WriteOutcome.SAVED, True): (
        f"Your answers were saved. {_STOPPED} just afterwards, so the usual confirmation "
        "could not be shown. You do not need to send anything again."
    ),
    (WriteOutcome.SAVED, False): (
        f"What you sent was saved. {_STOPPED} just afterwards, so the usual confirmation "
        "could not be shown. You do not need to send it again."
    ),
    (WriteOutcome.UNKNOWN, True): (
        f"{_STOPPED} while saving, so we cannot tell whether your answers were saved. Please "
        "try again in a few minutes. Sending your answers again is safe: they are never "
        "stored twice."
    ),
    (WriteOutcome.UNKNOWN, False): (
        f"{_STOPPED} while saving, so we cannot tell whether what you sent was saved. Please "
        "try again in a few minutes, and check whether it is there before entering it again."
    ),
}


def _message(outcome: WriteOutcome, portal: bool) -> str:
    """The sentence that tells the reader what happened to what they sent, and what to do."""
    if outcome is WriteOutcome.NONE:
        portal = False  # a read is a read, on any page
    return MESSAGES[(outcome, portal)]


def database_unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 answer for ``exc``: JSON under ``/api/``, otherwise a plain HTML page."""
    outcome = write_outcome(request, exc)
    portal = request.path.startswith("/p/") and not request.path.startswith("/p/staff/")
    text = _message(outcome, portal)
    # Django never saves a session on a 5xx, but its middleware still loads an unloaded session
    # on the way out (SESSION_SAVE_EVERY_REQUEST): a second wait on the failed database, which
    # doubled the time to this answer. Without the attribute the middleware passes the response
    # through untouched.
    if hasattr(request, "session"):
        del request.session
    response: HttpResponse
    if request.path.startswith("/api/"):
        saved = {WriteOutcome.SAVED: True, WriteOutcome.UNKNOWN: None}.get(outcome, False)
        response = problem_response(
            503, text, slug="database-unavailable", code="database_unavailable", saved=saved
        )
    else:
        html = render_to_string(
            "vertebra/unavailable.html",
            {"title": "The registry is not available right now", "text": text},
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    response["X-Vertebra-Write"] = outcome.value  # the same fact, for scripts and tests
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: 503 for an unavailable database (see module docstring), else Django's
    plain 500 page."""
    cause = unavailable_cause(sys.exc_info()[1])
    if cause is not None:
        return database_unavailable_response(request, cause)
    return django_server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: 503 when the "bad request" is a session save the database refused
    (``SessionInterrupted``), else Django's plain 400 page."""
    cause = unavailable_cause(exception)
    if cause is not None:
        return database_unavailable_response(request, cause)
    return django_bad_request(request, exception)
