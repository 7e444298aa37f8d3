"""Response headers Django 5.2 does not set by itself, request-size limits and API throttles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from vertebra.perimeter import throttle
from vertebra.perimeter.clientip import address_identity, client_ip
from vertebra.perimeter.problems import problem_response

#: Paths whose responses may carry patient data: never stored by browsers or proxies.
NO_STORE_PREFIXES = (
    "/clinic/",
    "/api/v1/patients",
    "/api/v1/episodes",
    "/api/v1/harvests",
    "/api/v1/adverse-events",
)

API_PREFIX = "/api/"
#: The API's own description is public and static: not counted (tools load it at start-up).
THROTTLE_EXEMPT = ("/api/v1/openapi.json", "/api/v1/docs")


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


class RequestSizeLimitMiddleware:
    """Refuse a body larger than ``settings.MAX_REQUEST_BODY_BYTES`` with **413** before any
    code reads it (the declared ``Content-Length`` decides; a body without one is read by
    Django only up to ``DATA_UPLOAD_MAX_MEMORY_SIZE``, the same figure). A ``Content-Length``
    that is not a number is a 400. API paths answer with problem+json, pages with plain text.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = str(request.META.get("CONTENT_LENGTH") or "0").strip() or "0"
        limit = int(settings.MAX_REQUEST_BODY_BYTES)
        if not raw.isdigit():
            return _refuse(request, 400, "The Content-Length header is not a number.", None)
        if int(raw) > limit:
            return _refuse(
                request,
                413,
                f"The request body is {int(raw)} bytes; at most {limit} bytes are accepted.",
                "body-too-large",
            )
        return self.get_response(request)


def _refuse(request: HttpRequest, status: int, detail: str, slug: str | None) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        response = problem_response(status, detail, slug=slug)
    else:
        response = HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")
    response["Connection"] = "close"  # do not read the rest of a body we refused
    return response


def bearer_token(request: HttpRequest) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ''."""
    scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ApiThrottleMiddleware:
    """Rate-limit ``/api/`` per client address and per API key (``settings.THROTTLE_RATES``).

    * ``api_address``: every request, counted per client address (the trusted-proxy rule of
      :mod:`vertebra.perimeter.clientip`, IPv6 per /64);
    * ``api_key``: every request carrying a bearer token, counted per token (its SHA-256), so
      one busy integration cannot use up another's allowance at a shared address;
    * ``api_auth_failures``: answers 401 counted per address; past the limit the address gets
      429 before its token is even looked at (invented tokens stop being tried, not accepted).

    Over a limit: **429** problem+json with ``Retry-After`` (seconds to the end of the window).
    Counters live in the database (:mod:`vertebra.perimeter.throttle`): every server process
    enforces the same limit.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX) or request.path.startswith(THROTTLE_EXEMPT):
            return self.get_response(request)
        rates = {
            scope: throttle.Rate.parse(text) for scope, text in settings.THROTTLE_RATES.items()
        }
        address = address_identity(client_ip(request))
        token = bearer_token(request)
        with throttle.batch():  # one short transaction for this request's counters
            failures = throttle.peek("api_auth_failures", address, rates["api_auth_failures"])
            if not failures.allowed:
                return _too_many(failures, "Too many requests with a missing or invalid token")
            decision = throttle.hit("api_address", address, rates["api_address"])
            if not decision.allowed:
                return _too_many(decision, "Too many requests from this address")
            if token:
                key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
                decision = throttle.hit("api_key", key, rates["api_key"])
                if not decision.allowed:
                    return _too_many(decision, "Too many requests with this API token")
        response = self.get_response(request)
        if response.status_code == 401:
            throttle.hit("api_auth_failures", address, rates["api_auth_failures"])
        return response


def _too_many(decision: throttle.Decision, reason: str) -> HttpResponse:
    return problem_response(
        429,
        f"{reason}; try again in {decision.retry_after} seconds.",
        slug="rate-limited",
        headers={"Retry-After": str(decision.retry_after)},
    )


FHIR_PREFIX = "/fhir/"
#: The SMART token endpoint: counted per client address only (brute force of assertions).
FHIR_TOKEN_PATH = "/fhir/auth/token"


