"""Rate limits on ``/fhir/`` (REST server, Bulk Data, SMART token endpoint): the perimeter's
database counters, a FHIR OperationOutcome or an OAuth error with ``Retry-After`` past them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.registry.factories import make_actor, make_clinic
from vertebra.registry import services
from vertebra.registry.models import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(db: Any) -> list[str]:
    """Two API tokens of clinicians at one clinic (no patients needed: searches are empty)."""
    clinic = make_clinic("Throttle clinic")
    return [services.issue_api_token(actor=make_actor(Role.CLINICIAN, clinic))[1] for _ in range(2)]


def _assert_throttled_outcome(response: Any) -> None:
    assert response.status_code == 429
    assert response["Content-Type"].startswith("application/fhir+json")
    assert int(response["Retry-After"]) >= 1
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in body["issue"]] == ["throttled"]
    assert body["issue"][0]["severity"] == "error"


def test_searches_past_the_token_limit_get_429_and_another_token_is_unaffected(
    settings, tokens: list[str]
) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "fhir_token": "3/m"}
    client = Client()
    first = {"HTTP_AUTHORIZATION": f"Bearer {tokens[0]}"}
    for _ in range(3):
        assert client.get("/fhir/Patient", **first).status_code == 200
    _assert_throttled_outcome(client.get("/fhir/Patient", **first))
    _assert_throttled_outcome(client.get("/fhir/$export", **first))
    other = client.get("/fhir/Patient", HTTP_AUTHORIZATION=f"Bearer {tokens[1]}")
    assert other.status_code == 200
    assert other.json()["resourceType"] == "Bundle"


def test_anonymous_metadata_is_limited_per_client_address(settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "fhir_address": "2/m"}
    client = Client()
    here = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/fhir/metadata", **here).status_code == 200
    assert client.get("/fhir/.well-known/smart-configuration", **here).status_code == 200
    _assert_throttled_outcome(client.get("/fhir/metadata", **here))
    _assert_throttled_outcome(client.get("/fhir/.well-known/smart-configuration", **here))
    elsewhere = client.get("/fhir/metadata", REMOTE_ADDR="198.51.100.9")
    assert elsewhere.status_code == 200
    assert elsewhere.json()["resourceType"] == "CapabilityStatement"


def test_token_endpoint_is_limited_per_client_address_with_an_oauth_error(settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "fhir_auth_token": "2/m"}
    client = Client()
    here = {"REMOTE_ADDR": "203.0.113.8"}
    form = {"grant_type": "client_credentials", "client_assertion": "forged"}
    for _ in range(2):
        refused = client.post("/fhir/auth/token", form, **here)
        assert refused.status_code == 400
        assert "Too many" not in refused.json().get("error_description", "")
    throttled = client.post("/fhir/auth/token", form, **here)
    assert throttled.status_code == 429
    assert throttled["Content-Type"].startswith("application/json")
    assert int(throttled["Retry-After"]) >= 1
    assert throttled["Cache-Control"] == "no-store"
    body = throttled.json()
    assert body["error"] == "invalid_request"
    assert "Too many token requests" in body["error_description"]
    assert client.post("/fhir/auth/token", form, REMOTE_ADDR="198.51.100.10").status_code == 400
    # the token endpoint's counter is its own: FHIR reads from this address still pass
    assert client.get("/fhir/metadata", **here).status_code == 200


def test_disabled_throttles_do_not_limit_fhir(settings) -> None:
    settings.THROTTLE_ENABLED = False
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "fhir_address": "1/m"}
    client = Client()
    assert [client.get("/fhir/metadata").status_code for _ in range(3)] == [200, 200, 200]
