"""Turn a `Report` into what the dashboard shows: headline numbers, figures, detailed tables.

Pure functions of the report's JSON form (``Report.to_dict()``) plus its survival curves; no
database, no request. Every rate is formatted with its numerator and denominator; every code
(arm, time point, clinic) is shown in words (``vertebra.core.labels``); every figure is drawn
by the one charting module (``vertebra.core.charts``) and comes with its data table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vertebra.core import charts
from vertebra.core.analytics import OBSERVATIONAL_CAVEAT, CohortFilter, Report
from vertebra.core.analytics.cost import COST_HEADER, cost_rows
from vertebra.core.analytics.headline import (
    KEY_TIMEPOINT,
    SUPPRESSED,
    Headline,
    arm_styles,
    arms_words,
    as_of_words,
    comparison_error_words,
    count_text,
    filter_words,
    headlines,
    honesty_notes,
    interval_text,
    is_suppressed,
    logrank_words,
    number,
    outcome_words,
    pct_text,
    rate_text,
    responder_words,
    share_text,
    survival_method_words,
)
from vertebra.core.analytics.report import HONESTY_NOTES
from vertebra.core.deidentify import coarsen_filter
from vertebra.core.labels import label

__all__ = [
    "MEASURE_LABELS",
    "Dashboard",
    "Figure",
    "Table",
    "dashboard",
    "pct",
    "rate_text",
]

MEASURE_LABELS = {"odi": "ODI (disability, 0–100)", "nrs_back": "Back pain (NRS, 0–10)"}
#: Short names of the measures for axis titles.
MEASURE_SHORT = {"odi": "ODI", "nrs_back": "back pain (NRS)"}


def pct(rate: dict[str, Any] | None) -> str:
    """'62% (95% CI 55–68)' or '–' when there is no denominator."""
    return pct_text(rate)


def _num(x: Any, d: int = 1) -> str:
    if is_suppressed(x):
        return SUPPRESSED
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{float(x):.{d}f}".replace("-", "−")


def _bounds(ci: Any) -> tuple[float, float] | None:
    """A CI as two floats, or None when it is missing, partial or suppressed."""
    if not ci or is_suppressed(ci) or None in ci:
        return None
    return float(ci[0]), float(ci[1])


def _ci(ci: Sequence[float] | None, d: int = 1) -> str:
    if not ci or None in ci:
        return "–"
    return f"{_num(ci[0], d)} to {_num(ci[1], d)}"


@dataclass(frozen=True)
class Table:
    """A detailed table: id, title, header and rows (the first cell of a row is its header)."""

    key: str
    title: str
    header: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figure:
    """One figure: its id (anchor), heading, caption, chart, and its data table."""

    key: str
    heading: str
    caption: str
    chart: charts.Chart
    table: Table


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard template shows below the filter form."""

    n_patients: int
    as_of: str
    filter_words: str
    arms: tuple[str, ...]
    headlines: tuple[Headline, ...]
    responder_words: str
    honesty_notes: tuple[str, ...]
    caveat: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    comparison_errors: tuple[str, ...] = ()
    #: Stored rows the analysis left out, and why (one sentence each).
    data_notes: tuple[str, ...] = ()


def filter_summary(
    flt: CohortFilter, clinic_names: Mapping[str, str], *, deidentified: bool
) -> str:
    """The filter in words as the report will state it (widened to whole years for a
    de-identified scope), for a page that shows no figures yet (being prepared, nobody)."""
    shown = coarsen_filter(flt) if deidentified else flt
    return filter_words(shown.to_dict(), clinic_names)


