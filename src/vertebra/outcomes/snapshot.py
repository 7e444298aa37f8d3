"""The analysis snapshot: the registry's analysis rows in Parquet, kept current by the worker.

Contracts
---------
* :func:`refresh` (run by ``vertebra worker`` on every pass and by ``vertebra snapshot
  refresh``; never by a web process unless ``SNAPSHOT_BUILD_INLINE``) reads the cheap
  :func:`watermark` and, only when it moved since the current snapshot (or ``force``), reads
  the registry (:func:`vertebra.outcomes.columnar.read_frames`, every clinic, identified,
  audited as ``system:analysis-snapshot``) and writes a new snapshot. The read is
  *incremental* when it can be (:func:`_incremental_frames`, ADR 0022 §9): only the patients
  named by data-changing audit rows sealed since the current snapshot are read again and
  spliced into its rows; a new day, a new schema, a forced refresh or too many changes read
  the whole registry. After an incremental read the stored default reports of clinics none of
  whose rows changed are carried over from the previous snapshot (:func:`_carry_unchanged`,
  §10), within one process. Either way the new snapshot holds
  one Parquet file per frame, the decision aid's cell table (audited as
  ``system:decision-aid``, as before) and ``manifest.json`` (built-at time, watermark, row
  counts, schema version, plausible-date window). The files go to a temporary directory that is
  renamed into place, then the ``CURRENT`` pointer is replaced (``os.replace``): a reader sees
  the old snapshot or the new one, never a half-written one. Older snapshots are pruned (the
  previous one is kept for readers still loading it).
* Every check, changed or not, rewrites ``CHECKED`` (the time the snapshot was last confirmed
  current). Pages say "as of" that time, and "may be out of date" when it is older than
  :func:`stale_after` (the worker stopped, or a refresh keeps failing).
* :func:`snapshot_tables` is :func:`vertebra.outcomes.selectors.analysis_tables` answered from
  the snapshot: the same scope rules (clinic staff get only their clinics' rows, filtered before
  any mapping; researchers get de-identified tables, pseudonyms new per read), the same audit
  row (plus the snapshot's build time), and the same tables a direct read of the same data
  gives (``tests/outcomes/test_snapshot.py``). With no snapshot yet it returns ``None`` tables
  (pages say the figures are being prepared); it never reads the registry in line unless
  ``SNAPSHOT_BUILD_INLINE`` (tests, development).
* :func:`snapshot_result` is :func:`snapshot_tables` followed by a caller's ``build`` (the
  report), its result kept in a small in-process LRU keyed by (what is built, snapshot build
  id, the actor's scope — clinic set and de-identified or not —, cohort filter, page day): a
  repeated view of the same snapshot answers from memory; a new snapshot or a new day builds
  anew. Only the built result is kept, never the tables (de-identified pseudonyms stay new per
  read and belong to no cache). Every call, cached or not, writes the same audit row.
* Snapshots live in ``SNAPSHOT_DIR/<database digest>/`` so two databases on one machine never
  share one. The watermark is the last data-changing audit row (every write is audited in its
  own transaction, ADR 0004) plus the number of data-changing rows among the last
  :data:`LOOKBACK` ids, which also catches a transaction that committed after a later id,
  plus the seal (ADR 0021) of the last data-changing row: seals are numbered in the order rows
  became visible, so "sealed after the snapshot's seal watermark" names exactly the rows a
  snapshot may not reflect (what an incremental refresh re-reads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from vertebra.core.analytics import AnalysisTables, CohortFilter
from vertebra.core.decision import CellTable, DecisionRules, decision_rules
from vertebra.core.decision.cells import ClinicSums
from vertebra.outcomes import prepared
from vertebra.outcomes.columnar import (
    FRAME_NAMES,
    Frames,
    frame_columns,
    read_frames,
    tables_from_frames,
)
from vertebra.outcomes.prepared import Prepared
from vertebra.outcomes.selectors import AUDIT_OBJECT_TYPE, Scope, _SystemUser, scope_for
from vertebra.registry.audit import audited_transaction, record_audit, seal_pending
from vertebra.registry.models import AuditEvent, AuditSeal, Clinic
from vertebra.registry.permissions import Actor

__all__ = [
    "SCHEMA_VERSION",
    "Snapshot",
    "Status",
    "Watermark",
    "current",
    "current_manifest",
    "decision_cells",
    "public_latest",
    "public_result",
    "refresh",
    "register_builder",
    "result_ready",
    "serve_waiting",
    "snapshot_result",
    "snapshot_tables",
    "stale_after",
    "status",
    "watermark",
]

logger = logging.getLogger(__name__)

#: Bumped whenever the stored frames change shape; a snapshot of another version is rebuilt.
#: 2: rows stored sorted by clinic, with ``_clinic`` and ``_row`` (their position in the read).
#: 3: time points carry their patient (``patient_id``), the watermark its seal number.
SCHEMA_VERSION = 3
#: Rows per Parquet row group: a clinic's rows span a few groups, found by their statistics.
ROW_GROUP_ROWS = 50_000
#: Audit actions that never change the analysis rows (reads, refusals, the trail's own jobs).
#: A change of any other action (create, update, void, ...) moves the watermark; an action
#: missing here only costs a needless rebuild.
NON_CHANGING = ("read", "search", "denied", "verify", "checkpoint", "export", "login", "logout")
#: How many audit ids back the watermark counts data-changing rows: a transaction holding an
#: id lower than the last one that commits later changes this count (see the module docs).
LOOKBACK = 10_000
#: An incremental refresh re-reads at most this many patients (more: one whole read is cheaper
#: than a long ``IN`` list, ADR 0022 §9) and looks at most this many seals back.
INCREMENTAL_MAX_PATIENTS = 20_000
INCREMENTAL_MAX_SEALS = 500_000
SNAPSHOT_PURPOSE = "analysis-snapshot"
#: Names this process in the manifests it writes: stored results are carried from one
#: snapshot to the next only within one process (the same code built them; ADR 0022 §10).
BUILDING_PROCESS = f"{os.getpid()}-{uuid.uuid4().hex}"
DECISION_AID_PURPOSE = "decision-aid"
#: A page calls figures out of date when they were last confirmed current longer ago than
#: twice the refresh interval plus this margin (one missed pass is not yet "out of date").
STALE_MARGIN_SECONDS = 60
#: Built results (reports) a web process keeps per snapshot: a handful of filters per scope is
#: what people page through; a Report is a few hundred kB at most, so 32 stay well under 50 MB.
RESULT_CACHE_SIZE = 32


@dataclass(frozen=True)
class Watermark:
    """What the analysis rows reflect: the last data-changing audit row (id and time), how
    many data-changing rows lie among the last :data:`LOOKBACK` ids, and the seal number of
    the last data-changing row sealed (0: none)."""

    last_id: int
    last_at: str
    recent: int
    sealed: int = 0

    def to_list(self) -> list[Any]:
        return [self.last_id, self.last_at, self.recent, self.sealed]


def _seal_sql(where: str, select: str) -> str:
    """A query over data-changing audit rows joined to their seals (ADR 0021)."""
    changing = ", ".join(f"'{action}'" for action in NON_CHANGING)
    return (
        f"SELECT {select} FROM {AuditSeal._meta.db_table} s"
        f" JOIN {AuditEvent._meta.db_table} a ON a.id = s.event_id"
        f" WHERE a.action NOT IN ({changing}){where}"
    )


def watermark() -> Watermark:
    """The current watermark: index reads on the audit trail's primary key (the newest rows
    back to the last data-changing one, then at most :data:`LOOKBACK` ids) and on the seal
    chain (the newest seals back to the last data-changing row's)."""
    changing = AuditEvent.objects.exclude(action__in=NON_CHANGING)
    last = changing.order_by("-id").values_list("id", "occurred_at").first()
    if last is None:
        return Watermark(0, "", 0)
    recent = changing.filter(id__gt=last[0] - LOOKBACK).count()
    with connections["default"].cursor() as cursor:
        cursor.execute(_seal_sql("", "s.seq") + " ORDER BY s.seq DESC LIMIT 1")
        row = cursor.fetchone()
    return Watermark(int(last[0]), last[1].isoformat(), int(recent), int(row[0]) if row else 0)


def changed_patients(after: int, upto: int) -> set[int]:
    """The patients named by data-changing audit rows whose seal number is in (``after``,
    ``upto``]: every row of theirs a snapshot sealed at ``after`` may not reflect. A
    data-changing row without a patient (a clinic, a lot, a membership) changes no analysis
    row (every frame row belongs to a patient)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            _seal_sql(
                " AND s.seq > %s AND s.seq <= %s AND a.patient_id IS NOT NULL",
                "DISTINCT a.patient_id",
            ),
            [after, upto],
        )
        return {int(row[0]) for row in cursor.fetchall()}


# ----------------------------------------------------------------------------------- paths


def _root() -> Path:
    """This database's snapshot folder (``SNAPSHOT_DIR/<digest of the database name>``)."""
    database = connections["default"].settings_dict
    name = f"{database.get('ENGINE')}:{database.get('HOST')}:{database.get('NAME')}"
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return Path(settings.SNAPSHOT_DIR) / digest


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` at once (a temporary file renamed over it)."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temp.write_text(text)
    os.replace(temp, path)


@contextlib.contextmanager
def _refresh_lock(root: Path) -> Iterator[bool]:
    """Hold the folder's refresh lock (yields False when another process holds it)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------- refresh


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did: ``built`` (a new snapshot), ``unchanged`` or ``busy`` (another
    process was refreshing); the snapshot's manifest and how long the call took."""

    outcome: str
    manifest: dict[str, Any] | None
    seconds: float


def refresh(*, force: bool = False) -> RefreshResult:
    """Check the watermark and rebuild the snapshot only when the data changed (or ``force``)."""
    started = time.monotonic()
    root = _root()
    with _refresh_lock(root) as locked:
        if not locked:
            return RefreshResult("busy", _manifest(root), time.monotonic() - started)
        # committed rows the sealer has not reached yet belong in this watermark (a try-lock:
        # if a sealer is at work, its seals are taken by the next pass)
        seal_pending()
        mark = watermark()
        manifest = _manifest(root)
        if not force and manifest is not None and _is_current(manifest, mark):
            _checked(root, mark)
            serve_requests(root)
            return RefreshResult("unchanged", manifest, time.monotonic() - started)
        manifest = _build(root, mark, previous=None if force else manifest)
        _checked(root, mark)
        serve_requests(root)
    seconds = time.monotonic() - started
    logger.info("analysis snapshot built in %.1f s: %s", seconds, manifest["rows"])
    return RefreshResult("built", manifest, seconds)


def _is_current(manifest: dict[str, Any], mark: Watermark) -> bool:
    return bool(
        manifest.get("schema_version") == SCHEMA_VERSION
        and manifest.get("watermark") == mark.to_list()
        and manifest.get("rules_version") == decision_rules().version
        and manifest.get("window_from") == _window_today().isoformat()
    )


def _window_today() -> dt.date:
    """The day the plausible-date window is anchored on (a new day gets a new snapshot)."""
    return timezone.localdate()


def _system_actor(purpose: str) -> Actor:
    return Actor(user=_SystemUser(f"system:{purpose}"), role="system", clinic_ids=frozenset())


def record_decision_read(n_patients: int, built_at: str) -> None:
    """The audit row of the decision aid's de-identified read (as ``system_tables`` wrote it,
    plus the snapshot it came from). Call inside a transaction."""
    record_audit(
        actor=_system_actor(DECISION_AID_PURPOSE),
        action="read",
        object_type=AUDIT_OBJECT_TYPE,
        new_values={
            "filter": CohortFilter().to_dict(),
            "deidentified": True,
            "with_mrn": False,
            "n_patients": n_patients,
            "snapshot": built_at,
        },
    )


@dataclass(frozen=True)
class _Incremental:
    """What an incremental read brought (:func:`_incremental_frames`)."""

    #: the previous snapshot's frames with the changed patients' rows read again
    frames: Frames
    #: how many patients were read again
    patients_reread: int
    #: the clinics whose rows changed: those of the changed patients' rows before and after;
    #: a scope of other clinics has the same rows as before
    clinics: frozenset[int]
    #: the previous snapshot's folder: its stored results of unchanged scopes can be carried
    previous_dir: Path
    #: whether this process built the previous snapshot (so its results came from this code)
    same_process: bool
    #: the decision aid's sums the previous snapshot stored (None: it stored none, or another
    #: process or rule set made them)
    cells: ClinicSums | None = None
    #: the rows of ``clinics`` the previous snapshot's tables left out (computed only when
    #: it left out any: counts are never negative, so otherwise none)
    left_out_before: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    #: where the read's time went (seconds per step)
    steps: dict[str, float] = dataclasses.field(default_factory=dict)


def _incremental_frames(
    previous: dict[str, Any] | None, mark: Watermark, today: dt.date
) -> _Incremental | None:
    """The current snapshot's frames brought up to ``mark`` by reading again only the
    patients :func:`changed_patients` names since its seal watermark (ADR 0022 §9); None when
    a whole read is due: no usable snapshot (none, another schema, one whose watermark has no
    seal number), a new day (the plausible-date window moved, so any row's odd-date flag may
    have), the seal chain behind the snapshot's (a restored database), or more than
    :data:`INCREMENTAL_MAX_SEALS` seals / :data:`INCREMENTAL_MAX_PATIENTS` patients to look
    at."""
    if previous is None or previous.get("schema_version") != SCHEMA_VERSION:
        return None
    old = previous.get("watermark") or []
    if previous.get("window_from") != today.isoformat() or len(old) < 4:
        return None
    if not 0 <= mark.sealed - int(old[3]) <= INCREMENTAL_MAX_SEALS:
        return None
    steps = _Steps()
    base = current()  # this process's copy (kept by its last refresh) or a load of the Parquet
    steps.done("snapshot")
    if base is None or base.manifest.get("built_at") != previous.get("built_at"):
        return None
    mine = previous.get("process") == BUILDING_PROCESS
    patients = changed_patients(int(old[3]), mark.sealed)
    steps.done("changed")
    if len(patients) > INCREMENTAL_MAX_PATIENTS:
        return None
    # the stored sums came from code as well as rows: used only by the process that made them
    same_rules = previous.get("rules_version") == decision_rules().version
    cells = _stored_cell_part(base.path) if mine and same_rules else None
    if not patients:
        return _Incremental(base.frames, 0, frozenset(), base.path, mine, cells, {}, steps.seconds)
    fresh = read_frames(None, patient_ids=patients)
    steps.done("rows")
    if fresh.window != base.frames.window:
        return None
    clinics = _clinics_of(base.frames, patients) | _clinics_of(fresh, patients)
    left_out_before: dict[tuple[str, str], int] = {}
    if cells is not None and cells.left_out and clinics:  # which of them were these clinics'
        left_out_before = _cell_part(base.frames, clinics, today, decision_rules())[1].left_out
    steps.done("cells_before")
    spliced = _splice(base.frames, fresh, patients)
    steps.done("splice")
    with _loading:  # the old rows are not needed any more: at most one copy beside the new
        _loaded.clear()
    return _Incremental(
        spliced, len(patients), clinics, base.path, mine, cells, left_out_before, steps.seconds
    )


class _Steps:
    """Seconds per named step since the previous one (for the manifest)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


def _clinics_of(frames: Frames, patients: set[int]) -> frozenset[int]:
    """The clinics of the episodes of ``patients`` in ``frames``: every other row of a patient
    takes the clinic of one of its episodes (:func:`_row_clinics`; a patient has one clinic),
    and rows of a patient with no live episode belong to no clinic scope."""
    episodes = frames.frames["episodes"]
    ids = np.fromiter(patients, dtype=np.int64, count=len(patients))
    mine = episodes.loc[np.isin(episodes["patient_id"].to_numpy(), ids), "clinic_id"]
    return frozenset(int(c) for c in pd.unique(mine.dropna()))


def _splice(base: Frames, fresh: Frames, patients: set[int]) -> Frames:
    """``base`` with every row of ``patients`` dropped and their rows in ``fresh`` (a read of
    those patients only) appended, frame by frame (every frame has ``patient_id``). A patient's
    own rows keep the order the read gave them, which is all ``tables_from_frames`` uses (it
    sorts by patient). Every result has a RangeIndex. Copies as little as it can: at
    1,000,000 patients each copy of the time points is ~1 s (most of it the fresh memory's
    page faults), so a frame none of whose rows changed is shared (frames are read-only) and
    the concatenation is not copied again to renumber it."""
    ids = np.fromiter(patients, dtype=np.int64, count=len(patients))
    spliced: dict[str, pd.DataFrame] = {}
    for name in FRAME_NAMES:
        old, new = base.frames[name], fresh.frames[name]
        drop = np.isin(old["patient_id"].to_numpy(), ids)
        if not len(new) and not drop.any():
            spliced[name] = old
            continue
        kept = old[~drop]
        if len(kept) and len(new):
            frame = pd.concat([kept, new], ignore_index=True)
        elif len(new):  # concat with an empty frame would lose its dtypes
            frame = new.reset_index(drop=True)
        else:
            frame = kept
            frame.index = pd.RangeIndex(len(frame))  # its own copy: renumbered in place
        spliced[name] = frame
    return Frames(spliced, base.window)


def _build(root: Path, mark: Watermark, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the registry (only the changed patients when ``previous``, the current snapshot's
    manifest, allows: :func:`_incremental_frames`), write a new snapshot folder, point
    ``CURRENT`` at it, prune."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    built_at = timezone.now()
    today = _window_today()
    started = time.monotonic()
    with transaction.atomic():
        incremental = _incremental_frames(previous, mark, today)
        frames = read_frames(None) if incremental is None else incremental.frames
        read: dict[str, Any] = {
            "kind": "full" if incremental is None else "incremental",
            "patients_reread": None if incremental is None else incremental.patients_reread,
            "steps": {} if incremental is None else incremental.steps,
        }
        record_audit(
            actor=_system_actor(SNAPSHOT_PURPOSE),
            action="read",
            object_type=AUDIT_OBJECT_TYPE,
            new_values={
                "snapshot": True,
                "deidentified": False,
                "n_episodes": len(frames.frames["episodes"]),
                **({} if incremental is None else {"patients_reread": read["patients_reread"]}),
            },
        )
    read["seconds"] = round(time.monotonic() - started, 3)
    rules = decision_rules()
    temp = root / f".building-{uuid.uuid4().hex}"
    temp.mkdir(parents=True)
    # named now: the stored reports' MACs cover the folder's final name
    final = root / f"snap-{built_at.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:6]}"
    try:
        clinics = _row_clinics(frames)
        # the Parquet files are written on the other core while this one builds the cell
        # table: neither needs the other, and both come before publishing (BENCHMARKS.md)
        with ThreadPoolExecutor(1, thread_name_prefix="snapshot-parquet") as pool:
            writing = pool.submit(_write_frames, frames, clinics, temp)
            step = time.monotonic()
            with transaction.atomic():  # the decision aid's figures, audited as before
                tables, part, cell_clinics = _decision_part(frames, incremental, today, rules)
                cells = part.cell_table(rules)
                record_decision_read(part.n_treated, built_at.isoformat())
            cells_seconds = time.monotonic() - step
            parquet_seconds = writing.result()
        # where a refresh's time goes until it is published (BENCHMARKS.md reads them);
        # "cells" and "parquet" ran side by side, "both" is their wall time together
        steps = {
            "read": read["seconds"],
            "cells": round(cells_seconds, 3),
            "parquet": round(parquet_seconds, 3),
            "both": round(time.monotonic() - step, 3),
        }
        clinic_patients = _clinic_patients(frames)
        # Before publishing (full reads only; see below), only the scopes a page would not
        # build itself (researchers, the network, a clinic above SNAPSHOT_INLINE_MAX_PATIENTS);
        # a small clinic's page builds its own from its rows (~1 s at 1,000,000) until its
        # stored report lands just after.
        scopes = _default_scopes()
        step = time.monotonic()
        carried = _carry_unchanged(incremental, scopes, temp, final.name, today)
        steps["carry"] = round(time.monotonic() - step, 3)
        scopes = [scope for scope in scopes if scope not in carried]
        early, late = _split_scopes(scopes, clinic_patients)
        if incremental is not None:
            # a wide scope's page shows the previous snapshot's figures until its own are
            # stored (§11): they no longer hold the change back from every other page
            early, late = [], early + late
        parts = _clinic_parts(clinics)
        # the decision aid's tables are the researchers' default ones (every clinic,
        # de-identified, no filter, today): built once, not twice (~10 s at 1,000,000)
        ready = {} if tables is None else {Scope(None, True): tables}
        prepared_seconds = _prepare_defaults(temp, final.name, frames, today, early, parts, ready)
        steps["reports"] = round(prepared_seconds, 3)
        leaves = pa.Table.from_pandas(cells.leaves, preserve_index=False)
        pq.write_table(leaves, temp / "cells.parquet")
        cell_facts = {k: v for k, v in cells.__dict__.items() if k != "leaves"}
        cell_facts["data_notes"] = list(cells.data_notes)
        (temp / "cells.json").write_text(json.dumps(cell_facts))
        _write_cell_sums(part, temp)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "built_at": built_at.isoformat(),
            "watermark": mark.to_list(),
            "window": [d.isoformat() for d in frames.window],
            "window_from": today.isoformat(),
            "rules_version": rules.version,
            "rows": {name: len(frames.frames[name]) for name in FRAME_NAMES},
            "clinic_patients": clinic_patients,
            "prepared_seconds": prepared_seconds,
            "reports_carried": len(carried),
            # the clinics whose decision-aid sums this refresh computed (None: every clinic)
            "cell_clinics": cell_clinics,
            "process": BUILDING_PROCESS,
            "read": read,
            "seconds": steps,
        }
        (temp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _write_atomically(root / "CURRENT", final.name)
    _keep_loaded(Snapshot(final, manifest, frames))
    _prune(root, keep={final.name})
    _checked(root, mark)  # pages say "as of" now, not after the clinic reports below
    # after publishing: hundreds of clinic reports no longer hold a change back (at 1,000,000
    # patients they were 314 s of a 427 s refresh); they are stored into the live folder
    # one file at a time (atomic), and a page that misses one builds its own meanwhile (after
    # an incremental read the wide scopes come first: their pages show the previous figures)
    late_seconds = _prepare_defaults(final, final.name, frames, today, late, parts, ready)
    logger.info("prepared %d reports after publishing in %.1f s", len(late), late_seconds)
    return manifest


def _write_cell_sums(sums: ClinicSums, folder: Path) -> None:
    """Store the decision aid's per-clinic sums in a snapshot ``folder`` (read back by
    :func:`_stored_cell_part`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(sums.leaves, preserve_index=False)
    pq.write_table(table, folder / "cells_by_clinic.parquet")
    facts = {
        "treated": sums.treated,
        "left_out": [[what, reason, n] for (what, reason), n in sums.left_out.items()],
        "surgery_available": sums.surgery_available,
        "time_base": sums.time_base,
    }
    (folder / "cells_by_clinic.json").write_text(json.dumps(facts))


def _stored_cell_part(folder: Path) -> ClinicSums | None:
    """The part a snapshot ``folder`` stored (None when it has none or not in this form: an
    older snapshot, whose refresh then computes the sums of every clinic)."""
    import pyarrow.parquet as pq

    try:
        facts = json.loads((folder / "cells_by_clinic.json").read_text())
        treated = {str(c): int(n) for c, n in facts["treated"].items()}
        left_out = {(what, reason): int(n) for what, reason, n in facts["left_out"]}
        leaves = pq.read_table(folder / "cells_by_clinic.parquet").to_pandas()
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return None
    return ClinicSums(leaves, treated, left_out, facts["surgery_available"], facts["time_base"])


def _cell_part(
    frames: Frames, clinic_ids: frozenset[int] | None, today: dt.date, rules: DecisionRules
) -> tuple[AnalysisTables, ClinicSums]:
    """The de-identified tables of ``clinic_ids`` (None: every clinic) from ``frames`` and
    the decision aid's per-clinic sums of them."""
    tables = tables_from_frames(frames, clinic_ids, True, CohortFilter(), as_of=today)
    return tables, ClinicSums.of(tables, today, rules)


def _decision_part(
    frames: Frames, incremental: _Incremental | None, today: dt.date, rules: DecisionRules
) -> tuple[AnalysisTables | None, ClinicSums, int | None]:
    """The decision aid's part of the whole registry in ``frames`` and how many clinics' sums
    were computed for it (None: every clinic's). After an incremental read, the previous
    snapshot's part with the changed clinics' sums recomputed (no tables: None); else from
    the de-identified tables of every clinic (returned: the researchers' default report uses
    them too)."""
    if incremental is None or incremental.cells is None:
        return (*_cell_part(frames, None, today, rules), None)
    if not incremental.clinics:  # no clinic's rows changed
        return None, incremental.cells, 0
    _, after = _cell_part(frames, incremental.clinics, today, rules)
    part = incremental.cells.replaced(incremental.clinics, after, incremental.left_out_before)
    return None, part, len(incremental.clinics)


def _write_frames(frames: Frames, clinics: dict[str, np.ndarray], folder: Path) -> float:
    """Write each frame to ``folder``/<name>.parquet sorted by its rows' ``clinics`` (stable,
    so a clinic's page reads only its row groups), with the row's clinic (``_clinic``) and its
    place in the read (``_row``, which :func:`_load` restores); the seconds it took."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.monotonic()
    for name in FRAME_NAMES:
        order = np.argsort(clinics[name], kind="stable")
        table = pa.Table.from_pandas(frames.frames[name], preserve_index=False)
        table = table.take(pa.array(order))
        table = table.append_column("_clinic", pa.array(clinics[name][order]))
        table = table.append_column("_row", pa.array(order.astype(np.int64)))
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=ROW_GROUP_ROWS)
    return time.monotonic() - started


def _keep_loaded(snap: Snapshot) -> None:
    """Keep the frames just written as this process's loaded copy of ``snap`` (what
    :func:`_load` would read back: same rows, order and dtypes, which the tests check), so
    the next refresh splices its changed patients into them instead of reading back the
    Parquet it just wrote (~11 s at 1,000,000 patients, the fixed cost of an incremental
    read before; BENCHMARKS.md)."""
    with _loading:
        _loaded.clear()
        _loaded[str(snap.path)] = snap


def _carry_unchanged(
    incremental: _Incremental | None,
    scopes: list[Scope],
    folder: Path,
    name: str,
    today: dt.date,
) -> set[Scope]:
    """After an incremental read, copy into the new snapshot ``folder`` (final ``name``) the
    stored default results of every scope in ``scopes`` whose rows did not change (ADR 0022
    §10): a clinic scope none of whose clinics is among ``incremental.clinics``, and every
    scope when no patient changed. Their tables are the previous snapshot's, value for value,
    on the same day, so their results are too — when the same code built them: only from a
    snapshot this process built (a new release runs in a new worker process, whose first
    refresh builds every result). Returns the scopes whose every builder's result was carried
    (the others are built as usual)."""
    if incremental is None or not incremental.same_process:
        return set()
    if not settings.SNAPSHOT_PREPARE_REPORTS:
        return set()
    builders = _load_builders()
    flt = CohortFilter()
    carried: set[Scope] = set()
    for scope in scopes:
        if incremental.patients_reread and (
            scope.clinic_ids is None or not scope.clinic_ids.isdisjoint(incremental.clinics)
        ):
            continue
        items = [
            each
            for b in builders.values()
            if b.applies(scope)
            for each in _aliases(
                b, Prepared(b.default_what(), scope.clinic_ids, scope.deidentified, flt, today)
            )
        ]
        if all(prepared.carry(incremental.previous_dir, folder, name, i) for i in items):
            carried.add(scope)
    return carried


def _split_scopes(
    scopes: list[Scope], clinic_patients: dict[str, int]
) -> tuple[list[Scope], list[Scope]]:
    """``scopes`` as (those a page would ask the worker for: prepared before the snapshot is
    published, those a page builds itself when nothing is stored: prepared after), by the
    patients per clinic (clinic id as text) of the new snapshot."""
    limit = int(settings.SNAPSHOT_INLINE_MAX_PATIENTS)

    def small(scope: Scope) -> bool:
        return scope.clinic_ids is not None and _patients_in(clinic_patients, scope) <= limit

    return [s for s in scopes if not small(s)], [s for s in scopes if small(s)]


def _row_clinics(frames: Frames) -> dict[str, np.ndarray]:
    """The clinic of every row of each frame: an episode's own, a time point's episode's, an
    event's patient's (a patient belongs to one clinic); -1 for an event of a patient with no
    live episode (no scope ever reads it)."""
    episodes = frames.frames["episodes"]
    clinic = pd.Series(episodes["clinic_id"].to_numpy()).fillna(-1).to_numpy(np.int64)
    by_episode = pd.Series(clinic, index=episodes["episode_id"].to_numpy())
    by_patient = pd.Series(clinic, index=episodes["patient_id"].to_numpy())
    by_patient = by_patient[~by_patient.index.duplicated()]

    def of(keys: pd.Series, table: pd.Series) -> np.ndarray:
        return table.reindex(keys.to_numpy()).fillna(-1).to_numpy(np.int64)

    rows = frames.frames
    return {
        "episodes": clinic,
        "timepoints": of(rows["timepoints"]["episode_id"], by_episode),
        "adverse_events": of(rows["adverse_events"]["patient_id"], by_patient),
        "clinical_events": of(rows["clinical_events"]["patient_id"], by_patient),
    }


def _prune(root: Path, keep: set[str]) -> None:
    """Delete snapshots but the newest two (a reader may still be loading the previous one)
    and building folders older than an hour (left by a killed refresh)."""
    snaps = sorted(p for p in root.glob("snap-*") if p.is_dir())
    for old in snaps[:-2]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    for stray in root.glob(".building-*"):
        if time.time() - stray.stat().st_mtime > 3600:
            shutil.rmtree(stray, ignore_errors=True)


def _checked(root: Path, mark: Watermark) -> None:
    """Record that the current snapshot was confirmed current now."""
    text = json.dumps({"checked_at": timezone.now().isoformat(), "watermark": mark.to_list()})
    _write_atomically(root / "CHECKED", text)


# ------------------------------------------------------------------------------------ read


def _current_dir(root: Path) -> Path | None:
    try:
        name = (root / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    path = root / name
    return path if (path / "manifest.json").exists() else None


def _manifest(root: Path) -> dict[str, Any] | None:
    path = _current_dir(root)
    if path is None:
        return None
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return manifest


def current_manifest() -> dict[str, Any] | None:
    """The current snapshot's manifest (None when there is none yet); loads no frame."""
    return _manifest(_root())


def stale_after() -> float:
    """Seconds after which figures not confirmed current are called out of date."""
    return 2 * float(settings.SNAPSHOT_REFRESH_SECONDS) + STALE_MARGIN_SECONDS


@dataclass(frozen=True)
class Status:
    """What a page says about its figures: built and last confirmed current (aware
    datetimes), whether that is too long ago, and the stated refresh interval (seconds)."""

    built_at: dt.datetime
    checked_at: dt.datetime
    stale: bool
    refresh_seconds: int
    #: The result asked for is not built yet: the worker builds it on its next pass (the page
    #: says so and reloads itself after ``refresh_seconds``).
    pending: bool = False
    #: The result shown is the previous snapshot's (this status is that snapshot's): the
    #: current one's is being built (the page says so and reloads itself).
    superseded: bool = False


def status() -> Status | None:
    """The current snapshot's status (None when there is none yet); reads two small files."""
    root = _root()
    manifest = _manifest(root)
    if manifest is None:
        return None
    built_at = dt.datetime.fromisoformat(manifest["built_at"])
    checked_at = built_at
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        checked = json.loads((root / "CHECKED").read_text())
        if checked["watermark"] == manifest["watermark"]:
            checked_at = max(built_at, dt.datetime.fromisoformat(checked["checked_at"]))
    age = (timezone.now() - checked_at).total_seconds()
    return Status(built_at, checked_at, age > stale_after(), settings.SNAPSHOT_REFRESH_SECONDS)


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot: its folder, manifest and frames (read-only, shared per process)."""

    path: Path
    manifest: dict[str, Any]
    frames: Frames


_loaded: dict[str, Snapshot] = {}
_loading = threading.Lock()


def current() -> Snapshot | None:
    """The current snapshot, loaded once per process (the last one loaded is kept; a new
    snapshot replaces it). None when no snapshot exists yet."""
    root = _root()
    path = _current_dir(root)
    if path is None:
        return None
    key = str(path)
    with _loading:
        hit = _loaded.get(key)
        if hit is None:
            hit = _load(path)
            _loaded.clear()
            _loaded[key] = hit
    return hit


def _load(path: Path, clinic_ids: frozenset[int] | None = None) -> Snapshot:
    """The snapshot at ``path``: every row, or only the rows of ``clinic_ids`` (their
    episodes, those episodes' time points, their patients' events: what
    ``tables_from_frames`` keeps for that scope), read with a Parquet filter on ``_clinic``
    (rows are stored sorted by clinic, so only that clinic's row groups are read). Rows come
    back in the order of the registry read (``_row``), whichever way they were read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = json.loads((path / "manifest.json").read_text())
    columns = frame_columns()
    frames: dict[str, pd.DataFrame] = {}
    wanted = None if clinic_ids is None else sorted(int(c) for c in clinic_ids)
    for name in FRAME_NAMES:
        filters = None if wanted is None else [("_clinic", "in", wanted)]
        table = pq.read_table(path / f"{name}.parquet", filters=filters)
        if "_row" in table.column_names:  # back to the read's order
            table = table.take(pa.array(np.argsort(table["_row"].to_numpy(), kind="stable")))
        frames[name] = _restore(table.to_pandas(), columns[name])
    window = tuple(dt.date.fromisoformat(d) for d in manifest["window"])
    return Snapshot(path, manifest, Frames(frames, (window[0], window[1])))


#: Clinic-scoped row sets a web process keeps (one clinic's rows at 1 M patients: a few MB).
SCOPED_CACHE_SIZE = 8
_scoped: OrderedDict[tuple[str, frozenset[int]], Snapshot] = OrderedDict()


def scoped(clinic_ids: frozenset[int] | None) -> Snapshot | None:
    """The current snapshot for a build of this scope: the whole frames when this process
    holds them already or the scope is every clinic (:func:`current`), else only these
    clinics' rows (:func:`_load` with filters, kept in a small per-process LRU), so a clinic's
    page never loads every clinic's rows. None when there is no snapshot yet."""
    path = _current_dir(_root())
    if path is None:
        return None
    with _loading:
        whole = _loaded.get(str(path))
    sorted_by_clinic = (path / "manifest.json").exists() and json.loads(
        (path / "manifest.json").read_text()
    ).get("schema_version") == SCHEMA_VERSION
    if whole is not None or clinic_ids is None or not sorted_by_clinic:
        return whole or current()
    key = (str(path), clinic_ids)
    with _loading:
        hit = _scoped.get(key)
        if hit is not None:
            _scoped.move_to_end(key)
            return hit
    hit = _load(path, clinic_ids)
    with _loading:
        for old in [k for k in _scoped if k[0] != key[0]]:
            del _scoped[old]  # another snapshot's rows
        _scoped[key] = hit
        while len(_scoped) > SCOPED_CACHE_SIZE:
            _scoped.popitem(last=False)
    return hit


def _restore(frame: pd.DataFrame, columns: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """The dtypes :func:`vertebra.outcomes.columnar.fetch_frame` gives (Parquet keeps most;
    an all-null text column comes back untyped, dates may come back in another unit)."""
    out: dict[str, Any] = {}
    for name, kind in columns:
        col = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
        if kind == "str":
            values = col.to_numpy(dtype=object).copy()
            values[pd.isna(values)] = None  # NaN from an all-null column is a missing text
            out[name] = values
        elif kind == "days":
            out[name] = col.to_numpy().astype("datetime64[ns]")
        elif kind == "bool":
            out[name] = col.to_numpy().astype(bool)
        elif kind == "int" and str(col.dtype) == "int64":
            out[name] = col.to_numpy()
        else:
            out[name] = col.to_numpy().astype("float64")
    return pd.DataFrame(out, columns=[name for name, _ in columns])


def _ensure_inline() -> None:
    """In tests and development (``SNAPSHOT_BUILD_INLINE``), refresh in the request."""
    if settings.SNAPSHOT_BUILD_INLINE:
        refresh()


@audited_transaction
def _record_read(
    actor: Actor,
    flt: CohortFilter,
    deidentified: bool,
    n_patients: int,
    manifest: dict[str, Any],
    **extra: Any,
) -> None:
    """The audit row of one page's read from the snapshot of ``manifest`` (the fields of
    :func:`vertebra.outcomes.selectors.analysis_tables`' row, plus the snapshot's build time and
    ``extra``)."""
    record_audit(
        actor=actor,
        action="read",
        object_type=AUDIT_OBJECT_TYPE,
        new_values={
            "filter": flt.to_dict(),
            "deidentified": deidentified,
            "n_patients": n_patients,
            "snapshot": manifest["built_at"],
            **extra,
        },
    )


@audited_transaction
def snapshot_scope(*, actor: Actor) -> Scope:
    """The actor's scope for a read from the snapshot (see ``scope_for``); a refusal raises
    PermissionDeniedError and leaves its ``denied`` audit row (ADR 0004), like every audited
    read, before anything is looked up."""
    return scope_for(actor)


def snapshot_tables(
    *, actor: Actor, filter: CohortFilter | None = None, as_of: dt.date | None = None
) -> tuple[AnalysisTables | None, Status | None]:
    """The actor's analysis tables from the current snapshot and its status (audited once,
    like :func:`vertebra.outcomes.selectors.analysis_tables`); ``(None, None)`` when there is
    no snapshot yet. Raises PermissionDeniedError as ``analysis_tables`` does."""
    flt = filter or CohortFilter()
    scope = snapshot_scope(actor=actor)
    _ensure_inline()
    snap = current()
    if snap is None:
        return None, None
    tables = tables_from_frames(snap.frames, scope.clinic_ids, scope.deidentified, flt, as_of=as_of)
    _record_read(actor, flt, scope.deidentified, len(tables.patients), snap.manifest)
    return tables, status()


T = TypeVar("T")


class ResultCache:
    """A thread-safe LRU of built results of one snapshot at a time (bounded entries).

    Keys start with the snapshot's build id (its folder); storing a result of another build
    drops every entry of the previous one, so a new snapshot frees the memory at once.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Hashable, ...], tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, ...]) -> tuple[int, Any] | None:
        """The (patient count, result) stored under ``key`` (now most recent), or None."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: tuple[Hashable, ...], value: tuple[int, Any]) -> None:
        """Store ``value``; drop other builds' entries and the least recently used beyond size."""
        with self._lock:
            for old in [k for k in self._entries if k[0] != key[0]]:
                del self._entries[old]
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (tests; a process that wants its memory back)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


results = ResultCache(RESULT_CACHE_SIZE)


def snapshot_result(
    *,
    actor: Actor,
    build: Callable[[AnalysisTables], T],
    what: tuple[Any, ...],
    as_of: dt.date,
    filter: CohortFilter | None = None,
) -> tuple[T | None, Status | None]:
    """``build`` applied to the actor's tables from the current snapshot (see
    :func:`snapshot_tables`), answered, in this order, from :data:`results` (this process
    built or loaded the same ``what`` — the caller's name for what it builds, with anything
    else its result depends on, JSON scalars —, snapshot, scope, filter and ``as_of``), from
    the result the worker stored beside the snapshot (:mod:`vertebra.outcomes.prepared`,
    signature checked), or built here when ``SNAPSHOT_BUILD_INLINE`` or the scope holds at most
    ``SNAPSHOT_INLINE_MAX_PATIENTS`` patients. A wider scope's result not built for the
    current snapshot is asked of the worker (a request file); meanwhile the result the
    previous snapshot stored for the same ``what``, scope, filter and day is returned with
    that snapshot's status, ``superseded`` (the page shows it as of that time and says newer
    figures are coming); with none, ``(None, status)`` comes back with ``status.pending``:
    the page says it is being prepared. ``(None, None)`` with no snapshot.

    ``build`` must return aggregate figures only — never the tables or anything carrying a
    patient's pseudonym — because its result is shared by every actor of the same scope.
    ``what[0]`` must name a builder registered with :func:`register_builder` (the worker
    builds the same result with it). Audited once per call that returns a result, like
    :func:`snapshot_tables`, with ``"source"`` saying where it came from (``memory``,
    ``stored`` or ``built``) and ``"cached"`` whether it was built before this call. Raises
    PermissionDeniedError as ``analysis_tables`` does.

    A missed build runs outside any database transaction (it reads files, not the registry:
    at a million patients it takes seconds, and an open transaction would sit idle holding a
    connection); the audit row is written after it, in its own transaction, before the result
    is returned, so nothing reaches the caller unless its read is on the trail.
    """
    flt = filter or CohortFilter()
    # before anything is looked up: a refused actor gets nothing
    scope = snapshot_scope(actor=actor)
    return _scoped_result(scope, flt, build, what, as_of, actor)


def public_result(
    *, build: Callable[[AnalysisTables], T], what: tuple[Any, ...], as_of: dt.date
) -> tuple[T | None, Status | None]:
    """:func:`snapshot_result` for a public page's aggregates over every clinic, de-identified
    (the clinic directory), with no actor: the same lookup (memory, stored by the worker,
    built here only when a page of that scope may build, else asked of the worker, the
    previous snapshot's meanwhile). No audit row per call: the page shows published,
    suppressed aggregates only, and the de-identified read behind them is the worker's
    (audited with the snapshot's refresh); an anonymous visitor's page view writes nothing."""
    return _scoped_result(Scope(None, True), CohortFilter(), build, what, as_of, None)


def result_ready(
    *,
    actor: Actor,
    what: tuple[Any, ...],
    as_of: dt.date,
    filter: CohortFilter | None = None,
) -> bool:
    """Whether :func:`snapshot_result` would now answer ``what`` for the actor's scope,
    ``filter`` and ``as_of`` from the current snapshot without waiting for the worker (kept in
    this process, stored beside the snapshot, or a scope small enough to build in a page).
    Reads no rows, builds nothing, asks the worker nothing and writes no audit row: it tells
    a page that waits whether its figures exist, not what they are; reading them is audited
    as ever. Raises PermissionDeniedError as :func:`snapshot_result` does."""
    flt = filter or CohortFilter()
    scope = snapshot_scope(actor=actor)
    path = _current_dir(_root())
    if path is None:
        return False
    if results.get((str(path), what, scope.clinic_ids, scope.deidentified, flt, as_of)) is not None:
        return True
    if prepared.stored(path, Prepared(what, scope.clinic_ids, scope.deidentified, flt, as_of)):
        return True
    return _page_may_build(json.loads((path / "manifest.json").read_text()), scope)


def _page_may_build(manifest: dict[str, Any], scope: Scope) -> bool:
    """Whether a page builds a result of ``scope`` not kept nor stored (in development, or a
    scope of at most ``SNAPSHOT_INLINE_MAX_PATIENTS`` patients) rather than asking the worker."""
    return bool(settings.SNAPSHOT_BUILD_INLINE) or (
        scope_patients(manifest, scope) <= settings.SNAPSHOT_INLINE_MAX_PATIENTS
    )


def public_latest(what: tuple[Any, ...], as_of: dt.date) -> tuple[Any, Status] | None:
    """The result the worker last stored under a builder's ``latest`` name ``what`` (see
    :func:`register_builder`) for every clinic, de-identified, on ``as_of``: from the current
    snapshot, else the previous one (its status then marked superseded); None when neither
    holds it. Never builds and never asks the worker: a page calls it while the result it
    asked :func:`public_result` for is being prepared (which has refreshed in development)."""
    root = _root()
    path = _current_dir(root)
    if path is None:
        return None
    item = Prepared(what, None, True, CohortFilter(), as_of)
    stored = prepared.load(path, item)
    now = status()
    if stored is not None and now is not None:
        return stored[1], now
    earlier = _previous_result(root, path, item)
    if earlier is None:
        return None
    return earlier[0][1], _superseded_status(earlier[1])


def _scoped_result(
    scope: Scope,
    flt: CohortFilter,
    build: Callable[[AnalysisTables], T],
    what: tuple[Any, ...],
    as_of: dt.date,
    actor: Actor | None,
) -> tuple[T | None, Status | None]:
    """The body of :func:`snapshot_result` for ``scope``; audited for ``actor`` (None: not
    audited, :func:`public_result`)."""
    _ensure_inline()
    root = _root()
    path = _current_dir(root)
    if path is None:
        return None, None
    # the manifest, not the frames: a stored answer never loads the snapshot's rows
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    item = Prepared(what, scope.clinic_ids, scope.deidentified, flt, as_of)
    key = (str(path), what, scope.clinic_ids, scope.deidentified, flt, as_of)
    hit = results.get(key)
    source = "memory"
    if hit is None:
        hit, source = prepared.load(path, item), "stored"
    if hit is None:
        if not _page_may_build(manifest, scope):
            prepared.request(root, item)
            earlier = _previous_result(root, path, item)
            if earlier is None:
                now = status()
                return None, dataclasses.replace(now, pending=True) if now else None
            value, previous = earlier
            if actor is not None:
                _record_read(
                    actor,
                    flt,
                    scope.deidentified,
                    value[0],
                    previous,
                    cached=True,
                    source="previous",
                )
            return value[1], _superseded_status(previous)
        snap = scoped(scope.clinic_ids)
        if snap is None:
            return None, None
        key = (str(snap.path), *key[1:])
        manifest = snap.manifest
        tables = tables_from_frames(
            snap.frames, scope.clinic_ids, scope.deidentified, flt, as_of=as_of
        )
        hit, source = (len(tables.patients), build(tables)), "built"
    results.put(key, hit)
    if actor is not None:
        _record_read(
            actor,
            flt,
            scope.deidentified,
            hit[0],
            manifest,
            cached=source != "built",
            source=source,
        )
    return hit[1], status()


def _previous_result(
    root: Path, current_dir: Path, item: Prepared
) -> tuple[tuple[int, Any], dict[str, Any]] | None:
    """``item``'s result stored in the snapshot before ``current_dir`` (kept by
    :func:`_prune`) and that snapshot's manifest, or None: a page whose figures the worker is
    building for a new snapshot shows the last ones, labelled with their own time, instead of
    nothing (ADR 0022 §11)."""
    older = sorted(p for p in root.glob("snap-*") if p.is_dir() and p.name < current_dir.name)
    if not older:
        return None
    try:
        manifest: dict[str, Any] = json.loads((older[-1] / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):  # pruned meanwhile, or never finished
        return None
    value = prepared.load(older[-1], item)
    return None if value is None else (value, manifest)


def _superseded_status(manifest: dict[str, Any]) -> Status:
    """The status of figures from the superseded snapshot of ``manifest``: as of its build
    (the data they reflect), stale by the same rule as any, marked ``superseded``."""
    built_at = dt.datetime.fromisoformat(manifest["built_at"])
    age = (timezone.now() - built_at).total_seconds()
    return Status(
        built_at,
        built_at,
        age > stale_after(),
        settings.SNAPSHOT_REFRESH_SECONDS,
        superseded=True,
    )


def scope_patients(manifest: dict[str, Any], scope: Scope) -> int:
    """How many patients the scope covers in the snapshot of ``manifest`` (from its
    per-clinic counts; a manifest without them counts as every patient)."""
    counts: dict[str, int] = manifest.get("clinic_patients") or {}
    if not counts:
        return int(manifest["rows"]["episodes"])
    return _patients_in(counts, scope)


def _patients_in(clinic_patients: dict[str, int], scope: Scope) -> int:
    """The patients of ``scope`` by the patients per clinic (clinic id as text)."""
    if scope.clinic_ids is None:
        return sum(clinic_patients.values())
    return sum(clinic_patients.get(str(c), 0) for c in scope.clinic_ids)


# --------------------------------------------------------- results the worker prepares

#: A builder factory: given ``what``, the filter and the day, the ``build`` for
#: :func:`snapshot_result` (``what[0]`` names the factory).
BuildFactory = Callable[[tuple[Any, ...], CohortFilter, dt.date], Callable[[AnalysisTables], Any]]


@dataclass(frozen=True)
class _Builder:
    factory: BuildFactory
    default_what: Callable[[], tuple[Any, ...]]
    applies: Callable[[Scope], bool]
    latest: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None


def _aliases(builder: _Builder, item: Prepared) -> list[Prepared]:
    """``item`` and, for a builder that keeps its latest result, the same result under the
    builder's fixed ``latest`` name (see :func:`register_builder`)."""
    if builder.latest is None:
        return [item]
    return [item, dataclasses.replace(item, what=builder.latest(item.what))]


def _store_result(
    folder: Path, name: str, builder: _Builder, item: Prepared, value: tuple[int, Any]
) -> None:
    """Store ``value`` for ``item`` (and its latest alias) in the snapshot ``folder``."""
    for each in _aliases(builder, item):
        prepared.store(folder, name, each, value)


_builders: dict[str, _Builder] = {}


def _every_scope(scope: Scope) -> bool:
    return True


def register_builder(
    name: str,
    factory: BuildFactory,
    *,
    default_what: Callable[[], tuple[Any, ...]],
    applies: Callable[[Scope], bool] = _every_scope,
    latest: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
) -> None:
    """Let the worker build ``name`` results: ``factory`` as above; ``default_what()`` the
    ``what`` of the default-filter result it prepares after each refresh for every scope
    that ``applies`` (default: every scope; e.g. only the de-identified one for a public
    page's figures). With ``latest``, every result the worker stores for a ``what`` is also
    stored under ``latest(what)``, a name that does not change when ``what`` does, so a page
    can show the last built result while a new ``what`` waits for the worker
    (:func:`public_latest`)."""
    _builders[name] = _Builder(factory, default_what, applies, latest)


def _load_builders() -> dict[str, _Builder]:
    """The registered builders (the report, median-path and directory-figure modules register
    themselves when imported; the worker imports them here, lazily, because they import this
    module)."""
    # imported for what they do when imported: each module registers its builder
    import vertebra.directory.figures
    import vertebra.outcomes.median_paths
    import vertebra.outcomes.reports  # noqa: F401

    return _builders


def _default_scopes() -> list[Scope]:
    """Every scope a page can have with no filter asked: all clinics de-identified (the
    researchers), all clinics identified (a network user holding every clinic) and each
    clinic (its staff)."""
    clinics = sorted(Clinic.objects.values_list("pk", flat=True))
    scopes = [Scope(None, True)]
    if len(clinics) > 1:
        scopes.append(Scope(frozenset(clinics), False))
    scopes += [Scope(frozenset({c}), False) for c in clinics]
    return scopes


def _clinic_patients(frames: Frames) -> dict[str, int]:
    """Patients per clinic (clinic id as text): how :func:`scope_patients` sizes a scope."""
    episodes = frames.frames["episodes"]
    counts = episodes.groupby("clinic_id")["patient_id"].nunique()
    ids, ns = counts.index.to_numpy(), counts.to_numpy()
    return {str(int(cid)): int(n) for cid, n in zip(ids, ns, strict=True)}


def _frames_of_clinic(frames: Frames, clinic: int, parts: dict[str, dict[Any, Any]]) -> Frames:
    """The rows of ``clinic`` only (its episodes, their time points, its patients' events):
    ``tables_from_frames(sub, {clinic}, ...)`` equals the same call on the whole frames (it
    keeps exactly these rows first), without scanning every clinic's rows per clinic."""
    sub = {name: frames.frames[name].iloc[parts[name].get(clinic, [])] for name in FRAME_NAMES}
    return Frames(sub, frames.window)


def _clinic_parts(row_clinics: dict[str, np.ndarray]) -> dict[str, dict[Any, Any]]:
    """Row positions of each clinic in each frame, from :func:`_row_clinics` (one pass)."""
    return {name: pd.Series(c).groupby(c).indices for name, c in row_clinics.items()}


def _prepare_defaults(
    folder: Path,
    name: str,
    frames: Frames,
    today: dt.date,
    scopes: list[Scope],
    parts: dict[str, dict[Any, Any]],
    ready: dict[Scope, AnalysisTables] | None = None,
) -> float:
    """Build and store (in the snapshot ``folder``, signed for its final ``name``) the
    default-filter result of every registered builder for each of ``scopes`` (some of
    :func:`_default_scopes`), a clinic's from its rows in ``parts`` (:func:`_clinic_parts`),
    a scope in ``ready`` from the default-filter tables given there (already built today).
    Returns the seconds it took. A failing build is logged and skipped (pages then build or
    ask for it as for any filter)."""
    started = time.monotonic()
    if not settings.SNAPSHOT_PREPARE_REPORTS:
        return 0.0
    builders = _load_builders()
    flt = CohortFilter()
    for scope in scopes:
        source = frames
        if scope.clinic_ids is not None and len(scope.clinic_ids) == 1:
            source = _frames_of_clinic(frames, next(iter(scope.clinic_ids)), parts)
        tables: AnalysisTables | None = (ready or {}).get(scope)
        for builder in (b for b in builders.values() if b.applies(scope)):
            what = builder.default_what()
            item = Prepared(what, scope.clinic_ids, scope.deidentified, flt, today)
            try:
                if tables is None:
                    tables = tables_from_frames(
                        source, scope.clinic_ids, scope.deidentified, flt, as_of=today
                    )
                value = builder.factory(what, flt, today)(tables)
                _store_result(folder, name, builder, item, (len(tables.patients), value))
            except Exception:
                logger.exception("could not prepare %s for %s", what, scope)
    return time.monotonic() - started


def serve_requests(root: Path) -> int:
    """Build and store the results pages asked for (oldest first, at most
    ``SNAPSHOT_REQUESTS_PER_PASS`` per pass) from the current snapshot; returns how many.
    A request of another day than today is dropped (its page has moved on)."""
    waiting = prepared.pending(root, int(settings.SNAPSHOT_REQUESTS_PER_PASS))
    if not waiting:
        return 0
    builders = _load_builders()
    today = _window_today()
    done = 0
    for path, item in waiting:
        builder = builders.get(str(item.what[0])) if item.what else None
        snap = current()
        if builder is None or item.as_of != today or snap is None:
            path.unlink(missing_ok=True)
            continue
        if prepared.load(snap.path, item) is None:
            try:
                tables = tables_from_frames(
                    snap.frames, item.clinic_ids, item.deidentified, item.flt, as_of=item.as_of
                )
                value = builder.factory(item.what, item.flt, item.as_of)(tables)
                _store_result(
                    snap.path, snap.path.name, builder, item, (len(tables.patients), value)
                )
                done += 1
            except Exception:
                logger.exception("could not build the requested %s", item)
        path.unlink(missing_ok=True)
    return done


def serve_waiting() -> int:
    """Between refreshes: build what pages asked for (:func:`serve_requests`) when any
    request waits and no refresh is at work (a refresh serves them itself when it ends).
    Returns how many were built; costs one directory listing when none waits."""
    root = _root()
    if not prepared.waiting(root):
        return 0
    with _refresh_lock(root) as locked:
        return serve_requests(root) if locked else 0


def decision_cells() -> tuple[CellTable | None, Status | None]:
    """The decision aid's cell table from the current snapshot and its status (None, None
    when there is none yet). Built at refresh time, so a page never aggregates the registry."""
    import pyarrow.parquet as pq

    _ensure_inline()
    root = _root()
    path = _current_dir(root)
    if path is None:
        return None, None
    key = f"cells:{path}"
    with _loading:
        cells = _cells.get(key)
    if cells is None:
        facts = json.loads((path / "cells.json").read_text())
        facts["data_notes"] = tuple(facts["data_notes"])
        leaves = pq.read_table(path / "cells.parquet").to_pandas()
        cells = CellTable(leaves=leaves, **facts)
        with _loading:
            _cells.clear()
            _cells[key] = cells
    return cells, status()


_cells: dict[str, CellTable] = {}
