"""Reads of identified patient data, scoped to the actor's clinics and audited.

Contracts
---------
* Every selector checks ``patient.read`` for the actor's role and returns only patients of the
  clinics where the actor verifiably holds that role.
* A patient outside those clinics is indistinguishable from one that does not exist: NotFound,
  with the same message (never revealing existence).
* Every read writes one audit row in the same transaction (``read`` with the patient id, or
  ``search`` with the query and the ids returned); refusals write a ``denied`` row.
* Results are evaluated lists, not lazy querysets, so what was audited is what was returned.
"""

from __future__ import annotations

from django.db.models import Q

from vertebra.registry.audit import audited_transaction, record_audit
from vertebra.registry.errors import NotFound
from vertebra.registry.models import Patient
from vertebra.registry.permissions import Action, Actor, verify_actor

#: The most patients one search returns (pagination beyond that is the caller's job).
MAX_RESULTS = 100


@audited_transaction
def patients_for(
    *, actor: Actor, search: str | None = None, limit: int = 50, offset: int = 0
) -> list[Patient]:
    """Patients of the actor's clinics, by family and given name, optionally filtered.

    ``search`` matches the start of the MRN or any part of the given or family name,
    case-insensitively. ``limit`` is capped at :data:`MAX_RESULTS`.
    """
    clinics = verify_actor(actor, Action.PATIENT_READ)
    limit = max(0, min(limit, MAX_RESULTS))
    offset = max(0, offset)
    query = Patient.objects.filter(clinic_id__in=clinics)
    term = (search or "").strip()
    if term:
        query = query.filter(
            Q(mrn__istartswith=term)
            | Q(given_name__icontains=term)
            | Q(family_name__icontains=term)
        )
    patients = list(query.order_by("family_name", "given_name", "id")[offset : offset + limit])
    record_audit(
        actor=actor,
        action="search",
        object_type="patient",
        new_values={
            "search": term,
            "limit": limit,
            "offset": offset,
            "patient_ids": [patient.pk for patient in patients],
        },
    )
    return patients


@audited_transaction
def get_patient_for(*, actor: Actor, patient_id: int) -> Patient:
    """The patient ``patient_id`` if the actor may read them; else NotFound."""
    clinics = verify_actor(actor, Action.PATIENT_READ)
    patient = Patient.objects.filter(pk=patient_id, clinic_id__in=clinics).first()
    if patient is None:
        raise NotFound("patient", patient_id)
    record_audit(
        actor=actor,
        action="read",
        object_type="patient",
        object_id=patient.pk,
        clinic_id=patient.clinic_id,
        patient_id=patient.pk,
    )
    return patient
