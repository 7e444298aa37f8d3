"""The bulk import's cache of scores (``importbulk._scored``) gives what the follow-up service's
scoring gives, refusals included, whatever was scored before.

Requirement ids: issue 16 (import speed; every refusal kept), ADR 0016.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.followup import services as followup_services
from vertebra.followup.errors import FollowUpError
from vertebra.interop import importbulk

NOW = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)
VALUE = st.one_of(
    st.integers(min_value=-1, max_value=11), st.booleans(), st.none(), st.just(3.0),
    st.just("3"),
)  # fmt: skip
ANSWERS = st.fixed_dictionaries({}, optional={"pain_back": VALUE, "other": VALUE})


def _outcome(call: Any) -> Any:
    try:
        return {k: r.to_dict() for k, r in call().items()}
    except FollowUpError as exc:
        return ("refused", type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None)
@given(
    ANSWERS,
    st.sampled_from(["1.0", "0.9"]),
    st.sampled_from([NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1)]),
    st.sampled_from(["nrs_back", "nrs_leg"]),
)
def test_cached_scores_equal_the_services(
    answers: dict[str, Any], version: str, authored: dt.datetime, instrument: str
) -> None:
    if instrument == "nrs_leg" and "pain_back" in answers:
        answers = {"pain_leg": answers.pop("pain_back"), **answers}
    given_ = {instrument: followup_services.ImportedAnswers(version, answers, authored)}
    direct = _outcome(lambda: followup_services._score_imported(given_, NOW))
    assert _outcome(lambda: importbulk._scored(given_, NOW)) == direct
    assert _outcome(lambda: importbulk._scored(given_, NOW)) == direct  # from the cache


def test_true_and_one_are_different_answers() -> None:
    one = {"nrs_back": followup_services.ImportedAnswers("1.0", {"pain_back": 1}, NOW)}
    true = {"nrs_back": followup_services.ImportedAnswers("1.0", {"pain_back": True}, NOW)}
    assert importbulk._score_key("nrs_back", one["nrs_back"]) != importbulk._score_key(
        "nrs_back", true["nrs_back"]
    )
    assert _outcome(lambda: importbulk._scored(one, NOW)) == _outcome(
        lambda: followup_services._score_imported(one, NOW)
    )
    assert _outcome(lambda: importbulk._scored(true, NOW)) == _outcome(
        lambda: followup_services._score_imported(true, NOW)
    )


@pytest.mark.parametrize("later", [dt.timedelta(seconds=1), dt.timedelta(days=400)])
def test_a_cached_answer_set_answered_in_the_future_is_refused(later: dt.timedelta) -> None:
    answers = {"pain_back": 4}
    ok = {"nrs_back": followup_services.ImportedAnswers("1.0", answers, NOW)}
    importbulk._scored(ok, NOW)
    future = {"nrs_back": followup_services.ImportedAnswers("1.0", answers, NOW + later)}
    with pytest.raises(FollowUpError, match="answered in the future"):
        importbulk._scored(future, NOW)
