"""The JSON API root (django-ninja). Feature modules add their routers here.

Every error of the API is an RFC 9457 problem (``application/problem+json``, see
:mod:`vertebra.perimeter.problems` and ``docs/perimeter.md "API errors"``): the handlers below turn
ninja's validation errors (422, each entry naming its ``field``), HTTP errors, 404s and failed
authentication (401 with ``WWW-Authenticate: Bearer``) into that shape, routes raise
:class:`~vertebra.perimeter.problems.ProblemError` for typed problems (stale edit, missing
pathway step, chain of custody), and the OpenAPI
document declares it for every 4xx/5xx response. Bodies are parsed by :class:`SafeParser`:
UTF-8 only, no NaN, nesting at most ``MAX_JSON_DEPTH`` levels (else 400).
"""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from vertebra import __version__
from vertebra.core.safeinput import JsonInputError, load_json
from vertebra.followup.api import router as followup_router
from vertebra.perimeter.problems import (
    MEDIA_TYPE,
    ProblemError,
    field_errors,
    problem_response,
    summary,
)
from vertebra.registry.api import router as registry_router
from vertebra.web.api_public import (
    decision_router,
    instruments_router,
    learn_router,
    screening_router,
)


class SafeParser(Parser):
    """ninja's JSON parser with :func:`vertebra.core.safeinput.load_json`'s limits."""

    def parse_body(self, request: HttpRequest) -> Any:
        return load_json(request.body)


class ProblemNinjaAPI(NinjaAPI):
    """NinjaAPI whose OpenAPI document says errors are ``application/problem+json``."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(*args, **kwargs)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content") if isinstance(response, dict) else None
                    if str(status)[:1] in "45" and content and "application/json" in content:
                        content[MEDIA_TYPE] = content.pop("application/json")
        return schema


api = ProblemNinjaAPI(
    title="Vertebra API",
    version="1",
    description=(
        "Outcomes registry and decision support for regenerative therapy of chronic low back "
        "pain. Public endpoints are read-only; patient data needs a token (see docs)."
    ),
    urls_namespace="api-v1",
    parser=SafeParser(),
)


@api.exception_handler(ValidationError)
def _validation_problem(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """422: every problem with its field named (``errors[*].field``)."""
    errors = field_errors(exc.errors)
    return problem_response(422, summary(errors), slug="validation-error", errors=errors)


@api.exception_handler(AuthenticationError)
def _authentication_problem(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    """401 with the challenge RFC 6750 asks for (``error="invalid_token"`` when one was sent)."""
    sent = str(request.headers.get("Authorization", "")).lower().startswith("bearer ")
    challenge = 'Bearer realm="vertebra"' + (', error="invalid_token"' if sent else "")
    detail = (
        "The bearer token is unknown, expired or revoked."
        if sent
        else "This endpoint needs an Authorization: Bearer <token> header."
    )
    return problem_response(401, detail, headers={"WWW-Authenticate": challenge})


#: Problem types for statuses that always mean the same thing in this API.
_SLUG_BY_STATUS = {409: "stale-edit", 413: "body-too-large", 429: "rate-limited"}


@api.exception_handler(HttpError)
def _http_problem(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Any HttpError as a problem; an unreadable body (ninja's 400) says why."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, JsonInputError):
        return problem_response(
            400, f"The request body is not acceptable: {cause}.", slug="malformed-body"
        )
    if exc.status_code == 400 and cause is not None:
        return problem_response(400, "The request body is not valid JSON.", slug="malformed-body")
    if exc.status_code == 422:
        # Invalid input a route found itself (e.g. an instrument answer out of range): the
        # same type and ``errors`` as any 422; the message names the item, the request as a
        # whole is the field.
        whole = {"field": "request", "loc": [], "msg": str(exc), "type": "value_error"}
        return problem_response(422, str(exc), slug="validation-error", errors=[whole])
    return problem_response(exc.status_code, str(exc), slug=_SLUG_BY_STATUS.get(exc.status_code))


@api.exception_handler(ProblemError)
def _typed_problem(request: HttpRequest, exc: ProblemError) -> HttpResponse:
    """A problem a route raised whole (its own ``type`` and extension members)."""
    return exc.response()


@api.exception_handler(Http404)
def _not_found_problem(request: HttpRequest, exc: Http404) -> HttpResponse:
    return problem_response(404, "Not found.")


class VersionOut(Schema):
    """What the server runs."""

    name: str
    version: str


@api.get("/version", response=VersionOut, tags=["meta"], summary="Server name and version")
def version(request: object) -> VersionOut:
    """Return the product name and version (public)."""
    return VersionOut(name="vertebra", version=__version__)


api.add_router("/learn", learn_router)
api.add_router("/screening", screening_router)
api.add_router("/instruments", instruments_router)
api.add_router("/decision-aid", decision_router)
api.add_router("/", registry_router)  # /api/v1/patients, /api/v1/episodes, ...
api.add_router("/followup", followup_router)
