"""Every JSON API error is an RFC 9457 problem; 401 challenges; 429 says when; bodies are
bounded (depth, encoding, size). In-process (Django's test client); the multi-process HTTP
proof is in test_multiprocess_http.py.

Requirement ids: issue 14 "errors" and "hostile input"; RFC 9457 §3; RFC 6750 §3
(WWW-Authenticate); security-reliability.md §6 T18 (413, no traceback).
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.registry.factories import make_actor, make_clinic, make_patient
from tests.registry.web import bearer
from vertebra.registry.models import Role

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def problem(response) -> dict:
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == response.status_code
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.content.decode()
    return body


@pytest.fixture
def clinician():
    return make_actor(Role.CLINICIAN, make_clinic("Problem Clinic"))


def test_401_is_a_problem_with_a_bearer_challenge(client: Client) -> None:
    missing = client.get("/api/v1/patients")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="vertebra"'
    assert problem(missing)["title"] == "Unauthorized"
    wrong = client.get("/api/v1/patients", headers={"Authorization": "Bearer vtb_nope"})
    assert wrong["WWW-Authenticate"] == 'Bearer realm="vertebra", error="invalid_token"'
    assert "unknown, expired or revoked" in problem(wrong)["detail"]


def test_validation_errors_name_each_field(client: Client, clinician) -> None:
    patient = make_patient(make_clinic("Other"))  # not the clinician's: 404 below
    response = client.post(
        "/api/v1/patients",
        data=json.dumps({"mrn": "", "given_name": "A", "sex": "nonsense"}),
        content_type="application/json",
        headers=bearer(clinician),
    )
    assert response.status_code == 422
    body = problem(response)
    assert body["type"] == "urn:vertebra:problem:validation-error"
    fields = {e["field"] for e in body["errors"]}
    assert {"sex", "family_name"} <= fields
    assert all(e["loc"][0] == "body" and e["msg"] for e in body["errors"])
    assert body["detail"].split(":")[0] in fields
    missing = client.get(f"/api/v1/patients/{patient.pk}", headers=bearer(clinician))
    assert missing.status_code == 404 and problem(missing)["detail"] == "Not found."
    assert str(patient.mrn) not in missing.content.decode()


def test_stale_edit_is_a_typed_problem(client: Client) -> None:
    clinic = make_clinic("Stale")
    coordinator = make_actor(Role.COORDINATOR, clinic)
    patient = make_patient(clinic)
    edit = {"expected_version": 1, "reason": "typo", "given_name": "First"}
    url = f"/api/v1/patients/{patient.pk}"
    headers = bearer(coordinator)
    assert (
        client.patch(url, json.dumps(edit), "application/json", headers=headers).status_code == 200
    )
    stale = client.patch(url, json.dumps(edit), "application/json", headers=headers)
    assert stale.status_code == 409
    assert problem(stale)["type"] == "urn:vertebra:problem:stale-edit"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/screening/evaluate", b"[" * 100_000 + b"]" * 100_000),
        ("/api/v1/screening/evaluate", b'{"a":' * 70 + b"1" + b"}" * 70),
        ("/api/v1/instruments/odi/score", b'{"answers": ' + b"[" * 3000 + b"]" * 3000 + b"}"),
        ("/api/v1/screening/evaluate", b'{"age": "\xff"}'),
        ("/api/v1/instruments/odi/score", b"\xfe\xff{}"),
        ("/api/v1/screening/evaluate", b'{"age": NaN}'),
    ],
)
def test_public_endpoints_refuse_hostile_bodies_with_400(client: Client, path, body) -> None:
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "not acceptable" in problem(response)["detail"]


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"given_name": "\xc3\x28"}', b"{oops"],
)
def test_authenticated_endpoints_refuse_hostile_bodies_with_400(
    client: Client, clinician, body
) -> None:
    response = client.post(
        "/api/v1/patients", data=body, content_type="application/json", headers=bearer(clinician)
    )
    assert response.status_code == 400
    assert problem(response)["type"] == "urn:vertebra:problem:malformed-body"


def test_bodies_over_the_limit_are_413_before_anything_reads_them(client: Client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 4096
    big = json.dumps({"x": "a" * 5000})
    api = client.post("/api/v1/screening/evaluate", data=big, content_type="application/json")
    assert api.status_code == 413
    assert problem(api)["type"] == "urn:vertebra:problem:body-too-large"
    assert api["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in api
    page = client.post("/accounts/login/", data=big, content_type="application/json")
    assert page.status_code == 413 and page["Content-Type"].startswith("text/plain")
    ok = client.post("/api/v1/screening/evaluate", data="{}", content_type="application/json")
    assert ok.status_code == 200


def test_api_rate_limits_answer_429_with_retry_after(client: Client, clinician, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "api_key": "3/m", "api_address": "5/m"}
    headers = bearer(clinician)
    codes = [client.get("/api/v1/patients", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/api/v1/patients", headers=headers)
    body = problem(refused)
    assert body["type"] == "urn:vertebra:problem:rate-limited" and "API token" in body["detail"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-Content-Type-Options"] == "nosniff" and "no-store" in refused["Cache-Control"]
    # Per address: the 6th request from this address is refused whatever the token.
    assert client.get("/api/v1/version").status_code == 429
    elsewhere = Client(REMOTE_ADDR="198.51.100.99")
    assert elsewhere.get("/api/v1/version").status_code == 200


def test_failed_authentication_is_limited_per_address(client: Client, clinician, settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "api_auth_failures": "5/m"}
    codes = [
        client.get("/api/v1/patients", headers={"Authorization": f"Bearer vtb_{n}"}).status_code
        for n in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    # Even a valid token waits at that address; from another address it works.
    assert client.get("/api/v1/patients", headers=bearer(clinician)).status_code == 429
    other = Client(REMOTE_ADDR="198.51.100.98")
    assert other.get("/api/v1/patients", headers=bearer(clinician)).status_code == 200


def test_openapi_declares_problem_json_for_errors(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    responses = schema["paths"]["/api/v1/patients"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"application/json"}
    for status in ("401", "404", "422", "429"):
        assert set(responses[status]["content"]) == {PROBLEM}, status
    revoke = schema["paths"]["/api/v1/followup/patients/{patient_id}/links/revoke"]["post"]
    assert "422" in revoke["responses"]


def test_django_plain_errors_under_the_api_become_problems(client: Client) -> None:
    unknown = client.get("/api/v1/no-such-thing")
    assert unknown.status_code == 404 and "openapi.json" in problem(unknown)["detail"]
    wrong_method = client.delete("/api/v1/version")
    assert wrong_method.status_code == 405
    assert problem(wrong_method)["title"] == "Method Not Allowed"
    assert "GET" in wrong_method["Allow"]
    page = client.get("/no-such-page/")  # pages keep their HTML 404
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
