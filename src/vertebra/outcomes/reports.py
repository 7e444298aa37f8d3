"""Reports from the registry: the `Report` of an actor's filtered cohort, and its PDF/HTML.

Contracts
---------
* :func:`report_for` builds the report from the analysis snapshot
  (:func:`vertebra.outcomes.snapshot.snapshot_result`: scoped and audited like
  :func:`selectors.analysis_tables` on every call, never a registry read in the request; the
  built report is kept per snapshot, scope, filter and day, so a repeated view answers from
  memory) and returns it (None when no patient matches: callers say so plainly) with the
  snapshot's status (None when there is no snapshot yet: callers say the figures are being
  prepared).
* :func:`render_pdf` renders the self-contained HTML report (``analytics.html.render_html`` via
  :mod:`vertebra.outcomes.rendering`, figures as inline SVG) with WeasyPrint; ImportError if WeasyPrint is not installed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from vertebra.core.analytics import AnalysisTables, CohortFilter, Report, build_report
from vertebra.core.deidentify import coarsen_filter
from vertebra.core.disclosure import policy
from vertebra.outcomes.rendering import report_pdf
from vertebra.outcomes.snapshot import Status, register_builder, result_ready, snapshot_result
from vertebra.registry.permissions import Actor

__all__ = ["default_what", "render_pdf", "report_builder", "report_for", "report_ready"]


def report_for(
    actor: Actor, flt: CohortFilter, as_of: dt.date
) -> tuple[Report | None, Status | None]:
    """The outcome report of the actor's patients matching ``flt`` (None if there are none)
    and the status of the snapshot it came from (None, None: no snapshot yet; a status with
    ``pending``: the worker is preparing this filter's report, ask again later).

    For a researcher the tables are de-identified at ``as_of`` and the report shows no
    calendar date; its filter says the whole years a treatment-date range was widened to.
    A researcher's report also applies the minimum cell size (``vertebra.core.disclosure``):
    arms of fewer than 11 patients are left out, a cohort of fewer than 11 gives no figure
    (``report.cohort_suppressed``), and smaller cells are suppressed in ``to_dict()``.
    """
    what = default_what()
    report, status = snapshot_result(
        actor=actor, build=report_builder(what, flt, as_of), what=what, filter=flt, as_of=as_of
    )
    return report, status


def report_ready(actor: Actor, flt: CohortFilter, as_of: dt.date) -> bool:
    """Whether :func:`report_for` would now answer without waiting for the worker (see
    ``snapshot.result_ready``: nothing read, built or audited; a waiting page polls it)."""
    return result_ready(actor=actor, what=default_what(), filter=flt, as_of=as_of)


def default_what() -> tuple[Any, ...]:
    """What a report is, for the snapshot's result keys: its name and the minimum cell size
    in force (a new policy gives new keys)."""
    return ("report", policy().min_cell)


def report_builder(
    what: tuple[Any, ...], flt: CohortFilter, as_of: dt.date
) -> Callable[[AnalysisTables], Report | None]:
    """The build of the report ``what`` names (see :func:`default_what`) for ``flt`` and
    ``as_of``: the same code in a page and in the worker, which stores it beside the snapshot
    (``snapshot.register_builder``)."""
    min_cell = int(what[1])

    def build(tables: AnalysisTables) -> Report | None:
        # aggregate figures only: the report never holds a patient's (pseudonymous) id
        if len(tables.patients) == 0:
            return None
        if tables.time_base != "calendar":
            return build_report(tables, coarsen_filter(flt), as_of, min_cell=min_cell)
        return build_report(tables, flt, as_of)

    return build


register_builder("report", report_builder, default_what=default_what)


def render_pdf(
    report: Report, clinic_names: Mapping[str, str] | None = None, *, synthetic: bool = False
) -> bytes:
    """The report as PDF bytes (WeasyPrint over the self-contained HTML report), clinics
    named by ``clinic_names`` (their names for staff, letters for researchers); ``synthetic``
    says under the title that the registry is the demo's invented one."""
    return report_pdf(report, clinic_names=clinic_names, synthetic=synthetic)
