"""Services: one audit row per write with the right actor, patient, old and new values;
optimistic locking; reasons for edits after the fact; derived values (MME, screening).

Requirement ids: T19 (audit completeness: initial values, field-level old → new, reason),
T5 (lost updates: a stale edit is refused, the first edit preserved).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tests.registry.factories import DAY0, make_episode, make_lot
from vertebra.registry import services
from vertebra.registry.audit import verify_audit_chain
from vertebra.registry.errors import PermissionDeniedError, StaleEditError
from vertebra.registry.models import AuditEvent, Clinic, Diagnosis, Injection, Patient
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db


class FakeResult:
    """Stands in for vertebra.core.screening's ScreeningResult (only ``to_dict`` is used)."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self.facts = facts

    def to_dict(self) -> dict[str, object]:
        fired = [{"id": "modic_3", "verdict": "not_candidate", "message": "Modic type 3"}]
        return {
            "verdict": "not_candidate" if self.facts.get("modic_type") == 3 else "candidate",
            "fired": fired if self.facts.get("modic_type") == 3 else [],
            "ruleset_id": "vertebra-screening",
            "ruleset_version": "1.2.0",
        }


def fake_evaluate(facts: Mapping[str, Any]) -> FakeResult:
    return FakeResult(facts)


def _calls(patient: Patient, clinic: Clinic) -> dict[str, Callable[[Actor], Any]]:
    """One call of every patient-level write service, keyed by the audited object type."""
    return {
        "patient": lambda a: services.register_patient(
            actor=a,
            clinic_id=clinic.pk,
            mrn="A-100",
            given_name="Ana",
            family_name="Silva",
            date_of_birth=dt.date(1971, 2, 3),
            sex="female",
        ),
        "consent": lambda a: services.record_consent(
            actor=a, patient_id=patient.pk, kind="registry", form_version="v3", signed_on=DAY0
        ),
        "diagnosis": lambda a: services.record_diagnosis(
            actor=a,
            patient_id=patient.pk,
            condition="degenerative_disc_disease",
            icd10="m51.36",
            diagnosed_on=DAY0,
            level="L4-L5",
            pfirrmann_grade=4,
            modic_type=1,
            disc_height_pct=70.0,
        ),
        "priortreatment": lambda a: services.record_prior_treatment(
            actor=a,
            patient_id=patient.pk,
            kind="medication",
            medication_name="oxycodone",
            daily_dose=20,
        ),
        "screeningevaluation": lambda a: services.record_screening(
            actor=a, patient_id=patient.pk, facts={"modic_type": 3}, evaluator=fake_evaluate
        ),
        "treatmentepisode": lambda a: services.start_episode(
            actor=a, patient_id=patient.pk, arm="physical_therapy", start_date=DAY0
        ),
        "adverseevent": lambda a: services.record_adverse_event(
            actor=a,
            patient_id=patient.pk,
            description="Back pain flare after the injection",
            category="pain_flare",
            onset=DAY0,
        ),
        "clinicalevent": lambda a: services.record_clinical_event(
            actor=a, patient_id=patient.pk, kind="subsequent_surgery", occurred_on=DAY0
        ),
    }


@pytest.mark.parametrize(
    "object_type",
    [
        "patient",
        "consent",
        "diagnosis",
        "priortreatment",
        "screeningevaluation",
        "treatmentepisode",
        "adverseevent",
        "clinicalevent",
    ],
)
def test_each_service_writes_exactly_one_audit_row_with_initial_values(
    coordinator: Actor, patient: Patient, clinic: Clinic, object_type: str
) -> None:
    created = _calls(patient, clinic)[object_type](coordinator)
    rows = list(AuditEvent.objects.all())
    assert len(rows) == 1
    row = rows[0]
    assert row.action == "create"
    assert row.object_type == object_type
    assert row.object_id == str(created.pk)
    assert row.actor_user_id == coordinator.user.pk
    assert row.actor_username == coordinator.user.username
    assert row.role == "coordinator"
    assert row.request_id == "req-test"
    assert row.clinic_id == clinic.pk
    expected_patient = created.pk if object_type == "patient" else patient.pk
    assert row.patient_id == expected_patient
    assert row.old_values is None
    assert row.new_values is not None
    assert row.new_values["id"] == created.pk
    assert verify_audit_chain() == []


