"""``vertebra export fhir``: stream the registry to FHIR Bulk Data NDJSON files, audited.

Contracts
---------
* An operator's command (whoever runs it can read the database anyway), for the clinic's own
  systems: the output is IDENTIFIED (names, MRN, dates of birth).
* One audit row is committed *before* any data is read for export: actor
  ``system:export-fhir``, action ``read``, object type ``fhir_export``, the clinic filter, the
  number of patients and the output folder. A crash half-way therefore stays on the trail.
* Memory is bounded by one chunk of patients (:data:`~vertebra.interop.selectors.CHUNK_PATIENTS`):
  each chunk is read with a fixed number of queries, mapped by the pure core and appended to
  one NDJSON file per resource type.
* On PostgreSQL every chunk is read inside one ``REPEATABLE READ READ ONLY`` transaction, so the
  files are one consistent snapshot. SQLite serialises writers with ``BEGIN IMMEDIATE``, so a
  long transaction would block every write for the length of the export; there each query is
  consistent on its own (a write landing mid-export can show in some files and not others).
* Files are written under ``out`` as ``<Type>.ndjson`` plus ``manifest.json``, the manifest
  last: a folder with a manifest holds a finished export.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.db import connection, transaction

from vertebra.core.fhir import (
    RESOURCE_TYPES,
    LotRecord,
    chunk_resources,
    fhir_codes,
    manifest,
    ndjson_line,
    reference_resources,
    validate_resource,
)
from vertebra.followup.services import Principal
from vertebra.interop.selectors import CHUNK_PATIENTS, chunks, read_chunk, reference_rows, scope_of
from vertebra.registry.audit import record_audit
from vertebra.registry.permissions import Actor

__all__ = ["AUDIT_OBJECT_TYPE", "EXPORT_ACTOR", "ExportSummary", "export_fhir"]

AUDIT_OBJECT_TYPE = "fhir_export"
EXPORT_ACTOR = Actor(user=Principal("system:export-fhir"), role="system", clinic_ids=frozenset())
MANIFEST = "manifest.json"


@dataclass
class ExportSummary:
    """What an export wrote: resources per type, patients, and the folder."""

    out: Path
    n_patients: int
    counts: dict[str, int] = field(default_factory=dict)


class _Files:
    """One NDJSON file per resource type, opened on first use, counting lines."""

    def __init__(self, out: Path, check: bool) -> None:
        self.out = out
        self.check = check
        self.handles: dict[str, IO[str]] = {}
        self.counts: dict[str, int] = dict.fromkeys(RESOURCE_TYPES, 0)

    def write(self, resource: dict[str, object]) -> None:
        """Append one resource (validated first when ``check``)."""
        kind = str(resource["resourceType"])
        if self.check:
            validate_resource(resource)
        handle = self.handles.get(kind)
        if handle is None:
            handle = (self.out / f"{kind}.ndjson").open("w", encoding="utf-8", newline="\n")
            self.handles[kind] = handle
        handle.write(ndjson_line(resource))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    """A consistent read snapshot on PostgreSQL; plain autocommit reads on SQLite.

    Inside a caller's transaction (tests, a script) the isolation level is already fixed by
    its first query, so the reads simply join it.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _audit(
    clinic_ids: Sequence[int], n_patients: int, out: Path, now: dt.datetime, actor: Actor
) -> None:
    """Commit the export's audit row (before any patient data is read for export)."""
    with transaction.atomic():
        record_audit(
            actor=actor,
            action="read",
            object_type=AUDIT_OBJECT_TYPE,
            new_values={
                "format": "fhir-r4-ndjson",
                "clinics": list(clinic_ids) or "all",
                "n_patients": n_patients,
                "identified": True,
                "out": str(out),
            },
            occurred_at=now,
        )


def _clear_previous(out: Path) -> None:
    """Remove the files a previous export left in ``out`` (never anything else)."""
    for name in (*RESOURCE_TYPES, "manifest"):
        target = out / (MANIFEST if name == "manifest" else f"{name}.ndjson")
        target.unlink(missing_ok=True)


def export_fhir(
    out: Path,
    *,
    clinic_ids: Sequence[int] = (),
    now: dt.datetime,
    request: str = "vertebra export fhir",
    validate: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_PATIENTS,
    actor: Actor = EXPORT_ACTOR,
) -> ExportSummary:
    """Export the patients of ``clinic_ids`` (all when empty) to ``out`` (see module docstring).

    ``on_start(n_patients)`` is called once the scope is known and ``on_chunk(n)`` after each
    chunk (a progress bar). ``actor`` is who the audit row names (the Bulk Data endpoint
    passes the system client or person who asked). With ``validate`` every resource is
    checked against the R4(B) models before it is written (FhirValidationError stops the
    export; slow). Raises LookupError for an unknown clinic id and OSError when ``out``
    cannot be written.
    """
    scope = scope_of(clinic_ids)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    _audit(scope.clinic_ids, len(scope.patient_ids), out, now, actor)
    if on_start is not None:
        on_start(len(scope.patient_ids))
    codes = fhir_codes()
    files = _Files(out, validate)
    try:
        with _snapshot():
            clinics, lots = reference_rows(scope.clinic_ids)
            for item in reference_resources(clinics, lots, codes):
                files.write(item)
            lot_index: dict[int, LotRecord] = {lot.id: lot for lot in lots}
            for lo, hi, size in chunks(scope, chunk_size):
                for item in chunk_resources(read_chunk(lo, hi, scope.clinic_ids), codes, lot_index):
                    files.write(item)
                if on_chunk is not None:
                    on_chunk(size)
    finally:
        files.close()
    document = manifest(
        transaction_time=now,
        request=request,
        counts=files.counts,
        codes=codes,
        clinics=[str(c) for c in scope.clinic_ids],
        n_patients=len(scope.patient_ids),
    )
    (out / MANIFEST).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    counts = {kind: n for kind, n in files.counts.items() if n}
    return ExportSummary(out=out, n_patients=len(scope.patient_ids), counts=counts)
