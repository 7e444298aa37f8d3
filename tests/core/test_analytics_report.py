"""The analytics core on small hand-made tables: every figure against an independent count."""

from __future__ import annotations

import json
import re
import warnings
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]
from lifelines.statistics import multivariate_logrank_test  # type: ignore[import-untyped]
from scipy import stats  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from vertebra.core.analytics import (
    OBSERVATIONAL_CAVEAT,
    AnalysisTables,
    CohortFilter,
    SchemaError,
    arm_outcomes,
    build_panel,
    build_report,
    compare_arms,
    read_tables,
    responder_flags,
    surgery_free_survival,
)
from vertebra.core.analytics.toy import toy_tables
from vertebra.core.instruments import get_definition
from vertebra.core.responders import classify_change

AS_OF = date(2026, 6, 1)
T0 = date(2025, 1, 1)
TPS = (("baseline", 0.0, 0), ("month_3", 3.0, 91), ("month_12", 12.0, 365))


def _tables(rows: list[tuple[int, str, list[float | None], list[float | None]]]) -> AnalysisTables:
    """Patients (id, arm, [odi per tp], [nrs per tp]) all treated on T0; None = not completed."""
    pts = pd.DataFrame(
        {
            "patient_id": [r[0] for r in rows],
            "clinic_id": [1 + r[0] % 2 for r in rows],
            "arm": [r[1] for r in rows],
            "condition": ["herniated_disc" if r[0] % 3 else "sciatica" for r in rows],
            "treatment_date": pd.Timestamp(T0),
            "age": [40.0 + r[0] for r in rows],
            "sex": ["female" if r[0] % 2 else "male" for r in rows],
            "startback_group": "medium",
            "pain_duration_months": 12.0,
        }
    )
    tp_rows = []
    for pid, _, odi, nrs in rows:
        for k, (tp, months, days) in enumerate(TPS):
            done = odi[k] is not None or nrs[k] is not None
            tp_rows.append(
                {
                    "patient_id": pid,
                    "timepoint": tp,
                    "months": months,
                    "due_date": pd.Timestamp(T0 + timedelta(days=days)),
                    "completed": done,
                    "odi": np.nan if odi[k] is None else odi[k],
                    "nrs_back": np.nan if nrs[k] is None else nrs[k],
                }
            )
    return AnalysisTables.of(pts, pd.DataFrame(tp_rows), None)


# Arm A: 5 patients. 12-month ODI changes: -20 (responder), -5 (no; 5/40 = 12.5%),
# -12 (responder), missing follow-up (non-completer), baseline missing but 12-mo present.
HAND: list[tuple[int, str, list[float | None], list[float | None]]] = [
    (1, "A", [40, 30, 20], [7, 5, 4]),
    (2, "A", [40, 38, 35], [6, 6, 5]),
    (3, "A", [50, 45, 38], [8, 7, 7]),
    (4, "A", [45, None, None], [7, None, None]),
    (5, "A", [None, 30, 25], [None, 4, 3]),
    (6, "B", [30, 29, 28], [5, 5, 5]),
    (7, "B", [60, 50, 20], [9, 6, 2]),
]


def _tp(report_arm: list, tp: str):  # type: ignore[no-untyped-def]
    return next(x for x in report_arm if x.timepoint == tp)


