"""Generated requests against the public decision-aid endpoint: never a server error.

Schemathesis reads ``/api/v1/openapi.json`` and calls ``/api/v1/decision-aid`` with valid and
invalid query strings (odd conditions, ages, NaN, huge numbers). Every answer must be a 200
or a 4xx (422 bad input, 405 another method), never a 5xx or a stack trace (OWASP API8).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from vertebra.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application).include(
    path_regex=r"^/api/v1/decision-aid"
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection(db: Any) -> Iterator[None]:
    """As in tests/registry/test_api_schemathesis.py: keep the test's database connection
    (and its transaction) across the WSGI calls; start from an empty cache."""
    cache.clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        cache.clear()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_decision_aid_endpoint_never_fails_on_generated_input(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code in (200, 405, 422), response.text  # 405: other methods
