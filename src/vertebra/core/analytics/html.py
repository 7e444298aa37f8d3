"""Self-contained HTML rendering of a `Report` for people and for A4 print (WeasyPrint).

Contracts
---------
* One document, no external resources: the CSS is in the document head (the report is a file
  or a PDF, not a page of the site, so the site's CSP does not apply), every figure is inline
  SVG from the one charting module (:mod:`vertebra.core.charts`, wide drawing).
* It opens with the filters in words ("All clinics · Degenerative disc disease · All
  treatments · 12 months"), the as-of date in the one date format, and the headline numbers
  (:mod:`vertebra.core.analytics.headline`); then each section's figure and its table.
* Printed on A4 landscape; tables use the full width with fixed column widths, wrap inside
  cells, and repeat their header rows (title row + column headers) on every page, so every
  column is present on every page. No code reaches the reader: arms, time points, conditions
  and clinics are in words (clinic names are passed in; otherwise "Clinic <id>").
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vertebra.core import charts
from vertebra.core.analytics.cost import COST_HEADER, cost_rows
from vertebra.core.analytics.headline import (
    KEY_TIMEPOINT,
    SUPPRESSED,
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
    rate_text,
    responder_words,
    share_text,
    survival_method_words,
)
from vertebra.core.analytics.propensity import OBSERVATIONAL_CAVEAT
from vertebra.core.analytics.report import HONESTY_NOTES, Report
from vertebra.core.labels import label

__all__ = ["render_html"]

_CSS = """
@page { size: A4 landscape; margin: 12mm 11mm 14mm;
  @bottom-left { content: "Vertebra outcome report"; font: 8pt system-ui, sans-serif; color: #555; }
  @bottom-right { content: "Page " counter(page) " of " counter(pages);
    font: 8pt system-ui, sans-serif; color: #555; } }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  margin: 0 auto; max-width: 1120px; font-size: 10pt; line-height: 1.35; }
@media screen { body { margin: 1.5rem auto; padding: 0 1rem; } }
h1 { font-size: 18pt; margin: 0 0 .2rem; }
h2 { font-size: 13pt; margin: 1.2rem 0 .4rem; border-bottom: 1px solid #ccc;
  break-after: avoid; }
h3 { font-size: 11pt; margin: .8rem 0 .3rem; break-after: avoid; }
.filters { font-size: 11pt; margin: .2rem 0; }
.meta { color: #444; margin: 0 0 .6rem; }
table { border-collapse: collapse; margin: .3rem 0 .8rem; width: 100%; table-layout: fixed;
  font-size: 8.5pt; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { border: 1px solid #bbb; padding: .15rem .3rem; text-align: right;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: #f0f0f0; font-weight: 600; }
th.table-title { text-align: left; background: #fff; border: none; font-size: 9pt;
  padding: 0 0 .15rem; }
td:first-child, th:first-child { text-align: left; }
.headlines { display: flex; flex-wrap: wrap; gap: .4rem; margin: .4rem 0 .6rem; padding: 0;
  list-style: none; }
.headlines li { border: 1px solid #ccc; border-radius: 4px; padding: .3rem .5rem;
  width: 31%; box-sizing: border-box; }
.headlines .v { font-size: 16pt; font-weight: 700; display: block; }
.headlines .k { font-weight: 600; display: block; }
.headlines .d { color: #444; font-size: 8.5pt; display: block; }
.caveat { background: #fff4e5; border-left: 4px solid #8a4b00; padding: .4rem .7rem; }
.note { color: #444; font-size: 9pt; }
figure { margin: .4rem 0 .6rem; break-inside: avoid; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 9pt; color: #444; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, d: int = 1) -> str:
    if is_suppressed(x):
        return SUPPRESSED
    if x is None:
        return "–"
    return f"{float(x):.{d}f}".replace("-", "−")


def _ci(ci: Sequence[float] | None, d: int = 1) -> str:
    return "–" if not ci or None in ci else f"{_num(ci[0], d)} to {_num(ci[1], d)}"


def _rate(rate: Mapping[str, Any] | None) -> str:
    return rate_text(rate)


def _cost_section(d: Mapping[str, Any]) -> list[str]:
    """Cost per patient and per responder by arm, with denominators and the method (empty
    when the report has no cost: tables from before cost was recorded)."""
    method = d.get("cost_method")
    rows = cost_rows(dict(d), _arm)
    if not method or not rows:
        return []
    return [
        "<h2 id='cost'>Cost and coverage</h2>",
        _table(
            f"Cost by treatment ({method['currency'] or 'no price recorded'})",
            COST_HEADER,
            rows,
            (1.6, 1.1, 1.8, 1.6, 1.6, 2, 2),
        ),
        f"<p class='note'>Responders: {_e(label('instrument', method['measure']))} at "
        f"{_e(label('timepoint', method['timepoint']))}. 95% CIs: {_e(method['ci_method'])} "
        f"(seed {method['seed']}). {_e(method['note'])}</p>",
    ]


def _arm(code: str) -> str:
    return label("arm", code)


def _table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float] | None = None,
) -> str:
    """A table whose title and column headers repeat on every printed page it spans; its
    column ``widths`` (relative) become rules of the document's stylesheet (:func:`_col_css`)."""
    cols = ""
    if widths:
        key = f"cols-{'-'.join(f'{w:g}'.replace('.', '_') for w in widths)}"
        cols = f"<colgroup class='{key}'>" + "<col>" * len(widths) + "</colgroup>"
    head = (
        f"<thead><tr><th class='table-title' colspan='{len(header)}'>{_e(title)}</th></tr>"
        "<tr>" + "".join(f"<th scope='col'>{_e(h)}</th>" for h in header) + "</tr></thead>"
    )
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{cols}{head}<tbody>{body}</tbody></table>"


def _col_css(document: str) -> str:
    """Width rules of the column groups used in ``document`` (their class names carry the
    relative widths: ``cols-2-0_8-1_1`` = 2, 0.8, 1.1)."""
    rules: list[str] = []
    for key in sorted(set(re.findall(r"class='(cols-[0-9_-]+)'", document))):
        widths = [float(w.replace("_", ".")) for w in key[5:].split("-")]
        total = sum(widths)
        rules.extend(
            f".{key} col:nth-child({i + 1}){{width:{100 * w / total:.1f}%}}"
            for i, w in enumerate(widths)
        )
    return "\n".join(rules)


def _months(d: Mapping[str, Any]) -> tuple[float, list[float]]:
    last = max([24.0] + [float(tp["months"]) for a in d["arms"].values() for tp in a["timepoints"]])
    return last, charts.month_ticks(last)


def _trajectory_chart(
    d: Mapping[str, Any], measure: str, styles: Mapping[str, charts.Style]
) -> str:
    rule = d["responder_rules"].get(measure, {})
    mcid = float(rule.get("points") or 0)
    series = []
    for arm, a in d["arms"].items():
        xs, ys, lo, hi = [0.0], [0.0], [None], [None]
        for tp in a["timepoints"][1:]:
            m = tp.get(measure) or {}
            ch, ci = m.get("mean_change"), m.get("mean_change_ci")
            if isinstance(ch, (int, float)):
                xs.append(float(tp["months"]))
                ys.append(float(ch))
                lo.append(ci[0] if ci and None not in ci else None)
                hi.append(ci[1] if ci and None not in ci else None)
        series.append(charts.Series(_arm(arm), xs, ys, lo, hi, style=styles[arm]))
    last, ticks = _months(d)
    name = label("measure", measure)
    chart = charts.line_chart(
        series,
        title=f"Mean change in {name} from baseline, by treatment",
        desc=f"Mean change with 95% CI whiskers; dashed line: MCID ({mcid:g} points).",
        xlabel="Months after treatment",
        ylabel=f"Change in {name.split(' (')[0]} (points; below 0 = better)",
        refs=[charts.RefLine(-mcid, f"MCID: {mcid:g} points better")] if mcid else [],
        x_range=(0.0, last),
        x_ticks=ticks,
    )
    return chart.wide


def _responder_chart(d: Mapping[str, Any], measure: str, styles: Mapping[str, charts.Style]) -> str:
    groups = []
    for arm, a in d["arms"].items():
        tp: Mapping[str, Any] = next(
            (t for t in a["timepoints"] if t["timepoint"] == KEY_TIMEPOINT), {}
        )
        m = tp.get(measure) or {}
        bars = []
        for series, key in (
            ("among those who answered", "responder_rate_completers"),
            ("missing counted as non-response", "responder_rate_all"),
        ):
            r = m.get(key)
            if not r or is_suppressed(r) or r.get("rate") is None:
                bars.append(charts.Bar(series, None, text=SUPPRESSED if is_suppressed(r) else "–"))
                continue
            ci = r.get("ci")
            bars.append(
                charts.Bar(
                    series,
                    100 * r["rate"],
                    100 * ci[0] if ci else None,
                    100 * ci[1] if ci else None,
                    text=f"{100 * r['rate']:.0f}% ({count_text(r.get('numerator'))} of "
                    f"{count_text(r.get('denominator'))})",
                )
            )
        groups.append(
            charts.BarGroup(
                f"{_arm(arm)} ({count_text(tp.get('n_expected', 0))} due)", bars, style=styles[arm]
            )
        )
    chart = charts.bar_chart(
        groups,
        title=f"Responders at 12 months on {label('measure', measure)}, two ways",
        desc="Filled: among those who answered; outlined: missing counted as non-response.",
        value_label="Responders at 12 months (%)",
        value_max=100.0,
        percent=True,
    )
    return chart.wide


def _survival_chart(
    report: Report, d: Mapping[str, Any], styles: Mapping[str, charts.Style]
) -> str:
    series, lowest = [], 1.0
    for arm, curve in report.survival.curves.items():
        ys = [1.0, *curve.survival]
        lowest = min([lowest, *ys])
        series.append(
            charts.Series(
                _arm(arm),
                [0.0, *curve.months],
                [100 * y for y in ys],
                step=True,
                style=styles.get(arm),
            )
        )
    floor = max(0.0, (int(lowest * 10) - 1) * 10.0)
    last, ticks = _months(d)
    return charts.line_chart(
        series,
        title="Surgery-free survival (Kaplan–Meier) by treatment",
        desc=f"Step curves; the vertical axis starts at {floor:.0f}%.",
        xlabel="Months after treatment",
        ylabel="Surgery-free (%)",
        y_range=(floor, 100.0),
        x_range=(0.0, last),
        x_ticks=ticks,
        ci="none",
        y_percent=True,
    ).wide


#: Population groups of the return analyses, in the order and words of the report.
_RETURN_GROUPS: Mapping[str, str] = {
    "working": "Working at baseline",
    "off_work_back_pain": "Off work because of the back",
    "not_in_paid_work": "Not in paid work for other reasons",
    "other": "Other",
    "room_to_improve": "Room to improve by the MCID",
    "near_ceiling": "Near the top of the scale",
    "no_baseline_answer": "No baseline answer",
    "no_follow_up": "In the population, no follow-up yet",
}


def _returns_section(d: Mapping[str, Any]) -> list[str]:
    """Return to work and to activity: definition, who is counted, and the KM landmarks."""
    out: list[str] = []
    titles = {
        "return_to_work": "Return to work (Kaplan–Meier)",
        "return_to_activity": "Return to activity: PSFS gain of at least the MCID (Kaplan–Meier)",
    }
    for key, title in titles.items():
        r = d.get(key)
        if not r or not r.get("available"):
            continue
        out.append(f"<h3>{_e(title)}</h3>")
        out.append(f"<p>{_e(r['definition'])}</p>")
        out.append(
            f"<p class='note'>{_e(r['time'])} {_e(r['ci_method'])}. Source: {_e(r['source'])}</p>"
        )
        groups = [g for g in _RETURN_GROUPS if any(g in p for p in r["population"].values())]
        rows = [
            (_arm(arm), *(count_text(p.get(g, {}).get("n")) for g in groups))
            for arm, p in r["population"].items()
        ]
        out.append(
            _table(
                "Who is counted (the curve is the eligible group less those without follow-up)",
                ("Treatment", *(_RETURN_GROUPS[g] for g in groups)),
                rows,
            )
        )
        rows = []
        for arm, c in r["curves"].items():
            for p in c["landmarks"]:
                rows.append(
                    (
                        _arm(arm),
                        f"{p['months']:g} months",
                        share_text(p["returned"]),
                        interval_text(p["returned_ci"]),
                        count_text(p["at_risk"]),
                        count_text(p["events_before"]),
                    )
                )
        if rows:
            out.append(
                _table(
                    "Share returned by 3, 6, 12 and 24 months",
                    (
                        "Treatment",
                        "By",
                        "Returned",
                        "95% CI",
                        "Not yet returned, followed",
                        "Returns so far",
                    ),
                    rows,
                    (2, 1, 1, 1.5, 1, 1),
                )
            )
        else:
            out.append("<p>No curve to show yet (too few patients or returns).</p>")
    if out:
        out.insert(0, "<h2>Return to work and to activity</h2>")
    return out


def render_html(
    report: Report,
    title: str = "Vertebra outcome report",
    clinic_names: Mapping[str, str] | None = None,
) -> str:
    """The report as one self-contained HTML document (no external resources)."""
    d = report.to_dict()
    names = dict(clinic_names or {})
    styles = arm_styles(list(d["arms"]))
    out: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='filters'><strong>Filters:</strong> "
        f"{_e(filter_words(d['filter'], names, KEY_TIMEPOINT))}</p>",
        f"<p class='meta'>Follow-up as of {_e(as_of_words(d))} · {d['n_patients']:,} patients "
        f"· {len(d['arms'])} treatments: {_e(', '.join(_arm(a) for a in d['arms']))}</p>",
        "<ul class='headlines'>",
    ]
    for h in headlines(d):
        out.append(
            f"<li><span class='k'>{_e(h.label)}</span><span class='v'>{_e(h.value)}</span>"
            f"<span class='d'>{_e(h.detail)}</span></li>"
        )
    out.append("</ul>")
    out.append(f"<p class='note'>{_e(responder_words(d))}</p>")
    out.append(
        "<ul class='note'>"
        + "".join(f"<li>{_e(n)}</li>" for n in honesty_notes(HONESTY_NOTES))
        + "".join(f"<li class='exclusion'>{_e(e.note)}</li>" for e in report.exclusions)
        + "</ul>"
    )
    # ---- baseline
    rows: list[tuple[str, ...]] = []
    for arm, a in d["arms"].items():
        bl = a["baseline"]
        high = bl["startback_group"].get("high")
        rows.append(
            (
                _arm(arm),
                count_text(bl["n"]),
                f"{_num(bl['age']['mean'])} ({_num(bl['age']['sd'])})",
                rate_text(bl["female"], ci=False),
                f"{_num(bl['odi']['mean'])} ({_num(bl['odi']['sd'])}), n = "
                f"{count_text(bl['odi']['n'])}",
                f"{_num(bl['nrs_back']['mean'])} ({_num(bl['nrs_back']['sd'])}), n = "
                f"{count_text(bl['nrs_back']['n'])}",
                rate_text(high, ci=False),
            )
        )
    out.append("<h2>Patients at baseline</h2>")
    out.append(
        _table(
            "Baseline characteristics by treatment",
            (
                "Treatment",
                "Patients",
                "Age, mean (SD)",
                "Female",
                "ODI, mean (SD)",
                "Back pain NRS, mean (SD)",
                "STarT Back high risk",
            ),
            rows,
            (2.2, 0.8, 1.1, 1.5, 1.5, 1.5, 1.5),
        )
    )
    # ---- follow-up, change and responders
    out.append("<h2>Follow-up, change from baseline and responders</h2>")
    whiskers = (
        "95% CIs as whiskers" if len(d["arms"]) <= charts.MAX_CI_SERIES else "95% CIs in the table"
    )
    for measure in ("odi", "nrs_back"):
        name = label("measure", measure)
        out.append(f"<h3>{_e(name)}</h3>")
        out.append(
            f"<figure>{_trajectory_chart(d, measure, styles)}<figcaption>Mean change from "
            f"baseline ({whiskers}); dashed line: the MCID.</figcaption></figure>"
        )
        out.append(
            f"<figure>{_responder_chart(d, measure, styles)}<figcaption>Responders at 12 "
            "months, two ways, with Wilson 95% CIs.</figcaption></figure>"
        )
        rows = []
        for arm, a in d["arms"].items():
            for tp in a["timepoints"][1:]:
                m = tp.get(measure) or {}
                rows.append(
                    (
                        _arm(arm),
                        label("timepoint", tp["timepoint"]),
                        count_text(tp["n_expected"]),
                        rate_text(tp["completeness"], ci=False),
                        f"{_num(m.get('mean_change'))} ({_ci(m.get('mean_change_ci'))}), "
                        f"n = {count_text(m.get('n_change', 0))}",
                        _rate(m.get("responder_rate_completers")),
                        _rate(m.get("responder_rate_all")),
                        _rate(m.get("substantial_rate_completers")),
                        _rate(m.get("substantial_rate_all")),
                    )
                )
        out.append(
            _table(
                f"{name}: follow-up, change and responders by treatment and time point",
                (
                    "Treatment",
                    "Time point",
                    "Due",
                    "Answered",
                    "Mean change (95% CI)",
                    "Responders among those who answered",
                    "Responders, missing = non-response",
                    "≥50% better among those who answered",
                    "≥50% better, missing = non-response",
                ),
                rows,
                (1.6, 0.9, 0.6, 1.2, 1.5, 1.6, 1.6, 1.6, 1.6),
            )
        )
    # ---- opioids
    rows = []
    for arm, a in d["arms"].items():
        for tp in a["timepoints"]:
            o = tp.get("opioids")
            if not o:
                continue
            ch = o.get("mme_change") or {}
            rows.append(
                (
                    _arm(arm),
                    label("timepoint", tp["timepoint"]),
                    _rate(o["on_opioids"]),
                    f"{_num(ch.get('mean'))} ({_ci(ch.get('ci'))}), n = "
                    f"{count_text(ch.get('n', 0))}",
                )
            )
    out.append("<h2>Opioid use</h2>")
    out.append(
        _table(
            "Opioid use by treatment and time point",
            (
                "Treatment",
                "Time point",
                "On opioids",
                "Mean change in opioid dose, MME/day (95% CI)",
            ),
            rows,
            (2, 1, 2.5, 2.5),
        )
    )
    # ---- survival
    out.append("<h2>Surgery-free survival (Kaplan–Meier)</h2>")
    out.append(f"<figure>{_survival_chart(report, d, styles)}</figure>")
    out.append(
        f"<p class='note'>Censoring: {_e(label('censoring', d['survival']['censoring']))}. "
        f"{_e(survival_method_words(d['survival']))}</p>"
    )
    rows = []
    for arm, a in d["arms"].items():
        for p in a["surgery_free"]:
            rows.append(
                (
                    _arm(arm),
                    f"{p['months']:g} months",
                    share_text(p["survival"]),
                    interval_text(p["ci"]),
                    count_text(p["at_risk"]),
                    count_text(p["events_before"]),
                )
            )
    out.append(
        _table(
            "Surgery-free survival at 6, 12 and 24 months",
            ("Treatment", "At", "Surgery-free", "95% CI", "At risk", "Surgeries so far"),
            rows,
            (2, 1, 1, 1.5, 1, 1),
        )
    )
    lr = d["survival"]["logrank"]
    if lr and lr.get("p_value") is not None:
        out.append(f"<p>{_e(logrank_words(lr))}</p>")
    out.extend(_returns_section(d))
    # ---- adverse events
    rows = []
    for arm, a in d["arms"].items():
        ae = a["adverse_events"]

        def _ev(c: Any) -> str:
            if not c or is_suppressed(c) or is_suppressed(c.get("patients")):
                return SUPPRESSED if c else "–"
            return f"{_num(c['events_per_100'])} ({count_text(c['patients'])})"

        rows.append(
            (
                _arm(arm),
                count_text(ae["n_patients"]),
                _ev(ae["any"]),
                _ev(ae["serious"]),
                *(_ev(ae["by_grade"].get(g)) for g in "12345"),
                _ev(ae["repeat_injections"]),
            )
        )
    out.append("<h2>Adverse events</h2>")
    out.append(
        _table(
            "Adverse events per 100 patients (patients with at least one) by treatment",
            (
                "Treatment",
                "Patients",
                "Any",
                "Serious",
                *(f"Grade {g}" for g in "12345"),
                "Repeat injections",
            ),
            rows,
            (2, 0.9, 1, 1, 1, 1, 1, 1, 1, 1.1),
        )
    )
    # ---- cost
    out.extend(_cost_section(d))
    # ---- comparisons
    out.append("<h2>Adjusted comparisons (propensity-score weighting)</h2>")
    out.append(f"<p class='caveat'><strong>Observational.</strong> {_e(OBSERVATIONAL_CAVEAT)}</p>")
    plot: list[charts.ForestRow] = []
    rows = []
    for c in d["comparisons"]:
        treated, control = (
            arms_words(c["treated_arms"]),
            arms_words(c["control_arms"]),
        )
        first = c["adjusted"][0] if c["adjusted"] else {}
        if first.get("difference") is not None:
            ci = first.get("ci")
            plot.append(
                charts.ForestRow(
                    f"vs {control}",
                    first["difference"],
                    ci[0] if ci else None,
                    ci[1] if ci else None,
                    style=styles.get(c["control_arms"][0]) if len(c["control_arms"]) == 1 else None,
                )
            )
        for naive, adj in zip(c["naive"], c["adjusted"], strict=False):
            rows.append(
                (
                    f"{treated} vs {control}",
                    f"{count_text(c['n_treated'])} / {count_text(c['n_control'])}",
                    f"{_num(c['ess_treated'], 0)} / {_num(c['ess_control'], 0)}",
                    f"{_num(c['max_abs_smd_before'], 2)} → {_num(c['max_abs_smd_after'], 2)}",
                    outcome_words(adj["outcome"]),
                    f"{_num(naive['difference'], 2)} ({_ci(naive['ci'], 2)})",
                    f"{_num(adj['difference'], 2)} ({_ci(adj['ci'], 2)})",
                )
            )
    if plot:
        outcome = outcome_words(d["comparisons"][0]["adjusted"][0]["outcome"])
        out.append(
            "<figure>"
            + charts.forest_plot(
                plot,
                title="Adjusted comparisons",
                desc="Weighted differences with 95% CIs; dashed: no difference.",
                xlabel=f"Weighted difference in {outcome}: cell therapy minus the other",
            ).wide
            + "</figure>"
        )
    out.append(
        _table(
            "Propensity-weighted comparisons",
            (
                "Comparison",
                "Patients (treated / comparator)",
                "Effective sample size",
                "Largest imbalance |SMD| before → after",
                "Outcome",
                "Unadjusted difference (95% CI)",
                "Weighted difference (95% CI)",
            ),
            rows,
            (2.4, 1.1, 1.1, 1.2, 2, 1.5, 1.5),
        )
    )
    for err in d["comparison_errors"]:
        out.append(f"<p class='note'>Not compared: {_e(comparison_error_words(err))}</p>")
    # ---- benchmark
    b = d.get("benchmark")
    if b and b["clinics"]:
        out.append("<h2>Clinic benchmarking (funnel plot)</h2>")

        def clinic(cid: Any) -> str:
            return names.get(str(cid), f"Clinic {cid}")

        clinic_styles = charts.assign_styles([str(c["clinic_id"]) for c in b["clinics"]])
        out.append(
            "<figure>"
            + charts.funnel_plot(
                [
                    charts.FunnelPoint(
                        clinic(c["clinic_id"]),
                        float(c["n"]),
                        number(c["adjusted_rate"]),
                        style=clinic_styles[str(c["clinic_id"])],
                    )
                    for c in b["clinics"]
                    if isinstance(c.get("n"), (int, float))
                ],
                limits_n=b["funnel"]["n"],
                limits_95=[(x[0], x[1]) if x else None for x in b["funnel"]["limits_95"]],
                limits_998=[(x[0], x[1]) if x else None for x in b["funnel"]["limits_998"]],
                overall=number(b["overall_rate"]),
                title="Clinic benchmarking funnel plot",
                desc="Clinics' adjusted responder rates against their number of patients.",
                xlabel="Patients with a 12-month ODI and a baseline",
                ylabel="Adjusted responder rate",
            ).wide
            + "</figure>"
        )
        out.append(
            f"<p class='note'>{_e(b['method'])}; overall rate {share_text(b['overall_rate'])}.</p>"
        )
        rows = [
            (
                clinic(c["clinic_id"]),
                count_text(c["n"]),
                _rate(c["raw_rate"]),
                _num(c["o_e"], 2),
                share_text(c["adjusted_rate"]),
                _ci([x * 100 for x in c["limits_95"]], 0) + "%"
                if c.get("limits_95") and None not in c["limits_95"]
                else "–",
                str(c["position"]).capitalize(),
                rate_text(c["completeness"], ci=False),
            )
            for c in b["clinics"]
        ]
        out.append(
            _table(
                "Clinic benchmarking: 12-month ODI responders, case-mix adjusted",
                (
                    "Clinic",
                    "Patients",
                    "Raw responder rate",
                    "Observed / expected",
                    "Adjusted rate",
                    "95% limits",
                    "Position",
                    "12-month follow-up",
                ),
                rows,
                (1.8, 0.8, 2, 1, 1, 1.2, 1.2, 1.6),
            )
        )
    out.append("</body></html>")
    text = "\n".join(out)
    return text.replace("</style>", _col_css(text) + "</style>", 1)
