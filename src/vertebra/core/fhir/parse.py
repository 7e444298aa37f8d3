"""Imported FHIR resources -> plain values the registry services take (the inverse mapping).

Contracts
---------
* Pure: a resource dict in, a frozen ``Imported*`` value out, or :class:`ParseError` naming the
  element that is missing or wrong. Nothing here writes, and nothing is guessed: a value the
  registry needs and the resource does not carry is an error, not a default.
* The inverse of :mod:`vertebra.core.fhir.people`, :mod:`~vertebra.core.fhir.clinical`,
  :mod:`~vertebra.core.fhir.pathway` and :mod:`~vertebra.core.fhir.responses` for Patient,
  Condition, Consent, treatment-episode Procedure and QuestionnaireResponse: exporting what
  these return gives back the same resources (up to ids and references).
* Vertebra's codes are recognised by their system URL (``codes.yaml``), so the source must be
  a Vertebra registry or use Vertebra's code systems for the registry's own concepts (the six
  causes, the arms, the follow-up time points).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from vertebra.core.fhir.codes import FhirCodes

__all__ = [
    "ImportedConsent",
    "ImportedDiagnosis",
    "ImportedEpisode",
    "ImportedPatient",
    "ImportedResponse",
    "ParseError",
    "parse_condition",
    "parse_consent",
    "parse_episode",
    "parse_patient",
    "parse_response",
    "patient_reference",
]


class ParseError(ValueError):
    """A resource lacks, or has a wrong, element the registry needs (message names it)."""


@dataclass(frozen=True, slots=True)
class ImportedPatient:
    """register_patient's arguments, and the source's reference to the patient."""

    source_ref: str
    mrn: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    sex: str
    email: str = ""
    phone: str = ""
    mrn_system: str = ""  # the MRN's identifier system: identity is system + value (ADR 0012)


@dataclass(frozen=True, slots=True)
class ImportedDiagnosis:
    """record_diagnosis's arguments (beyond actor and patient)."""

    patient_ref: str
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


@dataclass(frozen=True, slots=True)
class ImportedConsent:
    """record_consent's arguments; ``withdrawn_on`` set for a withdrawn consent."""

    patient_ref: str
    kind: str
    form_version: str
    signed_on: dt.date
    withdrawn_on: dt.date | None = None


@dataclass(frozen=True, slots=True)
class ImportedEpisode:
    """start_episode's arguments and the source's reference to the episode."""

    source_ref: str
    patient_ref: str
    arm: str
    start_date: dt.date
    #: The episode's cost fields (price, currency, billed_to, patient_paid, cost_note), as
    #: start_episode's ``cost``; empty when the Procedure has none (docs/algorithms/cost.md).
    cost: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportedResponse:
    """One instrument's answers at one follow-up time point of one episode."""

    patient_ref: str
    episode_ref: str
    time_point_key: str
    instrument_id: str
    instrument_version: str
    answers: Mapping[str, Any]
    authored: dt.datetime
    #: The episode's PSFS activities as the response names them (``psfs-activity``
    #: extensions, in order); None when it names none (an export of an older version).
    psfs_names: tuple[str, ...] | None = None


# ------------------------------------------------------------------------------- helpers


def _get(resource: Mapping[str, Any], key: str) -> Any:
    """A required element; ParseError naming it when absent or empty."""
    value = resource.get(key)
    if value in (None, "", [], {}):
        raise ParseError(f"{resource.get('resourceType', 'resource')}.{key} is missing")
    return value


def _date(value: Any, where: str) -> dt.date:
    """A FHIR date (or the date part of a dateTime) as a date."""
    if not isinstance(value, str) or len(value) < 10:
        raise ParseError(f"{where}: {value!r} is not a full date (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ParseError(f"{where}: {value!r} is not a date") from None


def _instant(value: Any, where: str) -> dt.datetime:
    """A FHIR instant/dateTime with a time zone as an aware datetime."""
    if not isinstance(value, str):
        raise ParseError(f"{where}: {value!r} is not a date-time")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"{where}: {value!r} is not a date-time") from None
    if parsed.tzinfo is None:
        raise ParseError(f"{where}: {value!r} has no time zone")
    return parsed


