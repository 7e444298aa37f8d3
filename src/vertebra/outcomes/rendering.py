"""HTML and PDF of a `Report` for people (no Django: the CLI uses it without a database).

Wraps ``vertebra.core.analytics.html.render_html``; clinics with no patient to benchmark
(n = 0 at the benchmark time point, so no funnel limits) are left out of the benchmark table
before rendering, and the report says how many were left out.
"""

from __future__ import annotations

import dataclasses

from vertebra.core.analytics import Report
from vertebra.core.analytics.html import render_html

__all__ = ["printable", "report_html", "report_pdf"]

TITLE = "Vertebra outcome report"


def printable(report: Report) -> tuple[Report, int]:
    """``report`` without benchmark rows that have no patients; and how many were dropped."""
    bench = report.benchmark
    if bench is None:
        return report, 0
    kept = tuple(c for c in bench.clinics if c.n > 0)
    dropped = len(bench.clinics) - len(kept)
    if not dropped:
        return report, 0
    return dataclasses.replace(report, benchmark=dataclasses.replace(bench, clinics=kept)), dropped


def report_html(report: Report, title: str = TITLE) -> str:
    """The self-contained HTML report (inline CSS and SVG figures)."""
    shown, dropped = printable(report)
    text = render_html(shown, title=title)
    if dropped:
        note = (
            f"<p class='note'>{dropped} clinic(s) had no patient with a 12-month answer and "
            "are not in the benchmark.</p></body>"
        )
        text = text.replace("</body>", note, 1)
    return text


def report_pdf(report: Report, title: str = TITLE) -> bytes:
    """The report as PDF bytes: WeasyPrint over :func:`report_html`."""
    from weasyprint import HTML  # type: ignore[import-untyped]

    pdf: bytes = HTML(string=report_html(report, title=title)).write_pdf()
    return pdf