def test_counts_change_and_both_responder_rates() -> None:
    """Arm A at 12 months: expected 5, completed 4 (patient 4 missing), pairs 3 (patient 5
    has no baseline). Changes -20, -5, -12 -> mean -12.333, paired t CI from scipy.
    Responders 2 (ids 1, 3). Completers: 2/3; missing as non-response: 2/5 (n_expected)."""
    out = arm_outcomes(build_panel(_tables(HAND), CohortFilter(), AS_OF))
    m12 = _tp(out["A"], "month_12")
    assert (m12.n_expected, m12.n_completed, m12.n_missing) == (5, 4, 1)
    odi = m12.measures["odi"]
    assert odi.n_scored == 4
    assert odi.median == pytest.approx(np.median([20, 35, 38, 25]))
    d = np.array([-20.0, -5, -12])
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert odi.change is not None and odi.change.n == 3
    assert odi.change.mean == pytest.approx(d.mean())
    assert odi.change.ci == pytest.approx((ci.low, ci.high))
    rc, ra = odi.responder_rate_completers, odi.responder_rate_all
    assert rc is not None and ra is not None
    assert (rc.numerator, rc.denominator) == (2, 3)
    assert (ra.numerator, ra.denominator) == (2, 5)  # denominator = n_expected
    assert ra.ci == pytest.approx(proportion_confint(2, 5, method="wilson"))
    # substantial (>= 50 %): patient 1 (50 %); patient 3 is 24 % -> 1/3 and 1/5
    assert odi.substantial_rate_completers is not None
    assert odi.substantial_rate_completers.numerator == 1
    assert odi.substantial_rate_all is not None and odi.substantial_rate_all.denominator == 5
    # NRS: changes -3, -1, -1 -> responders by >= 2 points or >= 30 %: id 1 only (3/7 = 43%)
    nrs = m12.measures["nrs_back"]
    assert nrs.responder_rate_completers is not None
    assert nrs.responder_rate_completers.numerator == 1


def test_not_yet_due_is_not_expected() -> None:
    """On day 100 the 12-month point is not due: only questionnaires answered anyway count
    as expected, so patient 4 (no answer) is not a missing follow-up yet."""
    out = arm_outcomes(build_panel(_tables(HAND), CohortFilter(), T0 + timedelta(days=100)))
    m12 = _tp(out["A"], "month_12")
    assert m12.n_expected == m12.n_completed == 4 and m12.n_missing == 0
    assert _tp(out["A"], "month_3").n_expected == 5


def test_filters_select_patients() -> None:
    tables = _tables(HAND)
    panel = build_panel(tables, CohortFilter.build(arms=["B"]), AS_OF)
    assert panel.n == 2 and panel.arms == ["B"]
    panel = build_panel(tables, CohortFilter.build(clinics=[2]), AS_OF)  # odd ids
    assert sorted(panel.patients["patient_id"]) == [1, 3, 5, 7]
    panel = build_panel(tables, CohortFilter.build(conditions=["sciatica"]), AS_OF)
    assert sorted(panel.patients["patient_id"]) == [3, 6]
    panel = build_panel(tables, CohortFilter(treated_to=T0 - timedelta(days=1)), AS_OF)
    assert panel.n == 0


def test_filter_on_absent_column_names_it() -> None:
    with pytest.raises(SchemaError, match="cell_source"):
        build_panel(_tables(HAND), CohortFilter.build(cell_sources=["adipose"]), AS_OF)


def test_schema_validation_names_every_missing_column() -> None:
    t = _tables(HAND)
    with pytest.raises(SchemaError) as exc:
        AnalysisTables.of(
            t.patients.drop(columns=["age", "sex"]), t.timepoints.drop(columns=["odi"]), None
        )
    msg = str(exc.value)
    for name in ("patients", "age", "sex", "timepoints", "odi"):
        assert name in msg


def test_schema_rejects_duplicates() -> None:
    t = _tables(HAND)
    with pytest.raises(SchemaError, match="more than once"):
        AnalysisTables.of(pd.concat([t.patients, t.patients.iloc[:1]]), t.timepoints, None)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["odi", "nrs_back", "promis_pf_4a", "promis_pi_4a"]),
    st.integers(0, 100),
    st.integers(0, 100),
)
def test_vectorised_responder_equals_scalar_classifier(inst: str, a: int, b: int) -> None:
    defn = get_definition(inst)
    lo, hi = defn.range_min, defn.range_max
    base = lo + (hi - lo) * a / 100.0
    fu = lo + (hi - lo) * b / 100.0
    ref = classify_change(inst, base, fu)
    mcid, subst = responder_flags(inst, np.array([float(base)]), np.array([float(fu)]))
    assert bool(mcid[0]) == ref.mcid_met
    if ref.substantial is None:
        assert subst is None
    else:
        assert subst is not None and bool(subst[0]) == ref.substantial


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_completers_rate_at_least_all_patients_rate(seed: int) -> None:
    tables = toy_tables(60, seed=seed)
    out = arm_outcomes(build_panel(tables, CohortFilter(), date(2026, 11, 25)))
    for rows in out.values():
        for tp in rows[1:]:
            for m in tp.measures.values():
                rc, ra = m.responder_rate_completers, m.responder_rate_all
                if rc and ra and rc.rate is not None and ra.rate is not None:
                    assert rc.rate >= ra.rate
                    assert ra.denominator == tp.n_expected


