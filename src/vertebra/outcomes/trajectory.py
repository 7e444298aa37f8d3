"""One patient's trajectory beside the cohort's median path (pure: tables in, view model out)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from vertebra.core import charts
from vertebra.core.analytics import AnalysisTables
from vertebra.core.analytics.headline import arm_styles
from vertebra.core.instruments import get_definition
from vertebra.core.labels import label
from vertebra.core.responders import responder_rules
from vertebra.outcomes.presenters import MEASURE_SHORT

__all__ = ["MedianPath", "PatientTrajectory", "median_paths", "patient_trajectory"]

MEASURES = {"odi": "ODI (disability, 0–100)", "nrs_back": "Back pain (NRS, 0–10)"}


@dataclass(frozen=True)
class MeasureView:
    """One measure: the figure, the MCID threshold and the table rows."""

    measure: str
    label: str
    mcid_points: float
    baseline: float | None
    svg: charts.Chart
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class PatientTrajectory:
    """The patient's arm, the size of the comparison cohort (None: no median path to
    compare with yet) and one view per measure."""

    arm: str
    cohort_n: int | None
    measures: list[MeasureView]


def _fmt(x: float | None, d: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


@dataclass(frozen=True)
class MedianPath:
    """One arm's median path: how many patients the arm has, its time points in the order
    of their months (key, months), and per measure and time point the median and the number
    of completed answers (the median None where no answer has the measure)."""

    cohort_n: int
    timepoints: tuple[tuple[str, float], ...]
    medians: dict[str, dict[str, tuple[float | None, int]]]


def median_paths(tables: AnalysisTables) -> dict[str, MedianPath]:
    """Every arm's :class:`MedianPath` in ``tables`` (arm code -> path): at each time point,
    over the completed answers of the arm's patients. Aggregates only (no patient's row), so
    the result may be shared by every actor of the same scope."""
    pts = tables.patients
    arms = pts["arm"].astype(str).to_numpy()
    arm_of = pd.Series(arms, index=pts["patient_id"].to_numpy())
    tp = tables.timepoints
    done = tp[tp["completed"].astype(bool).to_numpy()]
    done_arm = arm_of.reindex(done["patient_id"].to_numpy()).to_numpy()
    rows_of = pd.Series(done_arm).groupby(done_arm, dropna=True).indices
    sizes = pd.Series(arms).value_counts()
    paths: dict[str, MedianPath] = {}
    for arm, n in sizes.items():
        cohort = done.iloc[rows_of.get(arm, [])]
        months = cohort.groupby("timepoint", observed=True)["months"].first()
        order = months.sort_values().index
        medians: dict[str, dict[str, tuple[float | None, int]]] = {}
        for measure in MEASURES:
            grouped = cohort.groupby("timepoint", observed=True)[measure]
            median, count = grouped.median(), grouped.count()
            medians[measure] = {
                str(t): (
                    None if pd.isna(median.get(t)) else float(median[t]),
                    int(count.get(t, 0)),
                )
                for t in order
            }
        paths[str(arm)] = MedianPath(
            int(n), tuple((str(t), float(months[t])) for t in order), medians
        )
    return paths


def patient_trajectory(
    tables: AnalysisTables, patient_id: int, paths: Mapping[str, MedianPath] | None
) -> PatientTrajectory:
    """The trajectory of ``patient_id`` (its rows in ``tables``: the patient's own read, or
    a scope's) against the median path of its arm in ``paths`` (:func:`median_paths` of the
    scope; None while it is being prepared, or an arm it lacks: the patient's own scores
    only). KeyError if the patient is not in ``tables`` (no episode)."""
    pts = tables.patients
    row = pts.loc[pts["patient_id"] == patient_id]
    if row.empty:
        raise KeyError(patient_id)
    arm = str(row["arm"].iloc[0])
    tp = tables.timepoints
    mine = tp[tp["patient_id"] == patient_id].sort_values("months")
    path = None if paths is None else paths.get(arm)
    rules = responder_rules()
    views = [
        _measure_view(measure, text, mine, path, float(rules[measure].points), arm)
        for measure, text in MEASURES.items()
    ]
    return PatientTrajectory(
        arm=label("arm", arm), cohort_n=path.cohort_n if path else None, measures=views
    )


def _row_order(mine: pd.DataFrame, path: MedianPath | None) -> list[tuple[str, float]]:
    """The table's time points: the path's, then any the patient answered that the path has
    not (answered after it was built), all in the order of their months (stable: the path's
    own order is kept). Without a path (being prepared): every time point of the patient's,
    answered or not."""
    known = [] if path is None else list(path.timepoints)
    seen = {key for key, _months in known}
    listed = mine if path is None else mine[mine["completed"].astype(bool).to_numpy()]
    extra = [
        (key, float(m))
        for key, m in zip(listed["timepoint"].astype(str), listed["months"], strict=True)
        if key not in seen
    ]
    if not extra:
        return known
    return sorted(known + list(dict.fromkeys(extra)), key=lambda item: item[1])


def _measure_view(
    measure: str,
    label_text: str,
    mine: pd.DataFrame,
    path: MedianPath | None,
    points: float,
    arm: str,
) -> MeasureView:
    medians = {} if path is None else path.medians[measure]
    on_path = [] if path is None else list(path.timepoints)
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
        )
    ]
    if path is not None:
        series.append(
            charts.Series(
                f"Median of {arm_name} patients",
                [months for _key, months in on_path],
                [medians[key][0] for key, _months in on_path],
                style=median_style,
            )
        )
    refs = []
    if baseline is not None:
        refs.append(
            charts.RefLine(baseline - points, f"MCID: {points:g} points better than baseline")
        )
    definition = get_definition(measure)
    all_months = [0.0, *own["months"].tolist(), *[months for _key, months in on_path]]
    last = max([24.0, *all_months])
    compared = f"this patient and the median of {arm_name} patients" if path else "this patient"
    median_words = (
        "dashed line: median of patients with the same treatment who answered; " if path else ""
    )
    svg = charts.line_chart(
        series,
        title=f"{label_text}: {compared}",
        desc=f"Solid black line: this patient's scores; {median_words}horizontal dashed line: "
        f"baseline minus the MCID ({points:g} points). Lower is better. The numbers are in "
        "the table.",
        xlabel="Months after treatment",
        ylabel=f"{MEASURE_SHORT[measure][:1].upper()}{MEASURE_SHORT[measure][1:]} "
        "(lower is better)",
        refs=refs,
        y_range=(float(definition.range_min), float(definition.range_max)),
        x_range=(0.0, last),
        x_ticks=charts.month_ticks(last),
        ci="none",
    )
    rows: list[tuple[str, ...]] = []
    by_tp = mine.set_index(mine["timepoint"].astype(str))
    for key, months in _row_order(mine, path):
        status = "–"
        value: float | None = None
        if key in by_tp.index:
            rec = by_tp.loc[key]
            status = "Answered" if bool(rec["completed"]) else "No answer"
            value = None if pd.isna(rec[measure]) else float(rec[measure])
        row: tuple[str, ...] = (label("timepoint", key), f"{months:g}", status, _fmt(value))
        if path is not None:  # the median's columns only when there is a median
            median, count = medians.get(key, (None, 0))
            row += (_fmt(median), str(count))
        rows.append(row)
    return MeasureView(measure, label_text, points, baseline, svg, rows)
