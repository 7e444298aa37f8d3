"""HTTP shell of Bulk Data ``$export`` and the SMART Backend Services token endpoint.

Views parse the request, call :mod:`vertebra.fhirbulk.auth` / :mod:`vertebra.fhirbulk.jobs`,
and answer as the Bulk Data IG v2 says: kick-off 202 + ``Content-Location``; status 202 with
``X-Progress`` and ``Retry-After`` while running, 200 with the manifest when done; files as
``application/fhir+ndjson``; ``DELETE`` on the status URL cancels (202). FHIR errors are
OperationOutcome resources; the token endpoint answers OAuth 2.0 errors (RFC 6749 5.2), as
SMART Backend Services requires.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vertebra.core.fhir import RESOURCE_TYPES
from vertebra.core.fhir.smart import ALLOWED_ALGORITHMS, BulkRequestError, parse_kickoff
from vertebra.fhirbulk.auth import Requester, TokenError, authenticate, issue_token
from vertebra.fhirbulk.jobs import JobRefused, cancel, job_for, kick_off, manifest_of, open_file
from vertebra.fhirbulk.models import JobStatus

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
#: Seconds a client should wait between status polls while an export runs.
RETRY_AFTER = 2


def outcome(status: int, code: str, message: str, **headers: str) -> HttpResponse:
    """An OperationOutcome (severity error) answer."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }
    response = HttpResponse(json.dumps(body), status=status, content_type=FHIR_JSON)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _requester(request: HttpRequest) -> Requester | HttpResponse:
    """The authenticated requester, or the 401 OperationOutcome (RFC 6750 challenge)."""
    header = request.headers.get("Authorization", "")
    found = authenticate(header, now=timezone.now())
    if found is not None:
        return found
    sent = bool(header)
    message = (
        "The bearer token is unknown, expired or revoked."
        if sent
        else "This endpoint needs an Authorization: Bearer <access token> header."
    )
    challenge = 'Bearer realm="vertebra"' + (', error="invalid_token"' if sent else "")
    return outcome(401, "login", message, WWW_Authenticate=challenge)


def _token_url(request: HttpRequest) -> str:
    """The absolute URL of the token endpoint (the ``aud`` every assertion must carry)."""
    return request.build_absolute_uri(reverse("fhirbulk:token"))


@require_GET
def smart_configuration(request: HttpRequest) -> HttpResponse:
    """``/fhir/.well-known/smart-configuration``: how a backend service gets a token."""
    return JsonResponse(
        {
            "token_endpoint": _token_url(request),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALLOWED_ALGORITHMS),
            "scopes_supported": ["system/*.read", "system/*.rs"]
            + [f"system/{t}.read" for t in RESOURCE_TYPES],
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        }
    )


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    """The token endpoint (client-credentials grant, JWT client assertion)."""
    form = request.POST
    try:
        issued = issue_token(
            grant_type=form.get("grant_type", ""),
            assertion_type=form.get("client_assertion_type", ""),
            assertion=form.get("client_assertion", ""),
            scope=form.get("scope", ""),
            token_url=_token_url(request),
            now=timezone.now(),
        )
    except TokenError as exc:
        response = JsonResponse({"error": exc.error, "error_description": str(exc)}, status=400)
    else:
        response = JsonResponse(
            {
                "access_token": issued.access_token,
                "token_type": "bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            }
        )
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _kick_off(request: HttpRequest, level: str, group: str | None = None) -> HttpResponse:
    """A kick-off at ``level`` (system, patient or group)."""
    found = _requester(request)
    if isinstance(found, HttpResponse):
        return found
    params = {name: request.GET.getlist(name) for name in request.GET}
    try:
        wanted = parse_kickoff(
            params,
            prefer=request.headers.get("Prefer", ""),
            accept=request.headers.get("Accept", ""),
            export_types=RESOURCE_TYPES,
            grant=found.grant,
        )
        job = kick_off(
            found,
            level=level,
            group=group,
            request=wanted,
            request_url=request.build_absolute_uri(),
            now=timezone.now(),
        )
    except (BulkRequestError, JobRefused) as exc:
        return outcome(exc.status, exc.code, str(exc))
    status_url = request.build_absolute_uri(reverse("fhirbulk:status", args=[job.pk]))
    response = HttpResponse(status=202)
    response["Content-Location"] = status_url
    return response


@require_GET
def export_system(request: HttpRequest) -> HttpResponse:
    """``GET /fhir/$export``: every patient the requester may export."""
    return _kick_off(request, "system")


@require_GET
def export_patient(request: HttpRequest) -> HttpResponse:
    """``GET /fhir/Patient/$export``: the same patients (a clinic's system sees one clinic)."""
    return _kick_off(request, "patient")


@require_GET
def export_group(request: HttpRequest, group_id: str) -> HttpResponse:
    """``GET /fhir/Group/<clinic id>/$export``: the patients of one clinic."""
    return _kick_off(request, "group", group_id)


def _progress(job: Any) -> str:
    """The ``X-Progress`` text of a job that has not finished."""
    if job.status == JobStatus.QUEUED:
        return "queued"
    return f"exporting {job.n_patients} patients"


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
def status(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The status URL: poll (GET) or cancel (DELETE) an export."""
    found = _requester(request)
    if isinstance(found, HttpResponse):
        return found
    job = job_for(found, job_id)
    if job is None or job.status == JobStatus.CANCELLED:
        return outcome(404, "not-found", "there is no such export")
    if job.status == JobStatus.EXPIRED:
        return outcome(404, "not-found", "the files of this export expired; start a new one")
    if request.method == "DELETE":
        try:
            cancel(found, job, timezone.now())
        except JobRefused as exc:
            return outcome(exc.status, exc.code, str(exc))
        return HttpResponse(status=202)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        response = HttpResponse(status=202)
        response["X-Progress"] = _progress(job)
        response["Retry-After"] = str(RETRY_AFTER)
        return response
    if job.status == JobStatus.FAILED:
        return outcome(500, "exception", f"the export failed: {job.error}")
    base = request.build_absolute_uri(reverse("fhirbulk:file", args=[job.pk, "x"]))[: -len("x")]
    response = JsonResponse(manifest_of(job, base))
    if job.finished_at is not None:
        expires = job.finished_at + dt.timedelta(hours=settings.FHIR_BULK_KEEP_HOURS)
        response["Expires"] = http_date(expires.timestamp())
    return response


@require_GET
def download(request: HttpRequest, job_id: uuid.UUID, name: str) -> HttpResponseBase:
    """One NDJSON file of a finished export (streamed; needs the requester's token)."""
    found = _requester(request)
    if isinstance(found, HttpResponse):
        return found
    job = job_for(found, job_id)
    kind = name.removesuffix(".ndjson")
    if job is None or not name.endswith(".ndjson"):
        return outcome(404, "not-found", "there is no such file")
    try:
        handle = open_file(found, job, kind, timezone.now())
    except JobRefused as exc:
        return outcome(exc.status, exc.code, str(exc))
    return FileResponse(handle, content_type=NDJSON)