def dashboard(report: Report, clinic_names: Mapping[str, str] | None = None) -> Dashboard:
    """The dashboard view model of ``report`` (which must have at least one patient).

    ``clinic_names`` maps clinic ids to what people see (names for clinic staff, "Clinic A"
    for researchers); an unnamed clinic is shown as "Clinic <id>".
    """
    d = report.to_dict()
    names = dict(clinic_names or {})
    styles = arm_styles(list(d["arms"]))
    figures = [
        _responders(d, "odi", styles),
        _trajectory(d, "odi", styles),
        _trajectory(d, "nrs_back", styles),
        _responders(d, "nrs_back", styles),
        _survival(report, d, styles),
        _adverse_events(d, styles),
    ]
    forest = _forest(d, styles)
    if forest is not None:
        figures.append(forest)
    funnel = _funnel(d, names)
    if funnel is not None:
        figures.append(funnel)
    return Dashboard(
        n_patients=report.n_patients,
        as_of=as_of_words(d),
        filter_words=filter_words(d["filter"], names),
        arms=tuple(label("arm", a) for a in report.arms),
        headlines=tuple(headlines(d)),
        responder_words=responder_words(d),
        honesty_notes=tuple(honesty_notes(HONESTY_NOTES)),
        caveat=OBSERVATIONAL_CAVEAT,
        figures=figures,
        tables=[_completeness(d), _adverse_event_table(d), *_cost_table(d), *_return_tables(d)],
        comparison_errors=tuple(comparison_error_words(e) for e in d["comparison_errors"]),
        data_notes=tuple(e.note for e in report.exclusions),
    )


def _completeness(d: dict[str, Any]) -> Table:
    """Follow-up completeness per arm and time point: completed of expected, missing."""
    rows = []
    for arm, a in d["arms"].items():
        for tp in a["timepoints"]:
            rows.append(
                (
                    label("arm", arm),
                    label("timepoint", tp["timepoint"]),
                    count_text(tp["n_expected"]),
                    count_text(tp["n_completed"]),
                    count_text(tp["n_missing"]),
                    pct_text(tp["completeness"], ci=False),
                )
            )
    return Table(
        key="completeness",
        title="Follow-up completeness by treatment and time point",
        header=("Treatment", "Time point", "Due", "Answered", "Missing", "Completeness"),
        rows=rows,
    )


#: Population groups of the return analyses, in the words of the dashboard.
RETURN_GROUPS: Mapping[str, str] = {
    "working": "Working at baseline",
    "off_work_back_pain": "Off work because of the back",
    "not_in_paid_work": "Not in paid work for other reasons",
    "other": "Other",
    "room_to_improve": "Room to improve by the MCID",
    "near_ceiling": "Near the top of the scale",
    "no_baseline_answer": "No baseline answer",
    "no_follow_up": "Eligible, no follow-up yet",
}
_RETURN_TITLES = {
    "return_to_work": "Return to work by treatment (Kaplan–Meier)",
    "return_to_activity": "Return to activity (PSFS gain ≥ MCID) by treatment (Kaplan–Meier)",
}


def _return_tables(d: dict[str, Any]) -> list[Table]:
    """Return to work / activity, two tables each: who is counted per arm (the denominators),
    then the share returned by 3, 6, 12 and 24 months with its CI, the number still followed
    and the returns so far."""
    tables = []
    for key, title in _RETURN_TITLES.items():
        r = d.get(key)
        if not r or not r.get("available"):
            continue
        groups = [g for g in RETURN_GROUPS if any(g in p for p in r["population"].values())]
        counted = [
            (label("arm", arm), *(count_text(p.get(g, {}).get("n")) for g in groups))
            for arm, p in r["population"].items()
        ]
        rows = []
        for arm, c in r["curves"].items():
            for p in c["landmarks"]:
                rows.append(
                    (
                        label("arm", arm),
                        f"{p['months']:g} months",
                        share_text(p["returned"]),
                        interval_text(p["returned_ci"]),
                        count_text(p["at_risk"]),
                        count_text(p["events_before"]),
                    )
                )
        slug = key.replace("_", "-")
        tables.append(
            Table(
                key=f"{slug}-counted",
                title=f"{title}: who is counted",
                header=("Treatment", *(RETURN_GROUPS[g] for g in groups)),
                rows=counted,
                notes=(r["definition"],),
            )
        )
        tables.append(
            Table(
                key=slug,
                title=title,
                header=(
                    "Treatment",
                    "By",
                    "Returned",
                    "95% CI",
                    "Still followed, not returned",
                    "Returns so far",
                ),
                rows=rows,
                notes=(
                    "Curves are shown for treatments with enough returns; the patients in a "
                    "curve are the eligible group less those with no follow-up yet.",
                    r["time"],
                    f"Source: {r['source']}",
                ),
            )
        )
    return tables


