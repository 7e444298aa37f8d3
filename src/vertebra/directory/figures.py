"""The public clinic directory's outcome figures, from the analysis snapshot.

Contracts
---------
* :func:`published_figures` returns the figures of every published clinic
  (:func:`vertebra.core.directory.figures_of_clinics`, on the registry's **de-identified**
  analysis tables: the researchers' tables, with the minimum cell of
  :mod:`vertebra.core.disclosure`) and the snapshot's status. They come from the analysis
  snapshot (:func:`vertebra.outcomes.snapshot.public_result`): stored by the worker with each
  refresh, so a visitor's page never reads the registry nor builds a report (at 100,000
  patients the build took ~29 s of CPU; it ran in the request on every cache expiry before).
  ``(None, None)`` with no snapshot yet; ``(None, status)`` with ``status.pending`` while
  the worker prepares figures and none were built before.
* What is built names the published clinics (and the figures' version and minimum cell):
  publishing or unpublishing asks for a new build, which the worker makes between its
  refreshes (it looks for requests every ``SNAPSHOT_REQUEST_POLL_SECONDS``). Meanwhile the figures it built last (kept under
  :func:`latest_what`, from this snapshot or the previous one) are shown for the clinics
  still published: a **published clinic missing from the figures is being prepared**, the
  others keep theirs, and an unpublished clinic's are dropped at once. A clinic's figures
  never appear on the directory before it is published. Consent and answers are read live
  by the selectors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from vertebra.core import disclosure
from vertebra.core.analytics import AnalysisTables, CohortFilter
from vertebra.core.directory import ClinicFigures, figures_of_clinics
from vertebra.directory.models import ClinicListing
from vertebra.outcomes.snapshot import Status, public_latest, public_result, register_builder

__all__ = [
    "FIGURES_VERSION",
    "default_what",
    "figures_builder",
    "latest_what",
    "published_figures",
]

#: Bump when the figures change shape, so no stored result of an older shape is read.
FIGURES_VERSION = 2


def default_what() -> tuple[Any, ...]:
    """What the directory's figures are: their name and version, the minimum cell in force
    and the published clinics (ids, ascending)."""
    published = ClinicListing.objects.filter(published=True).order_by("clinic_id")
    ids = tuple(int(c) for c in published.values_list("clinic_id", flat=True))
    return ("directory-figures", FIGURES_VERSION, disclosure.policy().min_cell, ids)


def latest_what(what: tuple[Any, ...]) -> tuple[Any, ...]:
    """The name under which the worker also keeps the figures it built for ``what``: the
    same name, version and minimum cell, whichever clinics were published."""
    return (*what[:3], "latest")


def figures_builder(
    what: tuple[Any, ...], flt: CohortFilter, as_of: dt.date
) -> Callable[[AnalysisTables], dict[str, ClinicFigures] | None]:
    """The build of the figures of the clinics ``what`` names (the same code in a page that
    may build and in the worker); None for identified tables (never a public figure)."""
    min_cell, clinics = int(what[2]), [str(c) for c in what[3]]

    def build(tables: AnalysisTables) -> dict[str, ClinicFigures] | None:
        if tables.time_base == "calendar":
            return None
        return figures_of_clinics(tables, clinics, as_of, min_cell=min_cell)

    return build


def published_figures(
    as_of: dt.date,
) -> tuple[dict[str, ClinicFigures] | None, Status | None]:
    """Every published clinic's figures (clinic id as text -> figures) as of the current
    snapshot, and its status (see the module's contract)."""
    what = default_what()
    figures, status = public_result(
        build=figures_builder(what, CohortFilter(), as_of), what=what, as_of=as_of
    )
    if figures is not None or status is None or not status.pending:
        return figures, status
    last = public_latest(latest_what(what), as_of)
    if last is None:
        return None, status
    built, built_status = last
    published = {str(c) for c in what[3]}
    return {cid: f for cid, f in built.items() if cid in published}, built_status


register_builder(
    "directory-figures",
    figures_builder,
    default_what=default_what,
    applies=lambda scope: scope.deidentified and scope.clinic_ids is None,
    latest=latest_what,
)
