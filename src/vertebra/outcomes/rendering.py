"""HTML and PDF of a `Report` for people (no Django: the CLI uses it without a database).

Wraps ``vertebra.core.analytics.html.render_html``; clinics with no patient to benchmark
(n = 0 at the benchmark time point, so no funnel limits) are left out of the benchmark table
before rendering, and the report says how many were left out.

PDF rendering keeps the console quiet: WeasyPrint and fontTools log every font subset and
layout step at INFO/DEBUG (hundreds of lines per report when the root logger is at INFO, as
in the web app and the database CLI); while rendering those loggers pass only errors.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from html import escape

from vertebra.core.analytics import Report
from vertebra.core.analytics.html import render_html

__all__ = [
    "QUIET_LOGGERS",
    "notice_pdf",
    "printable",
    "quiet_pdf_logging",
    "report_html",
    "report_pdf",
]

TITLE = "Vertebra outcome report"
#: Loggers of the PDF stack that are silenced below ERROR while a PDF is rendered.
QUIET_LOGGERS = ("weasyprint", "fontTools", "PIL", "cssselect2", "tinycss2", "pydyf")


@contextmanager
def quiet_pdf_logging() -> Iterator[None]:
    """Within the block the PDF stack's loggers pass only ERROR and above; then as before."""
    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


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


#: Said under the title of a report drawn from the demo's synthetic registry (the same words as
#: the dashboard's banner, ``vertebra/_synthetic_registry.html``).
SYNTHETIC_NOTE = (
    "<p class='note'><strong>Synthetic demo data.</strong> This registry was filled by "
    "Vertebra's synthetic generator for the demo: every patient and every figure in this report "
    "is invented and describes no real person.</p>"
)


def report_html(
    report: Report,
    title: str = TITLE,
    clinic_names: Mapping[str, str] | None = None,
    *,
    synthetic: bool = False,
) -> str:
    """The self-contained HTML report (inline CSS and SVG figures); clinics named by
    ``clinic_names`` (id -> words), else "Clinic <id>". ``synthetic`` puts
    :data:`SYNTHETIC_NOTE` under the title (a report from the demo's registry)."""
    shown, dropped = printable(report)
    text = render_html(shown, title=title, clinic_names=clinic_names)
    if synthetic:
        text = text.replace("</h1>", "</h1>" + SYNTHETIC_NOTE, 1)
    if dropped:
        note = (
            f"<p class='note'>{dropped} clinic(s) had no patient with a 12-month answer and "
            "are not in the benchmark.</p></body>"
        )
        text = text.replace("</body>", note, 1)
    return text


def report_pdf(
    report: Report,
    title: str = TITLE,
    clinic_names: Mapping[str, str] | None = None,
    *,
    synthetic: bool = False,
) -> bytes:
    """The report as A4 PDF bytes: WeasyPrint over :func:`report_html`, quietly."""
    return _pdf(report_html(report, title=title, clinic_names=clinic_names, synthetic=synthetic))


def notice_pdf(message: str, title: str = TITLE) -> bytes:
    """A one-page PDF that says why there is no report (e.g. a cohort below the minimum cell
    size), so that a report link never ends in an error page."""
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title></head><body><h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )
    return _pdf(page)


def _pdf(page: str) -> bytes:
    with quiet_pdf_logging():  # importing WeasyPrint parses its own stylesheets and logs
        from weasyprint import HTML  # type: ignore[import-untyped]

        pdf: bytes = HTML(string=page).write_pdf()
    return pdf
