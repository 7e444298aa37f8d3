"""The registry JSON API: tokens, scoping, pagination, sort allow-list, errors, audit.

Requirement ids: OWASP API2 (authentication), API1 (BOLA; the access matrix covers it
route by route), API4 (limit cap), T-optimistic-locking over the API, HIPAA-164.312(b).
"""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from tests.registry.factories import DAY0, make_actor, make_episode, make_lot, make_patient
from tests.registry.web import bearer, last_seq, writes_since
from vertebra.registry import services
from vertebra.registry.models import (
    ApiToken,
    AuditEvent,
    Clinic,
    Diagnosis,
    Injection,
    Patient,
    Role,
)
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

API = "/api/v1"


def call(
    method: str, path: str, headers: dict[str, str], body: object = None
) -> tuple[int, object]:
    client = Client()
    if method == "GET":
        response = client.get(API + path, headers=headers)
    else:
        response = getattr(client, method.lower())(
            API + path, data=json.dumps(body), content_type="application/json", headers=headers
        )
    return response.status_code, response.json() if response.content else None


def test_tokens_are_stored_hashed_and_refused_when_unknown_expired_or_revoked(
    clinician: Actor, patient: Patient
) -> None:
    token, raw = services.issue_api_token(actor=clinician, name="test")
    assert raw.startswith("vtb_") and raw not in token.token_hash
    assert ApiToken.objects.get(pk=token.pk).token_hash == services.hash_token(raw)
    good = {"Authorization": f"Bearer {raw}"}
    assert call("GET", f"/patients/{patient.pk}", good)[0] == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None
    assert call("GET", f"/patients/{patient.pk}", {})[0] == 401
    assert call("GET", f"/patients/{patient.pk}", {"Authorization": "Bearer vtb_nope"})[0] == 401
    past = timezone.now() - dt.timedelta(days=2)
    ApiToken.objects.filter(pk=token.pk).update(created_at=past, expires_at=past + dt.timedelta(1))
    assert call("GET", f"/patients/{patient.pk}", good)[0] == 401
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + dt.timedelta(1))
    services.revoke_api_token(actor=clinician, token_id=token.pk)
    assert call("GET", f"/patients/{patient.pk}", good)[0] == 401


def test_token_stops_working_when_the_role_is_withdrawn(clinician: Actor, patient: Patient) -> None:
    headers = bearer(clinician)
    assert call("GET", f"/patients/{patient.pk}", headers)[0] == 200
    clinician.user.memberships.all().delete()
    assert call("GET", f"/patients/{patient.pk}", headers)[0] == 401


def test_issue_token_command_prints_a_working_token_once(
    clinician: Actor, patient: Patient
) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", clinician.user.username, stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("vtb_") and raw not in err.getvalue()
    assert call("GET", f"/patients/{patient.pk}", {"Authorization": f"Bearer {raw}"})[0] == 200
    assert AuditEvent.objects.filter(object_type="apitoken", action="create").count() == 1


def test_list_pagination_cap_sort_allow_list_and_no_store(
    coordinator: Actor, clinic: Clinic, other_patient: Patient
) -> None:
    for n in range(5):
        make_patient(clinic, mrn=f"M{n}", family_name=f"F{4 - n}")
    headers = bearer(coordinator)
    status, body = call("GET", "/patients?limit=2&offset=1&sort=mrn", headers)
    assert status == 200
    assert isinstance(body, dict)
    assert body["total"] == 5 and [p["mrn"] for p in body["items"]] == ["M1", "M2"]
    status, body = call("GET", "/patients?sort=-created&limit=100", headers)
    assert status == 200 and other_patient.mrn not in json.dumps(body)
    assert call("GET", "/patients?limit=101", headers)[0] == 422
    assert call("GET", "/patients?sort=email", headers)[0] == 422
    response = Client().get(API + "/patients", headers=headers)
    assert "no-store" in response["Cache-Control"]


def test_stale_edit_over_the_api_is_409_and_writes_nothing(
    coordinator: Actor, patient: Patient
) -> None:
    headers = bearer(coordinator)
    edit = {"expected_version": 1, "reason": "typo", "given_name": "First"}
    status, body = call("PATCH", f"/patients/{patient.pk}", headers, edit)
    assert status == 200 and isinstance(body, dict) and body["version"] == 2
    seq = last_seq()
    status, body = call("PATCH", f"/patients/{patient.pk}", headers, {**edit, "given_name": "X"})
    assert status == 409 and "changed by someone else" in json.dumps(body)
    assert writes_since(seq) == []
    assert Patient.objects.get(pk=patient.pk).given_name == "First"


def test_validation_errors_name_the_field(coordinator: Actor, patient: Patient) -> None:
    headers = bearer(coordinator)
    status, body = call(
        "POST", f"/patients/{patient.pk}/diagnoses", headers,
        {"condition": "sciatica", "icd10": "bad", "diagnosed_on": "2024-01-01"},
    )  # fmt: skip
    assert status == 422
    assert isinstance(body, dict) and body["errors"][0]["loc"] == ["body", "icd10"]
    assert body["errors"][0]["field"] == "icd10" and body["status"] == 422
    assert body["type"] == "urn:vertebra:problem:validation-error"
    status, body = call(
        "POST", f"/patients/{patient.pk}/diagnoses", headers,
        {"condition": "sciatica", "icd10": "M54.31", "diagnosed_on": "2999-01-01"},
    )  # fmt: skip
    assert status == 422 and "future" in json.dumps(body)


