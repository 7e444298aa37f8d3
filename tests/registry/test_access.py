"""Access control: the permission matrix on services, and clinic scoping of selectors.

Requirement ids: HIPAA-164.312(a)(1) (access only to those granted), T9 (BOLA: another clinic's
patient is indistinguishable from a nonexistent one), T10 (researchers get no identified data).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tests.registry.factories import DAY0, make_actor, make_episode, make_lot, make_patient
from vertebra.registry import selectors, services
from vertebra.registry.errors import ChainOfCustodyError, NotFound, PermissionDeniedError
from vertebra.registry.models import AuditEvent, Clinic, Membership, Patient, Role
from vertebra.registry.permissions import PERMISSIONS, Action, Actor, is_allowed

pytestmark = pytest.mark.django_db


# -------------------------------------------------------------------------- the matrix as data

#: The checked-in expectation. Changing PERMISSIONS without changing this table fails the test,
#: so every change to who-may-do-what is a deliberate, reviewed edit of two places.
EXPECTED = {
    Role.CLINICIAN: {
        "patient.read", "patient.create", "patient.update", "consent.record",
        "diagnosis.record", "prior_treatment.record", "screening.record", "episode.start",
        "harvest.record", "processing.record", "injection.record", "adverse_event.report",
        "adverse_event.adjudicate", "clinical_event.record",
    },
    Role.COORDINATOR: {
        "patient.read", "patient.create", "patient.update", "consent.record",
        "diagnosis.record", "prior_treatment.record", "screening.record", "episode.start",
        "adverse_event.report", "clinical_event.record",
    },
    Role.CLINIC_ADMIN: {"patient.read", "patient.update", "directory.manage"},
    Role.RESEARCHER: {"deidentified.read"},
    Role.REGISTRY_ADMIN: {"lot.manage", "audit.verify", "membership.manage", "audit.break_glass"},
}  # fmt: skip


def test_permission_matrix_matches_the_checked_in_expectation() -> None:
    assert {role: {a.value for a in actions} for role, actions in PERMISSIONS.items()} == EXPECTED
    assert set(PERMISSIONS) == set(Role.values)


def test_no_role_outside_the_clinic_roles_touches_identified_data() -> None:
    identified = {a for a in Action if a.value.split(".")[0] in {"patient", "diagnosis"}}
    for role in (Role.RESEARCHER, Role.REGISTRY_ADMIN):
        assert not any(is_allowed(role, action) for action in identified)


# ---------------------------------------------------------------- the matrix, on the services


def _service_calls(patient: Patient, clinic: Clinic) -> dict[Action, Callable[[Actor], Any]]:
    episode = make_episode(patient)
    lot = make_lot()
    return {
        Action.PATIENT_READ: lambda a: selectors.get_patient_for(actor=a, patient_id=patient.pk),
        Action.PATIENT_CREATE: lambda a: services.register_patient(
            actor=a,
            clinic_id=clinic.pk,
            mrn=f"NEW-{a.role}",
            given_name="N",
            family_name="N",
            date_of_birth=dt.date(1970, 1, 1),
            sex="other",
        ),
        Action.DIAGNOSIS_RECORD: lambda a: services.record_diagnosis(
            actor=a,
            patient_id=patient.pk,
            condition="sciatica",
            icd10="M54.31",
            diagnosed_on=DAY0,
        ),
        Action.HARVEST_RECORD: lambda a: services.record_harvest(
            actor=a, episode_id=episode.pk, source="adipose", harvested_on=DAY0
        ),
        Action.INJECTION_RECORD: lambda a: services.record_injection(
            actor=a,
            episode_id=episode.pk,
            allogeneic_lot_id=lot.pk,
            levels=["L4-L5"],
            target="intradiscal",
            guidance="fluoroscopy",
            volume_ml=1.0,
            injected_on=DAY0,
        ),
        Action.LOT_MANAGE: lambda a: services.release_lot(actor=a, lot_id=lot.pk, released_on=DAY0),
    }


@pytest.mark.parametrize("role", list(Role))
def test_services_refuse_exactly_what_the_matrix_denies(
    role: Role, clinic: Clinic, patient: Patient
) -> None:
    actor = make_actor(role, *([] if role in (Role.RESEARCHER, Role.REGISTRY_ADMIN) else [clinic]))
    for action, call in _service_calls(patient, clinic).items():
        if is_allowed(role, action):
            try:
                call(actor)
            except PermissionDeniedError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{role} was refused {action}: {exc}")
            except (ChainOfCustodyError, ValidationError):
                pass  # allowed, then refused on the data (e.g. the unreleased lot): fine here
        else:
            with pytest.raises(PermissionDeniedError):
                call(actor)


def test_coordinator_cannot_record_an_injection(coordinator: Actor, patient: Patient) -> None:
    episode = make_episode(patient)
    with pytest.raises(PermissionDeniedError, match="Coordinators cannot record injections"):
        services.record_injection(
            actor=coordinator,
            episode_id=episode.pk,
            allogeneic_lot_id=make_lot(released_on=DAY0).pk,
            levels=["L4-L5"],
            target="intradiscal",
            guidance="fluoroscopy",
            volume_ml=1.0,
            injected_on=DAY0,
        )


def test_a_forged_actor_gains_nothing(coordinator: Actor, other_patient: Patient) -> None:
    # Claiming a clinic (or a role) the user does not hold in the database changes nothing.
    forged = Actor(
        user=coordinator.user,
        role=Role.COORDINATOR,
        clinic_ids=coordinator.clinic_ids | {other_patient.clinic_id},
    )
    with pytest.raises(NotFound):
        selectors.get_patient_for(actor=forged, patient_id=other_patient.pk)
    promoted = Actor(user=coordinator.user, role=Role.CLINICIAN, clinic_ids=coordinator.clinic_ids)
    with pytest.raises(PermissionDeniedError, match="no longer hold"):
        selectors.get_patient_for(actor=promoted, patient_id=other_patient.pk)


def test_disabled_or_removed_users_are_refused(clinician: Actor, patient: Patient) -> None:
    Membership.objects.filter(user=clinician.user).delete()
    with pytest.raises(PermissionDeniedError):
        selectors.get_patient_for(actor=clinician, patient_id=patient.pk)
    clinician.user.is_active = False
    clinician.user.save()
    with pytest.raises(PermissionDeniedError, match="disabled"):
        selectors.get_patient_for(actor=clinician, patient_id=patient.pk)
    with pytest.raises(PermissionDeniedError):
        Actor.for_user(clinician.user, Role.CLINICIAN)


def test_cannot_register_a_patient_at_another_clinic(
    coordinator: Actor, other_clinic: Clinic
) -> None:
    with pytest.raises(NotFound):
        services.register_patient(
            actor=coordinator,
            clinic_id=other_clinic.pk,
            mrn="X",
            given_name="X",
            family_name="X",
            date_of_birth=dt.date(1970, 1, 1),
            sex="male",
        )
    assert not Patient.objects.filter(clinic=other_clinic).exists()


# ------------------------------------------------------------------------ selectors and scoping


def test_other_clinics_patient_is_indistinguishable_from_a_missing_one(
    clinician: Actor, other_patient: Patient
) -> None:
    missing_id = other_patient.pk + 1000
    with pytest.raises(NotFound) as foreign:
        selectors.get_patient_for(actor=clinician, patient_id=other_patient.pk)
    with pytest.raises(NotFound) as missing:
        selectors.get_patient_for(actor=clinician, patient_id=missing_id)
    assert str(foreign.value) == f"No patient with id {other_patient.pk} was found."
    assert str(missing.value) == f"No patient with id {missing_id} was found."
    # Both refusals are on the trail, neither naming the foreign patient as a patient id.
    denied = list(AuditEvent.objects.filter(action="denied").values_list("object_id", "patient_id"))
    assert denied == [(str(other_patient.pk), None), (str(missing_id), None)]
    for text in (other_patient.given_name, other_patient.family_name, other_patient.mrn):
        assert text not in str(foreign.value)


def test_reading_a_patient_writes_a_read_audit_row(clinician: Actor, patient: Patient) -> None:
    assert selectors.get_patient_for(actor=clinician, patient_id=patient.pk) == patient
    (row,) = AuditEvent.objects.all()
    assert (row.action, row.patient_id, row.clinic_id, row.actor_user_id) == (
        "read",
        patient.pk,
        patient.clinic_id,
        clinician.user.pk,
    )


def test_patient_list_is_scoped_searchable_capped_and_audited(
    clinician: Actor, clinic: Clinic, other_clinic: Clinic
) -> None:
    mine = [make_patient(clinic, family_name=f"Moreno{i:03d}") for i in range(3)]
    make_patient(clinic, family_name="Other")
    theirs = make_patient(other_clinic, family_name="Moreno999")
    found = selectors.patients_for(actor=clinician, search="moreno")
    assert found == mine
    assert theirs not in selectors.patients_for(actor=clinician, limit=10_000)
    by_mrn = selectors.patients_for(actor=clinician, search=mine[1].mrn)
    assert by_mrn == [mine[1]]
    rows = list(AuditEvent.objects.filter(action="search").order_by("id"))
    assert len(rows) == 3
    assert rows[0].new_values is not None
    assert rows[0].new_values["patient_ids"] == [p.pk for p in mine]
    assert rows[1].new_values is not None
    assert rows[1].new_values["limit"] == selectors.MAX_RESULTS


def test_multi_clinic_actor_sees_both_clinics(clinic: Clinic, other_clinic: Clinic) -> None:
    actor = make_actor(Role.CLINICIAN, clinic, other_clinic)
    a, b = make_patient(clinic), make_patient(other_clinic)
    assert {p.pk for p in selectors.patients_for(actor=actor)} == {a.pk, b.pk}


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.REGISTRY_ADMIN])
def test_registry_wide_roles_read_no_identified_patients(role: Role, patient: Patient) -> None:
    actor = make_actor(role)
    with pytest.raises(PermissionDeniedError):
        selectors.patients_for(actor=actor)
    with pytest.raises(PermissionDeniedError):
        selectors.get_patient_for(actor=actor, patient_id=patient.pk)
