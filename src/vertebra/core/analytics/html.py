"""Self-contained HTML rendering of a `Report` (inline CSS, figures as inline SVG).

Figures need matplotlib (optional); without it the report still has every table. Each figure
is followed by its data table, so the numbers are available to screen readers and the plots
never carry information the tables do not.
"""

from __future__ import annotations

import html
import io
from typing import Any

from vertebra.core.analytics.propensity import OBSERVATIONAL_CAVEAT
from vertebra.core.analytics.report import HONESTY_NOTES, Report

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1b1b1b;
max-width:1200px}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.caveat{background:#fff4e5;border-left:4px solid #e08a00;padding:.75rem 1rem}
.note{color:#555;font-size:.85rem}figure{margin:1rem 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _pct(rate: dict[str, Any] | None) -> str:
    """'62.0% (55.0–68.4) 122/197' — a rate always with its CI and denominator."""
    if rate and rate.get("suppressed"):  # small cell (researchers' reports)
        return str(rate.get("numerator"))
    if not rate or rate.get("rate") is None:
        den = rate.get("denominator", 0) if rate else 0
        return f"– (0/{den})"
    ci = rate.get("ci")
    ci_s = f" ({ci[0] * 100:.1f}–{ci[1] * 100:.1f})" if ci else ""
    return f"{rate['rate'] * 100:.1f}%{ci_s} {rate['numerator']}/{rate['denominator']}"


def _num(x: float | str | None, d: int = 1) -> str:
    if isinstance(x, str):  # a suppressed value prints as its words
        return x
    return "–" if x is None else f"{x:.{d}f}"


def _ci(ci: list[float] | None, d: int = 1) -> str:
    return "–" if not ci else f"{ci[0]:.{d}f} to {ci[1]:.{d}f}"


def _percent_limits(limits: list[float] | None) -> list[float] | None:
    """Control limits as percentages, or None when the clinic has none (no one to judge)."""
    if not limits or any(x is None for x in limits):
        return None
    return [x * 100 for x in limits]


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]


def _figures(report: Report, d: dict[str, Any]) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # figures are optional; tables carry every number
        return {}
    figs: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for arm, a in d["arms"].items():
        xs, ys, lo, hi = [], [], [], []
        for tp in a["timepoints"][1:]:
            odi = tp.get("odi") or {}
            if odi.get("mean_change") is not None and odi.get("mean_change_ci"):
                xs.append(tp["months"])
                ys.append(odi["mean_change"])
                lo.append(odi["mean_change_ci"][0])
                hi.append(odi["mean_change_ci"][1])
        if xs:
            ax.plot(xs, ys, marker="o", label=arm)
            ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(-10, color="grey", ls="--", lw=1)
    ax.set_xlabel("months after treatment")
    ax.set_ylabel("mean ODI change (95% CI)")
    if ax.get_legend_handles_labels()[0]:  # a filter can leave no arm with follow-up data
        ax.legend(fontsize=7, ncol=2)
    figs["trajectory"] = _svg(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for arm, curve in report.survival.curves.items():
        ax.step(curve.months, curve.survival, where="post", label=arm)
    ax.set_xlabel("months after treatment")
    ax.set_ylabel("surgery-free survival")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    figs["km"] = _svg(fig)

    if d["comparisons"]:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(d["comparisons"])))
        for i, c in enumerate(d["comparisons"]):
            est = c["adjusted"][0]
            if est["difference"] is not None and est["ci"]:
                ax.errorbar(
                    est["difference"],
                    i,
                    xerr=[[est["difference"] - est["ci"][0]], [est["ci"][1] - est["difference"]]],
                    fmt="s",
                    color="black",
                )
        ax.set_yticks(range(len(d["comparisons"])))
        ax.set_yticklabels([f"cell vs {'+'.join(c['control_arms'])}" for c in d["comparisons"]])
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel("weighted difference in 12-month ODI change (negative favours cell)")
        figs["forest"] = _svg(fig)

    b = d.get("benchmark")
    if b and b["clinics"]:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        n = b["funnel"]["n"]
        for key, style in (("limits_95", "--"), ("limits_998", ":")):
            # A clinic with nobody answered at 12 months has no limits: leave a gap, not a crash.
            pairs = [(k, x) for k, x in zip(n, b["funnel"][key], strict=True) if x is not None]
            ax.plot([k for k, _ in pairs], [x[0] for _, x in pairs], "k" + style, lw=1)
            ax.plot([k for k, _ in pairs], [x[1] for _, x in pairs], "k" + style, lw=1)
        ax.axhline(b["overall_rate"] or 0, color="grey", lw=1)
        ax.scatter(
            [c["n"] for c in b["clinics"]], [c["adjusted_rate"] or 0 for c in b["clinics"]], s=12
        )
        ax.set_xscale("log")
        ax.set_xlabel("patients with 12-month ODI and baseline (n)")
        ax.set_ylabel("case-mix-adjusted responder rate")
        figs["funnel"] = _svg(fig)
    return figs


