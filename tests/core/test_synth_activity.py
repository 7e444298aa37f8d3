"""Synthetic work status and PSFS: the stories' own words, scorer-exact means, modest
trajectories, determinism for a seed, and return-to-work / activity figures in the report."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from vertebra.core.analytics.report import build_report
from vertebra.core.analytics.schema import AnalysisTables
from vertebra.core.instruments import score
from vertebra.core.synth.generator import generate_cohort

TODAY = date(2026, 12, 1)


@pytest.fixture(scope="module")
def cohort():  # type: ignore[no-untyped-def]
    return generate_cohort(600, seed=11, today=TODAY)


def test_stories_carry_their_own_words(cohort) -> None:  # type: ignore[no-untyped-def]
    p = cohort.patients.set_index("story")
    assert p.loc["office_worker", "psfs_activity_1"] == "walking for more than 20 minutes"
    assert p.loc["fitness_enthusiast", "psfs_activity_1"] == "a light gym workout"
    assert p.loc["retired_teacher", "psfs_activity_1"] == "my daily walk to the park"
    tp = cohort.timepoints
    anna = tp[tp["patient_id"] == 1].set_index("timepoint")
    assert anna.loc["baseline", "psfs"] == 5.0  # (3 + 5 + 7) / 3, as `vertebra score psfs`
    assert anna.loc["month_12", "psfs"] == 7.0
    assert anna.loc["baseline", "work_status_band"] == "off_work_back_pain"
    assert anna.loc["month_6", "work_status_band"] == "working"
    ruth = tp[tp["patient_id"] == 3].set_index("timepoint")
    assert ruth.loc["baseline", "work_status_band"] == "not_in_paid_work"  # retired


def test_psfs_mean_is_the_scorer_and_ratings_fit(cohort) -> None:  # type: ignore[no-untyped-def]
    tp = cohort.timepoints
    items = [f"psfs_{k}" for k in range(1, 6)]
    rows = tp[tp["completed"]].head(400)
    for _, row in rows.iterrows():
        answers = [None if pd.isna(row[c]) else int(row[c]) for c in items]
        expected = score("psfs", answers).score
        assert (np.isnan(row["psfs"]) and expected is None) or row["psfs"] == expected
    # Activities named at baseline: no rating where the patient named no activity.
    named = cohort.patients.set_index("patient_id")[[f"psfs_activity_{k}" for k in range(1, 6)]]
    merged = tp.join(named.notna(), on="patient_id")
    for k in range(1, 6):
        assert not (merged[f"psfs_{k}"].notna() & ~merged[f"psfs_activity_{k}"]).any()
    assert not tp.loc[~tp["completed"], ["psfs", "work_status"]].notna().any().any()


def test_trajectories_are_modest(cohort) -> None:  # type: ignore[no-untyped-def]
    tp = cohort.timepoints[cohort.timepoints["completed"]]
    mean = tp.groupby("timepoint", observed=True)["psfs"].mean()
    assert 2.5 < mean["baseline"] < 5.5
    gain = mean["month_12"] - mean["baseline"]
    assert 0.5 < gain < 3.0  # a modest average gain, not a miracle
    base = tp[tp["timepoint"] == "baseline"]["work_status_band"].value_counts(normalize=True)
    assert 0.08 < base["off_work_back_pain"] < 0.3


def test_deterministic_for_a_seed() -> None:
    a = generate_cohort(150, seed=5, today=TODAY)
    b = generate_cohort(150, seed=5, today=TODAY)
    cols = ["psfs", "work_status", "psfs_1", "psfs_5"]
    pd.testing.assert_frame_equal(a.timepoints[cols], b.timepoints[cols])
    pd.testing.assert_frame_equal(a.patients.filter(like="psfs_"), b.patients.filter(like="psfs_"))


def test_report_json_has_return_keys(cohort) -> None:  # type: ignore[no-untyped-def]
    t = AnalysisTables.of(cohort.patients, cohort.timepoints, cohort.events)
    d = build_report(t, as_of=TODAY).to_dict()
    rtw, rta = d["return_to_work"], d["return_to_activity"]
    assert rtw["available"] and rta["available"]
    n_off = sum(p["off_work_back_pain"]["n"] for p in rtw["population"].values())
    in_curves = sum(c["n"] for c in rtw["curves"].values())
    no_fu = sum(p["no_follow_up"]["n"] for p in rtw["population"].values())
    assert in_curves == n_off - no_fu
    for arm, groups in rtw["population"].items():  # groups add up to the arm's patients
        total = sum(v["n"] for g, v in groups.items() if g != "no_follow_up")
        assert total == d["arms"][arm]["n_patients"]
    for c in rta["curves"].values():
        returned = [p["returned"] for p in c["landmarks"] if p["returned"] is not None]
        assert returned == sorted(returned)  # a cumulative share never falls


def test_html_report_shows_returns_with_denominators(cohort) -> None:  # type: ignore[no-untyped-def]
    from vertebra.core.analytics.html import render_html

    t = AnalysisTables.of(cohort.patients, cohort.timepoints, cohort.events)
    html = render_html(build_report(t, as_of=TODAY, min_cell=11))
    assert "<h2>Return to work and to activity</h2>" in html
    assert "Off work because of the back" in html and "Working at baseline" in html
    assert "Return to activity: PSFS gain of at least the MCID" in html
    assert "fewer than 11 (suppressed)" in html  # small groups of a 600-patient cohort
