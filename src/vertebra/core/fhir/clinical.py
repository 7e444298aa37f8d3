"""Diagnoses, prior treatments, clinical events and adverse events as FHIR R4 resources.

* Diagnosis -> Condition: ICD-10-CM code plus the Vertebra condition code; the spinal level
  as bodySite; the Pfirrmann grade as ``stage`` (one stage per scale, the scale as stage type,
  never converted between scales, ADR 0006); the other imaging findings (Modic type, disc
  height, spondylolisthesis grade, stenosis, laterality) as Vertebra extensions.
* Prior treatment -> MedicationStatement (kind ``medication``, with MME/day) or Procedure.
* Clinical event (subsequent surgery, repeat injection) -> Procedure.
* Adverse event -> AdverseEvent (see :func:`adverse_event`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vertebra.core.fhir._base import (
    Resource,
    date,
    extension,
    extensions,
    period,
    quantity,
    ref,
    resource,
)
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.records import (
    AdverseEventRecord,
    ClinicalEventRecord,
    DiagnosisRecord,
    PriorTreatmentRecord,
)
from vertebra.core.mme import UnknownOpioidError, opioid_factor

__all__ = [
    "EpisodeLinks",
    "adverse_event",
    "clinical_event",
    "condition",
    "medication_concept",
    "mme_extension",
    "prior_treatment",
]


def condition(record: DiagnosisRecord, codes: FhirCodes) -> Resource:
    """A diagnosis with its imaging findings as a Condition (see the module docstring)."""
    label = codes.codesystems["condition"].get(record.condition, record.condition)
    code = {
        "coding": [
            {"system": codes.systems["icd10cm"], "code": record.icd10},
            codes.coding("condition", record.condition),
        ],
        "text": label,
    }
    return resource(
        "diagnosis",
        record.id,
        updated=record.updated_at,
        extension=_imaging_extensions(record, codes),
        clinicalStatus={"coding": [codes.fhir_coding("condition_clinical_active")]},
        verificationStatus={"coding": [codes.fhir_coding("condition_verification_confirmed")]},
        category=[{"coding": [codes.fhir_coding("condition_category_encounter_diagnosis")]}],
        code=code,
        bodySite=[codes.concept("spinal-level", record.level)] if record.level else None,
        subject=ref("patient", record.patient_id),
        recordedDate=date(record.diagnosed_on),
        stage=_pfirrmann_stages(record, codes),
    )


def _pfirrmann_stages(record: DiagnosisRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """One Condition.stage per Pfirrmann scale recorded (classic 1-5, modified 1-8)."""
    stages = []
    for scale, grade in (
        ("classic", record.pfirrmann_grade),
        ("modified", record.modified_pfirrmann_grade),
    ):
        if grade is not None:
            stages.append(
                {
                    "summary": codes.concept(f"pfirrmann-{scale}", str(grade)),
                    "type": codes.concept("pfirrmann-scale", scale),
                }
            )
    return stages


def _imaging_extensions(record: DiagnosisRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """Modic type, disc height, spondylolisthesis grade, stenosis and laterality, when known."""
    stenosis = codes.coding("stenosis", record.stenosis) if record.stenosis else None
    laterality = codes.coding("laterality", record.laterality) if record.laterality else None
    return extensions(
        extension(codes, "laterality", "valueCoding", laterality),
        extension(codes, "modic-type", "valueInteger", record.modic_type),
        extension(codes, "disc-height-percent", "valueDecimal", record.disc_height_pct),
        extension(codes, "spondylolisthesis-grade", "valueInteger", record.spondylolisthesis_grade),
        extension(codes, "stenosis", "valueCoding", stenosis),
    )


# ------------------------------------------------------------------------- prior treatments


def medication_concept(name: str, codes: FhirCodes) -> dict[str, Any]:
    """The medication as free text, with the Vertebra opioid code when it names a known
    opioid (CDC table or its aliases). No RxNorm code: none was verified (docs/fhir.md)."""
    try:
        known = opioid_factor(name)
    except UnknownOpioidError:
        return {"text": name or "medication (not named)"}
    return {"coding": [codes.coding("opioid", known.id)], "text": name}


def _dose_unit(name: str) -> str:
    """The registry's dose unit for a medication: the opioid's (mcg/hr for patches), else mg/day."""
    try:
        return opioid_factor(name).dose_unit
    except UnknownOpioidError:
        return "mg/day"


def dosage(dose: float | None, unit: str, codes: FhirCodes) -> list[dict[str, Any]]:
    """Dosage with the total daily dose (or patch strength) as a rate, when known."""
    if dose is None:
        return []
    rate = quantity(codes, dose, unit, codes.dose_units[unit])
    return [{"text": f"{dose:g} {unit}", "doseAndRate": [{"rateQuantity": rate}]}]


def mme_extension(codes: FhirCodes, mme: float | None) -> dict[str, Any] | None:
    """The MME/day extension (CDC 2022 factors, as stored), or None when not an opioid."""
    if mme is None:
        return None
    spec = codes.instruments["opioid_use"]
    value = quantity(codes, mme, spec.unit_text, spec.unit_ucum)
    return extension(codes, "mme-per-day", "valueQuantity", value)


def prior_treatment(record: PriorTreatmentRecord, codes: FhirCodes) -> Resource:
    """A prior medication as a MedicationStatement (completed when an end date is known, else
    unknown: the registry records that it was tried, not whether it continues); any other prior
    treatment as a completed Procedure with the weeks of relief."""
    notes = [{"text": record.details}] if record.details else None
    when = period(record.started_on, record.ended_on)
    if record.kind == "medication":
        return resource(
            "prior_medication",
            record.id,
            updated=record.updated_at,
            extension=extensions(mme_extension(codes, record.mme_per_day)),
            status="completed" if record.ended_on else "unknown",
            medicationCodeableConcept=medication_concept(record.medication_name, codes),
            subject=ref("patient", record.patient_id),
            effectivePeriod=when,
            note=notes,
            dosage=dosage(record.daily_dose, _dose_unit(record.medication_name), codes),
        )
    relief = None
    if record.relief_weeks is not None:
        relief = quantity(codes, record.relief_weeks, "wk", "wk")
    return resource(
        "prior_procedure",
        record.id,
        updated=record.updated_at,
        extension=extensions(extension(codes, "relief-weeks", "valueQuantity", relief)),
        status="completed",
        code=codes.concept("prior-treatment", record.kind),
        subject=ref("patient", record.patient_id),
        performedPeriod=when,
        note=notes,
    )


def clinical_event(record: ClinicalEventRecord, codes: FhirCodes) -> Resource:
    """A subsequent surgery or repeat injection as a completed Procedure, linked to the
    episode it followed by the treatment-episode extension."""
    episode = ref("episode", record.episode_id) if record.episode_id is not None else None
    return resource(
        "clinical_event",
        record.id,
        updated=record.updated_at,
        extension=extensions(extension(codes, "treatment-episode", "valueReference", episode)),
        status="completed",
        code=codes.concept("clinical-event", record.kind),
        subject=ref("patient", record.patient_id),
        performedDateTime=date(record.occurred_on),
        note=[{"text": record.details}] if record.details else None,
    )


# --------------------------------------------------------------------------- adverse events


@dataclass(frozen=True, slots=True)
class EpisodeLinks:
    """What an adverse event's relatedness can point at within one episode (resource refs)."""

    harvest: Mapping[str, str] | None = None
    injection: Mapping[str, str] | None = None
    product: Mapping[str, str] | None = None


