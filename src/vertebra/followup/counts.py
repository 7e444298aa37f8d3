"""Time points per clinic and status, from the trigger-kept running sums (``TimePointCount``).

Contracts
---------
* :func:`status_counts` answers "how many time points of these clinics' patients are open,
  completed, missed ..." from a few rows per clinic, whatever the number of time points (a
  network's homes counted 6 M time points per view at 1,000,000 patients; ADR 0023 §10). It
  equals ``COUNT(*) ... GROUP BY status`` over the time points at every moment, because the
  sums are written by database triggers in the writer's own transaction
  (``followup 0008``; ``tests/followup/test_counts.py`` compares them after every kind of write).
* :func:`compact` folds the delta rows into one row per (clinic, status) (the worker, each
  pass), with :func:`vertebra.registry.counts.fold`: a delta committed meanwhile is never lost.
"""

from __future__ import annotations

from collections.abc import Iterable

from vertebra.followup.models import TimePointCount
from vertebra.registry.counts import fold, sums_by

__all__ = ["compact", "status_counts"]


def status_counts(clinic_ids: Iterable[int]) -> dict[str, int]:
    """status -> number of time points of the clinics' patients in it (statuses with none
    may be missing)."""
    return sums_by(TimePointCount, "status", clinic_ids)


def compact() -> int:
    """Fold every delta row into one row per (clinic, status); return how many rows went."""
    return fold(TimePointCount, ("clinic_id", "status"))
