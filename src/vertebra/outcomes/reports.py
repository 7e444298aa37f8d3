"""Reports from the registry: the `Report` of an actor's filtered cohort, and its PDF/HTML.

Contracts
---------
* :func:`report_for` reads the tables through :func:`selectors.analysis_tables` (scoped and
  audited) and returns None when no patient matches (callers say so plainly).
* :func:`render_pdf` renders the self-contained HTML report (``analytics.html.render_html`` via
  :mod:`vertebra.outcomes.rendering`, figures as inline SVG) with WeasyPrint; ImportError if WeasyPrint is not installed.
"""

from __future__ import annotations

import datetime as dt

from vertebra.core.analytics import CohortFilter, Report, build_report
from vertebra.outcomes.rendering import report_pdf
from vertebra.outcomes.selectors import analysis_tables
from vertebra.registry.permissions import Actor

__all__ = ["render_pdf", "report_for"]


def report_for(actor: Actor, flt: CohortFilter, as_of: dt.date) -> Report | None:
    """The outcome report of the actor's patients matching ``flt``, or None if there are none."""
    tables = analysis_tables(actor=actor, filter=flt)
    if len(tables.patients) == 0:
        return None
    return build_report(tables, flt, as_of)


def render_pdf(report: Report) -> bytes:
    """The report as PDF bytes (WeasyPrint over the self-contained HTML report)."""
    return report_pdf(report)
