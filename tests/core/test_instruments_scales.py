"""NRS, RMDQ, PROMIS and STarT Back scoring against the published rules and tables."""

from __future__ import annotations

import pytest

from vertebra.core.instruments import InvalidAnswerError, score

# The full rows for raw sums 4..20 exactly as listed in clinical.md section 1 (typed here
# independently of the YAML files so that a typo in either is caught).
PF_4A_ROW = [22.5, 26.6, 28.9, 30.5, 31.9, 33.2, 34.4, 35.6, 36.7, 37.9, 39.2, 40.5, 41.9, 43.5,
             45.5, 48.3, 57.0]  # fmt: skip
PI_4A_ROW = [41.6, 49.6, 52.0, 53.9, 55.6, 57.1, 58.5, 59.9, 61.2, 62.5, 63.8, 65.2, 66.6, 68.0,
             69.7, 71.6, 75.6]  # fmt: skip


def _answers_for_raw(raw: int) -> list[int]:
    """Four items coded 1-5 summing to `raw` (fill from the first item)."""
    answers = [1, 1, 1, 1]
    extra = raw - 4
    for i in range(4):
        step = min(4, extra)
        answers[i] += step
        extra -= step
    return answers


# --- NRS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("instrument", ["nrs_back", "nrs_leg"])
def test_nrs_score_is_the_number(instrument: str) -> None:
    assert score(instrument, [7]).score == 7.0
    assert score(instrument, [0]).score == 0.0
    assert score(instrument, [10]).score == 10.0
    missing = score(instrument, [None])
    assert missing.score is None and missing.items_answered == 0


def test_nrs_rejects_out_of_range() -> None:
    with pytest.raises(InvalidAnswerError, match=r"'pain_back'.*0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"):
        score("nrs_back", [11])
    assert score("nrs_leg", {"pain_leg": 4}).score == 4.0


# --- RMDQ -------------------------------------------------------------------------------------


def test_rmdq_counts_yes() -> None:
    """7 statements ticked (yes = 1) out of 24 -> 7."""
    answers = [1] * 7 + [0] * 17
    result = score("rmdq", answers)
    assert result.score == 7.0
    assert score("rmdq", [1] * 24).score == 24.0
    assert score("rmdq", [0] * 24).score == 0.0


def test_rmdq_requires_every_item() -> None:
    """Vertebra's choice: an unanswered statement means no score (not 'no')."""
    result = score("rmdq", [1] * 23 + [None])
    assert result.score is None
    assert result.items_answered == 23


def test_rmdq_accepts_booleans_for_yes_no() -> None:
    assert score("rmdq", [True] * 5 + [False] * 19).score == 5.0


# --- PROMIS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", range(4, 21))
def test_promis_tables_match_reference_rows(raw: int) -> None:
    """Every raw sum 4..20 converts to the T-score listed in clinical.md section 1."""
    answers = _answers_for_raw(raw)
    assert sum(answers) == raw
    pf = score("promis_pf_4a", answers)
    pi = score("promis_pi_4a", answers)
    assert pf.score == PF_4A_ROW[raw - 4]
    assert pi.score == PI_4A_ROW[raw - 4]
    assert pf.extras["raw"] == raw and pf.extras["prorated"] is False


def test_promis_pf_standard_errors_where_known() -> None:
    """SE is reported for raw 4, 5, 6, 20 (PF-4a v2.0) and None where unknown."""
    assert score("promis_pf_4a", [1, 1, 1, 1]).extras["se"] == 4.0
    assert score("promis_pf_4a", [5, 5, 5, 5]).extras["se"] == 6.6
    assert score("promis_pf_4a", [3, 3, 3, 3]).extras["se"] is None
    assert score("promis_pi_4a", [3, 3, 3, 3]).extras["se"] is None


def test_promis_proration_three_items() -> None:
    """3 of 4 answered, raw 5+5+4 = 14: 14 x 4 / 3 = 18.67 -> rounded up to 19 -> PF T 48.3."""
    result = score("promis_pf_4a", [5, 5, 4, None])
    assert result.extras["raw"] == 14
    assert result.extras["raw_used"] == 19
    assert result.extras["prorated"] is True
    assert result.score == 48.3


