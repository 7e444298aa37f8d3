"""What the FHIR server serves: per resource type, the registry tables behind it and the search
parameters it answers, as data. The CapabilityStatement is generated from this table, and the
selectors read nothing else, so the statement cannot claim what the server does not do.

A FHIR type can be built from several tables (Procedure from episodes, harvests, injections,
non-medication prior treatments and clinical events); each is a :class:`Source` whose ids carry
its prefix (``episode-3``, ``injection-7``: :data:`vertebra.core.fhir._base.KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from vertebra.core.fhir import FhirCodes, clinical, pathway, people, responses
from vertebra.core.fhir._base import Resource
from vertebra.core.fhir.pathway import ALLOGENEIC_SOURCES
from vertebra.core.fhir.records import ClinicRecord, LotRecord, PatientRecord
from vertebra.interop.selectors import TABLES, Table
from vertebra.registry.models import AllogeneicLot, Clinic, Patient

__all__ = ["TYPES", "BuildContext", "Param", "Source", "TypeSpec"]

#: Builds the resources of a list of records of one source (same order, same length).
Builder = Callable[[Sequence[Any], "BuildContext"], list[Resource]]
#: A token search (system or None, code) -> the rows that match, or None: no row of this
#: source can carry that code.
CodeFilter = Callable[[str | None, str, FhirCodes], Q | None]


@dataclass
class BuildContext:
    """What builders need besides the records: codes, allogeneic lots, episode links."""

    codes: FhirCodes
    lots: Mapping[int, LotRecord] = field(default_factory=dict)
    links: Mapping[int, clinical.EpisodeLinks] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """One registry table behind a FHIR type.

    ``patient`` is the ORM path to the row's patient ("" for a Patient row itself, None for
    rows that belong to no patient: allogeneic lots, which any clinic's patient may receive;
    clinics, filtered by ``clinic``). ``date`` is the field a date parameter compares with.
    """

    kind: str
    table: Table
    build: Builder
    patient: str | None
    where: Q = field(default_factory=Q)
    date: str | None = None
    code: CodeFilter | None = None
    clinic: str | None = None
    identifier: CodeFilter | None = None


@dataclass(frozen=True)
class Param:
    """A search parameter: its name, FHIR type and R4 definition URL."""

    name: str
    type: str
    definition: str
    documentation: str


@dataclass(frozen=True)
class TypeSpec:
    """A resource type: its sources in paging order and its search parameters."""

    name: str
    sources: tuple[Source, ...]
    params: tuple[Param, ...]
    public: bool = False

    def param(self, name: str) -> Param | None:
        """The declared parameter called ``name``, or None."""
        return next((p for p in self.params if p.name == name), None)


def _sp(resource: str, name: str, kind: str, text: str) -> Param:
    """An R4 search parameter of ``resource`` (its hl7.org SearchParameter canonical)."""
    return Param(name, kind, f"http://hl7.org/fhir/SearchParameter/{resource}-{name}", text)


ID = Param(
    "_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id", "Logical id, comma = OR"
)


LAST_UPDATED = Param(
    "_lastUpdated",
    "date",
    "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
    "Last change of the record (meta.lastUpdated; prefixes eq ne lt le gt ge)",
)
#: The parameters of every type built from registry rows.
COMMON = (ID, LAST_UPDATED)


def _subject_params(shared: str, resource: str) -> tuple[Param, ...]:
    """``patient`` (R4's shared ``<shared>-patient``) and ``subject`` (``<resource>-subject``)."""
    return (
        _sp(shared, "patient", "reference", "The patient (Patient/<id>), comma = OR"),
        _sp(resource, "subject", "reference", "Same as patient (every subject is a Patient)"),
    )


# ------------------------------------------------------------------------------ code filters


def _system_is(system: str | None, expected: str) -> bool:
    return system is None or system == expected


def _diagnosis_code(system: str | None, code: str, codes: FhirCodes) -> Q | None:
    """ICD-10-CM code or Vertebra condition code."""
    if system is None:
        return Q(icd10__iexact=code) | Q(condition=code)
    if system == codes.systems["icd10cm"]:
        return Q(icd10__iexact=code)
    if system == codes.system("condition"):
        return Q(condition=code)
    return None


def _vertebra_code(name: str, column: str) -> CodeFilter:
    """Rows whose ``column`` is the code (a Vertebra code system ``name``)."""

    def match(system: str | None, code: str, codes: FhirCodes) -> Q | None:
        return Q(**{column: code}) if _system_is(system, codes.system(name)) else None

    return match


def _fixed_code(name: str, code_value: str, rows: Q) -> CodeFilter:
    """Every row of the source has Vertebra code ``code_value`` (of ``name``), or ``rows`` do."""

    def match(system: str | None, code: str, codes: FhirCodes) -> Q | None:
        return rows if _system_is(system, codes.system(name)) and code == code_value else None

    return match


def _harvest_code(system: str | None, code: str, codes: FhirCodes) -> Q | None:
    allogeneic = Q(source__in=sorted(ALLOGENEIC_SOURCES))
    for value, rows in (("allogeneic_lot_assignment", allogeneic), ("cell_harvest", ~allogeneic)):
        found = _fixed_code("procedure", value, rows)(system, code, codes)
        if found is not None:
            return found
    return None


def _patient_identifier(system: str | None, value: str, codes: FhirCodes) -> Q | None:
    """The MRN (system ``sid/mrn/<clinic id>``, or no system) or the registry id."""
    mrn = codes.identifier_system("mrn")
    if system is None:
        return Q(mrn=value)
    if system.startswith(f"{mrn}/") and system.removeprefix(f"{mrn}/").isdigit():
        return Q(mrn=value, clinic_id=int(system.removeprefix(f"{mrn}/")))
    if system == codes.identifier_system("patient") and value.isdigit():
        return Q(pk=int(value))
    return None


def _score_code(system: str | None, code: str, codes: FhirCodes) -> Q | None:
    """Vertebra instrument code, or a verified LOINC code -> the instruments that carry it."""
    if _system_is(system, codes.system("instrument")) and code in codes.instruments:
        return Q(instrument_id=code)
    if system in (None, codes.systems["loinc"]):
        ids = [
            key
            for key, spec in codes.instruments.items()
            if spec.loinc and spec.loinc["code"] == code
        ]
        return Q(instrument_id__in=ids) if ids else None
    return None


# --------------------------------------------------------------------------------- builders


def _each(build: Callable[..., Resource | None]) -> Builder:
    def run(records: Sequence[Any], ctx: BuildContext) -> list[Resource]:
        return [item for r in records if (item := build(r, ctx.codes)) is not None]

    return run


def _harvests(records: Sequence[Any], ctx: BuildContext) -> list[Resource]:
    return [pathway.harvest(r, ctx.codes, ctx.lots) for r in records]


def _adverse_events(records: Sequence[Any], ctx: BuildContext) -> list[Resource]:
    return [clinical.adverse_event(r, ctx.codes, ctx.links) for r in records]


def _questionnaire_responses(records: Sequence[Any], ctx: BuildContext) -> list[Resource]:
    definitions = responses.definitions_of(r.instrument_id for r in records)
    return [responses.questionnaire_response(r, ctx.codes, definitions) for r in records]


PATIENTS = Table(Patient, "", PatientRecord, {})
CLINICS = Table(Clinic, "", ClinicRecord, {})
LOTS = Table(AllogeneicLot, "", LotRecord, {})

#: Observations exist for scored responses (work status: for a recorded group).
SCORED = (Q(score__isnull=False) & ~Q(instrument_id="work_status")) | (
    Q(instrument_id="work_status") & ~Q(band="")
)
#: Opioid MedicationStatements exist where the use question was answered.
OPIOID_ANSWERED = Q(instrument_id="opioid_use", answers__current_use__in=[0, 1])


def _types() -> dict[str, TypeSpec]:
    t = TABLES
    procedure_date = _sp("clinical", "date", "date", "When performed (prefixes eq ne lt le gt ge)")
    return {
        spec.name: spec
        for spec in (
            TypeSpec(
                "Patient",
                (
                    Source(
                        "patient",
                        PATIENTS,
                        _each(people.patient),
                        "",
                        identifier=_patient_identifier,
                    ),
                ),
                (
                    *COMMON,
                    _sp(
                        "Patient",
                        "identifier",
                        "token",
                        "MRN (system sid/mrn/<clinic id>) or registry id (sid/patient)",
                    ),
                ),
            ),
            TypeSpec(
                "Organization",
                (Source("clinic", CLINICS, _each(people.organization), None, clinic="pk"),),
                COMMON,
            ),
            TypeSpec(
                "Condition",
                (
                    Source(
                        "diagnosis",
                        t["diagnoses"],
                        _each(clinical.condition),
                        "patient",
                        date="diagnosed_on",
                        code=_diagnosis_code,
                    ),
                ),
                (
                    *COMMON,
                    *_subject_params("clinical", "Condition"),
                    _sp("clinical", "code", "token", "ICD-10-CM or Vertebra condition code"),
                    _sp("Condition", "recorded-date", "date", "Date diagnosed"),
                ),
            ),
            TypeSpec(
                "Procedure",
                (
                    Source(
                        "episode",
                        t["episodes"],
                        _each(pathway.episode),
                        "patient",
                        date="start_date",
                        code=_vertebra_code("treatment-arm", "arm"),
                    ),
                    Source(
                        "harvest",
                        t["harvests"],
                        _harvests,
                        "episode__patient",
                        date="harvested_on",
                        code=_harvest_code,
                    ),
                    Source(
                        "injection",
                        t["injections"],
                        _each(pathway.injection),
                        "episode__patient",
                        date="injected_on",
                        code=_fixed_code("procedure", "cell_injection", Q()),
                    ),
                    Source(
                        "prior_procedure",
                        t["prior_treatments"],
                        _each(clinical.prior_treatment),
                        "patient",
                        where=~Q(kind="medication"),
                        date="started_on",
                        code=_vertebra_code("prior-treatment", "kind"),
                    ),
                    Source(
                        "clinical_event",
                        t["clinical_events"],
                        _each(clinical.clinical_event),
                        "patient",
                        date="occurred_on",
                        code=_vertebra_code("clinical-event", "kind"),
                    ),
                ),
                (
                    *COMMON,
                    *_subject_params("clinical", "Procedure"),
                    _sp(
                        "clinical",
                        "code",
                        "token",
                        "Vertebra treatment-arm, procedure, prior-treatment or clinical-event code",
                    ),
                    procedure_date,
                ),
            ),
            TypeSpec(
                "BiologicallyDerivedProduct",
                (
                    Source(
                        "product",
                        t["processings"],
                        _each(pathway.product),
                        "harvest__episode__patient",
                    ),
                    Source("lot", LOTS, _each(pathway.lot), None),
                ),
                COMMON,
            ),
            TypeSpec(
                "MedicationStatement",
                (
                    Source(
                        "prior_medication",
                        t["prior_treatments"],
                        _each(clinical.prior_treatment),
                        "patient",
                        where=Q(kind="medication"),
                        date="started_on",
                    ),
                    Source(
                        "opioid_use",
                        t["responses"],
                        _each(responses.opioid_statement),
                        "time_point__patient",
                        where=OPIOID_ANSWERED,
                        date="submitted_at",
                    ),
                ),
                (
                    *COMMON,
                    *_subject_params("medications", "MedicationStatement"),
                    _sp("MedicationStatement", "effective", "date", "When taken (start)"),
                ),
            ),
            TypeSpec(
                "QuestionnaireResponse",
                (
                    Source(
                        "response",
                        t["responses"],
                        _questionnaire_responses,
                        "time_point__patient",
                        date="submitted_at",
                    ),
                ),
                (
                    *COMMON,
                    _sp("QuestionnaireResponse", "patient", "reference", "The patient"),
                    _sp("QuestionnaireResponse", "subject", "reference", "Same as patient"),
                    _sp("QuestionnaireResponse", "authored", "date", "When answered"),
                    _sp(
                        "QuestionnaireResponse",
                        "questionnaire",
                        "reference",
                        "Canonical of the Questionnaire (with or without |version)",
                    ),
                ),
            ),
            TypeSpec(
                "Observation",
                (
                    Source(
                        "score",
                        t["responses"],
                        _each(responses.score_observation),
                        "time_point__patient",
                        where=SCORED,
                        date="submitted_at",
                        code=_score_code,
                    ),
                ),
                (
                    *COMMON,
                    *_subject_params("clinical", "Observation"),
                    _sp("clinical", "code", "token", "Vertebra instrument code or verified LOINC"),
                    _sp("clinical", "date", "date", "When answered"),
                ),
            ),
            TypeSpec(
                "AdverseEvent",
                (
                    Source(
                        "adverse_event",
                        t["adverse_events"],
                        _adverse_events,
                        "patient",
                        date="onset",
                    ),
                ),
                (
                    *COMMON,
                    _sp("AdverseEvent", "subject", "reference", "The patient"),
                    _sp("AdverseEvent", "date", "date", "Onset"),
                ),
            ),
            TypeSpec(
                "Consent",
                (
                    Source(
                        "consent",
                        t["consents"],
                        _each(people.consent),
                        "patient",
                        date="signed_on",
                    ),
                ),
                (
                    *COMMON,
                    _sp("clinical", "patient", "reference", "The patient"),
                    _sp("Consent", "date", "date", "Date signed"),
                ),
            ),
            TypeSpec(
                "Questionnaire",
                (),
                (
                    ID,
                    _sp("Questionnaire", "url", "uri", "Canonical URL (with or without |version)"),
                ),
                public=True,
            ),
        )
    }


#: The resource types served, by name (in CapabilityStatement order).
TYPES: Mapping[str, TypeSpec] = _types()
