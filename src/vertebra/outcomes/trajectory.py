"""One patient's trajectory beside the cohort's median path (pure: tables in, view model out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from vertebra.core import charts
from vertebra.core.analytics import AnalysisTables
from vertebra.core.analytics.headline import arm_styles
from vertebra.core.instruments import get_definition
from vertebra.core.labels import label
from vertebra.core.responders import responder_rules
from vertebra.outcomes.presenters import MEASURE_SHORT

__all__ = ["PatientTrajectory", "patient_trajectory"]

MEASURES = {"odi": "ODI (disability, 0–100)", "nrs_back": "Back pain (NRS, 0–10)"}


@dataclass(frozen=True)
class MeasureView:
    """One measure: the figure, the MCID threshold and the table rows."""

    measure: str
    label: str
    mcid_points: float
    baseline: float | None
    svg: charts.Chart
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
        _measure_view(measure, text, mine, cohort, float(rules[measure].points), arm)
        for measure, text in MEASURES.items()
    ]
    return PatientTrajectory(arm=label("arm", arm), cohort_n=len(same_arm), measures=views)


def _measure_view(
    measure: str,
    label_text: str,
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
    arm_name = label("arm", arm)
    median_style = arm_styles([arm])[arm]
    own_style = charts.Style("#1b1b1b", "circle", "")
    if median_style.colour == own_style.colour:  # the patient is always black and solid
        median_style = charts.style_at(0)
    median_style = charts.Style(median_style.colour, "square", "7 3")
    series = [
        charts.Series(
            "This patient", own["months"].tolist(), own[measure].tolist(), style=own_style
        ),
        charts.Series(
            f"Median of {arm_name} patients",
            [float(months[t]) for t in order],
            [None if pd.isna(median.get(t)) else float(median[t]) for t in order],
            style=median_style,
        ),
    ]
    refs = []
    if baseline is not None:
        refs.append(
            charts.RefLine(baseline - points, f"MCID: {points:g} points better than baseline")
        )
    definition = get_definition(measure)
    all_months = [0.0, *own["months"].tolist(), *[float(months[t]) for t in order]]
    last = max([24.0, *all_months])
    svg = charts.line_chart(
        series,
        title=f"{label_text}: this patient and the median of {arm_name} patients",
        desc=f"Solid black line: this patient's scores; dashed line: median of patients with "
        f"the same treatment who answered; horizontal dashed line: baseline minus the MCID "
        f"({points:g} points). Lower is better. The numbers are in the table.",
        xlabel="Months after treatment",
        ylabel=f"{MEASURE_SHORT[measure][:1].upper()}{MEASURE_SHORT[measure][1:]} "
        "(lower is better)",
        refs=refs,
        y_range=(float(definition.range_min), float(definition.range_max)),
        x_range=(0.0, last),
        x_ticks=charts.month_ticks(last),
        ci="none",
    )
    rows = []
    by_tp = mine.set_index(mine["timepoint"].astype(str))
    for t in order:
        key = str(t)
        status = "–"
        value: float | None = None
        if key in by_tp.index:
            rec = by_tp.loc[key]
            status = "Answered" if bool(rec["completed"]) else "No answer"
            value = None if pd.isna(rec[measure]) else float(rec[measure])
        rows.append(
            (
                label("timepoint", key),
                f"{float(months[t]):g}",
                status,
                _fmt(value),
                _fmt(None if pd.isna(median.get(t)) else float(median[t])),
                str(int(count.get(t, 0))),
            )
        )
    return MeasureView(measure, label_text, points, baseline, svg, rows)
