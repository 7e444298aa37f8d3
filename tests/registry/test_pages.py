"""The clinician pages: forms, chain-of-custody refusals, optimistic locking, audit, caching.

Requirement ids: DESIGN §3 (pathway with chain of custody), HIPAA-164.312(b) (every write
audited with who, role, clinic, patient), T-optimistic-locking, no-store on PHI.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.registry.factories import DAY0, make_actor, make_episode, make_lot, make_patient
from tests.registry.web import last_seq, signed_in, writes_since
from vertebra.registry import services
from vertebra.registry.models import (
    AdverseEvent,
    AdverseEventStatus,
    Clinic,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    Processing,
    Role,
    ScreeningEvaluation,
    Sterility,
)
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db


#: Writes that a page makes through a second service, beside its own record: starting an
#: episode also creates its follow-up schedule (issue 6), audited by the follow-up service.
ALSO_WRITTEN = {"treatmentepisode": ["followup_schedule"]}


def assert_one_write(seq: int, actor: Actor, patient: Patient, object_type: str) -> None:
    """One create/update audit row since ``seq`` per object written, fully attributed."""
    rows = writes_since(seq)
    expected = [object_type, *ALSO_WRITTEN.get(object_type, [])]
    assert [r.object_type for r in rows] == expected, [(r.action, r.object_type) for r in rows]
    for row in rows:
        assert (row.actor_user_id, row.role) == (actor.user.pk, actor.role)
        assert (row.clinic_id, row.patient_id) == (patient.clinic_id, patient.pk)


def test_pages_require_sign_in(client, patient: Patient) -> None:
    response = client.get(f"/clinic/patients/{patient.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_patient_list_search_filters_and_no_store(
    coordinator: Actor, clinic: Clinic, other_patient: Patient
) -> None:
    alice = make_patient(clinic, given_name="Alice", family_name="Zeta", mrn="A-1")
    make_patient(clinic, given_name="Bob", family_name="Young", mrn="B-1")
    services.record_diagnosis(
        actor=coordinator, patient_id=alice.pk, condition="sciatica", icd10="M54.31",
        diagnosed_on=DAY0,
    )  # fmt: skip
    client = signed_in(coordinator)
    response = client.get("/clinic/", {"q": "zet"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Zeta, Alice" in body and "Young" not in body
    assert "no-store" in response["Cache-Control"]
    assert other_patient.family_name not in body
    body = client.get("/clinic/", {"condition": "sciatica"}).content.decode()
    assert "Zeta" in body and "Young" not in body
    body = client.get("/clinic/", {"arm": "surgery"}).content.decode()
    assert "0 patients found" in body


def test_patient_list_paginates(coordinator: Actor, clinic: Clinic) -> None:
    for n in range(30):
        make_patient(clinic, family_name=f"Page{n:02d}")
    client = signed_in(coordinator)
    first = client.get("/clinic/").content.decode()
    assert "Page 1 of 2" in first and "Page00" in first and "Page29" not in first
    second = client.get("/clinic/", {"page": 2}).content.decode()
    assert "Page29" in second and "Page00" not in second


def test_register_patient_through_the_page_is_audited_once(
    coordinator: Actor, clinic: Clinic
) -> None:
    client = signed_in(coordinator)
    assert client.get("/clinic/patients/new/").status_code == 200
    seq = last_seq()
    response = client.post(
        "/clinic/patients/new/",
        {
            "clinic_id": clinic.pk, "mrn": "NEW-1", "given_name": "Nora", "family_name": "North",
            "date_of_birth": "1970-02-03", "sex": "female", "email": "", "phone": "",
        },
    )  # fmt: skip
    patient = Patient.objects.get(mrn="NEW-1")
    assert response.status_code == 302
    assert response["Location"].startswith(f"/clinic/patients/{patient.pk}/")
    assert_one_write(seq, coordinator, patient, "patient")


def test_field_errors_sit_beside_their_fields(coordinator: Actor, clinic: Clinic) -> None:
    client = signed_in(coordinator)
    response = client.post(
        "/clinic/patients/new/",
        {"clinic_id": clinic.pk, "mrn": "", "given_name": "X", "family_name": "Y",
         "date_of_birth": "2999-01-01", "sex": "female"},
    )  # fmt: skip
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="err-mrn"' in body
    assert not Patient.objects.filter(given_name="X").exists()
    response = client.post(
        "/clinic/patients/new/",
        {"clinic_id": clinic.pk, "mrn": "Z1", "given_name": "X", "family_name": "Y",
         "date_of_birth": "2999-01-01", "sex": "female"},
    )  # fmt: skip
    assert response.status_code == 400
    assert 'id="err-date_of_birth"' in response.content.decode()
    assert "cannot be in the future" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "data", "object_type"),
    [
        ("consents", {"kind": "registry", "form_version": "v2", "signed_on": "2024-03-01"},
         "consent"),
        ("diagnoses", {"condition": "degenerative_disc_disease", "icd10": "m51.36",
                       "diagnosed_on": "2024-03-01", "level": "L4-L5", "pfirrmann_grade": "3",
                       "modic_type": "1"}, "diagnosis"),
        ("prior-treatments", {"kind": "medication", "medication_name": "oxycodone",
                              "daily_dose": "20"}, "priortreatment"),
        ("episodes", {"arm": "cell_therapy", "start_date": "2024-03-01"}, "treatmentepisode"),
        ("adverse-events", {"description": "Flare", "category": "pain_flare",
                            "onset": "2024-03-05", "outcome": "recovering"}, "adverseevent"),
        ("clinical-events", {"kind": "subsequent_surgery", "occurred_on": "2024-06-01"},
         "clinicalevent"),
    ],
)  # fmt: skip
def test_each_patient_form_writes_one_attributed_audit_row(
    coordinator: Actor, patient: Patient, path: str, data: dict[str, str], object_type: str
) -> None:
    client = signed_in(coordinator)
    url = f"/clinic/patients/{patient.pk}/{path}/new/"
    assert client.get(url).status_code == 200
    seq = last_seq()
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert_one_write(seq, coordinator, patient, object_type)
    timeline = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert response["Location"].split("#")[1] in timeline


def test_screening_page_stores_the_engine_verdict_with_rules_and_version(
    coordinator: Actor, patient: Patient
) -> None:
    client = signed_in(coordinator)
    url = f"/clinic/patients/{patient.pk}/screenings/new/"
    assert client.get(url).status_code == 200
    assert client.post(url, {}).status_code == 400  # warning signs must be answered
    seq = last_seq()
    response = client.post(url, {"red_flags": ["cancer_history"], "age": "52"})
    assert response.status_code == 302
    assert_one_write(seq, coordinator, patient, "screeningevaluation")
    evaluation = ScreeningEvaluation.objects.get(patient=patient)
    assert evaluation.verdict == "refer"
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "See a doctor first" in page or "refer" in page
    assert evaluation.ruleset_version in page
    assert evaluation.fired_rules[0]["id"] in page


def _pathway(clinician: Actor, patient: Patient) -> tuple[int, str]:
    """Walk harvest → processing (sterility pass) through the pages; return (episode, product)."""
    client = signed_in(clinician)
    episode = make_episode(patient, start_date=DAY0)
    seq = last_seq()
    response = client.post(
        f"/clinic/episodes/{episode.pk}/harvest/",
        {"source": "bone_marrow_iliac_crest", "volume_ml": "60", "harvested_on": "2024-03-01"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert_one_write(seq, clinician, patient, "harvest")
    seq = last_seq()
    response = client.post(
        f"/clinic/episodes/{episode.pk}/processing/",
        {"method": "bmac", "lab": "Cell Lab", "processed_on": "2024-03-01",
         "product_id": f"P-{patient.pk}", "sterility": "pass", "viability_pct": "95"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    assert_one_write(seq, clinician, patient, "processing")
    return episode.pk, f"P-{patient.pk}"


INJECTION = {
    "levels": ["L4-L5"], "target": "intradiscal", "guidance": "fluoroscopy", "volume_ml": "2",
    "injected_on": "2024-03-02",
}  # fmt: skip


def test_pathway_through_the_pages_and_refusal_of_another_patients_product(
    clinician: Actor, clinic: Clinic
) -> None:
    first, second = make_patient(clinic), make_patient(clinic)
    episode_id, product = _pathway(clinician, first)
    other_episode_id, other_product = _pathway(clinician, second)
    client = signed_in(clinician)
    seq = last_seq()
    response = client.post(
        f"/clinic/episodes/{episode_id}/injections/new/", {**INJECTION, "product_id": other_product}
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "may be injected only into the patient it was harvested from" in body
    assert "Nothing was saved" in body
    assert writes_since(seq) == [] and not Injection.objects.exists()
    response = client.post(
        f"/clinic/episodes/{episode_id}/injections/new/", {**INJECTION, "product_id": product}
    )
    assert response.status_code == 302
    assert_one_write(seq, clinician, first, "injection")
    page = client.get(f"/clinic/patients/{first.pk}/").content.decode()
    for label in ("Harvest", "Processing", "Injection"):
        assert f"<strong>{label}</strong>" in page
    assert other_episode_id != episode_id


def test_unreleased_lot_and_wrong_order_are_refused_on_the_pages(
    clinician: Actor, patient: Patient
) -> None:
    client = signed_in(clinician)
    episode = make_episode(patient)
    response = client.post(
        f"/clinic/episodes/{episode.pk}/processing/",
        {"method": "bmac", "lab": "L", "processed_on": "2024-03-01", "product_id": "X1",
         "sterility": "pass"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "record the harvest before processing" in response.content.decode()
    lot = make_lot()
    response = client.post(
        f"/clinic/episodes/{episode.pk}/injections/new/", {**INJECTION, "allogeneic_lot": lot.pk}
    )
    assert response.status_code == 400
    assert "has not been released" in response.content.decode()
    assert not Harvest.objects.exists() and not Processing.objects.exists()


def test_injection_form_records_prp_with_an_allogeneic_lot(
    clinician: Actor, patient: Patient
) -> None:
    client = signed_in(clinician)
    episode = make_episode(patient)
    url = f"/clinic/episodes/{episode.pk}/injections/new/"
    form = client.get(url).content.decode()
    assert 'name="adjunct_prp"' in form and "PRP given with this injection" in form
    lot = make_lot(released_on=DAY0)
    seq = last_seq()
    response = client.post(url, {**INJECTION, "allogeneic_lot": lot.pk, "adjunct_prp": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert_one_write(seq, clinician, patient, "injection")
    injection = Injection.objects.get(episode=episode)
    assert injection.allogeneic_lot == lot and injection.adjunct_prp is True
    assert writes_since(seq)[0].new_values["adjunct_prp"] is True
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert f"lot {lot.lot_number}; with PRP" in page


def test_diagnosis_form_names_both_pfirrmann_scales(coordinator: Actor, patient: Patient) -> None:
    client = signed_in(coordinator)
    url = f"/clinic/patients/{patient.pk}/diagnoses/new/"
    form = client.get(url).content.decode()
    assert "Pfirrmann grade (classic, 1–5)" in form and "Modified Pfirrmann grade (1–8)" in form
    assert "Griffith et al., Spine 2007" in form
    data = {"condition": "degenerative_disc_disease", "icd10": "M51.36",
            "diagnosed_on": "2024-03-01"}  # fmt: skip
    response = client.post(url, {**data, "pfirrmann_grade": "6"})
    assert response.status_code == 400 and 'id="err-pfirrmann_grade"' in response.content.decode()
    response = client.post(url, {**data, "modified_pfirrmann_grade": "6"})
    assert response.status_code == 302
    diagnosis = Diagnosis.objects.get(patient=patient)
    assert (diagnosis.pfirrmann_grade, diagnosis.modified_pfirrmann_grade) == (None, 6)
    page = client.get(f"/clinic/patients/{patient.pk}/").content.decode()
    assert "Modified Pfirrmann 6 (1–8)." in page and "classic scale" not in page


def test_coordinator_may_not_open_the_harvest_form(coordinator: Actor, patient: Patient) -> None:
    episode = make_episode(patient)
    response = signed_in(coordinator).get(f"/clinic/episodes/{episode.pk}/harvest/")
    assert response.status_code == 403


def test_stale_edit_gets_409_with_current_values_and_overwrites_nothing(
    coordinator: Actor, clinic: Clinic
) -> None:
    patient = make_patient(clinic, given_name="Ann", family_name="Old")
    colleague = make_actor(Role.CLINIC_ADMIN, clinic)
    client = signed_in(coordinator)
    form = client.get(f"/clinic/patients/{patient.pk}/edit/").content.decode()
    assert 'name="version" value="1"' in form
    services.update_patient(
        actor=colleague, patient_id=patient.pk, expected_version=1,
        changes={"family_name": "Colleague"}, reason="typo",
    )  # fmt: skip
    seq = last_seq()
    data = {
        "version": "1", "reason": "married name", "mrn": patient.mrn, "given_name": "Ann",
        "family_name": "Mine", "date_of_birth": "1972-05-17", "sex": "female",
        "email": patient.email, "phone": "",
    }  # fmt: skip
    response = client.post(f"/clinic/patients/{patient.pk}/edit/", data)
    body = response.content.decode()
    assert response.status_code == 409
    assert "changed by someone else" in body and "Colleague" in body
    assert writes_since(seq) == []
    patient.refresh_from_db()
    assert (patient.family_name, patient.version) == ("Colleague", 2)
    # A fresh edit with the current version and a reason goes through, audited once.
    response = client.post(f"/clinic/patients/{patient.pk}/edit/", {**data, "version": "2"})
    assert response.status_code == 302
    assert_one_write(seq, coordinator, patient, "patient")
    assert writes_since(seq)[0].reason == "married name"


def test_edit_needs_a_reason(coordinator: Actor, patient: Patient) -> None:
    data = {"version": "1", "reason": "", "mrn": patient.mrn, "given_name": "Q",
            "family_name": "Q", "date_of_birth": "1972-05-17", "sex": "female"}  # fmt: skip
    response = signed_in(coordinator).post(f"/clinic/patients/{patient.pk}/edit/", data)
    assert response.status_code == 400 and 'id="err-reason"' in response.content.decode()


def test_adjudication_queue_and_adjudication(
    clinician: Actor, coordinator: Actor, patient: Patient, other_patient: Patient
) -> None:
    event = services.record_adverse_event(
        actor=coordinator, patient_id=patient.pk, description="Fever after injection",
        category="infection", onset=DAY0,
    )  # fmt: skip
    other = make_actor(Role.COORDINATOR, Clinic.objects.get(pk=other_patient.clinic_id))
    services.record_adverse_event(
        actor=other, patient_id=other_patient.pk, description="Other clinic event",
        category="other", onset=DAY0,
    )  # fmt: skip
    assert signed_in(coordinator).get("/clinic/adverse-events/").status_code == 403
    client = signed_in(clinician)
    queue = client.get("/clinic/adverse-events/").content.decode()
    assert "Fever after injection" in queue and "Other clinic event" not in queue
    assert other_patient.family_name not in queue
    seq = last_seq()
    response = client.post(
        f"/clinic/adverse-events/{event.pk}/adjudicate/",
        {"ctcae_grade": "2", "serious": "", "relatedness": "procedure", "expected": "yes",
         "outcome": "recovered", "resolved_on": "2024-03-10"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    assert_one_write(seq, clinician, patient, "adverseevent")
    event.refresh_from_db()
    assert event.status == AdverseEventStatus.ADJUDICATED
    assert (event.ctcae_grade, event.relatedness, event.expected) == (2, "procedure", True)
    assert event.adjudicated_by_id == clinician.user.pk
    assert "Fever after injection" not in client.get("/clinic/adverse-events/").content.decode()
    # Re-adjudication is a correction after the fact: it needs a reason.
    response = client.post(
        f"/clinic/adverse-events/{event.pk}/adjudicate/",
        {"ctcae_grade": "3", "relatedness": "procedure", "expected": "yes", "outcome": "recovered"},
    )
    assert response.status_code == 400
    assert AdverseEvent.objects.get(pk=event.pk).ctcae_grade == 2


def test_the_adjudication_form_starts_from_the_reported_seriousness(
    clinician: Actor, coordinator: Actor, patient: Patient
) -> None:
    """A serious report opens with "serious" ticked; a non-serious one with it clear."""
    client = signed_in(clinician)
    for serious in (True, False):
        event = services.record_adverse_event(
            actor=coordinator, patient_id=patient.pk, description=f"Reported serious={serious}",
            category="infection", onset=DAY0, serious=serious,
        )  # fmt: skip
        page = client.get(f"/clinic/adverse-events/{event.pk}/adjudicate/").content.decode()
        box = re.search(r'<input[^>]*name="serious"[^>]*>', page)
        assert box is not None
        assert ("checked" in box.group(0)) is serious


def test_a_patient_account_has_no_clinic_access(patient: Patient) -> None:
    from tests.registry.factories import make_user
    from vertebra.registry.models import PatientAccount

    user = make_user()
    PatientAccount.objects.create(user=user, patient=patient)
    response = signed_in(user).get("/clinic/")
    assert response.status_code == 403
    assert patient.family_name not in response.content.decode()


def test_sterility_pending_product_is_refused(clinician: Actor, patient: Patient) -> None:
    episode = make_episode(patient)
    services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="adipose", harvested_on=DAY0
    )
    services.record_processing(
        actor=clinician, episode_id=episode.pk, method="svf", lab="L", processed_on=DAY0,
        product_id="PEND-1", sterility=Sterility.PENDING,
    )  # fmt: skip
    response = signed_in(clinician).post(
        f"/clinic/episodes/{episode.pk}/injections/new/",
        {**INJECTION, "product_id": "PEND-1", "injected_on": str(DAY0 + dt.timedelta(days=1))},
    )
    assert response.status_code == 400
    assert "still pending" in response.content.decode()
