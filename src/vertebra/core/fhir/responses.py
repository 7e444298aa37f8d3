"""Stored questionnaire responses as QuestionnaireResponse, Observation and MedicationStatement.

* **QuestionnaireResponse**: item-level answers. ``questionnaire`` is the instrument's canonical
  URL with its version (``.../Questionnaire/odi|2.1a``), so a reader knows which scoring rules
  and item set apply. Items are in the instrument's order, ``linkId`` = item id; an unanswered
  item is left out. Integer-coded choices are ``valueInteger`` (the stored option code, which is
  what the scorers use, so the score can be recomputed from the resource alone), named codes
  ``valueCoding`` (e.g. the opioid), numbers ``valueDecimal``. Item and option text are written
  only for instruments whose wording Vertebra ships (never placeholder or a site's licensed text).
  The follow-up time point and the episode followed up travel as extensions. A PSFS response
  also carries the episode's activities as the patient named them, in order, one
  ``psfs-activity`` extension (``valueString``) each: item ``activity_<k>`` rates the k-th.
  FHIR has no element for a label the respondent supplies, and the names belong to the
  episode, not to one answer (an activity may be named and left unrated), so every PSFS
  response of the episode repeats them and the items keep the instrument's own wording.
* **Observation** (one per scored response): the stored score as ``valueQuantity`` (for a
  categorical instrument such as work status, the stored group as ``valueCodeableConcept``),
  the band as ``interpretation``, ``derivedFrom`` the QuestionnaireResponse. No Observation for
  a response the missing-item rules left unscored.
* **MedicationStatement** (opioid-use responses): taken (active) or not taken, the opioid, the
  daily dose as a rate and MME/day (the stored score) as an extension.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from vertebra.core.fhir._base import (
    Resource,
    extension,
    extensions,
    instant,
    quantity,
    ref,
    resource,
)
from vertebra.core.fhir.clinical import dosage, mme_extension
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.records import ResponseRecord
from vertebra.core.instruments import (
    InstrumentDefinition,
    Item,
    UnknownInstrumentError,
    get_definition,
)
from vertebra.core.mme import UnknownOpioidError, opioid_factor

PSFS = "psfs"

__all__ = [
    "answer_value",
    "definitions_of",
    "opioid_statement",
    "questionnaire_response",
    "score_observation",
]


def definitions_of(instrument_ids: Iterable[str]) -> dict[str, InstrumentDefinition | None]:
    """The definitions in force for these instruments (None for an unknown one)."""
    return {instrument_id: _definition(instrument_id) for instrument_id in set(instrument_ids)}


def _definition(instrument_id: str) -> InstrumentDefinition | None:
    """The shipped definition, or None for an instrument this version does not know."""
    try:
        return get_definition(instrument_id)
    except UnknownInstrumentError:
        return None


def _text_shipped(defn: InstrumentDefinition | None) -> bool:
    """True when the wording in the definition is Vertebra's own, licence-free text."""
    return defn is not None and defn.item_text_shipped and defn.text_source == "shipped"


def _context(record: ResponseRecord, codes: FhirCodes) -> list[dict[str, Any]]:
    """The time point and episode extensions shared by a response's resources."""
    point = codes.coding("followup-timepoint", record.time_point_key)
    return extensions(
        extension(codes, "followup-timepoint", "valueCoding", point),
        extension(codes, "treatment-episode", "valueReference", ref("episode", record.episode_id)),
    )


def answer_value(
    codes: FhirCodes, instrument_id: str, item_id: str, value: Any, item: Item | None, shipped: bool
) -> dict[str, Any]:
    """One QuestionnaireResponse answer (``{"valueX": ...}``) for a stored answer value."""
    if type(value) is int and (item is None or item.type != "number"):
        return {"valueInteger": value}  # the common case (option codes), without ABC checks
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, str):
        system = codes.answer_systems.get(f"{instrument_id}.{item_id}")
        if system is None:
            return {"valueString": value}
        coding = codes.coding(system, value)
        if shipped and item is not None and value in item.codes:
            coding["display"] = item.option(value).label
        return {"valueCoding": coding}
    if item is not None and item.type == "number":
        return {"valueDecimal": value}
    if isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer()):
        return {"valueInteger": int(value)}
    return {"valueDecimal": value}


def _items(
    record: ResponseRecord, codes: FhirCodes, defn: InstrumentDefinition | None
) -> list[dict[str, Any]]:
    """The answered items, in the instrument's order (unknown item ids last, sorted)."""
    shipped = _text_shipped(defn)
    known = {item.id: item for item in defn.items} if defn is not None else {}
    order = list(known) + sorted(k for k in record.answers if k not in known)
    items = []
    for item_id in order:
        value = record.answers.get(item_id)
        if value is None:
            continue
        item = known.get(item_id)
        entry: dict[str, Any] = {"linkId": item_id}
        if shipped and item is not None:
            entry["text"] = item.text
        entry["answer"] = [answer_value(codes, record.instrument_id, item_id, value, item, shipped)]
        items.append(entry)
    return items


