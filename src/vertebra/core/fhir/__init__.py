"""FHIR R4 mapping of registry records (pure: no Django, no database, no network, no clock).

Public API::

    fhir_codes() -> FhirCodes                      # code lists and URLs (data/fhir/codes.yaml)
    reference_resources(clinics, lots, codes)      # Organization, lot BiologicallyDerivedProduct
    chunk_resources(chunk, codes, lots)            # every resource of one chunk of patients
    ndjson_line(resource) -> str                   # one Bulk Data NDJSON line
    manifest(...) -> dict                          # the Bulk Data export manifest
    validate_resource(resource)                    # fhir.resources R4B validation
    parse_* (vertebra.core.fhir.parse)             # imported resources -> plain values

One mapping function per resource kind lives in :mod:`people`, :mod:`clinical`, :mod:`pathway`
and :mod:`responses`; docs/fhir.md has the mapping tables and a worked example.
"""

from __future__ import annotations

from vertebra.core.fhir.bulk import (
    RESOURCE_TYPES,
    chunk_resources,
    manifest,
    ndjson_line,
    reference_resources,
)
from vertebra.core.fhir.codes import FhirCodes, fhir_codes
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
from vertebra.core.fhir.validate import FhirValidationError, validate_resource

__all__ = [
    "RESOURCE_TYPES",
    "AdverseEventRecord",
    "ChunkRecords",
    "ClinicRecord",
    "ClinicalEventRecord",
    "ConsentRecord",
    "DiagnosisRecord",
    "EpisodeRecord",
    "FhirCodes",
    "FhirValidationError",
    "HarvestRecord",
    "InjectionRecord",
    "LotRecord",
    "PatientRecord",
    "PriorTreatmentRecord",
    "ProcessingRecord",
    "ResponseRecord",
    "chunk_resources",
    "fhir_codes",
    "manifest",
    "ndjson_line",
    "reference_resources",
    "validate_resource",
]
