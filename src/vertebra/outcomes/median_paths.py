"""The median paths the patient trajectory page draws, from the analysis snapshot.

Contracts
---------
* :func:`paths_for` returns every arm's median path (:func:`vertebra.outcomes.trajectory.
  median_paths`) over the actor's clinics, from the analysis snapshot
  (:func:`vertebra.outcomes.snapshot.snapshot_result`: scoped and audited on every call, never
  a registry read in the request), with the snapshot's status: ``(None, None)`` when there is
  no snapshot yet, ``(None, status)`` with ``status.pending`` while the worker prepares a wide
  scope's paths. A patient's page reads the patient's own rows now
  (:func:`vertebra.outcomes.selectors.patient_tables`) and the median from here, as of the
  snapshot: the page at a million patients costs an index read, not a read of the registry.
* The worker prepares the paths of every identified default scope with each refresh (this
  module registers the ``median-paths`` builder); a de-identified scope has none (the
  per-patient page is for clinic staff, who read identified rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from vertebra.core.analytics import AnalysisTables, CohortFilter
from vertebra.outcomes.snapshot import Status, register_builder, snapshot_result
from vertebra.outcomes.trajectory import MedianPath, median_paths
from vertebra.registry.permissions import Actor

__all__ = ["default_what", "paths_builder", "paths_for"]

#: The builder's name and the version of what it builds (a new version gives new keys).
WHAT = ("median-paths", 1)


def default_what() -> tuple[Any, ...]:
    """What the median paths are, for the snapshot's result keys."""
    return WHAT


def paths_builder(
    what: tuple[Any, ...], flt: CohortFilter, as_of: dt.date
) -> Callable[[AnalysisTables], dict[str, MedianPath] | None]:
    """The build of the median paths (the same code in a page and in the worker); None for
    de-identified tables (no page of a researcher's draws them)."""

    def build(tables: AnalysisTables) -> dict[str, MedianPath] | None:
        if tables.time_base != "calendar":
            return None
        return median_paths(tables)

    return build


def paths_for(actor: Actor, as_of: dt.date) -> tuple[dict[str, MedianPath] | None, Status | None]:
    """The median path of every arm over the actor's clinics, as of the current snapshot,
    and the snapshot's status (see the module's contract)."""
    what = default_what()
    return snapshot_result(
        actor=actor, build=paths_builder(what, CohortFilter(), as_of), what=what, as_of=as_of
    )


register_builder(
    "median-paths",
    paths_builder,
    default_what=default_what,
    applies=lambda scope: not scope.deidentified,
)
