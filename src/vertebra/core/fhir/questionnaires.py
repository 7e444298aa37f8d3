"""Vertebra's instruments as FHIR R4 Questionnaires (SDC style), one per instrument.

Contracts
---------
* ``url`` is the canonical that every QuestionnaireResponse of the instrument already names
  (``<base>/Questionnaire/<instrument id>``, with ``|<version>`` in the response); ``version``
  is the instrument version; ``id`` is the instrument id with ``_`` as ``-`` (FHIR ids allow
  ``[A-Za-z0-9-.]`` only: :func:`questionnaire_id`). Any FHIR server resolves a canonical with
  ``GET Questionnaire?url=<canonical>``; Vertebra's also redirects ``Questionnaire/<instrument
  id>`` to the read URL, so on a server whose base is the canonical base the canonical resolves.
* Items carry the ``linkId`` the responses use (the item id), in the instrument's order.
  A choice item's options are ``answerOption.valueInteger`` = the stored option code, which is
  exactly what the QuestionnaireResponse answers hold (so a response validates against its
  Questionnaire), each with the R4 core ``ordinalValue`` extension (the score weight) and the
  option wording in Vertebra's ``option-label`` extension. A named-code item (the opioid) is a
  ``choice`` of Codings; a number item is ``decimal`` with ``minValue``/``maxValue``.
* Wording: only the shipped definitions' text is used, never a site's licensed overlay (which
  may not be redistributed). When that text is placeholder wording (a licensed instrument:
  ODI, PROMIS, RMDQ, STarT Back), the Questionnaire is ``status: draft``, carries the
  ``placeholder-text`` extension (true), and its ``copyright`` names the licence holder.
* The score is not a calculated item (an ``$extract`` or FHIRPath rule would be a second copy
  of the scorers, which the missing-item rules make non-trivial): the ``scoring-rule``
  extension states the rule and its source, ``code`` is the score's code (the Observation's),
  and the score travels as the Observation derived from each response.
"""

from __future__ import annotations

from typing import Any

from vertebra.core.fhir._base import Resource, compact, extension, extensions
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.instruments import PLACEHOLDER_MARKER, InstrumentDefinition, Item

__all__ = ["ORDINAL_VALUE", "questionnaire", "questionnaire_id", "questionnaires"]

#: R4 core extension (hl7.org/fhir/R4/extension-ordinalvalue.html): the score of an option.
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
#: R4 core extensions for the bounds of a decimal item (extension-minvalue / -maxvalue).
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"


def questionnaire_id(instrument_id: str) -> str:
    """The Questionnaire resource id of an instrument (``ae_tickler`` -> ``ae-tickler``)."""
    return instrument_id.replace("_", "-")


def _placeholder(defn: InstrumentDefinition) -> bool:
    """True when the definition's wording is demo wording (a licensed instrument)."""
    return not defn.item_text_shipped or defn.has_placeholder_text


def _option(codes: FhirCodes, defn: InstrumentDefinition, item: Item, option: Any) -> Resource:
    """One answerOption: the stored code as the value (and ordinal), the wording as label."""
    label = extension(codes, "option-label", "valueString", option.label)
    if isinstance(option.code, str):
        system = codes.answer_systems.get(f"{defn.id}.{item.id}")
        coding = (
            codes.coding(system, option.code)
            if system
            else {"code": option.code, "display": option.label}
        )
        return {"valueCoding": compact({**coding, "display": option.label})}
    return {
        "extension": extensions(
            {"url": ORDINAL_VALUE, "valueDecimal": option.code},
            label,
        ),
        "valueInteger": option.code,
    }


def _item(codes: FhirCodes, defn: InstrumentDefinition, item: Item) -> Resource:
    """One question; ``required`` unless the instrument marks it optional."""
    if item.type == "number":
        return compact(
            {
                "extension": extensions(
                    {"url": MIN_VALUE, "valueDecimal": item.minimum}
                    if item.minimum is not None
                    else None,
                    {"url": MAX_VALUE, "valueDecimal": item.maximum}
                    if item.maximum is not None
                    else None,
                ),
                "linkId": item.id,
                "text": item.text,
                "type": "decimal",
                "required": not item.optional,
            }
        )
    return compact(
        {
            "linkId": item.id,
            "text": item.text,
            "type": "choice",
            "required": not item.optional,
            "answerOption": [_option(codes, defn, item, o) for o in item.options],
        }
    )


def questionnaire(defn: InstrumentDefinition, codes: FhirCodes) -> Resource:
    """The Questionnaire of one instrument (see the module docstring)."""
    placeholder = _placeholder(defn)
    rule = f"{defn.scoring.description.strip()} Source: {defn.scoring.source}"
    spec = codes.instruments.get(defn.id)
    score_code = codes.instrument_coding(defn.id) if spec is not None else None
    name = "".join(part.capitalize() for part in defn.id.split("_"))
    copyright_ = f"{defn.licence.holder}. {defn.licence.terms.strip()}"
    if placeholder:
        copyright_ += (
            f" The wording here is placeholder text ('{PLACEHOLDER_MARKER}'), not the "
            "instrument's: load the licensed text to administer it."
        )
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(defn.id),
        **compact(
            {
                "extension": extensions(
                    extension(codes, "placeholder-text", "valueBoolean", placeholder),
                    extension(codes, "scoring-rule", "valueString", rule),
                ),
                "url": codes.questionnaire_url(defn.id),
                "version": defn.version,
                "name": name,
                "title": defn.title,
                "status": "draft" if placeholder else "active",
                "subjectType": ["Patient"],
                "description": defn.instructions,
                "copyright": copyright_,
                "code": score_code,
                "item": [_item(codes, defn, item) for item in defn.items],
            }
        ),
    }


def questionnaires(
    definitions: dict[str, InstrumentDefinition], codes: FhirCodes
) -> list[Resource]:
    """The Questionnaires of ``definitions`` (id -> shipped definition), in id order."""
    return [questionnaire(definitions[key], codes) for key in sorted(definitions)]
