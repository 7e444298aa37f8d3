"""Imported pathway, prior-treatment and event resources -> plain values (the inverse mapping).

Contracts
---------
* Pure, like :mod:`vertebra.core.fhir.parse`: a resource dict in, a frozen ``Imported*`` value
  out, or :class:`~vertebra.core.fhir.parse.ParseError` naming what is missing or wrong.
* The inverse of :mod:`vertebra.core.fhir.pathway` (harvest, processed product, allogeneic lot,
  injection) and :mod:`vertebra.core.fhir.clinical` (prior treatment, clinical event, adverse
  event). :func:`procedure_kind` and :func:`medication_statement_kind` tell which registry row
  a Procedure or MedicationStatement is, by its code system (never by its id).
* **The product an injection used is read tolerantly** (:func:`product_link`): R4 does not
  allow a BiologicallyDerivedProduct as ``Procedure.usedReference``, so an exporter may carry
  the link as ``usedReference`` (Vertebra's exports up to codes 1.0), as
  ``focalDevice[].manipulated``, or as an extension whose value is a Reference or an
  Identifier. A reference may be literal (``BiologicallyDerivedProduct/<id>``) or logical
  (``Reference.identifier``); either way the product is finally identified by its identifier
  (product id system or allogeneic-lot system), never by the source's resource id.
* Values the registry derives are not read: an adverse event's ``suspectEntity`` (the export
  recomputes it from relatedness and the episode's steps), MME/day (recomputed from the dose
  with the CDC factors), scores (recomputed by the core scorers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.parse import (
    ParseError,
    _code,
    _date,
    _ext_value,
    _get,
    _reference,
    patient_reference,
)

__all__ = [
    "ImportedAdverseEvent",
    "ImportedClinicalEvent",
    "ImportedHarvest",
    "ImportedInjection",
    "ImportedLot",
    "ImportedPriorTreatment",
    "ImportedProduct",
    "ProductLink",
    "derived_from",
    "medication_statement_kind",
    "parse_adverse_event",
    "parse_clinical_event",
    "parse_harvest",
    "parse_injection",
    "parse_lot",
    "parse_prior_treatment",
    "parse_product",
    "procedure_kind",
    "product_link",
]

BDP = "BiologicallyDerivedProduct"


@dataclass(frozen=True, slots=True)
class ProductLink:
    """How a resource names a product: a source reference and/or the product's identifier."""

    reference: str | None = None
    system: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class ImportedLot:
    """An allogeneic lot (reference data shared by recipients), keyed by lot number."""

    source_ref: str
    lot_number: str
    product: str
    released_on: dt.date | None


@dataclass(frozen=True, slots=True)
class ImportedHarvest:
    """record_harvest's arguments; the lot by number (resolved in this registry)."""

    source_ref: str
    patient_ref: str
    episode_ref: str
    source: str
    harvested_on: dt.date
    volume_ml: float | None = None
    lot: ProductLink | None = None


@dataclass(frozen=True, slots=True)
class ImportedProduct:
    """record_processing's arguments (with the sterility result) and what places it."""

    source_ref: str
    patient_ref: str
    product_id: str
    method: str
    lab: str
    processed_on: dt.date
    harvested_on: dt.date | None
    sterility: str = "pending"
    tnc_per_ml: float | None = None
    cfu_f_per_ml: float | None = None
    cd34_pct: float | None = None
    viability_pct: float | None = None
    adjunct_prp: bool = False
    adjunct_hyaluronic_acid: bool = False


@dataclass(frozen=True, slots=True)
class ImportedInjection:
    """record_injection's arguments; the product by link (resolved to an identifier later)."""

    source_ref: str
    patient_ref: str
    episode_ref: str
    levels: tuple[str, ...]
    target: str
    guidance: str
    volume_ml: float
    injected_on: dt.date
    product: ProductLink | None
    cell_dose: float | None = None
    adjunct_prp: bool = False


@dataclass(frozen=True, slots=True)
class ImportedPriorTreatment:
    """record_prior_treatment's arguments."""

    source_ref: str
    patient_ref: str
    kind: str
    details: str = ""
    medication_name: str = ""
    daily_dose: float | None = None
    relief_weeks: int | None = None
    started_on: dt.date | None = None
    ended_on: dt.date | None = None


@dataclass(frozen=True, slots=True)
class ImportedClinicalEvent:
    """record_clinical_event's arguments (a subsequent surgery or repeat injection)."""

    source_ref: str
    patient_ref: str
    kind: str
    occurred_on: dt.date
    episode_ref: str | None = None
    details: str = ""


