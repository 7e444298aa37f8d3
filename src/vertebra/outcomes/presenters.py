"""Turn a `Report` into what the dashboard shows: figures (inline SVG) and their data tables.

Pure functions of the report's JSON form (``Report.to_dict()``) plus its survival curves; no
database, no request. Every rate is formatted with its numerator and denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vertebra.core.analytics import OBSERVATIONAL_CAVEAT, Report
from vertebra.core.analytics.report import HONESTY_NOTES
from vertebra.outcomes import charts

__all__ = ["MEASURE_LABELS", "Dashboard", "Figure", "dashboard", "pct", "rate_text"]

MEASURE_LABELS = {"odi": "ODI (disability, 0–100)", "nrs_back": "Back pain NRS (0–10)"}
#: The time point of the responder bars, forest plot and funnel plot.
KEY_TIMEPOINT = "month_12"


def pct(rate: dict[str, Any] | None) -> str:
    """'62.0% (95% CI 55.0–68.4)' or '–' when there is no denominator."""
    if not rate or rate.get("rate") is None:
        return "–"
    ci = rate.get("ci")
    ci_s = f" (95% CI {ci[0] * 100:.1f}–{ci[1] * 100:.1f})" if ci else ""
    return f"{rate['rate'] * 100:.1f}%{ci_s}"


def rate_text(rate: dict[str, Any] | None) -> str:
    """'62.0% (95% CI 55.0–68.4), 122 of 197': a rate always with its denominator; a
    suppressed rate (small cell, researchers) says so: 'fewer than 11 (suppressed)'."""
    if rate and rate.get("suppressed"):
        return str(rate.get("numerator"))
    if not rate:
        return "– (0 of 0)"
    return f"{pct(rate)}, {rate.get('numerator', 0)} of {rate.get('denominator', 0)}"


def _num(x: float | str | None, d: int = 1) -> str:
    if isinstance(x, str):  # a suppressed value prints as its words
        return x
    return "–" if x is None else f"{x:.{d}f}"


def _ci(ci: list[float] | None, d: int = 1) -> str:
    return "–" if not ci else f"{ci[0]:.{d}f} to {ci[1]:.{d}f}"


@dataclass(frozen=True)
class Figure:
    """One figure: its id (anchor), heading, caption, SVG, and data table (header + rows)."""

    key: str
    heading: str
    caption: str
    svg: str
    header: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard template shows below the filter form."""

    n_patients: int
    as_of: str
    arms: tuple[str, ...]
    honesty_notes: tuple[str, ...]
    caveat: str
    completeness_header: tuple[str, ...]
    completeness_rows: Sequence[Sequence[Any]]
    figures: list[Figure] = field(default_factory=list)
    comparison_errors: tuple[str, ...] = ()


def dashboard(report: Report) -> Dashboard:
    """The dashboard view model of ``report`` (which must have at least one patient)."""
    d = report.to_dict()
    header, rows = _completeness(d)
    figures = [
        _trajectory(d, "odi"),
        _trajectory(d, "nrs_back"),
        _responders(d, "odi"),
        _responders(d, "nrs_back"),
        _survival(report, d),
    ]
    forest = _forest(d)
    if forest is not None:
        figures.append(forest)
    funnel = _funnel(d)
    if funnel is not None:
        figures.append(funnel)
    figures.append(_adverse_events(d))
    return Dashboard(
        n_patients=report.n_patients,
        as_of=report.as_of_label,
        arms=report.arms,
        honesty_notes=HONESTY_NOTES,
        caveat=OBSERVATIONAL_CAVEAT,
        completeness_header=header,
        completeness_rows=rows,
        figures=figures,
        comparison_errors=tuple(d["comparison_errors"]),
    )


