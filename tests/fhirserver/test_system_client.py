"""A SMART Backend Services client reads and searches over HTTP (pytest-django ``live_server``,
``requests``): it signs an RS384 assertion, gets an access token at ``/fhir/auth/token`` and
reads within its scopes and its clinic; a type outside its scopes is a 403 OperationOutcome,
another clinic's resources are invisible, and every read is audited as the client."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.utils import timezone
from joserfc.jwk import RSAKey

from tests.fhirbulk.conftest import assertion, load_registry, public_jwks, token_form
from vertebra.fhirbulk.auth import register_client
from vertebra.registry.models import AuditEvent, Diagnosis, Patient

pytestmark = pytest.mark.django_db(transaction=True)
FHIR = {"Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


def _token(base: str, client_id: str, key: RSAKey, scope: str) -> dict[str, str]:
    """The Authorization header of a fresh access token for ``scope``."""
    signed = assertion(key, client_id, f"{base}/fhir/auth/token")
    answer = requests.post(f"{base}/fhir/auth/token", data=token_form(signed, scope), timeout=10)
    assert answer.status_code == 200, answer.text
    return {**FHIR, "Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def system(live_server: Any, key: RSAKey) -> dict[str, Any]:
    """A 6-patient registry; client ``north-ehr`` of its first clinic and a research client."""
    clinics = load_registry(6)
    jwks = public_jwks(key)
    register_client(
        client_id="north-ehr", name="North EHR", jwks=jwks, clinic_id=clinics[0],
        now=timezone.now(),
    )  # fmt: skip
    register_client(
        client_id="study-warehouse", name="Study", jwks=jwks, clinic_id=None, now=timezone.now()
    )
    return {"base": live_server.url, "clinics": clinics}


def test_a_system_token_reads_and_searches_its_clinic_only(
    system: dict[str, Any], key: RSAKey
) -> None:
    base, own = system["base"], system["clinics"][0]
    auth = _token(base, "north-ehr", key, "system/Patient.rs system/Condition.read")
    mine = {
        f"patient-{pk}" for pk in Patient.objects.filter(clinic_id=own).values_list("pk", flat=True)
    }
    theirs = Patient.objects.exclude(clinic_id=own).values_list("pk", flat=True)
    assert mine and theirs
    page = requests.get(f"{base}/fhir/Patient?_count=100", headers=auth, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("application/fhir+json")
    bundle = page.json()
    assert bundle["total"] == len(mine)
    assert {e["resource"]["id"] for e in bundle["entry"]} == mine
    first = sorted(mine)[0]
    read = requests.get(f"{base}/fhir/Patient/{first}", headers=auth, timeout=10)
    assert read.status_code == 200 and read.json()["id"] == first
    assert read.json()["meta"]["lastUpdated"].endswith("Z")
    # Another clinic's patient: not found, not listed, its conditions not searchable.
    other = theirs[0]
    assert (
        requests.get(f"{base}/fhir/Patient/patient-{other}", headers=auth, timeout=10).status_code
        == 404
    )
    by_id = requests.get(f"{base}/fhir/Patient?_id=patient-{other}", headers=auth, timeout=10)
    assert by_id.json()["total"] == 0 and "entry" not in by_id.json()
    conditions = requests.get(f"{base}/fhir/Condition?_count=100", headers=auth, timeout=10).json()
    subjects = {
        e["resource"]["subject"]["reference"].removeprefix("Patient/") for e in conditions["entry"]
    }
    assert subjects and subjects <= mine
    assert (
        conditions["total"]
        == Diagnosis.objects.filter(patient__clinic_id=own, voided_at__isnull=True).count()
    )
    # Audited as the client, one row per search and read.
    rows = AuditEvent.objects.filter(actor_username="fhir-client:north-ehr")
    assert rows.filter(action="search", object_type="fhir_search").count() == 3
    assert (
        rows.filter(action="read", object_type="patient", object_id=first.split("-")[1]).count()
        == 1
    )


def test_a_type_outside_the_scopes_is_forbidden(system: dict[str, Any], key: RSAKey) -> None:
    base = system["base"]
    auth = _token(base, "north-ehr", key, "system/Patient.r")
    condition = Diagnosis.objects.filter(patient__clinic_id=system["clinics"][0]).first()
    assert condition is not None
    for url in ("Condition", f"Condition/diagnosis-{condition.pk}", "Observation?code=odi"):
        answer = requests.get(f"{base}/fhir/{url}", headers=auth, timeout=10)
        assert answer.status_code == 403, url
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert "system/Patient.r" in outcome["issue"][0]["diagnostics"]
    assert requests.get(f"{base}/fhir/Patient", headers=auth, timeout=10).status_code == 200
    denied = AuditEvent.objects.filter(actor_username="fhir-client:north-ehr", action="denied")
    assert denied.count() == 3


def test_a_research_client_reads_nothing_identified(system: dict[str, Any], key: RSAKey) -> None:
    auth = _token(system["base"], "study-warehouse", key, "system/*.rs")
    answer = requests.get(f"{system['base']}/fhir/Patient", headers=auth, timeout=10)
    assert answer.status_code == 403
    assert "de-identified" in answer.json()["issue"][0]["diagnostics"]


def test_an_expired_or_unknown_token_is_a_401(system: dict[str, Any]) -> None:
    answer = requests.get(
        f"{system['base']}/fhir/Patient", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
