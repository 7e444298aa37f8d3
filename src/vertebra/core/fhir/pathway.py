"""The treatment pathway as FHIR R4 resources.

Why these resource types:

* **Treatment episode -> Procedure** (any arm; code = the arm). FHIR R4 has no resource for
  "a course of treatment in one arm": CarePlan is a plan, EpisodeOfCare is administrative. A
  Procedure dated from the start of treatment is what registries of interventions exchange,
  and it is the parent (``partOf``) of the cell-therapy steps. Status ``unknown``: the registry
  records when a course started, not whether it has ended.
* **Harvest -> Procedure** (``partOf`` the episode): tissue taken from the patient; the source
  as bodySite. An allogeneic "harvest" takes nothing from the patient: it is coded
  ``allogeneic_lot_assignment`` and uses the lot.
* **Processing -> BiologicallyDerivedProduct**, not a Procedure: processing is done in a lab to
  material, not to the patient. R4's BiologicallyDerivedProduct holds exactly this: category
  ``cells``, the collection (source patient, date), the processing step (method, date) and the
  product id as identifier; the lab's measurements (TNC, CFU-F, CD34+, viability, sterility,
  adjuncts) are Vertebra extensions (R4 has no ``property`` element; R5 added one).
* **Allogeneic lot -> BiologicallyDerivedProduct** (one per lot, shared by its recipients).
* **Injection -> Procedure** (``partOf`` the episode): levels as bodySite, the product it used
  in the ``used-product`` extension, target, guidance, volume, dose and PRP as extensions.
  R4's ``Procedure.usedReference`` may only target Device | Medication | Substance, so the
  BiologicallyDerivedProduct a harvest or injection used travels in an extension
  (valueReference) instead; the allogeneic source stays in ``usedCode``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from vertebra.core.fhir._base import (
    Resource,
    concepts,
    date,
    extension,
    extensions,
    quantity,
    ref,
    resource,
    staff,
)
from vertebra.core.fhir.clinical import EpisodeLinks
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.records import (
    EpisodeRecord,
    HarvestRecord,
    InjectionRecord,
    LotRecord,
    ProcessingRecord,
)

__all__ = [
    "ALLOGENEIC_SOURCES",
    "episode",
    "episode_links",
    "harvest",
    "injection",
    "lot",
    "product",
]

#: Cell sources that name a lot instead of taking tissue from the patient.
ALLOGENEIC_SOURCES = frozenset({"umbilical_cord_allogeneic", "other_allogeneic"})


def episode(record: EpisodeRecord, codes: FhirCodes) -> Resource:
    """A treatment episode of any arm as a Procedure (see the module docstring)."""
    return resource(
        "episode",
        record.id,
        updated=record.updated_at,
        status="unknown",
        code=codes.concept("treatment-arm", record.arm),
        subject=ref("patient", record.patient_id),
        performedPeriod={"start": date(record.start_date)},
        extension=_cost_extensions(record, codes),
    )


def _money(amount: Decimal | None, currency: str) -> dict[str, Any] | None:
    """An R4 Money (value as a JSON number, exact to the cent; ISO 4217 currency)."""
    if amount is None:
        return None
    money: dict[str, Any] = {"value": float(amount)}
    if currency:
        money["currency"] = currency
    return money


def _cost_extensions(record: EpisodeRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """The episode's cost and coverage (docs/algorithms/cost.md) as Vertebra extensions: R4
    Claim/Coverage model billing between organisations, not what a clinic charged a patient."""
    billed = codes.coding("billed-to", record.billed_to) if record.billed_to else None
    return extensions(
        extension(codes, "episode-price", "valueMoney", _money(record.price, record.currency)),
        extension(codes, "episode-billed-to", "valueCoding", billed),
        extension(
            codes,
            "episode-patient-paid",
            "valueMoney",
            _money(record.patient_paid, record.currency),
        ),
        extension(codes, "episode-cost-note", "valueString", record.cost_note),
    )


def harvest(record: HarvestRecord, codes: FhirCodes, lots: Mapping[int, LotRecord]) -> Resource:
    """A harvest as a completed Procedure, part of its episode (allogeneic: lot assignment)."""
    allogeneic = record.source in ALLOGENEIC_SOURCES
    source = codes.concept("cell-source", record.source)
    lot = lots.get(record.lot_id) if record.lot_id is not None else None
    volume = None
    if record.volume_ml is not None:
        volume = quantity(codes, record.volume_ml, "mL", "mL")
    return resource(
        "harvest",
        record.id,
        updated=record.updated_at,
        extension=extensions(
            extension(codes, "harvest-volume", "valueQuantity", volume),
            extension(codes, "allogeneic-lot", "valueIdentifier", _lot_identifier(lot, codes)),
            extension(
                codes,
                "used-product",
                "valueReference",
                ref("lot", record.lot_id) if record.lot_id is not None else None,
            ),
        ),
        partOf=[ref("episode", record.episode_id)],
        status="completed",
        code=codes.concept(
            "procedure", "allogeneic_lot_assignment" if allogeneic else "cell_harvest"
        ),
        subject=ref("patient", record.patient_id),
        performedDateTime=date(record.harvested_on),
        performer=staff(codes, record.operator_id),
        bodySite=None if allogeneic else [source],
        usedCode=[source] if allogeneic else None,
    )


def _lot_identifier(lot: LotRecord | None, codes: FhirCodes) -> dict[str, str] | None:
    """The lot number as an Identifier, or None."""
    if lot is None:
        return None
    return {"system": codes.identifier_system("allogeneic-lot"), "value": lot.lot_number}


def product(record: ProcessingRecord, codes: FhirCodes) -> Resource:
    """A processed autologous product as a BiologicallyDerivedProduct (see module docstring)."""
    method = codes.concept("processing-method", record.method)
    return resource(
        "product",
        record.id,
        updated=record.updated_at,
        extension=_lab_extensions(record, codes),
        identifier=[{"system": codes.identifier_system("product"), "value": record.product_id}],
        productCategory="cells",
        productCode=method,
        collection={
            "source": ref("patient", record.patient_id),
            "collectedDateTime": date(record.harvested_on),
        },
        processing=[
            {
                "description": method["text"],
                "procedure": method,
                "timeDateTime": date(record.processed_on),
            }
        ],
    )


def _lab_extensions(record: ProcessingRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """Lab, cell counts, viability, sterility and adjuncts of a processed product."""

    def measured(value: float | None, unit: str, ucum: str) -> dict[str, Any] | None:
        return None if value is None else quantity(codes, value, unit, ucum)

    return extensions(
        extension(codes, "processing-lab", "valueString", record.lab),
        extension(
            codes, "tnc-per-ml", "valueQuantity", measured(record.tnc_per_ml, "10*6/mL", "10*6/mL")
        ),
        extension(
            codes, "cfu-f-per-ml", "valueQuantity", measured(record.cfu_f_per_ml, "/mL", "/mL")
        ),
        extension(codes, "cd34-percent", "valueQuantity", measured(record.cd34_pct, "%", "%")),
        extension(
            codes, "viability-percent", "valueQuantity", measured(record.viability_pct, "%", "%")
        ),
        extension(codes, "sterility", "valueCoding", codes.coding("sterility", record.sterility)),
        extension(codes, "adjunct-prp", "valueBoolean", record.adjunct_prp),
        extension(codes, "adjunct-hyaluronic-acid", "valueBoolean", record.adjunct_hyaluronic_acid),
    )


def lot(record: LotRecord, codes: FhirCodes) -> Resource:
    """An allogeneic lot as a BiologicallyDerivedProduct: available once released."""
    return resource(
        "lot",
        record.id,
        updated=record.updated_at,
        extension=extensions(
            extension(codes, "lot-released", "valueDate", date(record.released_on))
        ),
        identifier=[_lot_identifier(record, codes)],
        productCategory="cells",
        productCode={"text": record.product},
        status="available" if record.released else "unavailable",
    )


def injection(record: InjectionRecord, codes: FhirCodes) -> Resource:
    """An injection as a completed Procedure, part of its episode, using its product."""
    used = _used_product(record)
    dose = None
    if record.cell_dose is not None:
        # Stored in million cells (docs/units.md): UCUM 10*6, said in words in `unit`.
        dose = quantity(codes, record.cell_dose, "million cells", "10*6")
    return resource(
        "injection",
        record.id,
        updated=record.updated_at,
        extension=extensions(
            extension(
                codes,
                "injection-target",
                "valueCoding",
                codes.coding("injection-target", record.target),
            ),
            extension(
                codes,
                "image-guidance",
                "valueCoding",
                codes.coding("image-guidance", record.guidance),
            ),
            extension(
                codes,
                "injection-volume",
                "valueQuantity",
                quantity(codes, record.volume_ml, "mL", "mL"),
            ),
            extension(codes, "cell-dose", "valueQuantity", dose),
            extension(codes, "adjunct-prp", "valueBoolean", record.adjunct_prp),
            extension(codes, "used-product", "valueReference", used),
        ),
        partOf=[ref("episode", record.episode_id)],
        status="completed",
        code=codes.concept("procedure", "cell_injection"),
        subject=ref("patient", record.patient_id),
        performedDateTime=date(record.injected_on),
        performer=staff(codes, record.operator_id),
        bodySite=concepts(codes, "spinal-level", record.levels),
    )


def _used_product(record: InjectionRecord) -> dict[str, str] | None:
    """The product an injection used: its processed product, else its allogeneic lot."""
    if record.processing_id is not None:
        return ref("product", record.processing_id)
    if record.lot_id is not None:
        return ref("lot", record.lot_id)
    return None


def episode_links(
    harvests: Iterable[HarvestRecord], injections: Iterable[InjectionRecord]
) -> dict[int, EpisodeLinks]:
    """Per episode, the harvest, first injection and injected product an adverse event's
    relatedness points at (first = earliest date, then lowest id)."""
    first: dict[int, InjectionRecord] = {}
    for item in sorted(injections, key=lambda i: (i.injected_on, i.id)):
        first.setdefault(item.episode_id, item)
    harvested = {h.episode_id: ref("harvest", h.id) for h in harvests}
    links = {}
    for episode_id in set(first) | set(harvested):
        shot = first.get(episode_id)
        links[episode_id] = EpisodeLinks(
            harvest=harvested.get(episode_id),
            injection=ref("injection", shot.id) if shot is not None else None,
            product=_used_product(shot) if shot is not None else None,
        )
    return links
