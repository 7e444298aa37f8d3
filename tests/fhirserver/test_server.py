"""The FHIR server against a loaded registry: what it serves equals what the export writes,
roles x clinics isolation (bodies checked), the audit trail, errors as OperationOutcomes, and a
bounded number of queries per page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fhirserver.conftest import NOW, World
from vertebra.core.fhir import validate_resource
from vertebra.fhirserver.resources import TYPES
from vertebra.interop.export import export_fhir
from vertebra.registry.models import AuditEvent, Patient

FHIR_JSON = "application/fhir+json; charset=utf-8"


def body(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == FHIR_JSON
    return json.loads(response.content)  # type: ignore[no-any-return]


def everything(
    client: Any, world: World, who: str, kind: str, query: str = ""
) -> list[dict[str, Any]]:
    """Every resource a search returns, following ``next`` links (absolute URLs)."""
    url: str | None = f"/fhir/{kind}?_count=100{query}"
    found: list[dict[str, Any]] = []
    while url is not None:
        page = body(client.get(url.removeprefix("http://testserver"), **world.auth(who)))
        assert page["resourceType"] == "Bundle" and page["type"] == "searchset"
        found += [entry["resource"] for entry in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        assert url is None or url.startswith("http://testserver/fhir/")
    assert len(found) == page["total"]
    return found


def test_served_resources_equal_the_export_of_the_clinic(
    world: World, client: Any, tmp_path: Path
) -> None:
    """A clinician of the first clinic sees exactly that clinic's export, resource for
    resource, each valid R4 (fhir.resources)."""
    clinic = world.clinics[0]
    export_fhir(tmp_path, clinic_ids=[clinic], now=NOW)
    for kind in TYPES:
        written = tmp_path / f"{kind}.ndjson"
        exported = (
            [json.loads(line) for line in written.read_text().splitlines()]
            if written.exists()
            else []
        )
        served = everything(client, world, "clinician", kind)
        assert served, kind
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(served, key=key) == sorted(exported, key=key), kind
        for item in served:
            validate_resource(item)


@pytest.mark.parametrize("who", ["clinician", "coordinator", "clinic_admin"])
def test_roles_that_read_patients_see_their_clinic_only(
    world: World, client: Any, who: str
) -> None:
    mine = Patient.objects.filter(clinic_id=world.clinics[0]).order_by("pk").first()
    theirs = Patient.objects.filter(clinic_id=world.clinics[1]).order_by("pk").first()
    assert mine is not None and theirs is not None
    read = body(client.get(f"/fhir/Patient/patient-{mine.pk}", **world.auth(who)))
    assert read["id"] == f"patient-{mine.pk}" and read["identifier"][0]["value"] == mine.mrn
    other = client.get(f"/fhir/Patient/patient-{theirs.pk}", **world.auth(who))
    missing = client.get("/fhir/Patient/patient-999999", **world.auth(who))
    # Another clinic's patient and a patient that does not exist: the same answer.
    assert other.status_code == missing.status_code == 404
    assert body(other) == body(missing)
    assert (
        body(other)["issue"][0]["code"] == "not-found" and theirs.mrn.encode() not in other.content
    )
    # Searches never reach across clinics, even when asked for the other clinic's patient.
    asked = body(
        client.get(f"/fhir/Observation?patient=Patient/patient-{theirs.pk}", **world.auth(who))
    )
    assert asked["total"] == 0 and "entry" not in asked
    seen = {r["subject"]["reference"] for r in everything(client, world, who, "Condition")}
    allowed = {
        f"Patient/patient-{pk}"
        for pk in Patient.objects.filter(clinic_id=world.clinics[0]).values_list("pk", flat=True)
    }
    assert seen and seen <= allowed


def test_the_other_clinics_clinician_sees_the_other_clinic(world: World, client: Any) -> None:
    mine = set(Patient.objects.filter(clinic_id=world.clinics[0]).values_list("pk", flat=True))
    ids = {int(p["id"].split("-")[1]) for p in everything(client, world, "clinician2", "Patient")}
    assert ids == set(
        Patient.objects.filter(clinic_id=world.clinics[1]).values_list("pk", flat=True)
    )
    assert not ids & mine


@pytest.mark.parametrize("who", ["researcher", "registry_admin"])
def test_roles_without_identified_access_are_refused(world: World, client: Any, who: str) -> None:
    patient = Patient.objects.filter(clinic_id=world.clinics[0]).first()
    assert patient is not None
    for url in (
        "/fhir/Patient",
        f"/fhir/Patient/patient-{patient.pk}",
        "/fhir/Observation?code=odi",
    ):
        answer = client.get(url, **world.auth(who))
        assert answer.status_code == 403
        outcome = body(answer)
        assert outcome["resourceType"] == "OperationOutcome"
        assert (
            outcome["issue"][0]["code"] == "forbidden"
            and patient.family_name.encode() not in answer.content
        )
    assert AuditEvent.objects.filter(action="denied", role=who).exists()


def test_without_a_valid_token_401(world: World, client: Any) -> None:
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer not-a-token"},
        {"HTTP_AUTHORIZATION": "Basic eDp5"},
    ):
        answer = client.get("/fhir/Patient", **headers)
        assert answer.status_code == 401 and answer["WWW-Authenticate"].startswith("Bearer")
        assert body(answer)["issue"][0]["code"] == "login"
    # The CapabilityStatement and the Questionnaires are public.
    assert body(client.get("/fhir/metadata"))["resourceType"] == "CapabilityStatement"
    assert body(client.get("/fhir/Questionnaire/odi"))["url"].endswith("/Questionnaire/odi")


def test_a_session_user_reads_as_their_role(world: World, client: Any) -> None:
    from tests.registry.factories import make_actor
    from vertebra.registry.models import Clinic, Role

    actor = make_actor(Role.CLINICIAN, Clinic.objects.get(pk=world.clinics[1]))
    client.force_login(actor.user)
    page = body(client.get("/fhir/Patient?_count=100"))
    assert page["total"] == Patient.objects.filter(clinic_id=world.clinics[1]).count()


def test_reads_and_searches_are_audited(world: World, client: Any) -> None:
    patient = Patient.objects.filter(clinic_id=world.clinics[0]).order_by("pk").first()
    assert patient is not None
    before = AuditEvent.objects.count()
    client.get(f"/fhir/Patient/patient-{patient.pk}", **world.auth("clinician"))
    read = AuditEvent.objects.order_by("-id").first()
    assert read is not None and read.action == "read" and read.object_type == "patient"
    assert (read.patient_id, read.clinic_id, read.role) == (
        patient.pk,
        patient.clinic_id,
        "clinician",
    )
    page = body(
        client.get(
            f"/fhir/Observation?patient=patient-{patient.pk}&_count=5", **world.auth("clinician")
        )
    )
    search = AuditEvent.objects.order_by("-id").first()
    assert search is not None and search.action == "search" and search.object_type == "fhir_search"
    assert search.new_values is not None
    assert search.new_values["ids"] == [e["resource"]["id"] for e in page["entry"]]
    assert search.new_values["patient_ids"] == [patient.pk]
    assert search.new_values["type"] == "Observation"
    assert AuditEvent.objects.count() == before + 2


def test_errors_are_operation_outcomes(world: World, client: Any) -> None:
    auth = world.auth("clinician")
    cases = {
        "/fhir/Nonsense": (404, "not-supported"),
        "/fhir/Patient?name=smith": (400, "processing"),  # unknown: refused as HAPI does
        "/fhir/Observation?code:text=odi": (400, "processing"),  # modifiers not supported
        "/fhir/Observation?date=yesterday": (400, "processing"),
        "/fhir/Observation?date=sa2025-01-01": (400, "processing"),
        "/fhir/Observation?_count=-1": (400, "processing"),
        "/fhir/Observation?_format=xml": (406, "not-supported"),
        "/fhir/Observation/score-99999999": (404, "not-found"),
        "/fhir/Observation/nonsense": (404, "not-found"),
        "/fhir/Questionnaire/nonsense": (404, "not-found"),
    }
    for url, (status, code) in cases.items():
        answer = client.get(url, **auth)
        assert answer.status_code == status, url
        assert body(answer)["issue"][0]["code"] == code, url
    posted = client.post("/fhir/Patient", data="{}", content_type="application/fhir+json", **auth)
    assert posted.status_code == 405 and body(posted)["resourceType"] == "OperationOutcome"
    # Prefer: handling=lenient ignores what is unknown (and leaves it out of the self link).
    lenient = client.get(
        "/fhir/Patient?name=smith&_count=1", HTTP_PREFER="handling=lenient", **auth
    )
    page = body(lenient)
    assert (
        lenient.status_code == 200 and page["total"] > 0 and "name=" not in page["link"][0]["url"]
    )


def test_questionnaire_canonicals_resolve(world: World, client: Any) -> None:
    moved = client.get("/fhir/Questionnaire/promis_pf_4a")
    assert moved.status_code == 301
    assert moved["Location"] == "http://testserver/fhir/Questionnaire/promis-pf-4a"
    found = body(
        client.get(
            "/fhir/Questionnaire?url=https://vertebra.example.org/fhir/Questionnaire/odi|2.1a"
        )
    )
    assert [e["resource"]["id"] for e in found["entry"]] == ["odi"]
    response = everything(client, world, "clinician", "QuestionnaireResponse")[0]
    canonical = response["questionnaire"]
    url, version = canonical.split("|")
    form = body(client.get(f"/fhir/Questionnaire?url={canonical}"))["entry"][0]["resource"]
    assert (form["url"], form["version"]) == (url, version)


def test_a_page_costs_a_fixed_number_of_queries(
    world: World, client: Any, django_assert_max_num_queries: Any
) -> None:
    """Filtering and paging happen in the database: a page of 50 Observations, or of 50
    Procedures from five tables, costs the same bounded number of queries."""
    auth = world.auth("clinician")
    for url in (
        "/fhir/Observation?_count=50",
        "/fhir/Procedure?_count=50",
        "/fhir/AdverseEvent?_count=50",
    ):
        with django_assert_max_num_queries(30):
            assert client.get(url, **auth).status_code == 200


def test_patients_are_found_by_mrn_or_registry_id_at_ones_own_clinic(
    world: World, client: Any
) -> None:
    base = "https://vertebra.example.org/fhir/sid"
    mine = Patient.objects.filter(clinic_id=world.clinics[0]).order_by("pk").first()
    theirs = Patient.objects.filter(clinic_id=world.clinics[1]).order_by("pk").first()
    assert mine is not None and theirs is not None
    auth = world.auth("clinician")

    def found(query: str) -> list[str]:
        page = body(client.get(f"/fhir/Patient?{query}", **auth))
        return [entry["resource"]["id"] for entry in page.get("entry", [])]

    me = f"patient-{mine.pk}"
    assert found(f"identifier={mine.mrn}") == [me]
    assert found(f"identifier={base}/mrn/{mine.clinic_id}|{mine.mrn}") == [me]
    assert found(f"identifier={base}/patient|{mine.pk}") == [me]
    assert found(f"identifier={base}/mrn/{theirs.clinic_id}|{mine.mrn}") == []
    assert found(f"identifier={theirs.mrn}") == [] or theirs.mrn == mine.mrn
    assert found(f"identifier={base}/patient|{theirs.pk}") == []