def test_km_and_logrank_match_lifelines_on_raw_data() -> None:
    """Collapsed (weighted) KM/log-rank equals lifelines on one row per patient."""
    tables = toy_tables(3000, seed=5)
    as_of = date(2026, 11, 25)
    panel = build_panel(tables, CohortFilter(), as_of)
    res = surgery_free_survival(panel, tables.events, as_of)
    pts = panel.patients
    ev = tables.events[tables.events["kind"] == "subsequent_surgery"]
    first = ev.groupby("patient_id")["date"].min()
    surg = pts["patient_id"].map(first)
    treat = pd.to_datetime(pts["treatment_date"])
    cens = (pd.Timestamp(as_of) - treat).dt.days
    dur = np.where(surg.notna(), (surg - treat).dt.days, cens).astype(float)
    event = surg.notna().to_numpy()
    for arm in panel.arms:
        m = (pts["arm"] == arm).to_numpy()
        kmf = KaplanMeierFitter().fit(dur[m], event[m])
        for p in res.curves[arm].landmarks:
            day = p.months * 365.25 / 12
            assert p.survival == pytest.approx(float(kmf.predict(day)), abs=1e-12)
            assert p.at_risk == int((dur[m] >= day).sum())
            ci = kmf.confidence_interval_survival_function_
            row = ci[ci.index <= day].iloc[-1]
            assert p.ci == pytest.approx((row.iloc[0], row.iloc[1]), abs=1e-12)
    ref = multivariate_logrank_test(dur, pts["arm"].astype(str).to_numpy(), event)
    assert res.logrank is not None
    assert res.logrank.statistic == pytest.approx(ref.test_statistic, rel=1e-9)


def test_km_hand_worked() -> None:
    """Arm A, as of day 500: surgeries on days 100 and 200; patient 3 censored at 500,
    patient 4 (treated on day 100) censored at 400.

    t=100: 4 at risk, 1 event -> S = 3/4 = 0.75
    t=200: 3 at risk, 1 event -> S = 0.75 · 2/3 = 0.5
    S(6 mo = 182.6 d) = 0.75 with 3 at risk; S(12 mo = 365.25 d) = 0.5 with 2 at risk.
    """
    as_of = T0 + timedelta(days=500)
    pts = _tables(HAND[:4]).patients
    treat = [T0, T0, T0, T0 + timedelta(days=100)]  # patient 4 censored at 400 days
    pts = pts.assign(treatment_date=pd.to_datetime(treat))
    ev = pd.DataFrame(
        {
            "patient_id": [1, 2],
            "kind": ["surgery", "surgery"],
            "date": pd.to_datetime([T0 + timedelta(days=100), T0 + timedelta(days=200)]),
        }
    )
    tables = AnalysisTables.of(pts, _tables(HAND[:4]).timepoints, ev)
    res = surgery_free_survival(build_panel(tables, CohortFilter(), as_of), ev, as_of)
    six, twelve = res.curves["A"].landmarks[:2]
    assert six.survival == pytest.approx(0.75) and six.at_risk == 3
    assert twelve.survival == pytest.approx(0.5) and twelve.at_risk == 2


def test_propensity_recovers_known_effect_where_naive_is_biased() -> None:
    """toy_tables: true effect of cell therapy on 12-month ODI change = -5; severity confounds
    (sicker patients choose cells and improve less... and regress more), biasing the naive
    difference. The weighted estimate's CI must contain -5; the naive one must not."""
    tables = toy_tables(20_000, seed=11, true_effect=-5.0)
    panel = build_panel(tables, CohortFilter(), date(2026, 11, 25))
    res = compare_arms(panel, ["bmac", "adipose"], ["physical_therapy", "steroid_injection"])
    naive, adj = res.naive[0], res.adjusted[0]
    assert naive.ci is not None and adj.ci is not None
    assert not naive.ci[0] <= -5.0 <= naive.ci[1]
    assert adj.ci[0] <= -5.0 <= adj.ci[1]
    assert res.max_abs_smd_before is not None and res.max_abs_smd_before > 0.3
    assert res.max_abs_smd_after is not None and res.max_abs_smd_after < 0.1
    assert 0 < res.ess_treated <= res.n_treated
    assert res.observational_caveat == OBSERVATIONAL_CAVEAT


