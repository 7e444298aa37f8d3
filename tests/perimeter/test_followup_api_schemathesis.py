"""Generated requests against the follow-up API (link revocation): no server error, every
answer matches the documented schema, status code and content type (problem+json for errors).
Requirement ids: T-schemathesis (security-reliability.md §6 T17), OWASP API8."""

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

from tests.followup.helpers import make_schedule
from tests.registry.factories import make_actor
from tests.registry.web import bearer
from vertebra.registry.models import Role
from vertebra.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application).include(
    path_regex=r"^/api/v1/followup"
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """As in tests/registry/test_api_schemathesis.py: keep the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def auth_headers(db: Any, settings: Any) -> dict[str, str]:
    """A coordinator's token and a patient with a schedule (ids 1, 2, ... may exist)."""
    settings.THROTTLE_ENABLED = False  # generated volume, not rate limits, is under test here
    schedule = make_schedule()
    return bearer(make_actor(Role.COORDINATOR, schedule.episode.patient.clinic))


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_followup_api_conforms_to_its_schema(case: Any, auth_headers: dict[str, str]) -> None:
    response = case.call(headers=auth_headers)
    case.validate_response(response, checks=CHECKS)