def adverse_event(
    record: AdverseEventRecord, codes: FhirCodes, links: Mapping[int, EpisodeLinks]
) -> Resource:
    """An adverse event as an R4 AdverseEvent.

    * seriousness, severity and outcome only once adjudicated (a pending report's defaults
      are not a clinician's judgement); severity from the CTCAE grade (1 mild, 2 moderate,
      3-5 severe: R4's binding has three levels) and the exact grade in ``ctcae-grade``;
    * relatedness -> ``suspectEntity``: harvest -> the harvest Procedure, procedure -> the
      (first) injection Procedure, product -> that same injection Procedure (R4's
      ``suspectEntity.instance`` may not target a BiologicallyDerivedProduct; the injection
      names its product in ``used-product``, and the causality assessment says it is the
      product, not the procedure, that is suspected), unrelated -> the episode Procedure;
      each with the relatedness as causality assessment.
      When the pointed-at step was not recorded the episode stands in; without an episode
      there is no suspect entity, and the relatedness extension still carries the judgement.
    """
    adjudicated = record.status == "adjudicated"
    return resource(
        "adverse_event",
        record.id,
        updated=record.updated_at,
        extension=_ae_extensions(record, codes),
        actuality="actual",
        category=[codes.concept("ae-category", record.category)],
        event={"text": record.description},
        subject=ref("patient", record.patient_id),
        date=date(record.onset),
        seriousness=_seriousness(record, codes) if adjudicated else None,
        severity=_severity(record, codes) if adjudicated else None,
        outcome=_outcome(record, codes) if adjudicated else None,
        suspectEntity=_suspects(record, codes, links),
    )


def _ae_extensions(record: AdverseEventRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """Grade, relatedness, expectedness, status, resolution date, category, episode."""
    related = codes.coding("relatedness", record.relatedness) if record.relatedness else None
    episode = ref("episode", record.episode_id) if record.episode_id is not None else None
    return extensions(
        extension(codes, "ctcae-grade", "valueInteger", record.ctcae_grade),
        extension(codes, "relatedness", "valueCoding", related),
        extension(codes, "expected", "valueBoolean", record.expected),
        extension(
            codes, "adjudication-status", "valueCoding", codes.coding("ae-status", record.status)
        ),
        extension(codes, "resolved-date", "valueDate", date(record.resolved_on)),
        extension(codes, "treatment-episode", "valueReference", episode),
    )


def _seriousness(record: AdverseEventRecord, codes: FhirCodes) -> dict[str, Any]:
    spec = codes.fhir["ae_seriousness"]
    chosen = spec["serious"] if record.serious else spec["non_serious"]
    return {"coding": [{"system": spec["system"], **chosen}]}


def _severity(record: AdverseEventRecord, codes: FhirCodes) -> dict[str, Any] | None:
    if record.ctcae_grade is None:
        return None
    spec = codes.fhir["ae_severity"]
    return {
        "coding": [{"system": spec["system"], "code": spec["by_ctcae_grade"][record.ctcae_grade]}]
    }


def _outcome(record: AdverseEventRecord, codes: FhirCodes) -> dict[str, Any]:
    spec = codes.fhir["ae_outcome"]
    return {"coding": [{"system": spec["system"], "code": spec["map"][record.outcome]}]}


def _suspects(
    record: AdverseEventRecord, codes: FhirCodes, links: Mapping[int, EpisodeLinks]
) -> list[dict[str, Any]]:
    """suspectEntity from the relatedness (see :func:`adverse_event`)."""
    if not record.relatedness or record.episode_id is None:
        return []
    found = links.get(record.episode_id, EpisodeLinks())
    pointed = {
        "harvest": found.harvest,
        "procedure": found.injection,
        "product": found.injection,
    }.get(record.relatedness)
    instance = pointed or ref("episode", record.episode_id)
    causality = {"assessment": codes.concept("relatedness", record.relatedness)}
    return [{"instance": dict(instance), "causality": [causality]}]
