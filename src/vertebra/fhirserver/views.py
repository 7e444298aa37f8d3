"""FHIR REST endpoints: parse the request, call a selector, answer ``application/fhir+json``.

Errors are OperationOutcomes, as HAPI FHIR answers them: 400 ``processing`` for a search the
server refuses, 401 ``login`` (with ``WWW-Authenticate: Bearer``) without a valid token or
session, 403 ``forbidden`` for a role that may not read patients, 404 ``not-found`` for an
unknown type or a resource that does not exist or is at another clinic (one answer for both),
405 for anything but GET, 406 for a non-JSON ``_format``. A SMART system client's access
token reads within its scopes (403 ``forbidden`` for a type outside them) and its clinic.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from vertebra.core.fhir.questionnaires import questionnaire_id
from vertebra.core.fhir.rest import SearchError, operation_outcome, searchset
from vertebra.fhirbulk.auth import authenticate
from vertebra.fhirserver import selectors
from vertebra.fhirserver.capability import capability_statement
from vertebra.fhirserver.resources import TYPES, TypeSpec
from vertebra.fhirserver.search import Search, parse_search
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.permissions import Actor
from vertebra.registry.views import current_actor

__all__ = ["instance", "metadata", "type_search"]

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = ("json", "application/json", FHIR_JSON)


def _fhir(body: dict[str, Any], status: int = 200, **headers: str) -> HttpResponse:
    """A FHIR JSON response."""
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False, allow_nan=False),
        status=status,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _outcome(status: int, code: str, text: str, **headers: str) -> HttpResponse:
    return _fhir(operation_outcome(code, text), status, **headers)


def _base(request: HttpRequest) -> str:
    """The absolute URL of the server's base (``.../fhir``)."""
    return request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("/metadata")


def _caller(request: HttpRequest) -> tuple[Actor, selectors.SystemAccess | None] | None:
    """Who calls: a Bearer token (a SMART system client's access token or a person's API
    token, both checked by :func:`vertebra.fhirbulk.auth.authenticate`), else the signed-in
    session; None for neither. A system client comes with what its token grants.

    PermissionDeniedError when a signed-in user holds no staff role.
    """
    header = request.headers.get("Authorization", "")
    if header:
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        found = authenticate(header, now=timezone.now(), request_id=request_id)
        if found is None:
            return None
        if found.client_id is None:
            return found.actor, None  # a person: role and clinics verified by the selector
        access = selectors.SystemAccess(found.clinic_ids, found.grant, found.refusal)
        return found.actor, access
    if request.user.is_authenticated:
        return current_actor(request), None
    return None


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a request this server does not take (method, format), else None."""
    if request.method not in ("GET", "HEAD"):
        return _outcome(405, "not-supported", "This server is read-only: GET only.", Allow="GET")
    wanted = request.GET.get("_format")
    if wanted is not None and wanted not in JSON_FORMATS:
        return _outcome(406, "not-supported", f"_format {wanted!r}: only JSON is served.")
    return None


def _protected(request: HttpRequest, read: Any) -> HttpResponse:
    """Run ``read(actor, system access or None)`` for an authenticated caller, mapping refusals
    to OperationOutcomes."""
    try:
        caller = _caller(request)
        if caller is None:
            return _outcome(
                401,
                "login",
                "Authentication required: Authorization: Bearer <Vertebra API token or SMART "
                "Backend Services access token>.",
                WWW_Authenticate='Bearer realm="vertebra-fhir"',
            )
        return read(*caller)
    except PermissionDeniedError as exc:
        return _outcome(403, "forbidden", str(exc))
    except NotFound:
        return _outcome(404, "not-found", "Resource not found.")
    except SearchError as exc:
        return _outcome(400, "processing", str(exc))


@never_cache
def metadata(request: HttpRequest) -> HttpResponse:
    """``GET /fhir/metadata``: the CapabilityStatement (anonymous)."""
    return _refusal(request) or _fhir(capability_statement(_base(request)))


def _spec(name: str) -> TypeSpec | None:
    return TYPES.get(name)


def _link(base: str, spec: TypeSpec, search: Search, offset: int) -> str:
    """The absolute URL of the page of ``search`` starting at ``offset``."""
    pairs = [(name, value) for name, values in search.filters for value in values]
    pairs += [("_count", str(search.count)), ("_offset", str(offset))]
    if search.total:  # the next page counts (or not) as this one was asked to
        pairs.append(("_total", search.total))
    return f"{base}/{spec.name}?{urlencode(pairs)}"


@never_cache
def type_search(request: HttpRequest, resource_type: str) -> HttpResponse:
    """``GET /fhir/<Type>?...``: a searchset Bundle of one page, with a ``next`` link."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    spec = _spec(resource_type)
    if spec is None:
        return _outcome(404, "not-supported", f"Unknown resource type {resource_type!r}.")
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "")
    try:
        search = parse_search(spec, request.GET.lists(), lenient=lenient)
    except SearchError as exc:
        return _outcome(400, "processing", str(exc))
    base = _base(request)

    def answer(page: selectors.Page) -> HttpResponse:
        end = search.offset + search.count
        previous = max(0, search.offset - search.count) if search.offset else None
        return _fhir(
            searchset(
                resources=page.resources,
                total=page.total,
                base=base,
                self_url=_link(base, spec, search, search.offset),
                next_url=_link(base, spec, search, end) if search.count > 0 and page.more else None,
                previous_url=None if previous is None else _link(base, spec, search, previous),
            )
        )

    if spec.public:
        try:
            return answer(selectors.search_questionnaires(search))
        except SearchError as exc:
            return _outcome(400, "processing", str(exc))
    return _protected(
        request,
        lambda actor, system: answer(
            selectors.search_resources(actor=actor, spec=spec, search=search, system=system)
        ),
    )


@never_cache
def instance(request: HttpRequest, resource_type: str, resource_id: str) -> HttpResponse:
    """``GET /fhir/<Type>/<id>``: one resource."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    spec = _spec(resource_type)
    if spec is None:
        return _outcome(404, "not-supported", f"Unknown resource type {resource_type!r}.")
    if spec.public:
        if "_" in resource_id:
            # The canonical <base>/Questionnaire/<instrument id> resolves to the resource.
            target = f"{_base(request)}/Questionnaire/{questionnaire_id(resource_id)}"
            return _fhir(
                operation_outcome("informational", target, "information"), 301, Location=target
            )
        try:
            return _fhir(selectors.read_questionnaire(resource_id))
        except NotFound:
            return _outcome(404, "not-found", "Resource not found.")
    return _protected(
        request,
        lambda actor, system: _fhir(
            selectors.read_resource(actor=actor, spec=spec, resource_id=resource_id, system=system)
        ),
    )