def _code(concept: Any, system: str) -> str | None:
    """The code of ``system`` in a CodeableConcept (or a Coding), or None."""
    if not isinstance(concept, Mapping):
        return None
    codings = concept.get("coding", [concept])
    for coding in codings if isinstance(codings, Sequence) else []:
        if isinstance(coding, Mapping) and coding.get("system") == system and coding.get("code"):
            return str(coding["code"])
    return None


def _extension(resource: Mapping[str, Any], url: str) -> Mapping[str, Any] | None:
    """The extension with ``url``, or None."""
    for item in resource.get("extension") or []:
        if isinstance(item, Mapping) and item.get("url") == url:
            return item
    return None


def _ext_value(resource: Mapping[str, Any], url: str, key: str) -> Any:
    """``value[x]`` (``key``) of the extension with ``url``, or None."""
    found = _extension(resource, url)
    return None if found is None else found.get(key)


def _reference(value: Any, where: str) -> str:
    """The ``reference`` string of a Reference."""
    if not isinstance(value, Mapping) or not isinstance(value.get("reference"), str):
        raise ParseError(f"{where} is not a reference")
    return str(value["reference"])


def patient_reference(resource: Mapping[str, Any]) -> str:
    """The patient a resource belongs to (``subject`` or ``patient``), as a reference string."""
    if resource.get("resourceType") == "Patient":
        return f"Patient/{_get(resource, 'id')}"
    key = "patient" if resource.get("resourceType") == "Consent" else "subject"
    return _reference(_get(resource, key), f"{resource.get('resourceType')}.{key}")


# ------------------------------------------------------------------------------- resources