def _last_month(d: dict[str, Any]) -> float:
    months = [float(tp["months"]) for a in d["arms"].values() for tp in a["timepoints"]]
    return max([24.0, *months])


def _trajectory(d: dict[str, Any], measure: str, styles: dict[str, charts.Style]) -> Figure:
    """Mean change from baseline with 95% CI per arm over time, with the MCID line."""
    rule = d["responder_rules"].get(measure, {})
    mcid = float(rule.get("points") or 0)
    series, rows = [], []
    for arm, a in d["arms"].items():
        xs: list[float] = [0.0]
        ys: list[float | None] = [0.0]
        lo: list[float | None] = [None]
        hi: list[float | None] = [None]
        for tp in a["timepoints"][1:]:
            m = tp.get(measure) or {}
            ci = m.get("mean_change_ci")
            change = m.get("mean_change")
            rows.append(
                (
                    label("arm", arm),
                    label("timepoint", tp["timepoint"]),
                    _num(change),
                    _ci(ci),
                    count_text(m.get("n_change", 0)),
                    count_text(tp["n_expected"]),
                )
            )
            if isinstance(change, (int, float)) and math.isfinite(change):
                xs.append(float(tp["months"]))
                ys.append(float(change))
                bounds = _bounds(ci)
                lo.append(bounds[0] if bounds else None)
                hi.append(bounds[1] if bounds else None)
        series.append(charts.Series(label("arm", arm), xs, ys, lo, hi, style=styles[arm]))
    name = MEASURE_LABELS[measure]
    last = _last_month(d)
    ci_words = (
        ", with 95% confidence intervals as whiskers" if len(series) <= charts.MAX_CI_SERIES else ""
    )
    chart = charts.line_chart(
        series,
        title=f"Mean change in {name} from baseline, by treatment",
        desc="One line per treatment: mean change from baseline at each time point"
        f"{ci_words}. Dashed line: the MCID (an improvement of {mcid:g} points). Below zero "
        "is better. The numbers, with every 95% confidence interval, are in the table.",
        xlabel="Months after treatment",
        ylabel=f"Change in {MEASURE_SHORT[measure]} (points; below 0 = better)",
        refs=[charts.RefLine(-mcid, f"MCID: {mcid:g} points better")] if mcid else [],
        x_range=(0.0, last),
        x_ticks=charts.month_ticks(last),
    )
    return Figure(
        key=f"trajectory-{measure}",
        heading=f"Change from baseline: {name}",
        caption=f"Mean change among patients with both a baseline and a follow-up score "
        f"({'95% CIs as whiskers' if ci_words else '95% CIs in the table'}); dashed line: MCID ({mcid:g} points, {_source(rule)}). "
        f"{d['n_patients']} patients in the filtered cohort.",
        chart=chart,
        table=Table(
            key=f"trajectory-{measure}-table",
            title=f"Change from baseline: {name}",
            header=("Treatment", "Time point", "Mean change", "95% CI", "Patients", "Due"),
            rows=rows,
        ),
    )


def _source(rule: Mapping[str, Any]) -> str:
    """The first source of a responder rule, e.g. "Ostelo et al., Spine 2008;33(1):90-4"."""
    text = re.split(r";\s", str(rule.get("source") or "see data/responders.yaml"))[0]
    return re.sub(r"\s+\(.*$", "", text)


