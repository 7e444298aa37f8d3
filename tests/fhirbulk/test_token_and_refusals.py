"""SMART Backend Services token endpoint and every Bulk Data refusal, through Django's test
client: each refusal's status and body (OAuth 2.0 error at the token endpoint, as RFC 6749 5.2
and SMART require; OperationOutcome on the FHIR endpoints), and clinic isolation by role."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.test import Client
from django.utils import timezone

from tests.fhirbulk.conftest import assertion, public_jwks, token_form
from tests.registry.factories import make_actor
from vertebra.fhirbulk.auth import register_client
from vertebra.fhirbulk.models import AccessToken, ExportJob, UsedAssertion
from vertebra.registry.models import AuditEvent, Role
from vertebra.registry.services import issue_api_token

TOKEN_URL = "http://testserver/fhir/auth/token"
ASYNC = {"HTTP_PREFER": "respond-async", "HTTP_ACCEPT": "application/fhir+json"}


def get_token(http: Client, signed: str, scope: str = "system/*.read") -> Any:
    return http.post("/fhir/auth/token", token_form(signed, scope))


def bearer(http: Client, key: Any, scope: str = "system/*.read") -> dict[str, str]:
    answer = get_token(http, assertion(key, "north-ehr", TOKEN_URL), scope)
    assert answer.status_code == 200, answer.content
    return {"HTTP_AUTHORIZATION": f"Bearer {answer.json()['access_token']}"}


def oauth_error(answer: Any, error: str, words: str) -> None:
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == error
    assert words in body["error_description"]
    assert "access_token" not in body


def operation_outcome(answer: Any, status: int, code: str, words: str) -> None:
    assert answer.status_code == status
    assert answer["Content-Type"] == "application/fhir+json"
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    assert words in body["issue"][0]["diagnostics"]


def test_smart_configuration_advertises_the_token_endpoint(db: Any) -> None:
    body = Client().get("/fhir/.well-known/smart-configuration").json()
    assert body["token_endpoint"] == TOKEN_URL
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert "client-confidential-asymmetric" in body["capabilities"]


def test_rs384_and_es384_assertions_get_a_short_lived_token(
    client_rsa: Any, rsa_key: Any, ec_key: Any
) -> None:
    http = Client()
    for key, alg in ((rsa_key, "RS384"), (ec_key, "ES384")):
        answer = get_token(http, assertion(key, "north-ehr", TOKEN_URL, alg=alg), "system/*.rs")
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 300
        assert body["scope"] == "system/*.rs"
        assert answer["Cache-Control"] == "no-store"
    tokens = AccessToken.objects.filter(client=client_rsa)
    assert tokens.count() == 2
    # Only the hash is stored, and the token lives five minutes.
    token = tokens.first()
    assert token is not None and len(token.token_hash) == 64
    assert token.expires_at - token.issued_at == dt.timedelta(seconds=300)
    issued = AuditEvent.objects.filter(object_type="fhir_access_token")
    assert set(issued.values_list("actor_username", flat=True)) == {"fhir-client:north-ehr"}


def test_token_refusals(client_rsa: Any, rsa_key: Any, stranger_key: Any) -> None:
    http = Client()
    oauth_error(
        get_token(http, assertion(stranger_key, "north-ehr", TOKEN_URL)),
        "invalid_client", "signature is not verified",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", "https://elsewhere.example/token")),
        "invalid_client", "aud must be the token URL",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL, exp_in=-10)),
        "invalid_client", "expired",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL, exp_in=600)),
        "invalid_client", "more than five minutes",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "nobody", TOKEN_URL)),
        "invalid_client", "no registered client",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL, iss="someone-else")),
        "invalid_client", "no registered client",
    )  # fmt: skip
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL, alg="PS384")),
        "invalid_client", "signature is not verified",
    )  # fmt: skip
    for scope in ("system/*.write", "user/*.read", "system/Foo.read", ""):
        oauth_error(
            get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL), scope),
            "invalid_scope", "scope",
        )  # fmt: skip
    form = token_form(assertion(rsa_key, "north-ehr", TOKEN_URL))
    oauth_error(
        http.post("/fhir/auth/token", {**form, "grant_type": "password"}),
        "unsupported_grant_type", "client_credentials",
    )  # fmt: skip
    assert not AccessToken.objects.exists()


def test_a_replayed_jti_is_refused(client_rsa: Any, rsa_key: Any) -> None:
    http = Client()
    signed = assertion(rsa_key, "north-ehr", TOKEN_URL, jti="once-only")
    assert get_token(http, signed).status_code == 200
    oauth_error(get_token(http, signed), "invalid_client", "jti was used already")
    again = assertion(rsa_key, "north-ehr", TOKEN_URL, jti="once-only")
    oauth_error(get_token(http, again), "invalid_client", "jti was used already")
    assert UsedAssertion.objects.filter(jti="once-only").count() == 1
    assert AccessToken.objects.count() == 1


def test_a_revoked_client_gets_no_token_and_its_token_stops(client_rsa: Any, rsa_key: Any) -> None:
    from vertebra.fhirbulk.auth import revoke_client

    http = Client()
    auth = bearer(http, rsa_key)
    assert http.get("/fhir/$export", **ASYNC, **auth).status_code == 202
    revoke_client("north-ehr", now=timezone.now())
    operation_outcome(http.get("/fhir/$export", **ASYNC, **auth), 401, "login", "unknown")
    oauth_error(
        get_token(http, assertion(rsa_key, "north-ehr", TOKEN_URL)),
        "invalid_client", "no registered client",
    )  # fmt: skip


def test_kickoff_refusals(clinics: list[int], client_rsa: Any, rsa_key: Any) -> None:
    http = Client()
    operation_outcome(http.get("/fhir/$export", **ASYNC), 401, "login", "Authorization")
    operation_outcome(
        http.get("/fhir/$export", **ASYNC, HTTP_AUTHORIZATION="Bearer nonsense"),
        401, "login", "unknown, expired or revoked",
    )  # fmt: skip
    auth = bearer(http, rsa_key)
    operation_outcome(
        http.get("/fhir/$export", HTTP_ACCEPT="application/fhir+json", **auth),
        400, "invalid", "Prefer: respond-async",
    )  # fmt: skip
    operation_outcome(
        http.get(f"/fhir/Group/{clinics[1]}/$export", **ASYNC, **auth),
        404, "not-found", f"Group/{clinics[1]} is not known",
    )  # fmt: skip
    operation_outcome(
        http.get("/fhir/Group/999999/$export", **ASYNC, **auth),
        404, "not-found", "Group/999999 is not known",
    )  # fmt: skip
    operation_outcome(
        http.get("/fhir/$export?_type=Patient,Spaceship", **ASYNC, **auth),
        400, "not-supported", "_type Spaceship",
    )  # fmt: skip
    operation_outcome(
        http.get("/fhir/$export?_since=yesterday", **ASYNC, **auth),
        400, "invalid", "not a FHIR instant",
    )  # fmt: skip
    operation_outcome(
        http.get("/fhir/$export?_outputFormat=text/csv", **ASYNC, **auth),
        400, "not-supported", "_outputFormat",
    )  # fmt: skip
    operation_outcome(
        http.get("/fhir/$export?_typeFilter=Patient%3Factive%3Dtrue", **ASYNC, **auth),
        400, "not-supported", "_typeFilter",
    )  # fmt: skip
    assert not ExportJob.objects.exists()


def test_a_scope_for_one_type_exports_only_that_type(
    clinics: list[int], client_rsa: Any, rsa_key: Any
) -> None:
    http = Client()
    auth = bearer(http, rsa_key, "system/Patient.read")
    operation_outcome(
        http.get("/fhir/$export?_type=Observation", **ASYNC, **auth),
        403, "forbidden", "scopes exclude Observation",
    )  # fmt: skip
    assert http.get("/fhir/$export", **ASYNC, **auth).status_code == 202
    job = ExportJob.objects.get()
    assert job.types == ["Patient"]
    assert job.clinic_ids == [clinics[0]]


def test_jobs_are_private_to_whoever_asked(
    clinics: list[int], client_rsa: Any, rsa_key: Any, ec_key: Any
) -> None:
    register_client(
        client_id="south-ehr", name="South EHR", jwks=public_jwks(ec_key),
        clinic_id=clinics[1], now=timezone.now(),
    )  # fmt: skip
    http = Client()
    north = bearer(http, rsa_key)
    kicked = http.get(f"/fhir/Group/{clinics[0]}/$export", **ASYNC, **north)
    assert kicked.status_code == 202
    status_url = kicked["Content-Location"]
    south_token = get_token(http, assertion(ec_key, "south-ehr", TOKEN_URL, alg="ES384"))
    south = {"HTTP_AUTHORIZATION": f"Bearer {south_token.json()['access_token']}"}
    operation_outcome(http.get(status_url, **south), 404, "not-found", "no such export")
    operation_outcome(http.delete(status_url, **south), 404, "not-found", "no such export")
    assert http.get(status_url, **north).status_code == 202


def test_people_tokens_by_role(clinics: list[int], bulk_dir: Any) -> None:
    """A person's existing API token works: a clinician exports their clinic; a researcher
    (de-identified data only) and a registry admin (no patient data) are refused."""
    from vertebra.registry.models import Clinic

    http = Client()
    clinic = Clinic.objects.get(pk=clinics[2])
    for role, status in (
        (Role.CLINICIAN, 202),
        (Role.COORDINATOR, 202),
        (Role.CLINIC_ADMIN, 202),
        (Role.RESEARCHER, 403),
        (Role.REGISTRY_ADMIN, 403),
    ):
        actor = (
            make_actor(role, clinic)
            if role not in (Role.RESEARCHER, Role.REGISTRY_ADMIN)
            else make_actor(role)
        )
        _, raw = issue_api_token(actor=actor)
        answer = http.get("/fhir/$export", **ASYNC, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert answer.status_code == status, (role, answer.content)
        if status == 403:
            operation_outcome(answer, 403, "forbidden", "cannot")
    jobs = ExportJob.objects.all()
    assert jobs.count() == 3
    assert {tuple(j.clinic_ids) for j in jobs} == {(clinics[2],)}


def test_a_research_client_cannot_run_the_identified_export(
    clinics: list[int], rsa_key: Any
) -> None:
    register_client(
        client_id="research-1", name="Outcomes study", jwks=public_jwks(rsa_key),
        clinic_id=None, now=timezone.now(),
    )  # fmt: skip
    http = Client()
    answer = get_token(http, assertion(rsa_key, "research-1", TOKEN_URL))
    auth = {"HTTP_AUTHORIZATION": f"Bearer {answer.json()['access_token']}"}
    operation_outcome(
        http.get("/fhir/$export", **ASYNC, **auth), 403, "forbidden", "de-identified data only"
    )