def test_promis_proration_two_items_exact() -> None:
    """2 of 4 answered (50%), raw 2+3 = 5: 5 x 4 / 2 = 10 exactly -> PI T 58.5."""
    result = score("promis_pi_4a", [2, None, 3, None])
    assert result.extras["raw_used"] == 10
    assert result.score == 58.5


def test_promis_fewer_than_half_answered_is_not_scored() -> None:
    result = score("promis_pi_4a", [4, None, None, None])
    assert result.score is None
    assert result.items_answered == 1


def test_promis_codes_are_1_to_5() -> None:
    with pytest.raises(InvalidAnswerError, match=r"'pf4a_1'.*1, 2, 3, 4, 5"):
        score("promis_pf_4a", [0, 1, 1, 1])


# --- STarT Back -------------------------------------------------------------------------------
# Hill et al. 2008 order: 1 referred leg pain, 2 shoulder/neck pain, 3 walking, 4 dressing,
# 5 fear, 6 anxiety, 7 catastrophising, 8 low mood, 9 bothersomeness (0-4; positive at 3-4).


def test_startback_all_negative_is_low() -> None:
    result = score("startback", [0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert (result.score, result.band, result.extras["psychosocial_subscale"]) == (0.0, "low", 0)


def test_startback_total_3_is_low() -> None:
    """Items 1, 2, 3 agree: total 3 -> low (0-3), whatever the subscale."""
    result = score("startback", [1, 1, 1, 0, 0, 0, 0, 0, 2])
    assert (result.score, result.band) == (3.0, "low")


def test_startback_medium() -> None:
    """Items 1 + fear + anxiety + catastrophising: total 4, subscale 3 -> medium."""
    result = score("startback", [1, 0, 0, 0, 1, 1, 1, 0, 0])
    assert (result.score, result.band, result.extras["psychosocial_subscale"]) == (
        4.0,
        "medium",
        3,
    )


def test_startback_high() -> None:
    """Fear, anxiety, catastrophising, low mood: total 4, subscale 4 -> high."""
    result = score("startback", [0, 0, 0, 0, 1, 1, 1, 1, 0])
    assert (result.score, result.band, result.extras["psychosocial_subscale"]) == (
        4.0,
        "high",
        4,
    )


@pytest.mark.parametrize(("bother", "counts"), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)])
def test_startback_bothersomeness_positive_only_at_very_much_or_extremely(
    bother: int, counts: int
) -> None:
    """Items 1-3 + fear + anxiety + catastrophising agree (total 6, subscale 3 -> medium);
    a bothersomeness of 3 or 4 adds 1 to both total and subscale (7, 4 -> high)."""
    result = score("startback", [1, 1, 1, 0, 1, 1, 1, 0, bother])
    assert result.score == 6.0 + counts
    assert result.extras["psychosocial_subscale"] == 3 + counts
    assert result.band == ("high" if counts else "medium")


def test_startback_maximum() -> None:
    result = score("startback", [1, 1, 1, 1, 1, 1, 1, 1, 4])
    assert (result.score, result.band, result.extras["psychosocial_subscale"]) == (9.0, "high", 5)


def test_startback_needs_every_item() -> None:
    result = score("startback", [1, 1, 1, 1, 1, 1, 1, 1, None])
    assert result.score is None and result.band is None


def test_startback_mapping_by_content_ids() -> None:
    """The subscale is defined by item content, so a mapping by content id scores the same."""
    result = score(
        "startback",
        {
            "referred_leg_pain": 0,
            "comorbid_shoulder_neck_pain": 0,
            "walking_disability": 0,
            "dressing_disability": 0,
            "fear": 1,
            "anxiety": 1,
            "catastrophising": 1,
            "low_mood": 1,
            "bothersomeness": 0,
        },
    )
    assert result.band == "high"


def test_startback_rejects_bad_codes() -> None:
    with pytest.raises(InvalidAnswerError, match=r"'bothersomeness'.*0, 1, 2, 3, 4"):
        score("startback", [0, 0, 0, 0, 0, 0, 0, 0, 5])
    with pytest.raises(InvalidAnswerError, match=r"'fear'.*0, 1"):
        score("startback", [0, 0, 0, 0, 2, 0, 0, 0, 0])