def parse_patient(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedPatient:
    """A Patient: the MRN (identifier of type MR, with its system), official name, gender,
    birth date, telecom."""
    mr = codes.fhir["identifier_type_mr"]
    ident: Mapping[str, Any] = next(
        (
            ident
            for ident in resource.get("identifier") or []
            if _code(ident.get("type"), mr["system"]) == mr["code"]
        ),
        {},
    )
    mrn = ident.get("value")
    if not mrn:
        raise ParseError("Patient.identifier: no MRN (an identifier of type MR)")
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if not name or not name.get("family") or not name.get("given"):
        raise ParseError("Patient.name: a family and a given name are needed")
    telecom = {t.get("system"): t.get("value", "") for t in resource.get("telecom") or []}
    return ImportedPatient(
        source_ref=patient_reference(resource),
        mrn=str(mrn),
        given_name=" ".join(name["given"]),
        family_name=str(name["family"]),
        date_of_birth=_date(_get(resource, "birthDate"), "Patient.birthDate"),
        sex=str(_get(resource, "gender")),
        email=str(telecom.get("email", "")),
        phone=str(telecom.get("phone", "")),
        mrn_system=str(ident.get("system", "")),
    )


def parse_condition(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedDiagnosis:
    """A Condition: ICD-10-CM code, Vertebra condition code, level, Pfirrmann stages and the
    imaging extensions."""
    code = _get(resource, "code")
    icd10 = _code(code, codes.systems["icd10cm"])
    condition = _code(code, codes.system("condition"))
    if icd10 is None:
        raise ParseError("Condition.code: no ICD-10-CM coding")
    if condition is None:
        raise ParseError(
            "Condition.code: no Vertebra condition coding (one of the six causes); "
            f"system {codes.system('condition')}"
        )
    grades: dict[str, int] = {}
    for stage in resource.get("stage") or []:
        scale = _code(stage.get("type"), codes.system("pfirrmann-scale"))
        if scale in ("classic", "modified"):
            grade = _code(stage.get("summary"), codes.system(f"pfirrmann-{scale}"))
            if grade is None or not grade.isdigit():
                raise ParseError(f"Condition.stage: no {scale} Pfirrmann grade in summary")
            grades[scale] = int(grade)
    body = resource.get("bodySite") or []
    url = codes.extension_url
    return ImportedDiagnosis(
        patient_ref=patient_reference(resource),
        condition=condition,
        icd10=icd10,
        diagnosed_on=_date(_get(resource, "recordedDate"), "Condition.recordedDate"),
        level=(_code(body[0], codes.system("spinal-level")) or "") if body else "",
        laterality=_code(
            _ext_value(resource, url("laterality"), "valueCoding"), codes.system("laterality")
        )
        or "",
        pfirrmann_grade=grades.get("classic"),
        modified_pfirrmann_grade=grades.get("modified"),
        modic_type=_ext_value(resource, url("modic-type"), "valueInteger"),
        disc_height_pct=_ext_value(resource, url("disc-height-percent"), "valueDecimal"),
        spondylolisthesis_grade=_ext_value(
            resource, url("spondylolisthesis-grade"), "valueInteger"
        ),
        stenosis=_code(
            _ext_value(resource, url("stenosis"), "valueCoding"), codes.system("stenosis")
        )
        or "",
    )


def parse_consent(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedConsent:
    """A Consent: kind (Vertebra consent-kind category, else the scope), form version (the
    policy rule's text), signature date, and the withdrawal date of an inactive consent."""
    kind = next(
        (
            found
            for category in resource.get("category") or []
            if (found := _code(category, codes.system("consent-kind")))
        ),
        None,
    )
    if kind is None:
        scope = codes.fhir["consent_scope"]
        by_scope = {code: kind for kind, code in scope["map"].items()}
        kind = by_scope.get(_code(resource.get("scope"), scope["system"]) or "")
    if kind is None:
        raise ParseError("Consent: neither a Vertebra consent-kind category nor a known scope")
    form = (resource.get("policyRule") or {}).get("text")
    if not form:
        raise ParseError("Consent.policyRule.text (the consent form version) is missing")
    withdrawn = ((resource.get("provision") or {}).get("period") or {}).get("end")
    if resource.get("status") == "inactive" and not withdrawn:
        raise ParseError("Consent: inactive, but provision.period.end (withdrawal date) is missing")
    return ImportedConsent(
        patient_ref=patient_reference(resource),
        kind=kind,
        form_version=str(form),
        signed_on=_date(_get(resource, "dateTime"), "Consent.dateTime"),
        withdrawn_on=_date(withdrawn, "Consent.provision.period.end") if withdrawn else None,
    )


def parse_episode(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedEpisode | None:
    """A treatment-episode Procedure (code in the treatment-arm system), or None for any other
    Procedure (pathway steps and prior treatments are not imported)."""
    arm = _code(resource.get("code"), codes.system("treatment-arm"))
    if arm is None:
        return None
    start = (resource.get("performedPeriod") or {}).get("start") or resource.get(
        "performedDateTime"
    )
    return ImportedEpisode(
        source_ref=f"Procedure/{_get(resource, 'id')}",
        patient_ref=patient_reference(resource),
        arm=arm,
        start_date=_date(start, "Procedure.performedPeriod.start"),
        cost=_episode_cost(resource, codes),
    )


def _amount(money: Any, where: str) -> tuple[Decimal | None, str]:
    """(value as an exact decimal to the cent, currency) of an R4 Money, or (None, "")."""
    if money is None:
        return None, ""
    if not isinstance(money, Mapping) or not isinstance(money.get("value"), int | float):
        raise ParseError(f"{where}: a Money with a numeric value is required")
    return Decimal(str(money["value"])).quantize(Decimal("0.01")), str(money.get("currency", ""))


def _episode_cost(resource: Mapping[str, Any], codes: FhirCodes) -> dict[str, Any]:
    """The cost extensions of an episode Procedure as start_episode's ``cost`` (empty: none)."""
    price, currency = _amount(
        _ext_value(resource, codes.extension_url("episode-price"), "valueMoney"),
        "episode-price extension",
    )
    paid, paid_currency = _amount(
        _ext_value(resource, codes.extension_url("episode-patient-paid"), "valueMoney"),
        "episode-patient-paid extension",
    )
    billed = _ext_value(resource, codes.extension_url("episode-billed-to"), "valueCoding")
    note = _ext_value(resource, codes.extension_url("episode-cost-note"), "valueString")
    if price is None and paid is None and billed is None and not note:
        return {}
    if currency and paid_currency and currency != paid_currency:
        raise ParseError("episode cost: the price and the payment are in different currencies")
    return {
        "price": price,
        "currency": currency or paid_currency,
        "billed_to": _code(billed, codes.system("billed-to")) if billed else "",
        "patient_paid": paid,
        "cost_note": str(note or ""),
    }


def _answer(answer: Mapping[str, Any], where: str) -> Any:
    """The stored value of one answer: integer, decimal, boolean, string or a coding's code."""
    for key in ("valueInteger", "valueDecimal", "valueBoolean", "valueString"):
        if key in answer:
            return int(answer[key]) if key == "valueBoolean" else answer[key]
    if "valueCoding" in answer and isinstance(answer["valueCoding"], Mapping):
        return answer["valueCoding"].get("code")
    raise ParseError(
        f"{where}: answer type not supported (integer, decimal, boolean, string, coding)"
    )


def _questionnaire(resource: Mapping[str, Any]) -> tuple[str, str]:
    """(instrument id, version) from ``questionnaire`` = ``.../Questionnaire/<id>|<version>``."""
    url = str(_get(resource, "questionnaire"))
    path, _, version = url.partition("|")
    instrument_id = path.rstrip("/").rsplit("/", 1)[-1]
    if "/Questionnaire/" not in path or not instrument_id or not version:
        raise ParseError(
            f"QuestionnaireResponse.questionnaire {url!r} is not '<base>/Questionnaire/<id>|<version>'"
        )
    return instrument_id, version


def parse_response(resource: Mapping[str, Any], codes: FhirCodes) -> ImportedResponse:
    """A completed QuestionnaireResponse with its time point and episode extensions."""
    if resource.get("status") != "completed":
        raise ParseError("QuestionnaireResponse.status: only completed responses are imported")
    instrument_id, version = _questionnaire(resource)
    point = _code(
        _ext_value(resource, codes.extension_url("followup-timepoint"), "valueCoding"),
        codes.system("followup-timepoint"),
    )
    episode = _ext_value(resource, codes.extension_url("treatment-episode"), "valueReference")
    if point is None or episode is None:
        raise ParseError(
            "QuestionnaireResponse: the followup-timepoint and treatment-episode extensions are "
            "needed (Vertebra stores answers at a follow-up time point of an episode)"
        )
    names = []
    activity = codes.extension_url("psfs-activity")
    for found in resource.get("extension") or []:
        if isinstance(found, Mapping) and found.get("url") == activity:
            if not isinstance(found.get("valueString"), str):
                raise ParseError(
                    "QuestionnaireResponse: a psfs-activity extension needs a valueString"
                )
            names.append(found["valueString"])
    answers: dict[str, Any] = {}
    for index, item in enumerate(resource.get("item") or []):
        link = item.get("linkId")
        given = item.get("answer") or []
        if not link or len(given) != 1:
            raise ParseError(f"QuestionnaireResponse.item[{index}]: needs a linkId and one answer")
        answers[str(link)] = _answer(given[0], f"QuestionnaireResponse.item[{index}]")
    return ImportedResponse(
        patient_ref=patient_reference(resource),
        episode_ref=_reference(episode, "treatment-episode extension"),
        time_point_key=point,
        instrument_id=instrument_id,
        instrument_version=version,
        answers=answers,
        authored=_instant(_get(resource, "authored"), "QuestionnaireResponse.authored"),
        psfs_names=tuple(names) if names else None,
    )
