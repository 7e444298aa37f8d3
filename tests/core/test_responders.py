"""Responder classification (Ostelo et al., Spine 2008: ODI 10 points or 30%, NRS 2 or 30%,
RMDQ 5 or 30%; substantial >= 50%)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vertebra.core.responders import (
    NoResponderRuleError,
    classify_change,
    responder_rule,
    responder_rules,
)


def test_thresholds_are_the_published_ones() -> None:
    assert (responder_rule("odi").points, responder_rule("odi").percent) == (10, 30)
    assert (responder_rule("nrs_back").points, responder_rule("nrs_back").percent) == (2, 30)
    assert (responder_rule("rmdq").points, responder_rule("rmdq").percent) == (5, 30)
    assert responder_rule("odi").substantial_percent == 50
    assert responder_rule("promis_pf_4a").verified is False
    assert set(responder_rules()) >= {"odi", "nrs_back", "nrs_leg", "rmdq"}


def test_odi_points_rule() -> None:
    """ODI 50 -> 40: 10 points (20%) -> MCID by points; not substantial."""
    r = classify_change("odi", 50, 40)
    assert (r.change, r.improvement, r.pct_change) == (-10.0, 10.0, 20.0)
    assert r.mcid_met is True and r.substantial is False


def test_odi_points_rule_on_rounded_scores() -> None:
    """45.6 - 35.6 is 9.999999999999996 in floating point: still exactly 10 points."""
    assert classify_change("odi", 45.6, 35.6).mcid_met is True


def test_odi_percent_rule() -> None:
    """ODI 30 -> 21: 9 points (< 10) but 30% of baseline -> MCID by percentage."""
    r = classify_change("odi", 30, 21)
    assert r.pct_change == pytest.approx(30.0)
    assert r.mcid_met is True


def test_odi_below_both() -> None:
    """ODI 30 -> 22: 8 points and 26.7% -> not a responder."""
    r = classify_change("odi", 30, 22)
    assert r.mcid_met is False
    assert r.pct_change == pytest.approx(26.666, abs=1e-3)


def test_odi_substantial() -> None:
    """ODI 56.5 -> 25.0 (Pettine 2015 means): 31.5 points, 55.8% -> substantial."""
    r = classify_change("odi", 56.5, 25.0)
    assert r.mcid_met is True and r.substantial is True
    assert r.pct_change == pytest.approx(55.75, abs=0.01)


def test_worsening_is_never_a_response() -> None:
    r = classify_change("odi", 30, 50)
    assert r.improvement == -20.0 and r.mcid_met is False and r.substantial is False


@pytest.mark.parametrize(
    ("baseline", "follow_up", "mcid", "substantial"),
    [
        (7, 5, True, False),  # 2 points
        (3, 2, True, False),  # 1 point but 33%
        (8, 7, False, False),  # 1 point, 12.5%
        (7.1, 3.6, True, False),  # Beall 2025 means: 3.5 points, 49.3%
        (8, 4, True, True),  # 50%
    ],
)
def test_nrs(baseline: float, follow_up: float, mcid: bool, substantial: bool) -> None:
    r = classify_change("nrs_back", baseline, follow_up)
    assert (r.mcid_met, r.substantial) == (mcid, substantial)


def test_rmdq() -> None:
    assert classify_change("rmdq", 20, 15).mcid_met is True  # 5 points
    assert classify_change("rmdq", 10, 7).mcid_met is True  # 3 points = 30%
    assert classify_change("rmdq", 12, 9).mcid_met is False  # 3 points = 25%


def test_baseline_zero_uses_points_only() -> None:
    r = classify_change("nrs_back", 0, 0)
    assert r.pct_change is None
    assert r.mcid_met is False and r.substantial is False
    assert r.improvement == 0.0 and str(r.improvement) == "0.0"  # no negative zero


def test_higher_is_better_direction() -> None:
    """PROMIS PF (higher = better): 30.5 -> 35.6 is an improvement of 5.1 T-points (>= 5)."""
    r = classify_change("promis_pf_4a", 30.5, 35.6)
    assert r.improvement == pytest.approx(5.1)
    assert r.mcid_met is True
    assert r.pct_change is None and r.substantial is None  # no % rule for T-scores
    assert r.rule_verified is False
    assert classify_change("promis_pf_4a", 35.6, 30.5).mcid_met is False


def test_promis_pain_interference_decrease_is_improvement() -> None:
    r = classify_change("promis_pi_4a", 61.2, 55.6)
    assert r.improvement == pytest.approx(5.6) and r.mcid_met is True


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="outside the range 0-100"):
        classify_change("odi", 120, 30)
    with pytest.raises(ValueError, match="finite number"):
        classify_change("odi", float("nan"), 30)
    with pytest.raises(NoResponderRuleError, match="rules exist for"):
        classify_change("startback", 5, 3)


@settings(deadline=None)
@given(st.integers(0, 100), st.integers(0, 100))
def test_odi_rule_property(baseline: int, follow_up: int) -> None:
    r = classify_change("odi", baseline, follow_up)
    improvement = baseline - follow_up
    expected = improvement >= 10 or (baseline > 0 and improvement * 100 >= 30 * baseline)
    assert r.mcid_met is expected
    assert r.substantial is (baseline > 0 and improvement * 100 >= 50 * baseline)
    if r.substantial:
        assert r.mcid_met
    assert r.to_dict()["mcid_met"] is expected
