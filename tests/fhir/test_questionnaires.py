"""Questionnaires (issue 15): one per instrument, valid R4, and every QuestionnaireResponse the
export writes fits its Questionnaire (linkIds, answer values, ordinal values)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fhir.conftest import BASE
from vertebra.core.fhir import FhirCodes, ResponseRecord, fhir_codes, validate_resource
from vertebra.core.fhir.questionnaires import ORDINAL_VALUE, questionnaire_id, questionnaires
from vertebra.core.fhir.responses import questionnaire_response
from vertebra.core.instruments import PLACEHOLDER_MARKER, InstrumentDefinition
from vertebra.core.instruments.registry import builtin_definitions

AT = dt.datetime(2025, 10, 17, 12, 0, tzinfo=dt.UTC)
CODES = fhir_codes()
DEFINITIONS = dict(builtin_definitions())
BY_URL = {q["url"]: q for q in questionnaires(DEFINITIONS, CODES)}


def ext(element: dict[str, Any], url: str) -> Any:
    found = [e for e in element.get("extension", []) if e["url"] == url]
    return next(iter(v for k, v in found[0].items() if k.startswith("value"))) if found else None


def test_one_valid_questionnaire_per_instrument_at_the_canonical_responses_name(
    codes: FhirCodes,
) -> None:
    assert set(BY_URL) == {f"{BASE}/Questionnaire/{key}" for key in DEFINITIONS}
    for url, item in BY_URL.items():
        validate_resource(item)
        instrument = url.rsplit("/", 1)[1]
        assert item["id"] == questionnaire_id(instrument) == instrument.replace("_", "-")
        assert item["version"] == DEFINITIONS[instrument].version
        assert [i["linkId"] for i in item["item"]] == list(DEFINITIONS[instrument].item_ids)


def test_odi_options_carry_their_ordinal_value_and_placeholder_wording_is_marked() -> None:
    odi = BY_URL[f"{BASE}/Questionnaire/odi"]
    first = odi["item"][0]
    assert first["linkId"] == "pain_intensity" and first["type"] == "choice"
    assert [o["valueInteger"] for o in first["answerOption"]] == [0, 1, 2, 3, 4, 5]
    assert [ext(o, ORDINAL_VALUE) for o in first["answerOption"]] == [0, 1, 2, 3, 4, 5]
    # Licensed (Mapi): placeholder wording, marked three ways.
    assert odi["status"] == "draft"
    assert ext(odi, f"{BASE}/StructureDefinition/placeholder-text") is True
    assert PLACEHOLDER_MARKER in first["text"] and "Mapi Research Trust" in odi["copyright"]
    assert "Fairbank" in ext(odi, f"{BASE}/StructureDefinition/scoring-rule")
    assert {"system": f"{BASE}/CodeSystem/instrument", "code": "odi"}.items() <= odi["code"][
        0
    ].items()


def test_shipped_wording_is_active_and_unmarked() -> None:
    nrs = BY_URL[f"{BASE}/Questionnaire/nrs_leg"]
    assert nrs["status"] == "active"
    assert ext(nrs, f"{BASE}/StructureDefinition/placeholder-text") is False
    assert nrs["item"][0]["text"].startswith("On average over the past 7 days")


@st.composite
def responses(draw: st.DrawFn) -> tuple[InstrumentDefinition, dict[str, Any]]:
    """An instrument and an answer set of its own options (some items unanswered)."""
    defn = DEFINITIONS[draw(st.sampled_from(sorted(DEFINITIONS)))]
    answers: dict[str, Any] = {}
    for item in defn.items:
        if draw(st.booleans()) and draw(st.booleans()):
            continue
        if item.type == "number":
            low = item.minimum if item.minimum is not None else 0
            high = item.maximum if item.maximum is not None else 1000
            answers[item.id] = draw(st.integers(int(low), int(high)))
        else:
            answers[item.id] = draw(st.sampled_from(item.codes))
    return defn, answers


@settings(max_examples=150, deadline=None)
@given(responses())
def test_every_response_fits_its_questionnaire(
    case: tuple[InstrumentDefinition, dict[str, Any]],
) -> None:
    defn, answers = case
    record = ResponseRecord(1, 2, 3, "month_3", defn.id, defn.version, answers, None, "", AT)
    qr = questionnaire_response(record, CODES)
    url, version = qr["questionnaire"].split("|")
    form = BY_URL[url]
    assert version == form["version"]
    questions = {q["linkId"]: q for q in form["item"]}
    for item in qr.get("item", []):
        question = questions[item["linkId"]]
        (answer,) = item["answer"]
        if question["type"] == "decimal":
            assert set(answer) == {"valueDecimal"}
        elif "valueInteger" in answer:
            assert answer["valueInteger"] in [
                o.get("valueInteger") for o in question["answerOption"]
            ]
        else:
            codes = [o["valueCoding"]["code"] for o in question["answerOption"]]
            assert answer["valueCoding"]["code"] in codes