def _key_tp(a: dict[str, Any]) -> dict[str, Any]:
    return next((tp for tp in a["timepoints"] if tp["timepoint"] == KEY_TIMEPOINT), {})


def _bar(series: str, rate: dict[str, Any] | None) -> charts.Bar:
    """A percentage bar of ``rate`` with its CI and "53% (139 of 260)" written at its end."""
    if is_suppressed(rate) or not rate or is_suppressed(rate.get("numerator")):
        return charts.Bar(series, None, text=SUPPRESSED if rate else "no one due")
    value = rate.get("rate")
    if value is None:
        return charts.Bar(series, None, text="no one to count")
    bounds = _bounds(rate.get("ci"))
    return charts.Bar(
        series,
        100 * float(value),
        100 * bounds[0] if bounds else None,
        100 * bounds[1] if bounds else None,
        text=f"{100 * float(value):.0f}% ({count_text(rate.get('numerator'))} of "
        f"{count_text(rate.get('denominator'))})",
    )


def _responders(d: dict[str, Any], measure: str, styles: dict[str, charts.Style]) -> Figure:
    """12-month responder rates, completers beside missing-as-non-response, Wilson CIs."""
    groups, rows = [], []
    for arm, a in d["arms"].items():
        tp = _key_tp(a)
        m = tp.get(measure) or {}
        groups.append(
            charts.BarGroup(
                f"{label('arm', arm)} ({count_text(tp.get('n_expected', 0))} due)",
                [
                    _bar("among those who answered", m.get("responder_rate_completers")),
                    _bar("missing counted as non-response", m.get("responder_rate_all")),
                ],
                style=styles[arm],
            )
        )
        rows.append(
            (
                label("arm", arm),
                count_text(tp.get("n_expected", 0)),
                rate_text(m.get("responder_rate_completers")),
                rate_text(m.get("responder_rate_all")),
                rate_text(m.get("substantial_rate_completers")),
                rate_text(m.get("substantial_rate_all")),
            )
        )
    name = MEASURE_LABELS[measure]
    rule = d["responder_rules"].get(measure, {})
    chart = charts.bar_chart(
        groups,
        title=f"Responders at 12 months on {name}, two ways, by treatment",
        desc="For each treatment, filled bar: responders among patients who answered; "
        "outlined bar: counting every patient who was due but did not answer as a "
        "non-responder. Whiskers: Wilson 95% confidence intervals.",
        value_label="Responders at 12 months (%)",
        value_max=100.0,
        percent=True,
    )
    return Figure(
        key=f"responders-{measure}",
        heading=f"Responders at 12 months: {name}",
        caption=f"Responder = {name.split(' (')[0]} better by at least {rule.get('points', 0):g} "
        f"points or {rule.get('percent') or 0:g}%. Both figures are shown: among those who "
        "answered, and counting missing answers as non-response (denominator = patients due). "
        "The truth is usually between the two.",
        chart=chart,
        table=Table(
            key=f"responders-{measure}-table",
            title=f"Responders at 12 months: {name}",
            header=(
                "Treatment",
                "Due at 12 months",
                "Responders among those who answered",
                "Responders, missing = non-response",
                "≥50% better among those who answered",
                "≥50% better, missing = non-response",
            ),
            rows=rows,
        ),
    )


