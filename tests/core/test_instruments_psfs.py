"""PSFS (Stratford 1995): score = mean of the rated activities (0-10), unrated ones left out.

Values are checked against a hand-worked case and, for any response, against exact fractions.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.instruments import InvalidAnswerError, get_definition, score

PROPERTY = settings(max_examples=300, deadline=None)
RATING = st.integers(0, 10)


def _exact_mean(ratings: list[int]) -> float:
    """Mean rounded half-up to 2 decimals, by exact fractions (independent of the scorer)."""
    mean = Fraction(sum(ratings), len(ratings))
    return float(int(mean * 100 + Fraction(1, 2)) / Fraction(100))


def test_paper_rule_hand_worked() -> None:
    # Three activities rated 3, 5 and 7: (3 + 5 + 7) / 3 = 5.0.
    assert score("psfs", {"activity_1": 3, "activity_2": 5, "activity_3": 7}).score == 5.0
    # Two rated 2 and 3: 2.5; unrated activities are not zeros.
    assert score("psfs", [2, 3, None, None, None]).score == 2.5
    # 1, 2, 2: 5/3 = 1.666... -> 1.67 (half-up, 2 decimals).
    assert score("psfs", [1, 2, 2, None, None]).score == 1.67


def test_nothing_rated_is_unscored() -> None:
    result = score("psfs", [None] * 5)
    assert result.score is None
    assert "at least 1" in str(result.extras["unscored_reason"])


def test_out_of_range_rating_is_refused() -> None:
    with pytest.raises(InvalidAnswerError, match="activity_2"):
        score("psfs", [3, 11, None, None, None])


def test_definition_carries_source_and_mcid() -> None:
    defn = get_definition("psfs")
    assert defn.direction == "higher_is_better"
    assert (defn.range_min, defn.range_max) == (0, 10)
    assert len(defn.items) == 5
    assert defn.scoring.params["mcid_points"] == 2.0
    assert "Stratford" in defn.scoring.source
    assert any("MCID" in u for u in defn.scoring.unverified)


@PROPERTY
@given(st.lists(st.one_of(st.none(), RATING), min_size=5, max_size=5))
def test_score_is_exact_mean_of_rated(answers: list[int | None]) -> None:
    rated = [a for a in answers if a is not None]
    result = score("psfs", answers)
    assert result.items_answered == len(rated)
    if not rated:
        assert result.score is None
    else:
        assert result.score == _exact_mean(rated)
        assert min(rated) <= result.score <= max(rated)


@PROPERTY
@given(st.lists(RATING, min_size=1, max_size=5), st.permutations(range(5)))
def test_order_and_position_do_not_matter(ratings: list[int], order: list[int]) -> None:
    """Which slot an activity sits in does not change the mean."""
    answers: list[int | None] = [None] * 5
    for slot, rating in zip(order, ratings, strict=False):
        answers[slot] = rating
    assert (
        score("psfs", answers).score == score("psfs", ratings + [None] * (5 - len(ratings))).score
    )


@PROPERTY
@given(st.lists(RATING, min_size=1, max_size=5))
def test_same_rating_everywhere_is_that_rating(ratings: list[int]) -> None:
    r = ratings[0]
    assert score("psfs", [r] * len(ratings) + [None] * (5 - len(ratings))).score == float(r)


def test_cli_scores_three_activities(cli: Any) -> None:
    proc = cli("score", "psfs", "--answers", "3,5,7")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["score"], out["items_answered"], out["items_total"]) == (5.0, 3, 5)


def test_cli_refuses_more_than_five(cli: Any) -> None:
    proc = cli("score", "psfs", "--answers", "1,2,3,4,5,6")
    assert proc.returncode == 2
    assert "expected 5 answers" in proc.stderr
