"""Reports from the registry: the `Report` of an actor's filtered cohort, and its PDF/HTML.

Contracts
---------
* :func:`report_for` reads the tables from the analysis snapshot
  (:func:`vertebra.outcomes.snapshot.snapshot_tables`: scoped and audited like
  :func:`selectors.analysis_tables`, never a registry read in the request) and returns the
  report (None when no patient matches: callers say so plainly) with the snapshot's status
  (None when there is no snapshot yet: callers say the figures are being prepared).
* :func:`render_pdf` renders the self-contained HTML report (``analytics.html.render_html`` via
  :mod:`vertebra.outcomes.rendering`, figures as inline SVG) with WeasyPrint; ImportError if WeasyPrint is not installed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from vertebra.core.analytics import CohortFilter, Report, build_report
from vertebra.core.deidentify import coarsen_filter
from vertebra.core.disclosure import policy
from vertebra.outcomes.rendering import report_pdf
from vertebra.outcomes.snapshot import Status, snapshot_tables
from vertebra.registry.permissions import Actor

__all__ = ["render_pdf", "report_for"]


def report_for(
    actor: Actor, flt: CohortFilter, as_of: dt.date
) -> tuple[Report | None, Status | None]:
    """The outcome report of the actor's patients matching ``flt`` (None if there are none)
    and the status of the snapshot it came from (None, None: no snapshot yet).

    For a researcher the tables are de-identified at ``as_of`` and the report shows no
    calendar date; its filter says the whole years a treatment-date range was widened to.
    A researcher's report also applies the minimum cell size (``vertebra.core.disclosure``):
    arms of fewer than 11 patients are left out, a cohort of fewer than 11 gives no figure
    (``report.cohort_suppressed``), and smaller cells are suppressed in ``to_dict()``.
    """
    tables, status = snapshot_tables(actor=actor, filter=flt, as_of=as_of)
    if tables is None or len(tables.patients) == 0:
        return None, status
    if tables.time_base != "calendar":
        flt = coarsen_filter(flt)
        return build_report(tables, flt, as_of, min_cell=policy().min_cell), status
    return build_report(tables, flt, as_of), status


def render_pdf(
    report: Report, clinic_names: Mapping[str, str] | None = None, *, synthetic: bool = False
) -> bytes:
    """The report as PDF bytes (WeasyPrint over the self-contained HTML report), clinics
    named by ``clinic_names`` (their names for staff, letters for researchers); ``synthetic``
    says under the title that the registry is the demo's invented one."""
    return report_pdf(report, clinic_names=clinic_names, synthetic=synthetic)
