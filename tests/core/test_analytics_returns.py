"""Time to return to work / activity: definitions on a hand-worked cohort, and the KM figures
checked against an independent lifelines fit on the per-patient durations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from vertebra.core.analytics.returns import km_returns, return_to_activity, return_to_work

MONTHS = (0.0, 1.5, 3.0, 6.0, 12.0, 24.0)


def _tables(rows: dict[int, tuple[str, list[object], list[object]]]) -> tuple[pd.DataFrame, ...]:
    """patient id -> (arm, work bands per time point, PSFS per time point); None = unanswered."""
    patients = pd.DataFrame({"patient_id": list(rows), "arm": [arm for arm, _, _ in rows.values()]})
    tp = []
    for pid, (_, work, psfs) in rows.items():
        for j, m in enumerate(MONTHS):
            w = work[j] if j < len(work) else None
            p = psfs[j] if j < len(psfs) else None
            tp.append(
                {
                    "patient_id": pid,
                    "months": m,
                    "completed": w is not None or p is not None,
                    "work_status_band": w,
                    "psfs": np.nan if p is None else float(p),  # type: ignore[arg-type]
                }
            )
    return patients, pd.DataFrame(tp)


OFF, WORK, RET = "off_work_back_pain", "working", "not_in_paid_work"


def test_return_to_work_definition_hand_worked() -> None:
    patients, tp = _tables(
        {
            1: ("a", [OFF, OFF, WORK, WORK], []),  # returns at 3 months
            2: ("a", [OFF, OFF, OFF, OFF, OFF], []),  # censored at 12
            3: ("a", [OFF, None, None, WORK], []),  # returns at 6 (first report)
            4: ("a", [WORK, WORK], []),  # working at baseline: counted, not at risk
            5: ("a", [RET, RET, RET], []),  # retired: excluded
            6: ("a", [OFF], []),  # no follow-up: counted, not in the curve
            7: ("a", [None, WORK], []),  # no baseline answer
        }
    )
    res = return_to_work(patients, tp, ["a"])
    pop = res.population["a"]
    assert pop["off_work_back_pain"] == 4
    assert pop["working"] == 1
    assert pop["not_in_paid_work"] == 1
    assert pop["no_baseline_answer"] == 1
    assert pop["no_follow_up"] == 1
    curve = res.curves["a"]
    assert (curve.n, curve.events) == (3, 2)
    # KM by hand: at 3 mo 1 of 3 returns -> S = 2/3; at 6 mo 1 of 2 -> S = 1/3; 12: censored.
    by_month = {p.months: p for p in curve.landmarks}
    assert by_month[3.0].survival == pytest.approx(2 / 3)
    assert by_month[6.0].survival == pytest.approx(1 / 3)
    assert by_month[6.0].at_risk == 2 and by_month[6.0].events_before == 2
    assert by_month[12.0].survival == pytest.approx(1 / 3) and by_month[12.0].at_risk == 1
    assert by_month[24.0].survival is None  # no one followed that long
    assert curve.median_months == 6.0
    d = res.to_dict()
    assert d["curves"]["a"]["landmarks"][0]["returned"] == pytest.approx(1 / 3)
    assert d["population"]["a"]["off_work_back_pain"] == {"n": 4}
    assert d["eligible_group"] == "off_work_back_pain"


def test_return_to_activity_needs_mcid_gain() -> None:
    patients, tp = _tables(
        {
            1: ("a", [], [5.0, 6.0, 7.0]),  # +2.0 at 3 months: returns
            2: ("a", [], [5.0, 6.5, 6.9, 6.9]),  # never +2: censored at 6
            3: ("a", [], [9.0, 10.0]),  # near ceiling: not eligible
            4: ("b", [], [3.0, 3.0, 3.0, 3.0, 6.0]),  # returns at 12 months
        }
    )
    res = return_to_activity(patients, tp, ["a", "b"], mcid=2.0)
    assert res.population["a"]["room_to_improve"] == 2
    assert res.population["a"]["near_ceiling"] == 1
    a, b = res.curves["a"], res.curves["b"]
    assert (a.n, a.events) == (2, 1)
    assert {p.months: p.survival for p in a.landmarks}[3.0] == pytest.approx(0.5)
    assert (b.n, b.events, b.median_months) == (1, 1, 12.0)


def test_work_band_from_the_answer_code() -> None:
    """A research export carries the code (1-9); the band comes from work_status.yaml."""
    tp = pd.DataFrame({"work_status": [1, 3, 4, 6, 9, None]})
    from vertebra.core.analytics.returns import work_bands

    bands = work_bands(tp)
    assert bands[:5].tolist() == [
        "working", "working", "off_work_back_pain", "not_in_paid_work", "other",
    ]  # fmt: skip
    assert pd.isna(bands[5])


def test_missing_columns_are_not_an_error() -> None:
    patients, tp = _tables({1: ("a", [OFF, WORK], [])})
    res = return_to_activity(patients, tp.drop(columns="psfs"), ["a"], mcid=2.0)
    assert not res.available and res.curves == {}


def test_km_equals_independent_lifelines_fit() -> None:
    rng = np.random.default_rng(7)
    n = 400
    arms = rng.choice(["bmac", "physical_therapy"], n)
    visit = np.array(MONTHS[1:])
    months = visit[rng.integers(0, len(visit), n)]
    returned = rng.random(n) < 0.55
    curves = km_returns(arms, months, returned)
    for arm, curve in curves.items():
        sel = arms == arm
        kmf = KaplanMeierFitter().fit(months[sel], returned[sel])
        assert curve.n == int(sel.sum()) and curve.events == int(returned[sel].sum())
        for p in curve.landmarks:
            if p.survival is None:
                continue
            assert p.survival == pytest.approx(float(kmf.predict(p.months)), abs=1e-12)
            ci = kmf.confidence_interval_survival_function_
            row = ci.loc[ci.index <= p.months].iloc[-1]
            assert p.ci == pytest.approx((row.iloc[0], row.iloc[1]), abs=1e-12)
            assert p.at_risk == int((months[sel] >= p.months).sum())
        assert curve.median_months == float(kmf.median_survival_time_)


def test_complementary_suppression_of_population() -> None:
    from vertebra.core.analytics.returns import protected_counts

    groups = {"working": 40, "off_work_back_pain": 30, "not_in_paid_work": 3, "other": 0,
              "no_baseline_answer": 20, "no_follow_up": 12}  # fmt: skip
    # one small group: the next smallest non-zero group goes too (the total is shown)
    assert protected_counts(groups, "off_work_back_pain", 11) == {"no_baseline_answer"}
    # a small no_follow_up: the eligible group goes (curve n = eligible - no_follow_up)
    groups2 = {**groups, "not_in_paid_work": 15, "no_follow_up": 2}
    hidden = protected_counts(groups2, "off_work_back_pain", 11)
    assert "off_work_back_pain" in hidden and len(hidden) == 2
    assert protected_counts(groups, "off_work_back_pain", None) == set()
