"""A real FHIR client (fhirpy, pinned in the ``test`` extra) against the live server: reads,
searches and pages through every result by the Bundle's ``next`` links."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import (
    AuthorizationError,
    ForbiddenError,
    OperationOutcome,
    ResourceNotFound,
)

from tests.fhirserver.conftest import make_world
from vertebra.registry.models import Patient


@pytest.fixture
def live(transactional_db: Any, live_server: Any) -> tuple[Any, Any]:
    world = make_world()
    return world, live_server


def client_for(base: str, token: str) -> SyncFHIRClient:
    return SyncFHIRClient(f"{base}/fhir", authorization=f"Bearer {token}")


def test_fhirpy_reads_searches_and_pages(live: tuple[Any, Any]) -> None:
    world, server = live
    fhir = client_for(server.url, world.tokens["clinician"])
    mine = Patient.objects.filter(clinic_id=world.clinics[0])
    # Paging: 5 a page, followed to the end by fhirpy through the absolute next links.
    patients = fhir.resources("Patient").limit(5).fetch_all()
    assert sorted(p["id"] for p in patients) == sorted(
        f"patient-{pk}" for pk in mine.values_list("pk", flat=True)
    )
    assert len(patients) > 5  # more than one page
    first = patients[0]
    # Read, by reference and by id.
    again = fhir.reference("Patient", first["id"]).to_resource()
    assert again.serialize() == first.serialize()
    assert again["identifier"][0]["value"] == mine.get(pk=int(first["id"].split("-")[1])).mrn
    # Search by patient and code, paged.
    scores = (
        fhir.resources("Observation").search(patient=f"Patient/{first['id']}").limit(3).fetch_all()
    )
    assert scores and {s["subject"]["reference"] for s in scores} == {f"Patient/{first['id']}"}
    odi = fhir.resources("Observation").search(code="odi").limit(50).fetch_all()
    assert odi and all(o["code"]["coding"][0]["code"] == "odi" for o in odi)
    # A QuestionnaireResponse's questionnaire resolves on the same server.
    answer = fhir.resources("QuestionnaireResponse").search(patient=first["id"]).first()
    canonical = answer["questionnaire"]
    form = fhir.resources("Questionnaire").search(url=canonical).first()
    assert f"{form['url']}|{form['version']}" == canonical
    linked = {item["linkId"] for item in form["item"]}
    assert {item["linkId"] for item in answer.get("item", [])} <= linked


def test_fhirpy_sees_refusals_as_operation_outcomes(live: tuple[Any, Any]) -> None:
    world, server = live
    fhir = client_for(server.url, world.tokens["clinician"])
    theirs = Patient.objects.filter(clinic_id=world.clinics[1]).first()
    assert theirs is not None
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", f"patient-{theirs.pk}").to_resource()
    with pytest.raises(OperationOutcome) as refused:
        fhir.resources("Patient").search(name="x").fetch()
    assert "Unknown search parameter" in str(refused.value)
    researcher = client_for(server.url, world.tokens["researcher"])
    with pytest.raises(ForbiddenError) as forbidden:
        researcher.resources("Patient").fetch()
    assert '"code": "forbidden"' in str(forbidden.value)
    with pytest.raises(AuthorizationError):
        client_for(server.url, "not-a-token").resources("Patient").fetch()
