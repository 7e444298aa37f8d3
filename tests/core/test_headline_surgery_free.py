"""The surgery-free headline never claims "0 had surgery" when no arm has an estimate."""

from __future__ import annotations

from vertebra.core.analytics.headline import _surgery_free


def test_no_estimate_says_why_instead_of_zero_surgeries() -> None:
    arms = {"cell_therapy": {"n_patients": 8, "surgery_free": []}}
    head = _surgery_free(arms)
    assert head.value == "–"
    assert "0 had surgery" not in head.detail
    assert "Not estimated" in head.detail


def test_estimates_are_pooled_by_arm_size_with_the_surgeries_counted() -> None:
    point = {"months": 12.0, "survival": 0.8, "events_before": 3}
    other = {"months": 12.0, "survival": 0.6, "events_before": 7}
    arms = {
        "a": {"n_patients": 30, "surgery_free": [point]},
        "b": {"n_patients": 10, "surgery_free": [other]},
    }
    head = _surgery_free(arms)
    assert head.value == "75%"  # (30 × 0.8 + 10 × 0.6) / 40 = 0.75
    assert head.detail == "Kaplan–Meier; 10 had surgery by 12 months"
