"""Vertebra's own items: global rating of change, satisfaction, work status, opioid use and the
adverse-event tickler. Their scoring is trivial, but the result must be typed and exact."""

from __future__ import annotations

import pytest

from vertebra.core.instruments import InvalidAnswerError, score


@pytest.mark.parametrize(
    ("code", "band", "category"),
    [
        (1, "improved", "very_much_better"),
        (2, "improved", "much_better"),
        (3, "unchanged", "a_little_better"),
        (4, "unchanged", "about_the_same"),
        (5, "unchanged", "a_little_worse"),
        (6, "worse", "much_worse"),
        (7, "worse", "very_much_worse"),
    ],
)
def test_global_rating_of_change(code: int, band: str, category: str) -> None:
    result = score("global_rating_of_change", [code])
    assert result.score == float(code)
    assert result.band == band
    assert result.extras["category"] == category


@pytest.mark.parametrize(
    ("code", "band"),
    [(1, "dissatisfied"), (2, "dissatisfied"), (3, "neutral"), (4, "satisfied"), (5, "satisfied")],
)
def test_satisfaction(code: int, band: str) -> None:
    result = score("satisfaction", [code])
    assert (result.score, result.band) == (float(code), band)


def test_work_status_is_a_category_without_score() -> None:
    result = score("work_status", [4])
    assert result.score is None
    assert result.band == "off_work_back_pain"
    assert result.extras["category"] == "off_work_back_pain"
    assert score("work_status", [6]).band == "not_in_paid_work"
    assert score("work_status", [3]).band == "working"


def test_unanswered_single_items() -> None:
    for instrument in ("global_rating_of_change", "satisfaction", "work_status"):
        result = score(instrument, [None])
        assert result.score is None and result.band is None and result.items_answered == 0


def test_opioid_use_mme() -> None:
    """Oxycodone 10 mg twice a day = 20 mg/day x 1.5 = 30 MME/day (CDC 2022 worked example)."""
    result = score("opioid_use", {"current_use": 1, "opioid": "oxycodone", "daily_dose": 20})
    assert result.score == 30.0
    assert result.band == "opioid"
    assert result.extras["dose_unit"] == "mg/day"


def test_opioid_use_fentanyl_patch_is_mcg_per_hour() -> None:
    """Fentanyl 25 mcg/hr patch x 2.4 = 60 MME/day."""
    result = score("opioid_use", [1, "fentanyl_transdermal", 25])
    assert result.score == 60.0
    assert result.extras["dose_unit"] == "mcg/hr"


def test_no_opioid_scores_zero() -> None:
    result = score("opioid_use", [0, None, None])
    assert (result.score, result.band, result.items_answered) == (0.0, "no_opioid", 1)


def test_opioid_use_without_known_dose_is_not_scored_but_flagged() -> None:
    other = score("opioid_use", [1, "other", 50])
    assert other.score is None and other.band == "opioid"
    no_dose = score("opioid_use", [1, "tramadol", None])
    assert no_dose.score is None and no_dose.band == "opioid"
    unanswered = score("opioid_use", [None, None, None])
    assert unanswered.score is None and unanswered.band is None


def test_opioid_use_contradiction_and_bad_values() -> None:
    with pytest.raises(InvalidAnswerError, match="current_use is 0"):
        score("opioid_use", [0, "oxycodone", 20])
    with pytest.raises(InvalidAnswerError, match=r"'opioid'.*oxycodone"):
        score("opioid_use", [1, "heroin", 20])
    with pytest.raises(InvalidAnswerError, match=r"'daily_dose'.*a number from 0"):
        score("opioid_use", [1, "oxycodone", -5])


def test_tickler_clear() -> None:
    result = score("ae_tickler", [0, 0, 0, 0, 0, 0])
    assert (result.score, result.band) == (0.0, "clear")
    assert result.extras["positive_items"] == []


def test_tickler_escalate() -> None:
    """Harvest-site pain and an ER visit: 2 positives, neither a red flag -> escalate."""
    result = score("ae_tickler", [1, 0, 0, 0, 1, 0])
    assert (result.score, result.band) == (2.0, "escalate")
    assert result.extras["positive_items"] == ["new_harvest_site_pain", "hospital_or_er_visit"]
    assert result.extras["urgent_items"] == []


@pytest.mark.parametrize(
    "item",
    ["fever_or_infection_signs", "new_leg_weakness_or_numbness", "new_bladder_or_bowel_problem"],
)
def test_tickler_red_flags_are_urgent(item: str) -> None:
    result = score("ae_tickler", {item: 1})
    assert result.band == "urgent"
    assert result.extras["urgent_items"] == [item]
    # the other answers are missing: no count, but the "yes" is never hidden
    assert result.score is None


def test_tickler_incomplete_without_yes() -> None:
    result = score("ae_tickler", [0, 0, None, 0, 0, 0])
    assert (result.score, result.band) == (None, "incomplete")