def render_html(report: Report, title: str = "Vertebra outcome report") -> str:
    """The report as one self-contained HTML document (no external resources)."""
    d = report.to_dict()
    figs = _figures(report, d)
    out: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>As of {_e(report.as_of_label)}; {d['n_patients']} patients; filter: "
        f"{_e({k: v for k, v in d['filter'].items() if v})}</p>",
        "<ul class='note'>" + "".join(f"<li>{_e(n)}</li>" for n in HONESTY_NOTES) + "</ul>",
        "<h2>Baseline characteristics</h2><table><tr><th>arm</th><th>n</th><th>age mean (SD)</th>"
        "<th>female</th><th>ODI mean (SD)</th><th>NRS back mean (SD)</th>"
        "<th>STarT Back high</th></tr>",
    ]
    for arm, a in d["arms"].items():
        bl = a["baseline"]
        high = bl["startback_group"].get("high")
        out.append(
            f"<tr><td>{_e(arm)}</td><td>{bl['n']}</td>"
            f"<td>{_num(bl['age']['mean'])} ({_num(bl['age']['sd'])})</td>"
            f"<td>{_pct(bl['female'])}</td>"
            f"<td>{_num(bl['odi']['mean'])} ({_num(bl['odi']['sd'])}), n={bl['odi']['n']}</td>"
            f"<td>{_num(bl['nrs_back']['mean'])} ({_num(bl['nrs_back']['sd'])}), "
            f"n={bl['nrs_back']['n']}</td><td>{_pct(high)}</td></tr>"
        )
    out.append("</table>")
    out.append("<h2>Follow-up, change from baseline and responders</h2>")
    if "trajectory" in figs:
        out.append(
            f"<figure>{figs['trajectory']}<figcaption>Mean ODI change with 95% CI; "
            "dashed line: 10-point MCID.</figcaption></figure>"
        )
    for measure in ("odi", "nrs_back"):
        out.append(
            f"<h3>{_e(measure)}</h3><table><tr><th>arm</th><th>time point</th><th>expected</th>"
            "<th>completed (completeness)</th><th>mean change (95% CI), n</th>"
            "<th>responders among completers</th><th>responders, missing = non-response</th>"
            "<th>≥50% among completers</th><th>≥50%, missing = non-response</th></tr>"
        )
        for arm, a in d["arms"].items():
            for tp in a["timepoints"][1:]:
                m = tp.get(measure) or {}
                out.append(
                    f"<tr><td>{_e(arm)}</td><td>{_e(tp['timepoint'])}</td>"
                    f"<td>{tp['n_expected']}</td><td>{tp['n_completed']} "
                    f"({_pct(tp['completeness'])})</td>"
                    f"<td>{_num(m.get('mean_change'))} ({_ci(m.get('mean_change_ci'))}), "
                    f"n={m.get('n_change', 0)}</td>"
                    f"<td>{_pct(m.get('responder_rate_completers'))}</td>"
                    f"<td>{_pct(m.get('responder_rate_all'))}</td>"
                    f"<td>{_pct(m.get('substantial_rate_completers'))}</td>"
                    f"<td>{_pct(m.get('substantial_rate_all'))}</td></tr>"
                )
        out.append("</table>")
    out.append(
        "<h2>Opioid use</h2><table><tr><th>arm</th><th>time point</th>"
        "<th>on opioids</th><th>mean MME change (95% CI), n</th></tr>"
    )
    for arm, a in d["arms"].items():
        for tp in a["timepoints"]:
            o = tp.get("opioids")
            if not o:
                continue
            ch = o.get("mme_change") or {}
            out.append(
                f"<tr><td>{_e(arm)}</td><td>{_e(tp['timepoint'])}</td>"
                f"<td>{_pct(o['on_opioids'])}</td>"
                f"<td>{_num(ch.get('mean'))} ({_ci(ch.get('ci'))}), n={ch.get('n', 0)}</td></tr>"
            )
    out.append("</table>")
    out.append("<h2>Surgery-free survival (Kaplan–Meier)</h2>")
    if "km" in figs:
        out.append(f"<figure>{figs['km']}</figure>")
    out.append(f"<p class='note'>Censoring: {_e(d['survival']['censoring'])}.</p>")
    out.append(
        "<table><tr><th>arm</th><th>months</th><th>survival (95% CI)</th>"
        "<th>at risk</th><th>surgeries so far</th></tr>"
    )
    for arm, a in d["arms"].items():
        for p in a["surgery_free"]:
            out.append(
                f"<tr><td>{_e(arm)}</td><td>{p['months']:g}</td>"
                f"<td>{_num(p['survival'], 3)} ({_ci(p['ci'], 3)})</td>"
                f"<td>{p['at_risk']}</td><td>{p['events_before']}</td></tr>"
            )
    out.append("</table>")
    lr = d["survival"]["logrank"]
    if lr:
        out.append(
            f"<p>Log-rank test across arms: χ² = {_num(lr['statistic'], 2)}, "
            f"df = {lr['df']}, p = {lr['p_value']:.3g}</p>"
        )
    out.append(
        "<h2>Adverse events (per 100 patients)</h2><table><tr><th>arm</th><th>n</th>"
        "<th>any AE: events/100 (patients)</th><th>serious</th>"
        + "".join(f"<th>grade {g}</th>" for g in "12345")
        + "<th>repeat injections</th></tr>"
    )
    for arm, a in d["arms"].items():
        ae = a["adverse_events"]

        def _ev(c: dict[str, Any]) -> str:
            return f"{_num(c['events_per_100'])} ({c['patients']})"

        out.append(
            f"<tr><td>{_e(arm)}</td><td>{ae['n_patients']}</td><td>{_ev(ae['any'])}</td>"
            f"<td>{_ev(ae['serious'])}</td>"
            + "".join(f"<td>{_ev(ae['by_grade'][g])}</td>" for g in "12345")
            + f"<td>{_ev(ae['repeat_injections'])}</td></tr>"
        )
    out.append("</table>")
    out.append("<h2>Adjusted comparisons (propensity-score weighting)</h2>")
    out.append(f"<p class='caveat'><strong>Observational.</strong> {_e(OBSERVATIONAL_CAVEAT)}</p>")
    if "forest" in figs:
        out.append(f"<figure>{figs['forest']}</figure>")
    out.append(
        "<table><tr><th>comparison</th><th>n treated / comparator</th><th>ESS</th>"
        "<th>max |SMD| before → after</th><th>outcome</th><th>naive difference (95% CI)"
        "</th><th>weighted difference (95% CI)</th></tr>"
    )
    for c in d["comparisons"]:
        for naive, adj in zip(c["naive"], c["adjusted"], strict=False):
            out.append(
                f"<tr><td>{_e('+'.join(c['treated_arms']))} vs {_e('+'.join(c['control_arms']))}"
                f"</td><td>{c['n_treated']} / {c['n_control']}</td>"
                f"<td>{_num(c['ess_treated'], 0)} / {_num(c['ess_control'], 0)}</td>"
                f"<td>{_num(c['max_abs_smd_before'], 2)} → {_num(c['max_abs_smd_after'], 2)}</td>"
                f"<td>{_e(adj['outcome'])}</td>"
                f"<td>{_num(naive['difference'], 3)} ({_ci(naive['ci'], 3)})</td>"
                f"<td>{_num(adj['difference'], 3)} ({_ci(adj['ci'], 3)})</td></tr>"
            )
    out.append("</table>")
    for err in d["comparison_errors"]:
        out.append(f"<p class='note'>Not compared: {_e(err)}</p>")
    b = d.get("benchmark")
    if b:
        out.append("<h2>Clinic benchmarking (funnel plot)</h2>")
        if "funnel" in figs:
            out.append(f"<figure>{figs['funnel']}</figure>")
        out.append(
            f"<p class='note'>{_e(b['method'])}; overall rate "
            f"{_num((b['overall_rate'] or 0) * 100)}%.</p>"
        )
        out.append(
            "<table><tr><th>clinic</th><th>n</th><th>raw rate</th><th>O/E</th>"
            "<th>adjusted rate</th><th>95% limits</th><th>position</th>"
            "<th>12-month completeness</th></tr>"
        )
        for c in b["clinics"]:
            out.append(
                f"<tr><td>{_e(c['clinic_id'])}</td><td>{c['n']}</td><td>{_pct(c['raw_rate'])}"
                f"</td><td>{_num(c['o_e'], 2)}</td><td>{_num((c['adjusted_rate'] or 0) * 100)}%"
                f"</td><td>{_ci(_percent_limits(c['limits_95']))}</td>"
                f"<td>{_e(c['position'])}</td><td>{_pct(c['completeness'])}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
