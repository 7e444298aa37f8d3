"""Surgery-free survival says what it counts and how (issue 18).

* The 95 % CI is lifelines' log(-log) ("exponential Greenwood", Kalbfleisch-Prentice) interval,
  recomputed here by hand, and the report names the method.
* The log-rank test compares like with like: time to conversion across the non-surgical arms;
  the surgical arm's curve counts re-operations and is left out of the test.
* The report's note on "expected" says what the code does (window closed, not due date).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]
from lifelines.statistics import multivariate_logrank_test  # type: ignore[import-untyped]

from vertebra.core.analytics import AnalysisTables, CohortFilter, build_panel
from vertebra.core.analytics.cohort import due_by
from vertebra.core.analytics.report import HONESTY_NOTES
from vertebra.core.analytics.survival import (
    CI_METHOD,
    CONVERSION,
    REOPERATION,
    surgery_free_survival,
)
from vertebra.core.analytics.toy import toy_tables

AS_OF = date(2026, 11, 25)


def _with_surgery_arm() -> AnalysisTables:
    """toy_tables with the steroid arm relabelled as surgery (so its surgeries are re-ops)."""
    t = toy_tables(3000, seed=5)
    arm = t.patients["arm"].astype(str).replace({"steroid_injection": "surgery"})
    return AnalysisTables.of(t.patients.assign(arm=arm), t.timepoints, t.events)


def _raw_durations(tables: AnalysisTables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per patient: days to first surgery or to the cut-off, event flag, arm."""
    pts = tables.patients
    assert tables.events is not None
    ev = tables.events[tables.events["kind"] == "subsequent_surgery"]
    surg = pts["patient_id"].map(ev.groupby("patient_id")["date"].min())
    treat = pd.to_datetime(pts["treatment_date"])
    cens = (pd.Timestamp(AS_OF) - treat).dt.days
    dur = np.where(surg.notna(), (surg - treat).dt.days, cens).astype(float)
    return dur, surg.notna().to_numpy(), pts["arm"].astype(str).to_numpy()


def test_logrank_compares_conversions_only_and_matches_lifelines() -> None:
    tables = _with_surgery_arm()
    panel = build_panel(tables, CohortFilter(), AS_OF)
    assert tables.events is not None
    res = surgery_free_survival(panel, tables.events, AS_OF)
    assert res.logrank is not None
    assert "surgery" not in res.logrank.arms
    assert res.logrank.excluded == ("surgery",)
    assert res.logrank.df == len(res.logrank.arms) - 1 == 2
    dur, event, arm = _raw_durations(tables)
    keep = arm != "surgery"
    ref = multivariate_logrank_test(dur[keep], arm[keep], event[keep])
    assert res.logrank.statistic == pytest.approx(ref.test_statistic, rel=1e-9)
    assert res.logrank.p_value == pytest.approx(ref.p_value, rel=1e-6)
    # Each curve names its event; the surgical arm's is a re-operation.
    assert res.curves["surgery"].event == REOPERATION
    assert res.curves["physical_therapy"].event == CONVERSION
    d = res.to_dict()
    assert d["logrank"]["excluded"] == ["surgery"]
    assert d["curves"]["surgery"]["event"] == REOPERATION
    assert d["event_definition"] == {"non_surgical_arms": CONVERSION, "surgical_arms": REOPERATION}


def test_ci_is_log_minus_log_greenwood_as_lifelines_and_is_named() -> None:
    tables = _with_surgery_arm()
    panel = build_panel(tables, CohortFilter(), AS_OF)
    assert tables.events is not None
    res = surgery_free_survival(panel, tables.events, AS_OF)
    dur, event, arm = _raw_durations(tables)
    m = arm == "bmac"
    kmf = KaplanMeierFitter().fit(dur[m], event[m])
    point = res.curves["bmac"].landmarks[1]  # 12 months
    day = point.months * 365.25 / 12
    # By hand: S(t) = prod(1 - d/n); Greenwood V = sum d / (n (n - d)); on the log(-log) scale
    # the CI is S ** exp(-+ z sqrt(V) / ln S) (Kalbfleisch & Prentice 1980).
    times = np.unique(dur[m][event[m] & (dur[m] <= day)])
    s, v = 1.0, 0.0
    for t in times:
        n = int((dur[m] >= t).sum())
        d = int(((dur[m] == t) & event[m]).sum())
        s *= 1 - d / n
        v += d / (n * (n - d))
    z = 1.959963984540054
    half = z * math.sqrt(v) / math.log(s)
    lower, upper = s ** math.exp(-half), s ** math.exp(half)
    assert point.survival == pytest.approx(s, abs=1e-12)
    assert point.survival == pytest.approx(float(kmf.predict(day)), abs=1e-12)
    assert point.ci == pytest.approx((lower, upper), abs=1e-9)
    assert res.to_dict()["ci_method"] == CI_METHOD
    assert "log(-log)" in CI_METHOD and "Kalbfleisch-Prentice" in CI_METHOD


def test_expected_note_says_window_closed_as_the_code_does() -> None:
    note = next(n for n in HONESTY_NOTES if "'expected'" in n)
    assert "answer window has closed" in note
    t0 = date(2026, 1, 1)
    tp = pd.DataFrame(
        {
            "due_date": pd.to_datetime([t0, t0]),
            "window_closes": pd.to_datetime([t0 + timedelta(days=30), t0 + timedelta(days=90)]),
        }
    )
    # Due on 1 January; as of 1 March the first window has closed, the second is still open.
    assert due_by(tp, date(2026, 3, 1)).tolist() == [True, False]
