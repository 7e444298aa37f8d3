"""FHIR Bulk Data export, the pure part: records -> resources -> NDJSON lines and a manifest.

Contracts
---------
* :func:`reference_resources` maps the registry-wide rows (clinics, allogeneic lots) once;
  :func:`chunk_resources` maps one chunk of patients. Both yield resource dicts and never read
  a clock, a file or a database; the shell (``vertebra.interop``) does the reading and writing.
* :func:`ndjson_line` is one resource on one line (compact JSON, UTF-8, ``\\n``-terminated):
  the FHIR Bulk Data format, one file per resource type (``Patient.ndjson``, ...).
* :func:`manifest` is the Bulk Data export manifest (``transactionTime``, ``request``,
  ``requiresAccessToken``, ``output`` with per-file counts, ``error``) plus a ``extension``
  object saying what the export holds (identified, codes version, clinics).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from vertebra.core.fhir import clinical, pathway, people, questionnaires, responses
from vertebra.core.fhir._base import Resource, instant
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.records import ChunkRecords, ClinicRecord, LotRecord
from vertebra.core.instruments.registry import builtin_definitions

__all__ = [
    "RESOURCE_TYPES",
    "chunk_resources",
    "manifest",
    "ndjson_line",
    "reference_resources",
]

#: The resource types an export writes, in the order their files are listed.
RESOURCE_TYPES = (
    "Organization",
    "Questionnaire",
    "Patient",
    "Consent",
    "Condition",
    "Procedure",
    "BiologicallyDerivedProduct",
    "MedicationStatement",
    "QuestionnaireResponse",
    "Observation",
    "AdverseEvent",
)


def reference_resources(
    clinics: Iterable[ClinicRecord], lots: Iterable[LotRecord], codes: FhirCodes
) -> Iterator[Resource]:
    """Organizations (clinics), a Questionnaire per shipped instrument (the canonicals the
    QuestionnaireResponses name) and the allogeneic lots as BiologicallyDerivedProducts."""
    for clinic in clinics:
        yield people.organization(clinic, codes)
    yield from questionnaires.questionnaires(dict(builtin_definitions()), codes)
    for lot in lots:
        yield pathway.lot(lot, codes)


def chunk_resources(
    chunk: ChunkRecords, codes: FhirCodes, lots: Mapping[int, LotRecord]
) -> Iterator[Resource]:
    """Every resource of one chunk of patients. ``lots`` resolves the lot numbers that
    allogeneic harvests name (the lots themselves are written by :func:`reference_resources`)."""
    yield from (people.patient(p, codes) for p in chunk.patients)
    yield from (people.consent(c, codes) for c in chunk.consents)
    yield from (clinical.condition(d, codes) for d in chunk.diagnoses)
    yield from (clinical.prior_treatment(t, codes) for t in chunk.prior_treatments)
    yield from (pathway.episode(e, codes) for e in chunk.episodes)
    yield from (pathway.harvest(h, codes, lots) for h in chunk.harvests)
    yield from (pathway.product(p, codes) for p in chunk.processings)
    yield from (pathway.injection(i, codes) for i in chunk.injections)
    yield from (clinical.clinical_event(e, codes) for e in chunk.clinical_events)
    links = pathway.episode_links(chunk.harvests, chunk.injections)
    yield from (clinical.adverse_event(a, codes, links) for a in chunk.adverse_events)
    definitions = responses.definitions_of(r.instrument_id for r in chunk.responses)
    for response in chunk.responses:
        yield responses.questionnaire_response(response, codes, definitions)
        for derived in (
            responses.score_observation(response, codes),
            responses.opioid_statement(response, codes),
        ):
            if derived is not None:
                yield derived


def ndjson_line(item: Resource) -> str:
    """One resource as one NDJSON line (compact, UTF-8 text kept, newline-terminated).

    ``allow_nan=False``: FHIR JSON has no NaN; a NaN here is a bug upstream, not data.
    """
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def manifest(
    *,
    transaction_time: dt.datetime,
    request: str,
    counts: Mapping[str, int],
    codes: FhirCodes,
    clinics: Sequence[str],
    n_patients: int,
) -> dict[str, Any]:
    """The Bulk Data manifest of an export (files listed in :data:`RESOURCE_TYPES` order;
    ``url`` is the file name, relative to the manifest)."""
    output = [
        {"type": name, "url": f"{name}.ndjson", "count": counts[name]}
        for name in RESOURCE_TYPES
        if counts.get(name)
    ]
    return {
        "transactionTime": instant(transaction_time),
        "request": request,
        "requiresAccessToken": False,
        "output": output,
        "error": [],
        "extension": {
            "vertebra": {
                "fhirVersion": "4.0.1",
                "codesVersion": codes.version,
                "canonicalBase": codes.base,
                "identified": True,
                "clinics": list(clinics) or "all",
                "patients": n_patients,
            }
        },
    }
