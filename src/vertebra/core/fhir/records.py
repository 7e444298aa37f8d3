"""Plain records the FHIR mapping reads: one frozen dataclass per registry row kind.

The Django side (``vertebra.interop.selectors``) builds them from ``values_list`` rows; tests
build them by hand. Fields mirror the registry columns (same names, same stored codes), with
``""`` for a blank text and ``None`` for an unknown value, as in the database. Dates are
``datetime.date``; instants are timezone-aware ``datetime.datetime``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "AdverseEventRecord",
    "ChunkRecords",
    "ClinicRecord",
    "ClinicalEventRecord",
    "ConsentRecord",
    "DiagnosisRecord",
    "EpisodeRecord",
    "HarvestRecord",
    "InjectionRecord",
    "LotRecord",
    "PatientRecord",
    "PriorTreatmentRecord",
    "ProcessingRecord",
    "ResponseRecord",
]


@dataclass(frozen=True, slots=True)
class ClinicRecord:
    """A clinic (exported as an Organization)."""

    id: int
    name: str
    regulatory_status: str
    nct_id: str = ""
    irb: str = ""
    ind_number: str = ""
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class LotRecord:
    """An allogeneic cell lot (exported as a BiologicallyDerivedProduct)."""

    id: int
    lot_number: str
    product: str
    released: bool
    released_on: dt.date | None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A registered patient (identified)."""

    id: int
    clinic_id: int
    mrn: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    sex: str
    email: str = ""
    phone: str = ""
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A signed consent form; ``withdrawn_on`` set when withdrawn."""

    id: int
    patient_id: int
    kind: str
    form_version: str
    signed_on: dt.date
    withdrawn_on: dt.date | None = None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class DiagnosisRecord:
    """A diagnosis with its imaging findings (unknown findings None or "")."""

    id: int
    patient_id: int
    condition: str
    icd10: str
    diagnosed_on: dt.date
    level: str = ""
    laterality: str = ""
    pfirrmann_grade: int | None = None
    modified_pfirrmann_grade: int | None = None
    modic_type: int | None = None
    disc_height_pct: float | None = None
    spondylolisthesis_grade: int | None = None
    stenosis: str = ""
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class PriorTreatmentRecord:
    """A treatment tried before the registry episode; ``mme_per_day`` stored for opioids."""

    id: int
    patient_id: int
    kind: str
    details: str = ""
    medication_name: str = ""
    daily_dose: float | None = None
    mme_per_day: float | None = None
    relief_weeks: int | None = None
    started_on: dt.date | None = None
    ended_on: dt.date | None = None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """A treatment episode (any arm); follow-up is scheduled from ``start_date``."""

    id: int
    patient_id: int
    arm: str
    start_date: dt.date
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)
    # Cost and coverage (docs/algorithms/cost.md): amounts in `currency` (ISO 4217).
    price: Decimal | None = None
    currency: str = ""
    billed_to: str = ""
    patient_paid: Decimal | None = None
    cost_note: str = ""


@dataclass(frozen=True, slots=True)
class HarvestRecord:
    """Step 1 of the cell pathway: tissue harvested, or an allogeneic lot received."""

    id: int
    episode_id: int
    patient_id: int
    source: str
    harvested_on: dt.date
    lot_id: int | None = None
    volume_ml: float | None = None
    operator_id: int | None = None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class ProcessingRecord:
    """Step 2: the processed product of a harvest (``harvested_on`` copied for provenance)."""

    id: int
    harvest_id: int
    patient_id: int
    method: str
    lab: str
    processed_on: dt.date
    product_id: str
    harvested_on: dt.date
    sterility: str = "pending"
    tnc_per_ml: float | None = None
    cfu_f_per_ml: float | None = None
    cd34_pct: float | None = None
    viability_pct: float | None = None
    adjunct_prp: bool = False
    adjunct_hyaluronic_acid: bool = False
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class InjectionRecord:
    """Step 3: one injection of a processed product (``processing_id``) or a lot (``lot_id``)."""

    id: int
    episode_id: int
    patient_id: int
    levels: Sequence[str]
    target: str
    guidance: str
    volume_ml: float
    injected_on: dt.date
    processing_id: int | None = None
    lot_id: int | None = None
    cell_dose: float | None = None
    adjunct_prp: bool = False
    operator_id: int | None = None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class AdverseEventRecord:
    """An adverse event, pending (grade/relatedness may be unknown) or adjudicated."""

    id: int
    patient_id: int
    description: str
    category: str
    onset: dt.date
    status: str
    episode_id: int | None = None
    ctcae_grade: int | None = None
    serious: bool = False
    relatedness: str = ""
    expected: bool | None = None
    outcome: str = "unknown"
    resolved_on: dt.date | None = None
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class ClinicalEventRecord:
    """A subsequent surgery or repeat injection after treatment."""

    id: int
    patient_id: int
    kind: str
    occurred_on: dt.date
    episode_id: int | None = None
    details: str = ""
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """One instrument's stored answers and score at one follow-up time point."""

    id: int
    patient_id: int
    episode_id: int
    time_point_key: str
    instrument_id: str
    instrument_version: str
    answers: Mapping[str, Any]
    score: float | None
    band: str
    submitted_at: dt.datetime
    extras: Mapping[str, Any] = field(default_factory=dict)
    updated_at: dt.datetime | None = None  # last change of the row (meta.lastUpdated)
    #: The episode's PSFS activities in the patient's words, in order (None: not named); only
    #: a PSFS response carries them (the ``psfs-activity`` extensions).
    psfs_names: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class ChunkRecords:
    """Every patient-level record of one chunk of patients (what one export step maps)."""

    patients: Sequence[PatientRecord] = ()
    consents: Sequence[ConsentRecord] = ()
    diagnoses: Sequence[DiagnosisRecord] = ()
    prior_treatments: Sequence[PriorTreatmentRecord] = ()
    episodes: Sequence[EpisodeRecord] = ()
    harvests: Sequence[HarvestRecord] = ()
    processings: Sequence[ProcessingRecord] = ()
    injections: Sequence[InjectionRecord] = ()
    adverse_events: Sequence[AdverseEventRecord] = ()
    clinical_events: Sequence[ClinicalEventRecord] = ()
    responses: Sequence[ResponseRecord] = ()
