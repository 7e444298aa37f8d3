"""Property-based API tests with schemathesis over the whole ``/api/v1/openapi.json`` (in CI).

Every operation the schema lists is called with generated requests (valid and some invalid):
operations that need a token once per staff role (clinician, coordinator, clinic admin,
researcher, registry admin — each with its own API token from
``registry.services.issue_api_token``), public operations once without a token. No response
may be a server error, and every response must match the documented schema, status code and
content type. New endpoints are covered as soon as the schema lists them: nothing here names a
path. Examples are bounded (``MAX_EXAMPLES``) so the file runs in a few minutes on 2 cores.
Requirement ids: T17 (schemathesis over the whole OpenAPI), OWASP API8 (no stack traces / 5xx).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import caches
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient
from tests.registry.web import bearer
from vertebra.registry import services
from vertebra.registry.models import Role
from vertebra.wsgi import application

#: Examples per operation and role; CI keeps the default, a deeper local run may raise it.
MAX_EXAMPLES = int(os.environ.get("VERTEBRA_SCHEMATHESIS_EXAMPLES", "8"))

ROLES = (
    Role.CLINICIAN,
    Role.COORDINATOR,
    Role.CLINIC_ADMIN,
    Role.RESEARCHER,
    Role.REGISTRY_ADMIN,
)


def _needs_token(ctx: Any) -> bool:
    """True for operations the schema documents with a security requirement."""
    return bool(ctx.operation.definition.raw.get("security"))


def _is_public(ctx: Any) -> bool:
    return not _needs_token(ctx)


_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
protected = _schema.include(_needs_token)
public = _schema.include(_is_public)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection(db: Any) -> Iterator[None]:
    """Schemathesis drives the WSGI app directly, so Django's request signals close the
    database connection after each request, which on PostgreSQL ends the test's transaction.
    Django's own test client disconnects the same handler; do as it does. The cache
    (throttles) starts empty for every test."""
    caches["default"].clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _arrange_registry() -> Any:
    """A clinic with a patient, an episode and a harvest, so generated ids (1, 2, ...) exist."""
    clinic = make_clinic("Schema Clinic")
    clinician = make_actor(Role.CLINICIAN, clinic)
    patient = make_patient(clinic)
    episode = services.start_episode(
        actor=clinician, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0
    )
    services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="adipose", harvested_on=DAY0
    )
    return clinic, clinician


@pytest.fixture(params=ROLES, ids=[r.value for r in ROLES])
def auth_headers(request: pytest.FixtureRequest, db: Any) -> dict[str, str]:
    """A token of the parametrised role (clinic roles at the arranged clinic)."""
    clinic, clinician = _arrange_registry()
    role = request.param
    if role == Role.CLINICIAN:
        return bearer(clinician)
    actor = make_actor(role, clinic) if role in (Role.COORDINATOR, Role.CLINIC_ADMIN) else None
    return bearer(actor or make_actor(role))


@protected.parametrize()
@SETTINGS
def test_token_api_conforms_to_its_schema_for_every_role(
    case: Any, auth_headers: dict[str, str]
) -> None:
    """Every token operation, as every staff role: 0 server errors, 0 schema violations."""
    response = case.call(headers=auth_headers)
    case.validate_response(response, checks=CHECKS)


@public.parametrize()
@SETTINGS
def test_public_api_conforms_to_its_schema(case: Any) -> None:
    """Every public operation, anonymous: 0 server errors, 0 schema violations."""
    response = case.call()
    case.validate_response(response, checks=CHECKS)