def _survival(report: Report, d: dict[str, Any], styles: dict[str, charts.Style]) -> Figure:
    """Kaplan–Meier surgery-free survival per arm; landmarks with numbers at risk in the table."""
    series = []
    lowest = 1.0
    for arm, curve in report.survival.curves.items():
        xs = [0.0, *curve.months]
        ys = [1.0, *curve.survival]
        lowest = min([lowest, *ys])
        series.append(
            charts.Series(
                label("arm", arm), xs, [100 * y for y in ys], step=True, style=styles.get(arm)
            )
        )
    rows = []
    for arm, a in d["arms"].items():
        for p in a["surgery_free"]:
            rows.append(
                (
                    label("arm", arm),
                    f"{p['months']:g} months",
                    share_text(p["survival"]),
                    interval_text(p["ci"]),
                    count_text(p["at_risk"]),
                    count_text(p["events_before"]),
                )
            )
    lr = d["survival"].get("logrank")
    notes: tuple[str, ...] = ()
    if lr and lr.get("p_value") is not None:
        notes = (logrank_words(lr),)
    method = survival_method_words(d["survival"])
    notes = (method, *notes) if method else notes
    floor = max(0.0, math.floor(lowest * 10 - 1) * 10)
    last = _last_month(d)
    chart = charts.line_chart(
        series,
        title="Surgery-free survival (Kaplan–Meier) by treatment",
        desc="Step curves: share of patients without a subsequent surgery over time. The "
        f"vertical axis starts at {floor:.0f}%. Confidence intervals and numbers at risk at 6, "
        "12 and 24 months are in the table.",
        xlabel="Months after treatment",
        ylabel="Surgery-free (%)",
        y_range=(floor, 100.0),
        x_range=(0.0, last),
        x_ticks=charts.month_ticks(last),
        ci="none",
        y_percent=True,
    )
    return Figure(
        key="survival",
        heading="Surgery-free survival (Kaplan–Meier)",
        caption=f"Censoring: {label('censoring', d['survival']['censoring'])}. The vertical axis starts at "
        f"{floor:.0f}%. The curve is uncertain where few patients remain at risk (see the "
        "table).",
        chart=chart,
        table=Table(
            key="survival-table",
            title="Surgery-free survival (Kaplan–Meier)",
            header=("Treatment", "At", "Surgery-free", "95% CI", "At risk", "Surgeries so far"),
            rows=rows,
            notes=notes,
        ),
    )


def _ae_rate(count: dict[str, Any] | None, n: Any) -> dict[str, Any] | None:
    """Patients with an event as a rate dict (share of the arm's patients, with CI)."""
    if not count or is_suppressed(count) or is_suppressed(count.get("patients")):
        return {"suppressed": True} if count else None
    ci = count.get("patients_ci")
    share = count.get("patients_per_100")
    return {
        "rate": None if share is None else share / 100,
        "ci": [ci[0] / 100, ci[1] / 100] if ci and None not in ci else None,
        "numerator": count.get("patients"),
        "denominator": n,
    }


def _adverse_events(d: dict[str, Any], styles: dict[str, charts.Style]) -> Figure:
    """Share of patients with any and with a serious adverse event, per arm."""
    groups, rows = [], []
    for arm, a in d["arms"].items():
        ae = a["adverse_events"]
        n = ae.get("n_patients")
        any_rate = _ae_rate(ae.get("any"), n)
        serious = _ae_rate(ae.get("serious"), n)
        groups.append(
            charts.BarGroup(
                f"{label('arm', arm)} ({count_text(n)} patients)",
                [_bar("any adverse event", any_rate), _bar("serious adverse event", serious)],
                style=styles[arm],
            )
        )
        rows.append(
            (
                label("arm", arm),
                count_text(n),
                rate_text(any_rate, ci=False),
                rate_text(serious, ci=False),
            )
        )
    top = max([g.bars[0].hi or g.bars[0].value or 0.0 for g in groups] + [10.0])
    chart = charts.bar_chart(
        groups,
        title="Patients with an adverse event, by treatment",
        desc="For each treatment, filled bar: share of patients with any adverse event; "
        "outlined bar: share with a serious adverse event. Whiskers: 95% confidence "
        "intervals. Grades and relatedness are in the detailed table.",
        value_label="Patients with an adverse event (%)",
        value_max=min(100.0, math.ceil(top / 10) * 10),
        percent=True,
    )
    return Figure(
        key="adverse-events",
        heading="Adverse events",
        caption="Share of each treatment's patients with at least one adverse event, and with "
        "a serious one. Events still awaiting adjudication count under 'any' only.",
        chart=chart,
        table=Table(
            key="adverse-events-table",
            title="Patients with an adverse event",
            header=("Treatment", "Patients", "Any adverse event", "Serious adverse event"),
            rows=rows,
        ),
    )


