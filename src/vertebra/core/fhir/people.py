"""Clinics, patients and consents as FHIR R4 Organization, Patient and Consent."""

from __future__ import annotations

from vertebra.core.fhir._base import (
    Resource,
    compact,
    date,
    extension,
    extensions,
    period,
    ref,
    resource,
)
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.records import ClinicRecord, ConsentRecord, PatientRecord

__all__ = ["consent", "organization", "patient"]


def organization(clinic: ClinicRecord, codes: FhirCodes) -> Resource:
    """A clinic as an Organization: registry id (and NCT id of a registered trial) as
    identifiers, the regulatory status as an extension."""
    identifiers = [{"system": codes.identifier_system("clinic"), "value": str(clinic.id)}]
    if clinic.nct_id:
        identifiers.append({"system": codes.identifier_system("nct"), "value": clinic.nct_id})
    status = codes.coding("regulatory-status", clinic.regulatory_status)
    return resource(
        "clinic",
        clinic.id,
        updated=clinic.updated_at,
        extension=extensions(extension(codes, "regulatory-status", "valueCoding", status)),
        identifier=identifiers,
        active=True,
        name=clinic.name,
    )


def patient(record: PatientRecord, codes: FhirCodes) -> Resource:
    """A patient (identified): the MRN (system per clinic, MRNs are unique per clinic only)
    and the registry id as identifiers, name, gender, birth date, e-mail and phone, and the
    clinic as managing organization. Registry sex codes are FHIR's administrative-gender codes."""
    mrn = {
        "use": "usual",
        "type": {"coding": [codes.fhir_coding("identifier_type_mr")]},
        "system": codes.identifier_system("mrn", record.clinic_id),
        "value": record.mrn,
    }
    registry_id = {
        "use": "secondary",
        "system": codes.identifier_system("patient"),
        "value": str(record.id),
    }
    telecom = [
        compact({"system": "email", "value": record.email, "use": "home"}),
        compact({"system": "phone", "value": record.phone, "use": "home"}),
    ]
    return resource(
        "patient",
        record.id,
        updated=record.updated_at,
        identifier=[mrn, registry_id],
        active=True,
        name=[{"use": "official", "family": record.family_name, "given": [record.given_name]}],
        telecom=[t for t in telecom if "value" in t],
        gender=record.sex,
        birthDate=date(record.date_of_birth),
        managingOrganization=ref("clinic", record.clinic_id),
    )


def consent(record: ConsentRecord, codes: FhirCodes) -> Resource:
    """A signed consent form: scope research (registry participation) or treatment, active
    until withdrawn (then inactive, the provision period ending on the withdrawal date); the
    form version is the policy rule."""
    scope = codes.fhir["consent_scope"]
    return resource(
        "consent",
        record.id,
        updated=record.updated_at,
        status="inactive" if record.withdrawn_on else "active",
        scope={"coding": [{"system": scope["system"], "code": scope["map"][record.kind]}]},
        category=[
            {"coding": [codes.fhir_coding("consent_category_loinc")]},
            codes.concept("consent-kind", record.kind),
        ],
        patient=ref("patient", record.patient_id),
        dateTime=date(record.signed_on),
        policyRule={"text": record.form_version},
        provision={"type": "permit", "period": period(record.signed_on, record.withdrawn_on)},
    )