def test_pathway_and_lot_services_write_one_row_each(
    clinician: Actor, registry_admin: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    services.record_harvest(
        actor=clinician, episode_id=episode.pk, source="adipose", harvested_on=DAY0
    )
    services.record_processing(
        actor=clinician,
        episode_id=episode.pk,
        method="svf",
        lab="Lab",
        processed_on=DAY0,
        product_id="P-1",
        sterility="pass",
    )
    services.record_injection(
        actor=clinician,
        episode_id=episode.pk,
        product_id="P-1",
        levels=["L4-L5"],
        target="intradiscal",
        guidance="ct",
        volume_ml=1.5,
        injected_on=DAY0,
    )
    lot = services.register_lot(actor=registry_admin, lot_number="L-9", product="UC")
    services.release_lot(actor=registry_admin, lot_id=lot.pk, released_on=DAY0)
    rows = list(AuditEvent.objects.values_list("action", "object_type", "patient_id"))
    assert rows == [
        ("create", "harvest", patient.pk),
        ("create", "processing", patient.pk),
        ("create", "injection", patient.pk),
        ("create", "allogeneiclot", None),
        ("update", "allogeneiclot", None),
    ]
    release = AuditEvent.objects.get(action="update")
    assert release.old_values == {"released": False, "released_on": None}
    assert release.new_values == {"released": True, "released_on": DAY0.isoformat()}


def test_a_failed_write_leaves_no_audit_row(coordinator: Actor, patient: Patient) -> None:
    with pytest.raises(ValidationError, match="ICD-10-CM"):
        services.record_diagnosis(
            actor=coordinator,
            patient_id=patient.pk,
            condition="sciatica",
            icd10="not-a-code",
            diagnosed_on=DAY0,
        )
    assert not AuditEvent.objects.exists()


def test_a_refused_call_writes_one_denied_row_and_nothing_else(
    coordinator: Actor, patient: Patient
) -> None:
    episode = make_episode(patient)
    with pytest.raises(
        PermissionDeniedError,
        match=r"^Coordinators cannot record harvests; a clinician at your clinic does this\.$",
    ):
        services.record_harvest(
            actor=coordinator, episode_id=episode.pk, source="adipose", harvested_on=DAY0
        )
    (row,) = AuditEvent.objects.all()
    assert (row.action, row.actor_user_id, row.role) == (
        "denied",
        coordinator.user.pk,
        "coordinator",
    )
    assert row.new_values == {"operation": "record_harvest", "action": "harvest.record"}


def test_mme_is_computed_for_opioids_only(coordinator: Actor, patient: Patient) -> None:
    opioid = services.record_prior_treatment(
        actor=coordinator,
        patient_id=patient.pk,
        kind="medication",
        medication_name="Oxycodone",
        daily_dose=20,
    )
    assert opioid.mme_per_day == pytest.approx(30.0)  # CDC 2022: oxycodone factor 1.5
    nsaid = services.record_prior_treatment(
        actor=coordinator,
        patient_id=patient.pk,
        kind="medication",
        medication_name="ibuprofen",
        daily_dose=1200,
    )
    assert nsaid.mme_per_day is None
    with pytest.raises(ValidationError, match="daily_dose"):
        services.record_prior_treatment(
            actor=coordinator,
            patient_id=patient.pk,
            kind="medication",
            medication_name="morphine",
            daily_dose=float("inf"),
        )


def test_screening_stores_inputs_verdict_rules_and_ruleset_version(
    coordinator: Actor, patient: Patient
) -> None:
    evaluation = services.record_screening(
        actor=coordinator, patient_id=patient.pk, facts={"modic_type": 3}, evaluator=fake_evaluate
    )
    evaluation.refresh_from_db()
    assert evaluation.inputs == {"modic_type": 3}
    assert evaluation.verdict == "not_candidate"
    assert [rule["id"] for rule in evaluation.fired_rules] == ["modic_3"]
    assert (evaluation.ruleset_id, evaluation.ruleset_version) == ("vertebra-screening", "1.2.0")
    assert evaluation.evaluated_by == coordinator.user


def test_screening_with_the_real_engine_when_installed(
    coordinator: Actor, patient: Patient
) -> None:
    services.default_evaluator()  # the real engine must be importable
    evaluation = services.record_screening(actor=coordinator, patient_id=patient.pk, facts={})
    assert evaluation.verdict == evaluation.result["verdict"]
    assert evaluation.ruleset_version
    with pytest.raises(ValidationError, match="facts"):
        services.record_screening(
            actor=coordinator, patient_id=patient.pk, facts={"no_such_fact": True}
        )
    assert AuditEvent.objects.filter(object_type="screeningevaluation").count() == 1


def test_screening_refuses_a_classic_pfirrmann_grade(coordinator: Actor, patient: Patient) -> None:
    # ADR 0006: the registry's classic `pfirrmann_grade` is not a screening fact; passing it
    # through by name must fail rather than be read on the modified scale.
    with pytest.raises(ValidationError, match="modified_pfirrmann_grade"):
        services.record_screening(
            actor=coordinator, patient_id=patient.pk, facts={"findings": {"pfirrmann_grade": 4}}
        )
    evaluation = services.record_screening(
        actor=coordinator,
        patient_id=patient.pk,
        facts={"findings": {"modified_pfirrmann_grade": 8}},
    )
    assert "note.pfirrmann_outside_trial_range" in {n["id"] for n in evaluation.result["notes"]}


def test_diagnosis_records_each_pfirrmann_scale_in_its_own_column_and_audits_both(
    coordinator: Actor, patient: Patient
) -> None:
    common: dict[str, Any] = {
        "actor": coordinator, "patient_id": patient.pk, "condition": "degenerative_disc_disease",
        "icd10": "M51.36", "diagnosed_on": DAY0,
    }  # fmt: skip
    diagnosis = services.record_diagnosis(**common, pfirrmann_grade=4, modified_pfirrmann_grade=6)
    assert (diagnosis.pfirrmann_grade, diagnosis.modified_pfirrmann_grade) == (4, 6)
    row = AuditEvent.objects.get(object_type="diagnosis")
    assert (row.new_values["pfirrmann_grade"], row.new_values["modified_pfirrmann_grade"]) == (4, 6)
    # A modified grade above 5 fits only its own column; nothing is converted.
    only_modified = services.record_diagnosis(**common, modified_pfirrmann_grade=7)
    assert only_modified.pfirrmann_grade is None
    with pytest.raises(ValidationError) as caught:
        services.record_diagnosis(**common, pfirrmann_grade=7)
    assert set(caught.value.message_dict) == {"pfirrmann_grade"}
    with pytest.raises(ValidationError) as caught:
        services.record_diagnosis(**common, modified_pfirrmann_grade=9)
    assert set(caught.value.message_dict) == {"modified_pfirrmann_grade"}
    assert Diagnosis.objects.count() == 2
    assert AuditEvent.objects.filter(object_type="diagnosis", action="create").count() == 2


def test_injection_records_prp_and_audits_it(
    clinician: Actor, registry_admin: Actor, patient: Patient
) -> None:
    lot = services.register_lot(actor=registry_admin, lot_number="UC-7", product="UC-MSC")
    services.release_lot(actor=registry_admin, lot_id=lot.pk, released_on=DAY0)
    common: dict[str, Any] = {
        "actor": clinician, "levels": ["L4-L5"], "target": "intradiscal", "guidance": "ct",
        "volume_ml": 1.0, "injected_on": DAY0, "allogeneic_lot_id": lot.pk,
    }  # fmt: skip
    with_prp = services.record_injection(
        **common, episode_id=make_episode(patient).pk, adjunct_prp=True
    )
    without = services.record_injection(**common, episode_id=make_episode(patient).pk)
    assert Injection.objects.get(pk=with_prp.pk).adjunct_prp is True
    assert Injection.objects.get(pk=without.pk).adjunct_prp is False
    audited = dict(
        AuditEvent.objects.filter(object_type="injection").values_list("object_id", "new_values")
    )
    assert audited[str(with_prp.pk)]["adjunct_prp"] is True
    assert audited[str(without.pk)]["adjunct_prp"] is False
    assert verify_audit_chain() == []


def test_adverse_event_grading_is_adjudication(
    coordinator: Actor, clinician: Actor, patient: Patient
) -> None:
    common: dict[str, Any] = {
        "patient_id": patient.pk,
        "description": "Fever",
        "category": "infection",
        "onset": DAY0,
        "ctcae_grade": 2,
        "relatedness": "procedure",
    }
    with pytest.raises(PermissionDeniedError):
        services.record_adverse_event(actor=coordinator, **common)
    event = services.record_adverse_event(actor=clinician, **common)
    assert event.status == "adjudicated" and event.adjudicated_by == clinician.user


# ---------------------------------------------------------------- optimistic locking, reasons


def test_update_patient_records_field_level_old_and_new_and_the_reason(
    clinician: Actor, patient: Patient
) -> None:
    updated = services.update_patient(
        actor=clinician,
        patient_id=patient.pk,
        expected_version=1,
        changes={"family_name": "Corrected", "phone": "555-0101", "sex": patient.sex},
        reason="Spelling confirmed with the patient",
    )
    assert (updated.family_name, updated.version) == ("Corrected", 2)
    (row,) = AuditEvent.objects.all()
    assert row.action == "update"
    assert row.old_values == {"family_name": patient.family_name, "phone": "", "version": 1}
    assert row.new_values == {"family_name": "Corrected", "phone": "555-0101", "version": 2}
    assert row.reason == "Spelling confirmed with the patient"


def test_stale_edit_is_refused_and_the_first_edit_preserved(
    clinician: Actor, coordinator: Actor, patient: Patient
) -> None:
    services.update_patient(
        actor=clinician,
        patient_id=patient.pk,
        expected_version=1,
        changes={"given_name": "First"},
        reason="first editor",
    )
    with pytest.raises(StaleEditError, match="changed by someone else"):
        services.update_patient(
            actor=coordinator,
            patient_id=patient.pk,
            expected_version=1,  # loaded before the first edit
            changes={"given_name": "Second"},
            reason="second editor",
        )
    patient.refresh_from_db()
    assert (patient.given_name, patient.version) == ("First", 2)
    assert AuditEvent.objects.filter(action="update").count() == 1


def test_edit_needs_a_reason_and_only_editable_fields(
    clinician: Actor, patient: Patient, other_clinic: Clinic
) -> None:
    for reason in ("", "   "):
        with pytest.raises(ValidationError, match="reason"):
            services.update_patient(
                actor=clinician,
                patient_id=patient.pk,
                expected_version=1,
                changes={"given_name": "X"},
                reason=reason,
            )
    for field, value in (("clinic_id", other_clinic.pk), ("version", 9)):
        with pytest.raises(ValidationError, match="cannot be edited"):
            services.update_patient(
                actor=clinician,
                patient_id=patient.pk,
                expected_version=1,
                changes={field: value},
                reason="attempt",
            )
    patient.refresh_from_db()
    assert (patient.clinic_id, patient.version, patient.given_name) != (other_clinic.pk, 9, "X")
    assert not AuditEvent.objects.exists()


def test_edit_is_validated(clinician: Actor, patient: Patient) -> None:
    with pytest.raises(ValidationError, match="email"):
        services.update_patient(
            actor=clinician,
            patient_id=patient.pk,
            expected_version=1,
            changes={"email": "not an email"},
            reason="typo",
        )


def test_register_patient_refuses_duplicate_mrn_in_the_same_clinic(
    coordinator: Actor, clinic: Clinic, patient: Patient
) -> None:
    with pytest.raises(ValidationError, match="MRN"):
        services.register_patient(
            actor=coordinator,
            clinic_id=clinic.pk,
            mrn=patient.mrn,
            given_name="B",
            family_name="C",
            date_of_birth=dt.date(1980, 1, 1),
            sex="male",
        )


def test_adverse_event_episode_must_be_the_patients_own(
    coordinator: Actor, patient: Patient, clinic: Clinic
) -> None:
    from tests.registry.factories import make_patient

    foreign_episode = make_episode(make_patient(clinic))
    with pytest.raises(ValidationError, match="does not belong"):
        services.record_adverse_event(
            actor=coordinator,
            patient_id=patient.pk,
            episode_id=foreign_episode.pk,
            description="x",
            category="other",
            onset=DAY0,
        )
    assert make_lot() is not None  # factories stay importable together