class FhirThrottleMiddleware:
    """Rate-limit ``/fhir/`` (REST server, Bulk Data, SMART) with the same database counters
    as ``/api/`` (``settings.THROTTLE_RATES``):

    * ``fhir_auth_token``: every request to ``/fhir/auth/token`` per client address (a client
      cannot try signed assertions faster than this); nothing else is counted there;
    * ``fhir_address``: every other ``/fhir/`` request per client address, so anonymous
      ``metadata`` and ``.well-known/smart-configuration`` and invented tokens are bounded;
    * ``fhir_token``: every request carrying a bearer token, per token (its SHA-256), so one
      busy client cannot use up another's allowance at a shared address.

    Over a limit: **429** with ``Retry-After``; an OperationOutcome (issue code ``throttled``,
    ``application/fhir+json``) on FHIR paths, an OAuth error body (RFC 6749 §5.2 shape) on the
    token endpoint.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(FHIR_PREFIX):
            return self.get_response(request)
        rates = settings.THROTTLE_RATES
        address = address_identity(client_ip(request))
        with throttle.batch():  # one short transaction for this request's counters
            if request.path == FHIR_TOKEN_PATH:
                scope = "fhir_auth_token"
                decision = throttle.hit(scope, address, throttle.Rate.parse(rates[scope]))
                if not decision.allowed:
                    return _oauth_too_many(decision)
                return self.get_response(request)
            decision = throttle.hit(
                "fhir_address", address, throttle.Rate.parse(rates["fhir_address"])
            )
            if not decision.allowed:
                return _fhir_too_many(decision, "Too many requests from this address")
            token = bearer_token(request)
            if token:
                key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
                decision = throttle.hit("fhir_token", key, throttle.Rate.parse(rates["fhir_token"]))
                if not decision.allowed:
                    return _fhir_too_many(decision, "Too many requests with this access token")
        return self.get_response(request)


def _fhir_too_many(decision: throttle.Decision, reason: str) -> HttpResponse:
    """429 as a FHIR OperationOutcome (issue code ``throttled``, FHIR R4 IssueType)."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "throttled",
                "diagnostics": f"{reason}; try again in {decision.retry_after} seconds.",
            }
        ],
    }
    response = JsonResponse(body, status=429, content_type="application/fhir+json; charset=utf-8")
    response["Retry-After"] = str(decision.retry_after)
    return response


def _oauth_too_many(decision: throttle.Decision) -> HttpResponse:
    """429 on the token endpoint in the OAuth error shape (RFC 6749 §5.2 has no rate-limit
    code; ``invalid_request`` with a description, and ``Cache-Control: no-store`` as §5.1/5.2
    ask of every token response)."""
    response = JsonResponse(
        {
            "error": "invalid_request",
            "error_description": (
                f"Too many token requests from this address; "
                f"try again in {decision.retry_after} seconds."
            ),
        },
        status=429,
    )
    response["Retry-After"] = str(decision.retry_after)
    response["Cache-Control"] = "no-store"
    return response


#: Details of problems made from Django's own plain answers under /api/ (no view text reused).
_PLAIN_DETAILS = {
    404: "There is no such API endpoint; see /api/v1/openapi.json.",
    405: "This endpoint does not take this method.",
    500: "The server could not complete the request.",
}
#: Headers of the plain answer that the problem keeps.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "X-Vertebra-Write")


class ApiProblemMiddleware:
    """Under ``/api/``, turn Django's own plain error answers (an unknown URL's 404, a wrong
    method's 405, the generic 500 page) into RFC 9457 problems, so that every API error has one
    shape. Answers that already are JSON (the API's handlers) pass unchanged; nothing of the
    original body is copied (a 500 page must not leak)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            not request.path.startswith(API_PREFIX)
            or response.status_code < 400
            or str(response.get("Content-Type", "")).startswith(
                ("application/problem+json", "application/json")
            )
        ):
            return response
        from http import HTTPStatus

        status = response.status_code
        detail = _PLAIN_DETAILS.get(status) or f"{HTTPStatus(status).phrase}."
        headers = {name: response[name] for name in _KEPT_HEADERS if name in response}
        return problem_response(status, detail, headers=headers)