@dataclass(frozen=True, slots=True)
class ImportedAdverseEvent:
    """record_adverse_event's arguments; ``adjudicated`` as the source says."""

    source_ref: str
    patient_ref: str
    description: str
    category: str
    onset: dt.date
    adjudicated: bool
    episode_ref: str | None = None
    ctcae_grade: int | None = None
    serious: bool = False
    relatedness: str = ""
    expected: bool | None = None
    outcome: str = "unknown"
    resolved_on: dt.date | None = None


# ------------------------------------------------------------------------------- helpers


def _ref_of(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{_get(resource, 'id')}"


def _quantity(resource: Mapping[str, Any], codes: FhirCodes, name: str) -> float | None:
    """``valueQuantity.value`` of Vertebra extension ``name``, or None."""
    found = _ext_value(resource, codes.extension_url(name), "valueQuantity")
    if found is None:
        return None
    value = found.get("value") if isinstance(found, Mapping) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ParseError(f"{resource.get('resourceType')} extension {name}: no numeric value")
    return float(value)


def _ext_code(resource: Mapping[str, Any], codes: FhirCodes, name: str, system: str) -> str:
    """The Vertebra code of ``valueCoding`` of extension ``name`` ("" when absent)."""
    found = _ext_value(resource, codes.extension_url(name), "valueCoding")
    return _code(found, codes.system(system)) or ""


def _bool(resource: Mapping[str, Any], codes: FhirCodes, name: str) -> bool | None:
    value = _ext_value(resource, codes.extension_url(name), "valueBoolean")
    return value if isinstance(value, bool) else None


def _note(resource: Mapping[str, Any]) -> str:
    notes = resource.get("note") or []
    return str(notes[0].get("text", "")) if notes and isinstance(notes[0], Mapping) else ""


def _optional_date(value: Any, where: str) -> dt.date | None:
    return None if value in (None, "") else _date(value, where)


def _episode_ext(resource: Mapping[str, Any], codes: FhirCodes) -> str | None:
    found = _ext_value(resource, codes.extension_url("treatment-episode"), "valueReference")
    return None if found is None else _reference(found, "treatment-episode extension")


def _part_of(resource: Mapping[str, Any]) -> str:
    parts = resource.get("partOf") or []
    if not parts:
        raise ParseError("Procedure.partOf (the treatment episode) is missing")
    return _reference(parts[0], "Procedure.partOf")


def derived_from(resource: Mapping[str, Any]) -> str | None:
    """The QuestionnaireResponse a resource was derived from (score, opioid use), or None."""
    for item in resource.get("derivedFrom") or []:
        reference = item.get("reference") if isinstance(item, Mapping) else None
        if isinstance(reference, str) and reference.startswith("QuestionnaireResponse/"):
            return reference
    return None


def procedure_kind(resource: Mapping[str, Any], codes: FhirCodes) -> str | None:
    """Which registry row a Procedure is: episode, harvest, injection, prior_procedure,
    clinical_event; None when its code is none of Vertebra's."""
    code = resource.get("code")
    if _code(code, codes.system("treatment-arm")):
        return "episode"
    step = _code(code, codes.system("procedure"))
    if step in ("cell_harvest", "allogeneic_lot_assignment"):
        return "harvest"
    if step == "cell_injection":
        return "injection"
    if _code(code, codes.system("prior-treatment")):
        return "prior_procedure"
    if _code(code, codes.system("clinical-event")):
        return "clinical_event"
    return None


def medication_statement_kind(resource: Mapping[str, Any]) -> str:
    """``opioid_use`` for a statement derived from an answer set, else ``prior_medication``."""
    return "opioid_use" if derived_from(resource) else "prior_medication"


def _link_from(value: Any, codes: FhirCodes) -> ProductLink | None:
    """A ProductLink from a Reference or an Identifier naming a product or lot, or None."""
    if not isinstance(value, Mapping):
        return None
    systems = (codes.identifier_system("product"), codes.identifier_system("allogeneic-lot"))
    ident = value.get("identifier") if "reference" in value or "identifier" in value else value
    system = ident.get("system") if isinstance(ident, Mapping) else None
    reference = value.get("reference")
    if isinstance(reference, str) and reference.startswith(f"{BDP}/"):
        found = ProductLink(reference=reference)
        if system in systems:
            found = ProductLink(reference, str(system), str(ident.get("value")))  # type: ignore[union-attr]
        return found
    if system in systems and isinstance(ident, Mapping) and ident.get("value"):
        return ProductLink(system=str(system), value=str(ident["value"]))
    return None


def product_link(resource: Mapping[str, Any], codes: FhirCodes) -> ProductLink | None:
    """The product an injection used, wherever the exporter put it (module docstring):
    ``usedReference``, ``focalDevice[].manipulated``, or any extension whose value is a
    Reference or Identifier naming a product or lot. None when none is given."""
    candidates: list[Any] = list(resource.get("usedReference") or [])
    candidates += [f.get("manipulated") for f in resource.get("focalDevice") or []]
    for item in resource.get("extension") or []:
        if isinstance(item, Mapping):
            candidates += [item.get("valueReference"), item.get("valueIdentifier")]
    for candidate in candidates:
        found = _link_from(candidate, codes)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------------- resources


def parse_lot(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedLot | None:
    """An allogeneic lot BiologicallyDerivedProduct, or None for another product."""
    system = codes.identifier_system("allogeneic-lot")
    number = next(
        (i.get("value") for i in resource.get("identifier") or [] if i.get("system") == system),
        None,
    )
    if number is None:
        return None
    released = _ext_value(resource, codes.extension_url("lot-released"), "valueDate")
    return ImportedLot(
        source_ref=_ref_of(resource),
        lot_number=str(number),
        product=str((resource.get("productCode") or {}).get("text", "")),
        released_on=_optional_date(released, "lot-released extension"),
    )


def parse_product(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedProduct:
    """A processed autologous product (BiologicallyDerivedProduct with a product id)."""
    system = codes.identifier_system("product")
    product_id = next(
        (i.get("value") for i in resource.get("identifier") or [] if i.get("system") == system),
        None,
    )
    if not product_id:
        raise ParseError(f"{BDP}.identifier: neither a product id nor an allogeneic lot number")
    method = _code(resource.get("productCode"), codes.system("processing-method"))
    if method is None:
        raise ParseError(f"{BDP}.productCode: no Vertebra processing-method coding")
    collection = _get(resource, "collection")
    steps = _get(resource, "processing")
    return ImportedProduct(
        source_ref=_ref_of(resource),
        patient_ref=_reference(collection.get("source"), f"{BDP}.collection.source"),
        product_id=str(product_id),
        method=method,
        lab=str(_ext_value(resource, codes.extension_url("processing-lab"), "valueString") or ""),
        processed_on=_date(steps[0].get("timeDateTime"), f"{BDP}.processing.timeDateTime"),
        harvested_on=_optional_date(
            collection.get("collectedDateTime"), f"{BDP}.collection.collectedDateTime"
        ),
        sterility=_ext_code(resource, codes, "sterility", "sterility") or "pending",
        tnc_per_ml=_quantity(resource, codes, "tnc-per-ml"),
        cfu_f_per_ml=_quantity(resource, codes, "cfu-f-per-ml"),
        cd34_pct=_quantity(resource, codes, "cd34-percent"),
        viability_pct=_quantity(resource, codes, "viability-percent"),
        adjunct_prp=bool(_bool(resource, codes, "adjunct-prp")),
        adjunct_hyaluronic_acid=bool(_bool(resource, codes, "adjunct-hyaluronic-acid")),
    )


def parse_harvest(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedHarvest:
    """A harvest (or allogeneic lot assignment) Procedure."""
    system = codes.system("cell-source")
    sites: Sequence[Any] = resource.get("bodySite") or resource.get("usedCode") or []
    source = _code(sites[0], system) if sites else None
    if source is None:
        raise ParseError("Procedure (harvest): no cell-source coding in bodySite or usedCode")
    lot_number = _ext_value(resource, codes.extension_url("allogeneic-lot"), "valueIdentifier")
    lot = _link_from(lot_number, codes)
    if lot is None:
        lot = next(
            (
                found
                for item in resource.get("usedReference") or []
                if (found := _link_from(item, codes))
            ),
            None,
        )
    return ImportedHarvest(
        source_ref=_ref_of(resource),
        patient_ref=patient_reference(resource),
        episode_ref=_part_of(resource),
        source=source,
        harvested_on=_date(_get(resource, "performedDateTime"), "Procedure.performedDateTime"),
        volume_ml=_quantity(resource, codes, "harvest-volume"),
        lot=lot,
    )


def parse_injection(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedInjection:
    """An injection Procedure (the product read by :func:`product_link`)."""
    system = codes.system("spinal-level")
    levels = tuple(_code(site, system) or "" for site in resource.get("bodySite") or [])
    if not levels or "" in levels:
        raise ParseError("Procedure (injection).bodySite: spinal levels are needed")
    volume = _quantity(resource, codes, "injection-volume")
    if volume is None:
        raise ParseError("Procedure (injection): the injection-volume extension is missing")
    return ImportedInjection(
        source_ref=_ref_of(resource),
        patient_ref=patient_reference(resource),
        episode_ref=_part_of(resource),
        levels=levels,
        target=_ext_code(resource, codes, "injection-target", "injection-target"),
        guidance=_ext_code(resource, codes, "image-guidance", "image-guidance"),
        volume_ml=volume,
        injected_on=_date(_get(resource, "performedDateTime"), "Procedure.performedDateTime"),
        product=product_link(resource, codes),
        cell_dose=_quantity(resource, codes, "cell-dose"),
        adjunct_prp=bool(_bool(resource, codes, "adjunct-prp")),
    )


def parse_prior_treatment(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedPriorTreatment:
    """A prior treatment: a MedicationStatement (kind medication) or a Procedure."""
    if resource.get("resourceType") == "MedicationStatement":
        concept = resource.get("medicationCodeableConcept") or {}
        name = str(concept.get("text", ""))
        if name == "medication (not named)" and not concept.get("coding"):
            name = ""  # the export's words for a blank name (clinical.medication_concept)
        dose = None
        for dosage in resource.get("dosage") or []:
            for rate in dosage.get("doseAndRate") or []:
                value = (rate.get("rateQuantity") or {}).get("value")
                if isinstance(value, int | float):
                    dose = float(value)
        when = resource.get("effectivePeriod") or {}
        return ImportedPriorTreatment(
            source_ref=_ref_of(resource),
            patient_ref=patient_reference(resource),
            kind="medication",
            details=_note(resource),
            medication_name=name,
            daily_dose=dose,
            started_on=_optional_date(when.get("start"), "effectivePeriod.start"),
            ended_on=_optional_date(when.get("end"), "effectivePeriod.end"),
        )
    kind = _code(resource.get("code"), codes.system("prior-treatment"))
    if kind is None:
        raise ParseError("Procedure.code: no Vertebra prior-treatment coding")
    relief = _quantity(resource, codes, "relief-weeks")
    when = resource.get("performedPeriod") or {}
    return ImportedPriorTreatment(
        source_ref=_ref_of(resource),
        patient_ref=patient_reference(resource),
        kind=kind,
        details=_note(resource),
        relief_weeks=None if relief is None else round(relief),
        started_on=_optional_date(when.get("start"), "performedPeriod.start"),
        ended_on=_optional_date(when.get("end"), "performedPeriod.end"),
    )


def parse_clinical_event(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedClinicalEvent:
    """A subsequent surgery or repeat injection Procedure."""
    kind = _code(resource.get("code"), codes.system("clinical-event"))
    if kind is None:
        raise ParseError("Procedure.code: no Vertebra clinical-event coding")
    return ImportedClinicalEvent(
        source_ref=_ref_of(resource),
        patient_ref=patient_reference(resource),
        kind=kind,
        occurred_on=_date(_get(resource, "performedDateTime"), "Procedure.performedDateTime"),
        episode_ref=_episode_ext(resource, codes),
        details=_note(resource),
    )


def parse_adverse_event(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedAdverseEvent:
    """An AdverseEvent: category, onset, description, grade, relatedness, expectedness,
    adjudication status; seriousness and outcome as adjudicated (suspectEntity not read)."""
    category = next(
        (
            found
            for concept in resource.get("category") or []
            if (found := _code(concept, codes.system("ae-category")))
        ),
        None,
    )
    if category is None:
        raise ParseError("AdverseEvent.category: no Vertebra ae-category coding")
    status = _ext_code(resource, codes, "adjudication-status", "ae-status") or "pending"
    seriousness = codes.fhir["ae_seriousness"]
    serious = (
        _code(resource.get("seriousness"), seriousness["system"]) == seriousness["serious"]["code"]
    )
    outcomes = codes.fhir["ae_outcome"]
    by_code = {fhir_code: ours for ours, fhir_code in outcomes["map"].items()}
    outcome = by_code.get(_code(resource.get("outcome"), outcomes["system"]) or "", "unknown")
    grade = _ext_value(resource, codes.extension_url("ctcae-grade"), "valueInteger")
    resolved = _ext_value(resource, codes.extension_url("resolved-date"), "valueDate")
    return ImportedAdverseEvent(
        source_ref=_ref_of(resource),
        patient_ref=patient_reference(resource),
        description=str((resource.get("event") or {}).get("text", "")),
        category=category,
        onset=_date(_get(resource, "date"), "AdverseEvent.date"),
        adjudicated=status == "adjudicated",
        episode_ref=_episode_ext(resource, codes),
        ctcae_grade=grade if isinstance(grade, int) else None,
        serious=serious,
        relatedness=_ext_code(resource, codes, "relatedness", "relatedness"),
        expected=_bool(resource, codes, "expected"),
        outcome=outcome,
        resolved_on=_optional_date(resolved, "resolved-date extension"),
    )