def test_each_pfirrmann_scale_has_its_own_api_field(coordinator: Actor, patient: Patient) -> None:
    headers = bearer(coordinator)
    base = {"condition": "degenerative_disc_disease", "icd10": "M51.36", "diagnosed_on": str(DAY0)}
    status, body = call(
        "POST", f"/patients/{patient.pk}/diagnoses", headers,
        {**base, "pfirrmann_grade": 4, "modified_pfirrmann_grade": 6},
    )  # fmt: skip
    assert status == 201 and isinstance(body, dict)
    assert (body["pfirrmann_grade"], body["modified_pfirrmann_grade"]) == (4, 6)
    # A modified grade sent as the classic field is out of the classic range, and vice versa.
    for field, grade in (("pfirrmann_grade", 6), ("modified_pfirrmann_grade", 9)):
        status, body = call(
            "POST", f"/patients/{patient.pk}/diagnoses", headers, {**base, field: grade}
        )
        assert status == 422 and isinstance(body, dict)
        assert body["errors"][0]["loc"][-1] == field and body["errors"][0]["field"] == field
    assert Diagnosis.objects.count() == 1
    status, listed = call("GET", f"/patients/{patient.pk}/diagnoses", headers)
    assert status == 200 and isinstance(listed, list)
    assert listed[0]["modified_pfirrmann_grade"] == 6


def test_allogeneic_injection_with_prp_over_the_api(clinician: Actor, patient: Patient) -> None:
    lot = make_lot(released_on=DAY0)
    body = {"levels": ["L4-L5"], "target": "intradiscal", "guidance": "fluoroscopy",
            "volume_ml": 1.0, "injected_on": str(DAY0), "allogeneic_lot_id": lot.pk}  # fmt: skip
    episode = make_episode(patient)
    status, created = call(
        "POST",
        f"/episodes/{episode.pk}/injections",
        bearer(clinician),
        {**body, "adjunct_prp": True},
    )
    assert status == 201 and isinstance(created, dict) and created["adjunct_prp"] is True
    assert Injection.objects.get(pk=created["id"]).adjunct_prp is True
    status, created = call(
        "POST", f"/episodes/{make_episode(patient).pk}/injections", bearer(clinician), body
    )
    assert status == 201 and isinstance(created, dict) and created["adjunct_prp"] is False


def test_chain_of_custody_over_the_api(clinician: Actor, clinic: Clinic) -> None:
    headers = bearer(clinician)
    mine, theirs = make_patient(clinic), make_patient(clinic)
    products = {}
    for patient in (mine, theirs):
        episode = make_episode(patient)
        status, harvest = call(
            "POST", f"/episodes/{episode.pk}/harvest", headers,
            {"source": "bone_marrow_iliac_crest", "harvested_on": str(DAY0)},
        )  # fmt: skip
        assert status == 201 and isinstance(harvest, dict)
        status, _ = call(
            "POST", f"/harvests/{harvest['id']}/processing", headers,
            {"method": "bmac", "lab": "Lab", "processed_on": str(DAY0),
             "product_id": f"PR-{patient.pk}", "sterility": "pass"},
        )  # fmt: skip
        assert status == 201
        products[patient.pk] = episode.pk
    injection = {"levels": ["L5-S1"], "target": "intradiscal", "guidance": "ct",
                 "volume_ml": 1.5, "injected_on": str(DAY0 + dt.timedelta(days=1))}  # fmt: skip
    seq = last_seq()
    status, body = call(
        "POST", f"/episodes/{products[mine.pk]}/injections", headers,
        {**injection, "product_id": f"PR-{theirs.pk}"},
    )  # fmt: skip
    assert status == 422 and isinstance(body, dict)
    assert body["errors"][0]["type"] == "chain_of_custody"
    assert writes_since(seq) == []
    status, body = call(
        "POST", f"/episodes/{products[mine.pk]}/injections", headers,
        {**injection, "product_id": f"PR-{mine.pk}"},
    )  # fmt: skip
    assert status == 201
    rows = writes_since(seq)
    assert [(r.object_type, r.patient_id, r.role) for r in rows] == [
        ("injection", mine.pk, "clinician")
    ]
    status, episodes = call("GET", f"/patients/{mine.pk}/episodes", headers)
    assert status == 200 and isinstance(episodes, list)
    assert episodes[0]["injection_ids"] and episodes[0]["processing_id"]


def test_api_reads_are_audited(clinic_admin_actor: Actor, patient: Patient) -> None:
    seq = last_seq()
    assert (
        call("GET", f"/patients/{patient.pk}/adverse-events", bearer(clinic_admin_actor))[0] == 200
    )
    rows = list(AuditEvent.objects.filter(id__gt=seq, action="read"))
    assert [(r.patient_id, r.role) for r in rows] == [(patient.pk, "clinic_admin")]


@pytest.fixture
def clinic_admin_actor(clinic: Clinic) -> Actor:
    return make_actor(Role.CLINIC_ADMIN, clinic)


def test_openapi_documents_typed_schemas() -> None:
    schema = Client().get(API + "/openapi.json").json()
    post = schema["paths"]["/api/v1/episodes/{episode_id}/injections"]["post"]
    assert {"201", "401", "403", "404", "422"} <= set(post["responses"])
    components = schema["components"]["schemas"]
    assert "InjectionIn" in components and "PatientOut" in components
    assert components["InjectionIn"]["properties"]["adjunct_prp"]["default"] is False
    grade = components["DiagnosisIn"]["properties"]["modified_pfirrmann_grade"]
    assert "Griffith 2007" in grade["description"]
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
