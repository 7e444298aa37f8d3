"""Reads behind the public decision aid: registry figures from the snapshot, and the evidence.

Contracts
---------
* :func:`cell_table` returns the decision aid's :class:`~vertebra.core.decision.CellTable`
  (leaf sums only, no patient rows) built from the registry's **de-identified** analysis
  tables (HIPAA Safe Harbor, the researchers' tables) at the snapshot's day, and the status of
  the analysis snapshot it came from (:mod:`vertebra.outcomes.snapshot`, ADR 0022). The table
  is built by the snapshot's refresh in ``vertebra worker`` (audited as
  ``system:decision-aid``, as before); a page never reads or aggregates the registry, and no
  web process starts a rebuild (no thread). With no snapshot yet :class:`FiguresNotReady` is
  raised: the page says the figures are being prepared.
* When the running rule set is newer than the snapshot's (a deployment before the worker's
  next pass), the table is built once per process from the snapshot's rows (no registry read).
* :func:`decision_result` applies a person's :class:`~vertebra.core.decision.Profile`
  (checked before any read). :func:`evidence` is the packaged evidence, checked against the
  knowledge base. :func:`rules` is the one place the web shell reads the rule set.
"""

from __future__ import annotations

import logging
import threading
from functools import cache

from django.db import transaction
from django.utils import timezone

from vertebra.core.analytics import CohortFilter
from vertebra.core.decision import (
    CellTable,
    DecisionResult,
    DecisionRules,
    EvidenceSet,
    Profile,
    build_cell_table,
    decision_rules,
    estimate,
    load_evidence,
)
from vertebra.outcomes import snapshot
from vertebra.outcomes.columnar import tables_from_frames
from vertebra.web.knowledge_selectors import knowledge_base

__all__ = [
    "AUDIT_PURPOSE",
    "FiguresNotReady",
    "cell_table",
    "decision_result",
    "evidence",
    "figures_status",
    "refresh",
    "rules",
]

logger = logging.getLogger(__name__)

AUDIT_PURPOSE = snapshot.DECISION_AID_PURPOSE
_rebuilt: dict[tuple[str, str], CellTable] = {}
_rebuilding = threading.Lock()


class FiguresNotReady(Exception):
    """No analysis snapshot exists yet (the worker has not built the first one)."""


def rules() -> DecisionRules:
    """The rule set the web shell applies (the packaged one; one place to read it)."""
    return decision_rules()


def refresh() -> CellTable:
    """Rebuild the analysis snapshot now (and with it the cell table): the warm-up command."""
    snapshot.refresh(force=True)
    return cell_table()


def figures_status() -> snapshot.Status | None:
    """The status of the snapshot the figures come from (None: none yet)."""
    return snapshot.status()


def cell_table() -> CellTable:
    """The cell table of the current snapshot (FiguresNotReady when there is none yet)."""
    cells, _status = snapshot.decision_cells()
    if cells is None:
        raise FiguresNotReady("the registry figures are being prepared")
    if cells.rules_version == rules().version:
        return cells
    return _for_current_rules()


def _for_current_rules() -> CellTable:
    """The cell table for a rule set newer than the snapshot's, from the snapshot's rows
    (audited as ``system:decision-aid``), once per process and snapshot."""
    snap = snapshot.current()
    if snap is None:
        raise FiguresNotReady("the registry figures are being prepared")
    key = (str(snap.path), rules().version)
    with _rebuilding:
        if key not in _rebuilt:
            today = timezone.localdate()
            with transaction.atomic():
                tables = tables_from_frames(snap.frames, None, True, CohortFilter(), as_of=today)
                snapshot.record_decision_read(len(tables.patients), snap.manifest["built_at"])
            _rebuilt.clear()
            _rebuilt[key] = build_cell_table(tables, today, rules())
        return _rebuilt[key]


def decision_result(profile: Profile) -> DecisionResult:
    """The registry figures for ``profile`` (ProfileError when it cannot be matched, raised
    before any registry read)."""
    profile.check(rules())
    return estimate(cell_table(), profile, rules())


@cache
def evidence() -> EvidenceSet:
    """The published evidence beside each arm (checked once per process)."""
    return load_evidence(rules(), knowledge_base())
