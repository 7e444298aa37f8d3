"""RFC 9457 problem details: the one shape of every JSON API error.

A problem is ``{"type", "title", "status", "detail"}`` sent as ``application/problem+json``,
plus, for invalid input, ``errors``: one entry per problem, each naming its ``field`` (and the
full ``loc``, ``msg``, ``type`` as ninja reports them). ``type`` is ``about:blank`` when the
status code says it all (the title is then the status phrase, as RFC 9457 §4.2.1 asks), or one
of the ``urn:vertebra:problem:*`` types listed in :data:`PROBLEM_TYPES` (documented in
``docs/perimeter.md "API errors"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse

MEDIA_TYPE = "application/problem+json"

#: Problem types beyond a bare status code: slug → title.
PROBLEM_TYPES: Mapping[str, str] = {
    "validation-error": "Invalid input",
    "rate-limited": "Too many requests",
    "body-too-large": "Request body too large",
    "malformed-body": "Unreadable request body",
    "stale-edit": "Changed by someone else",
    "chain-of-custody": "Refused by the chain of custody",
    "database-unavailable": "Database unavailable",
    "record-voided": "Record voided",
    # A pathway step refused until something is supplied first (MissingStepError.remedy,
    # underscores as hyphens); ``remedy`` and ``next_step`` say what and how.
    "treatment-consent": "Treatment consent needed first",
    "registry-consent": "Registry consent needed first",
    "harvest": "Harvest needed first",
    "processing": "Processing needed first",
    "sterility-result": "Sterility result needed first",
    "sterility-failed": "Sterility test failed",
    "lot-release": "Lot release needed first",
}


def problem_type(slug: str) -> str:
    """The ``type`` URI of a problem slug in :data:`PROBLEM_TYPES`."""
    if slug not in PROBLEM_TYPES:
        raise KeyError(f"unknown problem type {slug!r}")
    return f"urn:vertebra:problem:{slug}"


def problem_body(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON object of a problem (see the module docstring)."""
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": PROBLEM_TYPES[slug] if slug else HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [dict(e) for e in errors]
    body.update(extra)
    return body


class ProblemError(Exception):
    """Raise to answer an API request with a problem (the API's exception handler renders it
    with :func:`problem_response`); ``extra`` are extension members (RFC 9457 §3.2)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        if slug is not None:
            problem_type(slug)  # an unknown slug is a programming error: fail at the raise
        self.status = status
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.extra = extra

    def response(self) -> HttpResponse:
        """This problem as an ``application/problem+json`` response."""
        return problem_response(
            self.status, self.detail, slug=self.slug, errors=self.errors, **self.extra
        )


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> HttpResponse:
    """An ``application/problem+json`` response with ``Cache-Control: no-store``."""
    response = HttpResponse(
        json.dumps(problem_body(status, detail, slug=slug, errors=errors, **extra), default=str),
        status=status,
        content_type=f"{MEDIA_TYPE}; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ninja/pydantic error entries (``loc``, ``msg``, ``type``) with the ``field`` named:
    the last string in ``loc`` that is not the source (``body``, ``query``, ``path``)."""
    out = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        names = [str(p) for p in loc[1:] if isinstance(p, str)] or [str(p) for p in loc[:1]]
        out.append(
            {
                "field": names[-1] if names else "",
                "loc": loc,
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return out


def summary(errors: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for ``detail``: the first problem, and how many more."""
    if not errors:
        return "The request is not valid."
    first = errors[0]
    where = first.get("field") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
