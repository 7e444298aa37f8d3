"""Small builders shared by the mapping modules: ids, references, dates, quantities, extensions.

Resource ids are the registry's ids behind a prefix naming the row kind (``patient-12``,
``injection-7``): stable across exports, unique per resource type even where one type is
built from several tables (Procedure from episodes, harvests, injections, prior treatments and
clinical events), and within FHIR's id rule ``[A-Za-z0-9-.]{1,64}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from vertebra.core.fhir.codes import FhirCodes

Resource = dict[str, Any]

#: Row kind -> (FHIR resource type, id prefix).
KINDS: dict[str, tuple[str, str]] = {
    "clinic": ("Organization", "clinic"),
    "lot": ("BiologicallyDerivedProduct", "lot"),
    "product": ("BiologicallyDerivedProduct", "product"),
    "patient": ("Patient", "patient"),
    "consent": ("Consent", "consent"),
    "diagnosis": ("Condition", "diagnosis"),
    "episode": ("Procedure", "episode"),
    "harvest": ("Procedure", "harvest"),
    "injection": ("Procedure", "injection"),
    "prior_procedure": ("Procedure", "prior"),
    "prior_medication": ("MedicationStatement", "prior"),
    "clinical_event": ("Procedure", "event"),
    "response": ("QuestionnaireResponse", "response"),
    "score": ("Observation", "score"),
    "opioid_use": ("MedicationStatement", "opioid"),
    "adverse_event": ("AdverseEvent", "ae"),
}


def rid(kind: str, pk: int) -> str:
    """The resource id of registry row ``pk`` of ``kind`` (see :data:`KINDS`)."""
    return f"{KINDS[kind][1]}-{pk}"


def ref(kind: str, pk: int) -> dict[str, str]:
    """A literal Reference to the resource of registry row ``pk`` of ``kind``."""
    return {"reference": f"{KINDS[kind][0]}/{rid(kind, pk)}"}


def resource(kind: str, pk: int, *, updated: dt.datetime | None = None, **fields: Any) -> Resource:
    """A resource dict with ``resourceType``, ``id`` and ``meta.lastUpdated`` (when the row's
    last change ``updated`` is known) first, and empty fields dropped."""
    meta = {"lastUpdated": last_updated(updated)} if updated is not None else None
    return {
        "resourceType": KINDS[kind][0],
        "id": rid(kind, pk),
        **compact({"meta": meta, **fields}),
    }


def last_updated(value: dt.datetime) -> str:
    """``meta.lastUpdated``: a FHIR instant in UTC with milliseconds (as HAPI FHIR and Medplum
    write it), so a client can page by ``_lastUpdated=gt<the value it saw>``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; FHIR instants need one")
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without None values and empty lists/dicts/strings (FHIR forbids empty ones)."""
    return {k: v for k, v in fields.items() if v is not None and v != [] and v != {} and v != ""}


def date(value: dt.date | None) -> str | None:
    """A FHIR date (YYYY-MM-DD), or None."""
    return None if value is None else value.isoformat()


def instant(value: dt.datetime) -> str:
    """A FHIR instant/dateTime in UTC with seconds; refuses a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; FHIR instants need one")
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def period(start: dt.date | None, end: dt.date | None) -> dict[str, str] | None:
    """A Period from optional dates, or None when both are unknown."""
    found = compact({"start": date(start), "end": date(end)})
    return found or None


def quantity(codes: FhirCodes, value: float, unit: str, ucum: str) -> dict[str, Any]:
    """A UCUM Quantity."""
    return {"value": value, "unit": unit, "system": codes.systems["ucum"], "code": ucum}


def extension(codes: FhirCodes, name: str, key: str, value: Any) -> dict[str, Any] | None:
    """Vertebra extension ``name`` with ``value[x]`` under ``key``; None when value is None."""
    if value is None or value == "":
        return None
    return {"url": codes.extension_url(name), key: value}


def extensions(*items: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The extensions that are present (drops the Nones of :func:`extension`)."""
    return [item for item in items if item is not None]


def staff(codes: FhirCodes, user_id: int | None) -> list[dict[str, Any]]:
    """Procedure.performer for an operator known by registry user id (logical reference)."""
    if user_id is None:
        return []
    return [
        {
            "actor": {
                "type": "Practitioner",
                "identifier": {
                    "system": codes.identifier_system("staff-user"),
                    "value": str(user_id),
                },
            }
        }
    ]


def concepts(codes: FhirCodes, system: str, values: Iterable[str]) -> list[dict[str, Any]]:
    """One CodeableConcept of Vertebra ``system`` per value."""
    return [codes.concept(system, value) for value in values]
