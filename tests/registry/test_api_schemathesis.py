"""Property-based API tests with schemathesis over ``/api/v1/openapi.json`` (runs in CI).

Every registry operation is called with generated requests (valid and some invalid) under a
valid clinician token: no response may be a server error, every response must match the
documented schema, status code and content type. Examples are bounded so the file runs in
well under two minutes. Requirement ids: T-schemathesis, OWASP API8 (no stack traces / 5xx).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
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

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application).include(
    path_regex=r"^/api/v1/(patients|episodes|harvests)"
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """Schemathesis drives the WSGI app directly, so Django's request signals close the
    database connection after each request, which on PostgreSQL ends the test's transaction.
    Django's own test client disconnects the same handler; do as it does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def auth_headers(db: Any) -> dict[str, str]:
    """A clinician token, and a little data so some generated ids (1, 2, ...) exist."""
    clinic = make_clinic("Schema Clinic")
    actor = make_actor(Role.CLINICIAN, clinic)
    patient = make_patient(clinic)
    episode = services.start_episode(
        actor=actor, patient_id=patient.pk, arm="cell_therapy", start_date=DAY0
    )
    services.record_harvest(actor=actor, episode_id=episode.pk, source="adipose", harvested_on=DAY0)
    return bearer(actor)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_registry_api_conforms_to_its_schema(case: Any, auth_headers: dict[str, str]) -> None:
    response = case.call(headers=auth_headers)
    case.validate_response(response, checks=CHECKS)