def questionnaire_response(
    record: ResponseRecord,
    codes: FhirCodes,
    definitions: Mapping[str, InstrumentDefinition | None] | None = None,
) -> Resource:
    """A stored response as a completed QuestionnaireResponse (see the module docstring).

    ``definitions`` (instrument id -> definition) saves the lookup when mapping many responses.
    """
    known = definitions or {}
    defn = (
        known[record.instrument_id]
        if record.instrument_id in known
        else _definition(record.instrument_id)
    )
    patient = ref("patient", record.patient_id)
    url = codes.questionnaire_url(record.instrument_id)
    named = record.psfs_names if record.instrument_id == PSFS else None
    return resource(
        "response",
        record.id,
        updated=record.updated_at,
        extension=_context(record, codes)
        + extensions(*(extension(codes, "psfs-activity", "valueString", n) for n in named or ())),
        identifier={
            "system": codes.identifier_system("questionnaire-response"),
            "value": str(record.id),
        },
        questionnaire=f"{url}|{record.instrument_version}",
        status="completed",
        subject=patient,
        authored=instant(record.submitted_at),
        source=patient,
        item=_items(record, codes, defn),
    )


def score_observation(record: ResponseRecord, codes: FhirCodes) -> Resource | None:
    """The response's score as an Observation, or None when it has no score (or, for a
    categorical instrument, no group)."""
    spec = codes.instruments.get(record.instrument_id)
    if spec is None:
        return None
    value: dict[str, Any]
    if spec.value == "category":
        if not record.band:
            return None
        value = {"valueCodeableConcept": codes.concept("score-band", record.band)}
        interpretation = None
    else:
        if record.score is None:
            return None
        value = {"valueQuantity": quantity(codes, record.score, spec.unit_text, spec.unit_ucum)}
        interpretation = [codes.concept("score-band", record.band)] if record.band else None
    site = codes.concept("body-site", spec.body_site) if spec.body_site else None
    return resource(
        "score",
        record.id,
        updated=record.updated_at,
        extension=_context(record, codes),
        status="final",
        category=[{"coding": [codes.fhir_coding("observation_category_survey")]}],
        code={"coding": codes.instrument_coding(record.instrument_id), "text": spec.display},
        subject=ref("patient", record.patient_id),
        effectiveDateTime=instant(record.submitted_at),
        **value,
        interpretation=interpretation,
        bodySite=site,
        derivedFrom=[ref("response", record.id)],
    )


def _opioid(answers: Mapping[str, Any], codes: FhirCodes) -> tuple[dict[str, Any], str]:
    """(medicationCodeableConcept, dose unit) of an opioid-use answer set."""
    name = answers.get("opioid")
    if not isinstance(name, str):
        return {
            "coding": [codes.coding("opioid", "any_opioid")],
            "text": "Opioid (not named)",
        }, "mg/day"
    coding = codes.coding("opioid", name)
    try:
        unit = opioid_factor(name).dose_unit
    except UnknownOpioidError:
        unit = "mg/day"
    return {"coding": [coding], "text": coding.get("display", name)}, unit


def opioid_statement(record: ResponseRecord, codes: FhirCodes) -> Resource | None:
    """An opioid-use response as a MedicationStatement (active or not-taken), or None when
    the use question was not answered or the response is of another instrument."""
    if record.instrument_id != "opioid_use":
        return None
    uses = record.answers.get("current_use")
    if uses not in (0, 1):
        return None
    taken = uses == 1
    medication, unit = (
        _opioid(record.answers, codes)
        if taken
        else (
            {"coding": [codes.coding("opioid", "any_opioid")], "text": "Any opioid analgesic"},
            "mg/day",
        )
    )
    dose = record.answers.get("daily_dose") if taken else None
    patient = ref("patient", record.patient_id)
    when = instant(record.submitted_at)
    return resource(
        "opioid_use",
        record.id,
        updated=record.updated_at,
        extension=extensions(
            mme_extension(codes, record.score if taken else None),
            *_context(record, codes),
        ),
        status="active" if taken else "not-taken",
        medicationCodeableConcept=medication,
        subject=patient,
        effectiveDateTime=when,
        dateAsserted=when,
        informationSource=patient,
        derivedFrom=[ref("response", record.id)],
        dosage=dosage(float(dose), unit, codes) if isinstance(dose, int | float) else None,
    )