def _cost_table(d: dict[str, Any]) -> list[Table]:
    """Cost per patient and per responder per arm (none when no price is recorded)."""
    method = d.get("cost_method")
    rows = cost_rows(d, lambda arm: label("arm", arm))
    if not method or not method.get("currency") or not rows:
        return []
    return [
        Table(
            key="cost",
            title=f"Cost and coverage by treatment ({method['currency']})",
            header=COST_HEADER,
            rows=rows,
            notes=(
                f"Responders: {label('instrument', method['measure'])} at "
                f"{label('timepoint', method['timepoint'])}. 95% CIs: {method['ci_method']} "
                f"(seed {method['seed']}).",
                method["note"],
            ),
        )
    ]


def _adverse_event_table(d: dict[str, Any]) -> Table:
    """Adverse events per 100 patients by grade and relatedness, per arm."""
    related: list[str] = sorted(
        {k for a in d["arms"].values() for k in a["adverse_events"]["by_relatedness"]}
    )

    def ev(c: Any) -> str:
        if is_suppressed(c) or (isinstance(c, dict) and is_suppressed(c.get("patients"))):
            return SUPPRESSED
        c = c or {}
        return f"{_num(c.get('events_per_100'))} ({count_text(c.get('patients', 0))} patients)"

    rows = []
    for arm, a in d["arms"].items():
        ae = a["adverse_events"]
        rows.append(
            (
                label("arm", arm),
                count_text(ae["n_patients"]),
                ev(ae["any"]),
                ev(ae["serious"]),
                *(ev(ae["by_grade"].get(g)) for g in "12345"),
                *(ev(ae["by_relatedness"].get(k)) for k in related),
            )
        )
    return Table(
        key="adverse-events-detail",
        title="Adverse events per 100 patients, by CTCAE grade and relatedness",
        header=(
            "Treatment",
            "Patients",
            "Any",
            "Serious",
            *(f"Grade {g}" for g in "12345"),
            *(label("relatedness", k) for k in related),
        ),
        rows=rows,
        notes=("Events per 100 patients of the treatment (patients with at least one event).",),
    )


