"""Read the registry for the FHIR export: plain records, one chunk of patients at a time.

Contracts
---------
* Reads only; no permission checks and no audit here. The caller
  (:func:`vertebra.interop.export.export_fhir`, an operator's command) audits the export.
* Every read is a ``values_list`` query turned into the core's frozen records
  (:mod:`vertebra.core.fhir.records`); no model instances, no per-object queries. One chunk
  costs a fixed number of queries (one per table), whatever its size.
* Chunks are ranges of patient ids (``lo <= patient_id <= hi``), which the foreign-key indexes
  answer directly, plus the clinic filter when one is given; no ``IN`` list of thousands of
  parameters (SQLite caps query parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from vertebra.core.fhir.records import (
    AdverseEventRecord,
    ChunkRecords,
    ClinicalEventRecord,
    ClinicRecord,
    ConsentRecord,
    DiagnosisRecord,
    EpisodeRecord,
    HarvestRecord,
    InjectionRecord,
    LotRecord,
    PatientRecord,
    PriorTreatmentRecord,
    ProcessingRecord,
    ResponseRecord,
)
from vertebra.followup.models import QuestionnaireResponse
from vertebra.registry.models import (
    AdverseEvent,
    AllogeneicLot,
    Clinic,
    ClinicalEvent,
    Consent,
    Diagnosis,
    Harvest,
    Injection,
    Patient,
    PriorTreatment,
    Processing,
    TreatmentEpisode,
)

__all__ = [
    "CHUNK_PATIENTS",
    "TABLES",
    "ExportScope",
    "Table",
    "chunks",
    "exported",
    "read_chunk",
    "reference_rows",
    "scope_of",
]

#: Patients per chunk: large enough that per-query overhead is small, small enough that a
#: chunk's rows (about 60 resources a patient) stay a few tens of MB.
CHUNK_PATIENTS = 1000

_R = TypeVar("_R")


@dataclass(frozen=True)
class ExportScope:
    """The patients an export covers: ids in ascending order, and the clinic filter used."""

    clinic_ids: tuple[int, ...]  # empty = every clinic
    patient_ids: tuple[int, ...]


def scope_of(clinic_ids: Sequence[int]) -> ExportScope:
    """Every patient of ``clinic_ids`` (all clinics when empty), by ascending id.

    Raises LookupError naming a clinic id that does not exist, so a typo is not an empty export.
    """
    wanted = tuple(sorted(set(clinic_ids)))
    known = set(Clinic.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    missing = [c for c in wanted if c not in known]
    if missing:
        raise LookupError(f"no clinic with id {missing[0]}")
    query = Patient.objects.all()
    if wanted:
        query = query.filter(clinic_id__in=wanted)
    ids = tuple(query.order_by("pk").values_list("pk", flat=True))
    return ExportScope(clinic_ids=wanted, patient_ids=ids)


def chunks(scope: ExportScope, size: int = CHUNK_PATIENTS) -> Iterator[tuple[int, int, int]]:
    """(first id, last id, number of patients) of each chunk of ``scope``, in id order."""
    ids = scope.patient_ids
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        yield part[0], part[-1], len(part)


def reference_rows(clinic_ids: Sequence[int] = ()) -> tuple[list[ClinicRecord], list[LotRecord]]:
    """The clinics of the export (all when ``clinic_ids`` is empty) and every allogeneic lot
    (lots are shared reference data: any clinic's patient may have received one)."""
    clinics = Clinic.objects.order_by("pk")
    if clinic_ids:
        clinics = clinics.filter(pk__in=list(clinic_ids))
    lots = AllogeneicLot.objects.order_by("pk")
    return _records(clinics, ClinicRecord, {}), _records(lots, LotRecord, {})


def _records(
    query: QuerySet[Any], record: Callable[..., _R], lookups: Mapping[str, str]
) -> list[_R]:
    """``query`` as records: one ``values_list`` of the record's fields, in field order.

    ``lookups`` maps a record field to its ORM path when the names differ.
    """
    names = [f.name for f in fields(record)]  # type: ignore[arg-type]
    rows = query.values_list(*[lookups.get(name, name) for name in names])
    return [record(*row) for row in rows]


def _in_chunk(path: str, lo: int, hi: int, clinic_ids: Sequence[int]) -> Q:
    """Rows whose patient (reached by ``path``) is in the id range and the clinic filter."""
    where = Q(**{f"{path}_id__gte": lo, f"{path}_id__lte": hi})
    if clinic_ids:
        where &= Q(**{f"{path}__clinic_id__in": list(clinic_ids)})
    return where


@dataclass(frozen=True)
class Table:
    """How one registry table becomes records: the model, the path to its patient, the record
    class and the record fields whose ORM path differs from their name."""

    model: type[Model]
    patient: str
    record: Callable[..., Any]
    lookups: Mapping[str, str]

    def records(self, query: QuerySet[Any]) -> list[Any]:
        """``query`` (rows of :attr:`model`) as records."""
        return _records(query, self.record, self.lookups)


#: Every patient-level table the export reads, by :class:`ChunkRecords` field. The FHIR REST
#: server (``vertebra.fhirserver``) reads the same tables the same way, so a resource it serves
#: is the resource the export writes.
TABLES: Mapping[str, Table] = {
    "consents": Table(Consent, "patient", ConsentRecord, {}),
    "diagnoses": Table(Diagnosis, "patient", DiagnosisRecord, {}),
    "prior_treatments": Table(PriorTreatment, "patient", PriorTreatmentRecord, {}),
    "episodes": Table(TreatmentEpisode, "patient", EpisodeRecord, {}),
    "harvests": Table(
        Harvest,
        "episode__patient",
        HarvestRecord,
        {"patient_id": "episode__patient_id", "lot_id": "allogeneic_lot_id"},
    ),
    "processings": Table(
        Processing,
        "harvest__episode__patient",
        ProcessingRecord,
        {"patient_id": "harvest__episode__patient_id", "harvested_on": "harvest__harvested_on"},
    ),
    "injections": Table(
        Injection,
        "episode__patient",
        InjectionRecord,
        {"patient_id": "episode__patient_id", "lot_id": "allogeneic_lot_id"},
    ),
    "adverse_events": Table(AdverseEvent, "patient", AdverseEventRecord, {}),
    "clinical_events": Table(ClinicalEvent, "patient", ClinicalEventRecord, {}),
    "responses": Table(
        QuestionnaireResponse,
        "time_point__patient",
        ResponseRecord,
        {
            "patient_id": "time_point__patient_id",
            "episode_id": "time_point__schedule__episode_id",
            "time_point_key": "time_point__key",
            "psfs_names": "time_point__schedule__episode__psfs_activities__names",
        },
    ),
}


def exported(table: Table) -> QuerySet[Any]:
    """Every row of ``table`` an export would write (voided rows and the responses of a voided
    episode left out, ADR 0009), unordered and unscoped."""
    rows = table.model._default_manager.all()
    if any(f.name == "voided_at" for f in table.model._meta.concrete_fields):
        rows = rows.filter(voided_at__isnull=True)
    if table.model is QuestionnaireResponse:
        rows = rows.filter(time_point__schedule__episode__voided_at__isnull=True)
    return rows


def read_chunk(lo: int, hi: int, clinic_ids: Sequence[int] = ()) -> ChunkRecords:
    """Every exported record of the patients with ``lo <= id <= hi`` (and in ``clinic_ids``)."""
    patients = Patient.objects.filter(pk__gte=lo, pk__lte=hi, voided_at__isnull=True)
    if clinic_ids:
        patients = patients.filter(clinic_id__in=list(clinic_ids))

    def rows(name: str) -> list[Any]:
        table = TABLES[name]
        where = _in_chunk(table.patient, lo, hi, clinic_ids)
        return table.records(exported(table).filter(where).order_by("pk"))

    return ChunkRecords(
        patients=_records(patients.order_by("pk"), PatientRecord, {}),
        **{name: rows(name) for name in TABLES},
    )