def test_propensity_without_overlap_says_why_instead_of_fitting_nothing() -> None:
    """Every treated patient lacks a covariate: a clear error naming the exclusions (the
    report lists it among the comparisons it could not make), no empty-slice warnings."""
    tables = toy_tables(400, seed=3)
    pts = tables.patients.copy()
    pts.loc[pts["arm"].isin(["bmac", "adipose"]), "age"] = np.nan
    panel = build_panel(
        AnalysisTables.of(pts, tables.timepoints, tables.events), CohortFilter(), date(2026, 11, 25)
    )
    arm_names = np.asarray(panel.arms, dtype=object)[panel.arm_codes]
    n_treated = int(np.isin(arm_names, ["bmac", "adipose"]).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="no adjusted estimate") as err:
            compare_arms(panel, ["bmac", "adipose"], ["physical_therapy"])
    missing = re.search(r"\((\d+) excluded for a missing covariate", str(err.value))
    assert missing is not None and int(missing.group(1)) >= n_treated  # the toy has a few more


def test_report_json_contract(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tables = toy_tables(2000, seed=2)
    rep = build_report(tables, CohortFilter(), date(2026, 11, 25))
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    arm = d["arms"]["bmac"]
    tp = next(t for t in arm["timepoints"] if t["timepoint"] == "month_12")
    for key in ("months", "n_expected", "n_completed"):
        assert key in tp
    for measure in ("odi", "nrs_back"):
        m = tp[measure]
        assert {"mean_change", "mean_change_ci"} <= m.keys()
        for r in ("responder_rate_completers", "responder_rate_all"):
            assert {"rate", "ci", "numerator", "denominator"} <= m[r].keys()
        assert m["responder_rate_all"]["denominator"] == tp["n_expected"]
    assert [p["months"] for p in arm["surgery_free"]] == [6, 12, 24]
    assert {"survival", "ci", "at_risk"} <= arm["surgery_free"][0].keys()
    assert d["comparisons"] and d["comparisons"][0]["observational_caveat"]
    assert d["benchmark"]["clinics"]


def test_read_tables_from_parquet_and_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = toy_tables(50, seed=1)
    for fmt in ("parquet", "csv"):
        d = tmp_path / fmt
        d.mkdir()
        for name in ("patients", "timepoints", "events"):
            df = getattr(t, name)
            (df.to_parquet if fmt == "parquet" else df.to_csv)(d / f"{name}.{fmt}", index=False)
        back = read_tables(d)
        assert len(back.patients) == 50
    with pytest.raises(SchemaError, match="patients"):
        read_tables(tmp_path / "csv" / "..")  # directory without tables


def test_report_is_identical_with_and_without_worker_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparisons and the clinic benchmark run in a forked worker when possible; the
    result must be byte-identical to running everything in this process."""
    import datetime as dt
    import json

    from vertebra.core.analytics import CohortFilter, build_report
    from vertebra.core.analytics import report as report_module
    from vertebra.core.analytics.toy import toy_tables

    tables = toy_tables(3000, seed=5)
    as_of = dt.date(2026, 11, 25)
    forked = build_report(tables, CohortFilter(), as_of, processes=2).to_dict()
    in_process = build_report(tables, CohortFilter(), as_of).to_dict()
    assert json.dumps(forked, sort_keys=True) == json.dumps(in_process, sort_keys=True)
    monkeypatch.setattr(report_module.mp, "get_all_start_methods", lambda: [])
    no_fork = build_report(tables, CohortFilter(), as_of, processes=2).to_dict()
    assert json.dumps(no_fork, sort_keys=True) == json.dumps(in_process, sort_keys=True)