def _completeness(d: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Follow-up completeness per arm and time point: completed of expected, missing."""
    header = ("Arm", "Time point", "Expected (due)", "Completed", "Missing", "Completeness")
    rows = []
    for arm, a in d["arms"].items():
        for tp in a["timepoints"]:
            rows.append(
                (
                    arm,
                    tp["timepoint"],
                    str(tp["n_expected"]),
                    str(tp["n_completed"]),
                    str(tp["n_missing"]),
                    rate_text(tp["completeness"]),
                )
            )
    return header, rows


def _trajectory(d: dict[str, Any], measure: str) -> Figure:
    """Mean change from baseline with 95% CI per arm over time, with the MCID line."""
    rule = d["responder_rules"].get(measure, {})
    mcid = float(rule.get("points") or 0)
    series, rows = [], []
    for arm, a in d["arms"].items():
        xs: list[float] = [0.0]
        ys: list[float | None] = [0.0]
        lo: list[float | None] = [0.0]
        hi: list[float | None] = [0.0]
        for tp in a["timepoints"][1:]:
            m = tp.get(measure) or {}
            ci = m.get("mean_change_ci")
            rows.append(
                (
                    arm,
                    tp["timepoint"],
                    f"{tp['months']:g}",
                    _num(m.get("mean_change")),
                    _ci(ci),
                    str(m.get("n_change", 0)),
                    str(tp["n_expected"]),
                )
            )
            if m.get("mean_change") is not None:
                xs.append(float(tp["months"]))
                ys.append(float(m["mean_change"]))
                lo.append(ci[0] if ci else None)
                hi.append(ci[1] if ci else None)
        series.append(charts.Series(arm, xs, ys, lo, hi))
    label = MEASURE_LABELS[measure]
    svg = charts.line_chart(
        series,
        title=f"Mean change in {label} from baseline, by arm",
        desc="Lines: mean change; shaded: 95% confidence interval; dashed: the MCID "
        f"(improvement of {mcid:g} points). Negative values are improvement.",
        xlabel="months after treatment",
        ylabel=f"mean change in {measure.upper().replace('_BACK', ' back')}",
        bands=[charts.Band(-mcid, f"MCID −{mcid:g}")] if mcid else [],
    )
    return Figure(
        key=f"trajectory-{measure}",
        heading=f"Change from baseline: {label}",
        caption=f"Mean change with 95% CI among patients with both a baseline and a follow-up "
        f"score (n per point in the table); dashed line: MCID ({mcid:g} points). "
        f"{d['n_patients']} patients in the filtered cohort.",
        svg=svg,
        header=("Arm", "Time point", "Months", "Mean change", "95% CI", "n with change", "Due"),
        rows=rows,
    )


def _key_tp(a: dict[str, Any]) -> dict[str, Any] | None:
    return next((tp for tp in a["timepoints"] if tp["timepoint"] == KEY_TIMEPOINT), None)


def _responders(d: dict[str, Any], measure: str) -> Figure:
    """12-month responder rates, completers beside missing-as-non-response, Wilson CIs."""
    bars, rows = [], []
    for arm, a in d["arms"].items():
        tp = _key_tp(a)
        m = (tp or {}).get(measure) or {}
        for series, key in (
            ("among completers", "responder_rate_completers"),
            ("missing = non-response", "responder_rate_all"),
        ):
            r = m.get(key) or {}
            ci = r.get("ci")
            bars.append(
                charts.Bar(
                    f"{arm} (n={(tp or {}).get('n_expected', 0)})",
                    series,
                    None if r.get("rate") is None else r["rate"] * 100,
                    ci[0] * 100 if ci else None,
                    ci[1] * 100 if ci else None,
                )
            )
        rows.append(
            (
                arm,
                str((tp or {}).get("n_expected", 0)),
                rate_text(m.get("responder_rate_completers")),
                rate_text(m.get("responder_rate_all")),
                rate_text(m.get("substantial_rate_completers")),
                rate_text(m.get("substantial_rate_all")),
            )
        )
    label = MEASURE_LABELS[measure]
    svg = charts.bar_chart(
        bars,
        title=f"12-month responders on {label}, two ways, by arm",
        desc="For each arm, left bar: responders among patients who answered; right bar: "
        "counting every patient who was due but did not answer as a non-responder. "
        "Whiskers: Wilson 95% confidence intervals.",
        ylabel="responders (%)",
        y_max=100,
    )
    return Figure(
        key=f"responders-{measure}",
        heading=f"Responders at 12 months: {label}",
        caption="Responder = improvement reaching the MCID. Both figures are shown: among "
        "completers, and counting missing answers as non-response (denominator = patients "
        "due). The truth is usually between the two.",
        svg=svg,
        header=(
            "Arm",
            "Due at 12 months",
            "Responders among completers",
            "Responders, missing = non-response",
            "≥50% improvement among completers",
            "≥50% improvement, missing = non-response",
        ),
        rows=rows,
    )


def _survival(report: Report, d: dict[str, Any]) -> Figure:
    """Kaplan–Meier surgery-free survival per arm with its 95% band; landmarks in the table."""
    series = []
    for arm, curve in report.survival.curves.items():
        xs = [0.0, *curve.months]
        series.append(
            charts.Series(
                arm,
                xs,
                [1.0, *curve.survival],
                [1.0, *curve.lower],
                [1.0, *curve.upper],
                step=True,
            )
        )
    rows = []
    for arm, a in d["arms"].items():
        for p in a["surgery_free"]:
            rows.append(
                (
                    arm,
                    f"{p['months']:g}",
                    _num(p["survival"], 3),
                    _ci(p["ci"], 3),
                    str(p["at_risk"]),
                    str(p["events_before"]),
                )
            )
    lr = d["survival"].get("logrank")
    notes: tuple[str, ...] = ()
    if lr and lr.get("p_value") is not None:
        notes = (
            f"Log-rank test across arms: χ² = {_num(lr['statistic'], 2)}, df = {lr['df']}, "
            f"p = {lr['p_value']:.3g}.",
        )
    svg = charts.line_chart(
        series,
        title="Surgery-free survival (Kaplan–Meier) by arm",
        desc="Step curves: share of patients without a subsequent surgery over time; shaded: "
        "95% confidence band. Number at risk at 6, 12 and 24 months is in the table.",
        xlabel="months after treatment",
        ylabel="surgery-free (proportion)",
        y_range=(0.0, 1.0),
    )
    return Figure(
        key="survival",
        heading="Surgery-free survival (Kaplan–Meier)",
        caption=f"Censoring: {d['survival']['censoring']}. Numbers at risk are in the table; "
        "the curve is uncertain where few patients remain at risk.",
        svg=svg,
        header=("Arm", "Months", "Surgery-free", "95% CI", "At risk", "Surgeries so far"),
        rows=rows,
        notes=notes,
    )


def _forest(d: dict[str, Any]) -> Figure | None:
    """Adjusted (propensity-weighted) differences, cell therapy vs each comparator arm."""
    if not d["comparisons"]:
        return None
    plot, rows = [], []
    for c in d["comparisons"]:
        name = f"{'+'.join(c['treated_arms'])} vs {'+'.join(c['control_arms'])}"
        short = f"cell vs {'+'.join(c['control_arms'])}"
        for naive, adj in zip(c["naive"], c["adjusted"], strict=False):
            if adj is c["adjusted"][0] and adj.get("difference") is not None:
                ci = adj.get("ci")
                plot.append(
                    charts.ForestRow(
                        short, adj["difference"], ci[0] if ci else None, ci[1] if ci else None
                    )
                )
            rows.append(
                (
                    name,
                    adj["outcome"],
                    f"{c['n_treated']} / {c['n_control']}",
                    f"{_num(c['ess_treated'], 0)} / {_num(c['ess_control'], 0)}",
                    f"{_num(c['max_abs_smd_before'], 2)} → {_num(c['max_abs_smd_after'], 2)}",
                    f"{_num(naive['difference'], 2)} ({_ci(naive['ci'], 2)})",
                    f"{_num(adj['difference'], 2)} ({_ci(adj['ci'], 2)})",
                )
            )
    outcome = d["comparisons"][0]["adjusted"][0]["outcome"] if d["comparisons"] else ""
    svg = charts.forest_plot(
        plot,
        title="Adjusted comparisons: cell therapy against each other arm",
        desc=f"Squares: propensity-weighted difference in {outcome}; lines: 95% CI; dashed "
        "line: no difference. Observational: not proof of cause.",
        xlabel=f"weighted difference in {outcome} (cell minus comparator)",
    )
    return Figure(
        key="forest",
        heading="Adjusted comparisons between arms",
        caption="Propensity-score weighted differences with 95% CIs. These are observational "
        "comparisons, not proof of cause: patients were not randomised, and factors we did not "
        "measure may explain part or all of any difference.",
        svg=svg,
        header=(
            "Comparison",
            "Outcome",
            "n treated / comparator",
            "Effective sample size",
            "max |SMD| before → after",
            "Unadjusted difference (95% CI)",
            "Weighted difference (95% CI)",
        ),
        rows=rows,
    )


def _funnel(d: dict[str, Any]) -> Figure | None:
    """Clinic benchmarking: case-mix-adjusted 12-month responder rates in a funnel plot."""
    b = d.get("benchmark")
    if not b or not b["clinics"]:
        return None
    points = [
        charts.FunnelPoint(f"clinic {c['clinic_id']}", c["n"], c["adjusted_rate"])
        for c in b["clinics"]
    ]
    svg = charts.funnel_plot(
        points,
        limits_n=b["funnel"]["n"],
        limits_95=[tuple(x) for x in b["funnel"]["limits_95"]],
        limits_998=[tuple(x) for x in b["funnel"]["limits_998"]],
        overall=b["overall_rate"],
        title="Clinic benchmarking funnel plot",
        desc="Each point is a clinic's case-mix-adjusted 12-month ODI responder rate against "
        "its number of patients; dashed: 95% limits, dotted: 99.8% limits around the overall rate.",
    )
    rows = [
        (
            str(c["clinic_id"]),
            str(c["n"]),
            rate_text(c["raw_rate"]),
            _num(c["o_e"], 2),
            "–" if c["adjusted_rate"] is None else f"{c['adjusted_rate'] * 100:.1f}%",
            c["position"],
            rate_text(c["completeness"]),
        )
        for c in b["clinics"]
    ]
    return Figure(
        key="funnel",
        heading="Clinic benchmarking",
        caption=f"{b['method']}. A clinic outside the limits differs by more than chance would "
        "explain; inside the limits, differences may be chance. Low follow-up completeness "
        "makes a clinic's rate less certain.",
        svg=svg,
        header=(
            "Clinic",
            "n",
            "Raw responder rate",
            "Observed / expected",
            "Adjusted rate",
            "Position",
            "12-month completeness",
        ),
        rows=rows,
    )


def _adverse_events(d: dict[str, Any]) -> Figure:
    """Adverse events per 100 patients by grade and by relatedness, per arm."""
    bars, rows = [], []
    related_keys: list[str] = sorted(
        {k for a in d["arms"].values() for k in a["adverse_events"]["by_relatedness"]}
    )
    for arm, a in d["arms"].items():
        ae = a["adverse_events"]
        for g in "12345":
            c = ae["by_grade"].get(g) or {}
            bars.append(charts.Bar(arm, f"grade {g}", c.get("events_per_100")))

        def ev(c: dict[str, Any] | None) -> str:
            c = c or {}
            return f"{_num(c.get('events_per_100'))} ({c.get('patients', 0)} patients)"

        rows.append(
            (
                arm,
                str(ae["n_patients"]),
                ev(ae["any"]),
                ev(ae["serious"]),
                *(ev(ae["by_grade"].get(g)) for g in "12345"),
                *(ev(ae["by_relatedness"].get(k)) for k in related_keys),
            )
        )
    svg = charts.bar_chart(
        bars,
        title="Adverse events per 100 patients by CTCAE grade, by arm",
        desc="Bars: adverse events per 100 patients of the arm, one bar per CTCAE grade.",
        ylabel="events per 100 patients",
    )
    return Figure(
        key="adverse-events",
        heading="Adverse events",
        caption="Events per 100 patients of each arm (patients with at least one event in "
        "brackets). Events still awaiting adjudication have no grade or relatedness yet and "
        "count only under 'any'.",
        svg=svg,
        header=(
            "Arm",
            "Patients",
            "Any",
            "Serious",
            *(f"Grade {g}" for g in "12345"),
            *(f"Related: {k}" for k in related_keys),
        ),
        rows=rows,
    )
