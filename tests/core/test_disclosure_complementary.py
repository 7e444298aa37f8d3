"""Complementary suppression: no hidden cell of a time point comes back by subtraction from the
counts shown beside it (due = answered + missing; answered = responders + non-responders).
docs/algorithms/small-cells.md, CMS cell size suppression policy."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vertebra.core.disclosure import follow_up_hidden, is_small, suppress_values

K = 11


def rate(num: int, den: int) -> dict[str, Any]:
    return {"numerator": num, "denominator": den, "rate": num / den if den else None, "ci": None}


def timepoint(due: int, answered: int, responders: int) -> dict[str, Any]:
    """A report time point (the shape of ``TimepointOutcome.to_dict``), worst case: every
    answered questionnaire scored and paired."""
    return {
        "timepoint": "12m",
        "months": 12.0,
        "n_expected": due,
        "n_completed": answered,
        "n_missing": due - answered,
        "completeness": rate(answered, due),
        "odi": {
            "n_scored": answered,
            "mean": 30.0,
            "n_change": answered,
            "mean_change": -10.0,
            "mean_change_ci": [-12.0, -8.0],
            "responder_rate_completers": rate(responders, answered),
            "responder_rate_all": rate(responders, due),
        },
        "opioids": {"on_opioids": rate(answered // 2, answered)},
    }


def shown(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def known(tp: dict[str, Any]) -> dict[str, int]:
    """What a reader learns of the five cells from the shown counts, closed under the
    subtraction relations."""
    odi = tp["odi"]
    places = {
        "due": [
            tp["n_expected"],
            tp["completeness"]["denominator"],
            odi["responder_rate_all"]["denominator"],
        ],
        "answered": [
            tp["n_completed"],
            tp["completeness"]["numerator"],
            odi["n_scored"],
            odi["n_change"],
            odi["responder_rate_completers"]["denominator"],
            tp["opioids"]["on_opioids"]["denominator"],
        ],
        "missing": [tp["n_missing"]],
        "responders": [
            odi["responder_rate_completers"]["numerator"],
            odi["responder_rate_all"]["numerator"],
        ],
        "nonresponders": [],
    }
    out = {
        name: next(v for v in vs if shown(v)) for name, vs in places.items() if any(map(shown, vs))
    }
    relations = [("due", "answered", "missing"), ("answered", "responders", "nonresponders")]
    changed = True
    while changed:
        changed = False
        for total, a, b in relations:
            have = {total, a, b} & out.keys()
            if len(have) != 2:
                continue
            changed = True
            if total not in out:
                out[total] = out[a] + out[b]
            elif a not in out:
                out[a] = out[total] - out[b]
            else:
                out[b] = out[total] - out[a]
    return out


@given(
    due=st.integers(0, 60),
    answered_share=st.integers(0, 100),
    responder_share=st.integers(0, 100),
)
def test_no_hidden_cell_is_recoverable_by_subtraction(
    due: int, answered_share: int, responder_share: int
) -> None:
    answered = due * answered_share // 100
    responders = answered * responder_share // 100
    truth = {
        "due": due,
        "answered": answered,
        "missing": due - answered,
        "responders": responders,
        "nonresponders": answered - responders,
    }
    out = suppress_values(timepoint(due, answered, responders), K)
    learnt = known(out)
    for name, value in learnt.items():
        assert value == truth[name]  # what is shown is true
        assert not is_small(value, K), (name, truth)  # and no small cell is learnt


def test_a_small_missing_count_takes_the_answered_counts_with_it() -> None:
    """40 due, 35 answered, 5 missing: 40 stays, 35 and 5 and every count of those who
    answered go; the mean stays."""
    out = suppress_values(timepoint(40, 35, 20), K)
    assert follow_up_hidden(out, K)
    assert out["n_expected"] == 40
    assert out["n_completed"].suppressed and out["n_missing"].suppressed
    assert out["odi"]["n_scored"].suppressed
    assert out["odi"]["responder_rate_completers"]["rate"] is None
    assert out["odi"]["responder_rate_all"]["numerator"].suppressed
    assert out["odi"]["mean_change_ci"] is None
    assert out["odi"]["mean"] == 30.0
    assert out["opioids"]["on_opioids"]["denominator"].suppressed


def test_few_non_responders_hide_the_responders_of_both_rates() -> None:
    """50 due, 30 answered, 25 responders: 5 non-responders; both rates lose their numerator
    (else non-responders = 30 - 25 from the all-due rate's numerator)."""
    out = suppress_values(timepoint(50, 30, 25), K)
    assert not follow_up_hidden(out, K)
    assert out["n_completed"] == 30 and out["n_missing"] == 20
    assert out["odi"]["responder_rate_completers"]["numerator"].suppressed
    assert out["odi"]["responder_rate_all"]["numerator"].suppressed
    assert out["odi"]["responder_rate_all"]["rate"] is None


def test_nothing_small_nothing_hidden() -> None:
    out = suppress_values(timepoint(60, 40, 20), K)
    assert out["n_missing"] == 20 and out["n_completed"] == 40
    assert out["odi"]["responder_rate_all"] == rate(20, 60)