def _forest(d: dict[str, Any], styles: dict[str, charts.Style]) -> Figure | None:
    """Adjusted (propensity-weighted) differences, cell therapy vs each comparator arm."""
    if not d["comparisons"]:
        return None
    plot, rows = [], []
    for c in d["comparisons"]:
        treated, control = arms_words(c["treated_arms"]), arms_words(c["control_arms"])
        name = f"{treated} vs {control}"
        for k, (naive, adj) in enumerate(zip(c["naive"], c["adjusted"], strict=False)):
            if k == 0 and adj.get("difference") is not None:
                ci = adj.get("ci")
                style = styles.get(c["control_arms"][0]) if len(c["control_arms"]) == 1 else None
                plot.append(
                    charts.ForestRow(
                        f"vs {control}",
                        adj["difference"],
                        ci[0] if ci else None,
                        ci[1] if ci else None,
                        style=style,
                    )
                )
            rows.append(
                (
                    name,
                    outcome_words(adj["outcome"]),
                    f"{count_text(c['n_treated'])} / {count_text(c['n_control'])}",
                    f"{_num(c['ess_treated'], 0)} / {_num(c['ess_control'], 0)}",
                    f"{_num(c['max_abs_smd_before'], 2)} → {_num(c['max_abs_smd_after'], 2)}",
                    f"{_num(naive['difference'], 2)} ({_ci(naive['ci'], 2)})",
                    f"{_num(adj['difference'], 2)} ({_ci(adj['ci'], 2)})",
                )
            )
    outcome = outcome_words(d["comparisons"][0]["adjusted"][0]["outcome"])
    treated = arms_words(d["comparisons"][0]["treated_arms"])
    chart = charts.forest_plot(
        plot,
        title=f"Adjusted comparisons: {treated} against each other treatment",
        desc=f"Markers: propensity-weighted difference in {outcome}; lines: 95% CI; dashed "
        "line: no difference. Observational: not proof of cause.",
        xlabel=f"Weighted difference in {outcome}: {treated} minus the other treatment",
    )
    return Figure(
        key="forest",
        heading="Adjusted comparisons between treatments",
        caption="Propensity-score weighted differences with 95% CIs. These are observational "
        "comparisons, not proof of cause: patients were not randomised, and factors we did not "
        "measure may explain part or all of any difference.",
        chart=chart,
        table=Table(
            key="forest-table",
            title="Adjusted comparisons between treatments",
            header=(
                "Comparison",
                "Outcome",
                "Patients (treated / comparator)",
                "Effective sample size",
                "Largest imbalance (|SMD|) before → after",
                "Unadjusted difference (95% CI)",
                "Weighted difference (95% CI)",
            ),
            rows=rows,
        ),
    )


def _funnel(d: dict[str, Any], names: Mapping[str, str]) -> Figure | None:
    """Clinic benchmarking: case-mix-adjusted 12-month responder rates in a funnel plot."""
    b = d.get("benchmark")
    if not b or not b["clinics"]:
        return None

    def clinic(cid: Any) -> str:
        return names.get(str(cid), f"Clinic {cid}")

    clinic_styles = charts.assign_styles([str(c["clinic_id"]) for c in b["clinics"]])
    points = [
        charts.FunnelPoint(
            clinic(c["clinic_id"]),
            float(c["n"]),
            number(c["adjusted_rate"]),
            style=clinic_styles[str(c["clinic_id"])],
        )
        for c in b["clinics"]
        if isinstance(c.get("n"), (int, float))
    ]
    chart = charts.funnel_plot(
        points,
        limits_n=b["funnel"]["n"],
        limits_95=[(x[0], x[1]) if x else None for x in b["funnel"]["limits_95"]],
        limits_998=[(x[0], x[1]) if x else None for x in b["funnel"]["limits_998"]],
        overall=number(b["overall_rate"]),
        title="Clinic benchmarking funnel plot",
        desc="Each marker is a clinic's case-mix-adjusted 12-month ODI responder rate against "
        "its number of patients; dashed: 95% limits, dotted: 99.8% limits around the overall "
        "rate.",
        xlabel="Patients with a 12-month ODI and a baseline",
        ylabel="Adjusted responder rate",
    )
    rows = [
        (
            clinic(c["clinic_id"]),
            count_text(c["n"]),
            rate_text(c["raw_rate"], ci=False),
            _num(c["o_e"], 2),
            share_text(c["adjusted_rate"]),
            str(c["position"]).capitalize(),
            rate_text(c["completeness"], ci=False),
        )
        for c in b["clinics"]
    ]
    return Figure(
        key="funnel",
        heading="Clinic benchmarking",
        caption=f"{b['method'][:1].upper()}{b['method'][1:]}. A clinic outside the limits "
        "differs by more than chance would explain; inside the limits, differences may be "
        "chance. Low follow-up completeness makes a clinic's rate less certain.",
        chart=chart,
        table=Table(
            key="funnel-table",
            title="Clinic benchmarking",
            header=(
                "Clinic",
                "Patients",
                "Raw responder rate",
                "Observed / expected",
                "Adjusted rate",
                "Position",
                "12-month follow-up",
            ),
            rows=rows,
        ),
    )
