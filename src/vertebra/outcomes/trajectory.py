"""One patient's trajectory beside the cohort's median path (pure: tables in, view model out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from vertebra.core.analytics import AnalysisTables
from vertebra.core.responders import responder_rules
from vertebra.outcomes import charts

__all__ = ["PatientTrajectory", "patient_trajectory"]

MEASURES = {"odi": "ODI (disability, 0–100)", "nrs_back": "Back pain NRS (0–10)"}


@dataclass(frozen=True)
class MeasureView:
    """One measure: the figure, the MCID threshold and the table rows."""

    measure: str
    label: str
    mcid_points: float
    baseline: float | None
    svg: str
    rows: list[tuple[str, str, str, str, str, str]]


@dataclass(frozen=True)
class PatientTrajectory:
    """The patient's arm, the size of the comparison cohort and one view per measure."""

    arm: str
    cohort_n: int
    measures: list[MeasureView]


def _fmt(x: float | None, d: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def patient_trajectory(tables: AnalysisTables, patient_id: int) -> PatientTrajectory:
    """The trajectory of ``patient_id`` against the median path of the same arm in ``tables``.

    The cohort median at each time point is over completed answers of patients in the same
    arm (the patient included). KeyError if the patient is not in ``tables`` (no episode).
    """
    pts = tables.patients
    row = pts.loc[pts["patient_id"] == patient_id]
    if row.empty:
        raise KeyError(patient_id)
    arm = str(row["arm"].iloc[0])
    same_arm = set(pts.loc[pts["arm"].astype(str) == arm, "patient_id"])
    tp = tables.timepoints
    cohort = tp[tp["patient_id"].isin(same_arm) & tp["completed"].astype(bool)]
    mine = tp[tp["patient_id"] == patient_id].sort_values("months")
    rules = responder_rules()
    views = [
        _measure_view(measure, label, mine, cohort, float(rules[measure].points), arm)
        for measure, label in MEASURES.items()
    ]
    return PatientTrajectory(arm=arm, cohort_n=len(same_arm), measures=views)


def _measure_view(
    measure: str,
    label: str,
    mine: pd.DataFrame,
    cohort: pd.DataFrame,
    points: float,
    arm: str,
) -> MeasureView:
    grouped = cohort.groupby("timepoint", observed=True)[measure]
    median = grouped.median()
    count = grouped.count()
    months = cohort.groupby("timepoint", observed=True)["months"].first()
    order = months.sort_values().index
    baseline_rows = mine.loc[mine["timepoint"].astype(str) == "baseline", measure]
    baseline = float(baseline_rows.iloc[0]) if len(baseline_rows.dropna()) else None
    own = mine.dropna(subset=[measure])
    series = [
        charts.Series("this patient", own["months"].tolist(), own[measure].tolist()),
        charts.Series(
            f"median, {arm}",
            [float(months[t]) for t in order],
            [None if pd.isna(median.get(t)) else float(median[t]) for t in order],
        ),
    ]
    bands = []
    if baseline is not None:
        bands.append(charts.Band(baseline - points, f"MCID (−{points:g})"))
    svg = charts.line_chart(
        series,
        title=f"{label}: this patient and the median of the {arm} arm",
        desc=f"Solid line: this patient's scores; dashed line: median of patients in the same "
        f"arm who answered; horizontal dashed line: baseline minus the MCID ({points:g} "
        "points). Lower is better.",
        xlabel="months after treatment",
        ylabel=measure.upper().replace("_BACK", " back"),
        bands=bands,
        dashed=[f"median, {arm}"],
    )
    rows = []
    by_tp = mine.set_index(mine["timepoint"].astype(str))
    for t in order:
        key = str(t)
        status = "–"
        value: float | None = None
        if key in by_tp.index:
            rec = by_tp.loc[key]
            status = "answered" if bool(rec["completed"]) else "no answer"
            value = None if pd.isna(rec[measure]) else float(rec[measure])
        rows.append(
            (
                key,
                f"{float(months[t]):g}",
                status,
                _fmt(value),
                _fmt(None if pd.isna(median.get(t)) else float(median[t])),
                str(int(count.get(t, 0))),
            )
        )
    return MeasureView(measure, label, points, baseline, svg, rows)
