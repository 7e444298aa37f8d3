"""The directory's figures of one clinic (vertebra.core.directory), on hand-made tables whose
answers are known: responders both ways with their denominators, small cells suppressed,
cell-therapy arms pooled, small treatments withheld by name only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from vertebra.core import disclosure
from vertebra.core.analytics import AnalysisTables
from vertebra.core.analytics.toy import toy_tables
from vertebra.core.directory import CELL_GROUP, clinic_figures, figures_of_clinics
from vertebra.core.disclosure import policy

AS_OF = dt.date(2026, 6, 1)
TREATED = pd.Timestamp("2024-06-01")


def _tables(groups: list[dict[str, Any]]) -> AnalysisTables:
    """Patients per group: {clinic, arm, n, answered, responders, surgeries, serious}.

    Baseline ODI 50 for all; at 12 months the first ``responders`` who answered score 30 (better
    by 20 points: responders), the other answerers 48 (not); the rest do not answer.
    """
    patients, rows, events = [], [], []
    pid = 0
    for g in groups:
        for i in range(g["n"]):
            pid += 1
            patients.append(
                {
                    "patient_id": pid,
                    "clinic_id": g["clinic"],
                    "arm": g["arm"],
                    "condition": "degenerative_disc_disease",
                    "treatment_date": TREATED,
                    "age": 50.0,
                    "sex": "female",
                    "startback_group": "medium",
                    "pain_duration_months": 12.0,
                }
            )
            answered = i < g["answered"]
            month12 = (30.0 if i < g["responders"] else 48.0) if answered else None
            for tp, months, score in (("baseline", 0, 50.0), ("month_12", 12, month12)):
                rows.append(
                    {
                        "patient_id": pid,
                        "timepoint": tp,
                        "months": float(months),
                        "due_date": TREATED + pd.DateOffset(months=months),
                        "completed": score is not None,
                        "odi": np.nan if score is None else score,
                        "nrs_back": np.nan,
                    }
                )
            if i < g.get("surgeries", 0):
                events.append((pid, "subsequent_surgery", TREATED + pd.Timedelta(days=100), None))
            if i < g.get("serious", 0):
                events.append((pid, "adverse_event", TREATED + pd.Timedelta(days=5), True))
    frame = pd.DataFrame(events, columns=["patient_id", "kind", "date", "serious"])
    return AnalysisTables.of(pd.DataFrame(patients), pd.DataFrame(rows), frame)


def _by_key(group: Any) -> dict[str, Any]:
    return {h.key: h for h in group.figures}


def test_responders_both_ways_with_denominators_and_cell_arms_pooled() -> None:
    tables = _tables(
        [
            {"clinic": "1", "arm": "bmac", "n": 25, "answered": 18, "responders": 8},
            {"clinic": "1", "arm": "adipose", "n": 25, "answered": 18, "responders": 8},
            {"clinic": "1", "arm": "surgery", "n": 8, "answered": 8, "responders": 4},
            {"clinic": "2", "arm": "physical_therapy", "n": 20, "answered": 20, "responders": 2},
        ]
    )
    f = clinic_figures(tables, "1", AS_OF)
    assert f.n_patients == 58
    assert f.arms_offered == ("adipose", "bmac", "surgery")
    assert [g.code for g in f.groups] == [CELL_GROUP]
    assert f.withheld == ("surgery",)  # 8 patients: named, no figure, no count
    cell = f.groups[0]
    assert cell.label == "Cell therapy (all sources)" and cell.n_patients == 50
    h = _by_key(cell)
    # 36 of 50 answered; 16 of the 36 improved by >= 10 ODI points (Ostelo 2008)
    assert (h["completeness"].value, h["completeness"].detail) == (
        "72%",
        "36 of 50 patients due answered",
    )
    assert h["responder_rate_completers"].value == "44%"
    assert h["responder_rate_completers"].detail.startswith("16 of 36 patients who answered")
    assert h["responder_rate_all"].value == "32%"
    assert h["responder_rate_all"].detail.startswith("16 of 50 patients due")
    assert h["serious_ae"].value == "0%" and h["serious_ae"].detail.startswith("0 of 50 patients")
    assert h["surgery_free"].value == "100%"


def test_small_numerators_are_not_shown() -> None:
    """Clinic 2: 20 physical-therapy patients, all answered, 2 responders: the responder counts
    (2, and 18 non-responders is fine) rest on a cell of 2, so neither rate is shown."""
    tables = _tables(
        [{"clinic": "2", "arm": "physical_therapy", "n": 20, "answered": 20, "responders": 2}]
    )
    g = clinic_figures(tables, "2", AS_OF).groups[0]
    h = _by_key(g)
    assert h["completeness"].value == "100%"
    for key in ("responder_rate_completers", "responder_rate_all"):
        assert h[key].value == "–"
        assert h[key].detail.startswith(f"Not shown: fewer than {policy().min_cell}")
        assert "2 of 20" not in h[key].detail


def test_few_missing_hides_completeness_and_the_responders_that_would_give_it_back() -> None:
    """25 of 30 answered: the 5 who did not are a small cell; the responder denominators (25
    answered, 30 due) would give it back by subtraction, so they go too."""
    tables = _tables([{"clinic": "1", "arm": "bmac", "n": 30, "answered": 25, "responders": 15}])
    h = _by_key(clinic_figures(tables, "1", AS_OF).groups[0])
    assert {k: v.value for k, v in h.items() if k != "serious_ae" and k != "surgery_free"} == {
        "completeness": "–",
        "responder_rate_completers": "–",
        "responder_rate_all": "–",
    }
    hidden = ("completeness", "responder_rate_completers", "responder_rate_all")
    assert not any("25" in h[k].detail or "30" in h[k].detail for k in hidden)


def test_a_small_clinic_shows_no_count_and_no_figure() -> None:
    tables = _tables([{"clinic": "3", "arm": "bmac", "n": 7, "answered": 7, "responders": 7}])
    f = clinic_figures(tables, "3", AS_OF)
    assert f.n_patients == policy().text and getattr(f.n_patients, "suppressed", False)
    assert f.groups == () and f.withheld == (CELL_GROUP,)


def test_a_few_surgeries_hide_the_surgery_free_share_and_the_surgery_arm_says_further() -> None:
    tables = _tables(
        [
            {"clinic": "1", "arm": "bmac", "n": 20, "answered": 20, "responders": 12,
             "surgeries": 3},
            {"clinic": "1", "arm": "surgery", "n": 20, "answered": 20, "responders": 12},
        ]
    )  # fmt: skip
    groups = {g.code: _by_key(g) for g in clinic_figures(tables, "1", AS_OF).groups}
    assert groups[CELL_GROUP]["surgery_free"].value == "–"
    assert groups["surgery"]["surgery_free"].label == "Free of further surgery at 12 months"
    assert groups["surgery"]["surgery_free"].value == "100%"


def test_a_clinic_without_patients_has_no_figures() -> None:
    tables = _tables([{"clinic": "1", "arm": "bmac", "n": 20, "answered": 20, "responders": 12}])
    f = clinic_figures(tables, "9", AS_OF)
    assert (f.n_patients, f.groups, f.arms_offered) == (0, (), ())


def _figures_by_filtering(tables: AnalysisTables, clinic_id: str) -> Any:
    """The reference: the clinic's report built on every clinic's rows with a clinic filter
    (how the directory computed each clinic before it split the tables once)."""
    from vertebra.core.analytics import CohortFilter, build_report
    from vertebra.core.directory import (
        _NO_COMPARISON,
        ClinicFigures,
        _group,
        _pooled,
        _pooled_codes,
        group_label,
    )

    k = policy().min_cell
    mine = tables.patients.loc[tables.patients["clinic_id"].astype(str) == clinic_id]
    offered = tuple(sorted(mine["arm"].astype(str).unique()))
    n = len(mine)
    if n == 0:
        return ClinicFigures(clinic_id, 0, (), (), (), k)
    report = build_report(
        _pooled(tables),
        CohortFilter(clinics=(clinic_id,)),
        AS_OF,
        comparison_timepoint=_NO_COMPARISON,
        min_cell=k,
    )
    d = report.to_dict()
    arms = d.get("arms", {})
    order = sorted(arms, key=lambda a: (a != CELL_GROUP, group_label(a)))
    withheld = sorted((report.withheld.arms if report.withheld else {}), key=group_label)
    if report.cohort_suppressed:
        withheld = sorted(set(_pooled_codes(offered)), key=group_label)
    count = disclosure.suppressed() if disclosure.is_small(n, k) else n
    groups = tuple(_group(d, code, arms[code], k) for code in order)
    return ClinicFigures(clinic_id, count, offered, groups, tuple(withheld), k)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_clinic_from_its_own_rows_equals_the_clinic_filter_on_all_rows(seed: int) -> None:
    """Split once (:func:`figures_of_clinics`) or filtered per clinic: the same figures, for
    clinics big and small (a few under the minimum cell) and one without patients."""
    tables = toy_tables(900, seed=seed, today=AS_OF, clinics=12)
    ids = [*sorted(set(tables.patients["clinic_id"].astype(str))), "999"]
    split = figures_of_clinics(tables, ids, AS_OF)
    assert list(split) == ids
    for cid in ids:
        assert split[cid] == _figures_by_filtering(tables, cid), cid
        assert split[cid] == clinic_figures(tables, cid, AS_OF)
    assert sum(1 for f in split.values() if f.groups) >= 6  # figures shown, not all withheld
