"""Property: any valid scored response maps to a valid QuestionnaireResponse and Observation
whose value is the stored score, and the QuestionnaireResponse alone gives the score back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from vertebra.core.fhir import FhirCodes, ResponseRecord, fhir_codes, validate_resource
from vertebra.core.fhir.parse import parse_response
from vertebra.core.fhir.responses import opioid_statement, questionnaire_response, score_observation
from vertebra.core.instruments import (
    InvalidAnswerError,
    Item,
    get_definition,
    list_instruments,
    score,
)

INSTRUMENTS = sorted(d.id for d in list_instruments())
PROPERTY = settings(max_examples=150, deadline=None)


def _answer(item: Item) -> st.SearchStrategy[Any]:
    """A valid stored answer for ``item``, or None (missing)."""
    if item.type == "number":
        low, high = item.minimum or 0.0, item.maximum or 1000.0
        value: st.SearchStrategy[Any] = st.one_of(
            st.integers(int(low), int(high)),
            st.floats(low, high, allow_nan=False, allow_infinity=False),
        )
    else:
        value = st.sampled_from(list(item.codes))
    return st.one_of(st.none(), value)


@st.composite
def stored_responses(draw: st.DrawFn) -> ResponseRecord:
    """A response as the registry stores it: answers, and the core scorer's score and band."""
    instrument_id = draw(st.sampled_from(INSTRUMENTS))
    defn = get_definition(instrument_id)
    answers = {item.id: draw(_answer(item)) for item in defn.items}
    try:
        result = score(instrument_id, answers)
    except InvalidAnswerError:
        reject()  # e.g. a dose with "no opioid": the registry would never have stored it
    when = draw(
        st.datetimes(dt.datetime(2015, 1, 1), dt.datetime(2030, 1, 1), timezones=st.just(dt.UTC))
    )
    return ResponseRecord(
        id=draw(st.integers(1, 10**9)),
        patient_id=draw(st.integers(1, 10**9)),
        episode_id=draw(st.integers(1, 10**9)),
        time_point_key=draw(st.sampled_from(["baseline", "week_6", "month_3", "month_12"])),
        instrument_id=instrument_id,
        instrument_version=result.version,
        answers=answers,
        score=result.score,
        band=result.band or "",
        submitted_at=when.replace(microsecond=0),
    )


@PROPERTY
@given(stored_responses())
def test_response_maps_to_valid_resources_that_keep_the_score(record: ResponseRecord) -> None:
    codes: FhirCodes = fhir_codes()
    qr = questionnaire_response(record, codes)
    validate_resource(qr)
    observation = score_observation(record, codes)
    spec = codes.instruments[record.instrument_id]
    if spec.value == "category":
        assert (observation is None) == (not record.band)
        if observation is not None:
            assert observation["valueCodeableConcept"]["coding"][0]["code"] == record.band
    elif record.score is None:
        assert observation is None
    else:
        assert observation is not None
        assert observation["valueQuantity"]["value"] == record.score
    if observation is not None:
        validate_resource(observation)
        assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    statement = opioid_statement(record, codes)
    if statement is not None:
        validate_resource(statement)

    # The QuestionnaireResponse alone carries enough to recompute the same score.
    back = parse_response(qr, codes)
    assert back.instrument_id == record.instrument_id
    assert back.instrument_version == record.instrument_version
    assert back.time_point_key == record.time_point_key
    assert back.authored == record.submitted_at
    answered = {k: v for k, v in record.answers.items() if v is not None}
    assert dict(back.answers) == answered
    again = score(record.instrument_id, dict(back.answers))
    assert again.score == record.score and (again.band or "") == record.band
