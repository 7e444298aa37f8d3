"""Reads behind the public decision aid: cached registry figures and the published evidence.

Contracts
---------
* :func:`cell_table` returns the decision aid's :class:`~vertebra.core.decision.CellTable`
  (leaf sums only, no patient rows) computed from the registry's **de-identified** analysis
  tables (``system_tables(deidentified=True)``, HIPAA Safe Harbor, the researchers' tables) at
  today's data cut-off. Each registry read is audited as ``system:decision-aid``, like every
  other system read.
* A public page must not run a registry-wide read per request (at 100,000 patients the read
  takes about 30 s), so the table lives in the ``decision_aid`` cache (files in the data
  folder, shared by every server process and by ``vertebra manage decision_aid_refresh``):

  - **fresh** for ``settings.DECISION_AID_CACHE_SECONDS`` (default 600): served as is;
  - **stale** (older, up to :data:`STALE_SECONDS` more): served at once, and one background
    thread in one process (a cache lock) rebuilds it;
  - **missing** or too old: built during the request (the very first request, or after a
    long outage), one rebuild per process at a time.

  ``DECISION_AID_CACHE_SECONDS=0`` turns the cache off (every request reads the registry).
  Keys name the rule-set version and the database, so neither a new rule set nor another
  database on the same machine ever reads a foreign table.
* :func:`decision_result` applies a person's :class:`~vertebra.core.decision.Profile`
  (checked before any read). :func:`evidence` is the packaged evidence, checked against the
  knowledge base. :func:`rules` is the one place the web shell reads the rule set.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import connections
from django.utils import timezone

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
from vertebra.outcomes.selectors import system_tables
from vertebra.web.knowledge_selectors import knowledge_base

__all__ = [
    "AUDIT_PURPOSE",
    "CACHE_ALIAS",
    "STALE_SECONDS",
    "cache_key",
    "cell_table",
    "decision_result",
    "evidence",
    "refresh",
    "rules",
]

logger = logging.getLogger(__name__)

AUDIT_PURPOSE = "decision-aid"
CACHE_ALIAS = "decision_aid"
#: How long past its freshness a table may still be served while a rebuild runs (or keeps
#: failing, e.g. the database is down): a day. Older tables are rebuilt during the request.
STALE_SECONDS = 24 * 3600
#: A background rebuild holds the cross-process lock at most this long (then another may try).
LOCK_SECONDS = 15 * 60
_rebuild = threading.Lock()


@dataclass(frozen=True)
class _Entry:
    """A cached cell table and when it was built (seconds since the epoch)."""

    built_at: float
    cells: CellTable


def rules() -> DecisionRules:
    """The rule set the web shell applies (the packaged one; one place to read it)."""
    return decision_rules()


def _store() -> BaseCache:
    return caches[CACHE_ALIAS]


def cache_key() -> str:
    """The cache key of the cell table: the rule-set version and the database it came from."""
    database = str(connections["default"].settings_dict.get("NAME"))
    digest = hashlib.sha256(database.encode()).hexdigest()[:12]
    return f"vertebra:decision-aid:cells:{rules().version}:{digest}"


def _build() -> CellTable:
    """Read the de-identified registry (audited) and aggregate it into the cell table."""
    today = timezone.localdate()
    tables = system_tables(purpose=AUDIT_PURPOSE, deidentified=True, as_of=today)
    return build_cell_table(tables, today, rules())


def refresh() -> CellTable:
    """Build the cell table now and store it (the warm-up command and every rebuild)."""
    fresh_for = settings.DECISION_AID_CACHE_SECONDS
    started = time.monotonic()
    cells = _build()
    if fresh_for > 0:
        _store().set(cache_key(), _Entry(time.time(), cells), fresh_for + STALE_SECONDS)
    logger.info(
        "decision aid: cell table from %d patients built in %.1f s",
        cells.n_treated,
        time.monotonic() - started,
    )
    return cells


def _start(target: Callable[[], None]) -> None:
    """Run ``target`` in a daemon thread (a seam: tests run it in line)."""
    threading.Thread(target=target, name="decision-aid-refresh", daemon=True).start()


def _refresh_in_background() -> None:
    """Start one rebuild unless another process or thread already holds the lock."""
    lock = cache_key() + ":rebuilding"
    if not _store().add(lock, True, LOCK_SECONDS):
        return

    def run() -> None:
        try:
            refresh()
        except Exception:  # keep serving the stale table; the next request tries again
            logger.exception("decision aid: background rebuild failed")
        finally:
            _store().delete(lock)
            connections.close_all()  # this thread's own database connection

    _start(run)


def cell_table() -> CellTable:
    """The cell table: fresh from the cache, stale while a rebuild runs, or built now."""
    fresh_for = settings.DECISION_AID_CACHE_SECONDS
    entry: _Entry | None = _store().get(cache_key()) if fresh_for > 0 else None
    if entry is not None:
        age = time.time() - entry.built_at
        if 0 <= age < fresh_for:
            return entry.cells
        if 0 <= age < fresh_for + STALE_SECONDS:
            _refresh_in_background()
            return entry.cells
    with _rebuild:
        again: _Entry | None = _store().get(cache_key()) if fresh_for > 0 else None
        if again is not None and 0 <= time.time() - again.built_at < fresh_for:
            return again.cells  # another thread built it while this one waited
        return refresh()


def decision_result(profile: Profile) -> DecisionResult:
    """The registry figures for ``profile`` (ProfileError when it cannot be matched, raised
    before any registry read)."""
    profile.check(rules())
    return estimate(cell_table(), profile, rules())


@cache
def evidence() -> EvidenceSet:
    """The published evidence beside each arm (checked once per process)."""
    return load_evidence(rules(), knowledge_base())
