"""The audit trail: append records in the writer's transaction, and verify the hash chain.

Contracts
---------
* :func:`record_audit` must run inside the transaction of the change it describes (it raises
  RuntimeError otherwise), so a change and its audit row commit or roll back together.
* Services chain their records at the end of their transaction (:func:`deferred_audit`,
  entered by :func:`audited_transaction` and the portal's submit), so the chain lock below is
  held only for that final append and the commit (ADR 0021).
* Appends are serialised, so ``seq`` has no gaps and each row's ``prev_hash`` is the hash of the
  row before it: on PostgreSQL with a transaction-scoped advisory lock held until commit; on
  SQLite every write transaction is ``BEGIN IMMEDIATE`` (see ``vertebra.config``), which already
  admits one writer at a time.
* **Lock order** (every writer, so that no two can wait for each other in a circle): the
  patient row first (:func:`vertebra.registry.services.lock_patient`), then the rows below it
  (episode, time point, reminder, ...), the audit-chain lock last (:func:`lock_chain`, taken
  by the first :func:`record_audit` of the transaction). Transient failures that still happen
  (deadlock, serialization failure) are retried by :func:`audited_transaction` /
  :func:`retrying`, never shown to the user.
* ``hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the row's fields,
  ``prev_hash`` included. Values are normalised to JSON *before* storing, so what is stored is
  exactly what was hashed.
* ``mac`` = HMAC-SHA256 of ``hash`` with a key kept outside the database (``mac_key`` names
  it; :mod:`vertebra.registry.auditseal`). The public hash alone cannot stop someone who can
  write the table from re-hashing it; the MAC can.
* :func:`check_audit_chain` recomputes everything and reports altered, removed, inserted,
  re-hashed and unsigned rows, and compares the table with the signed checkpoints kept outside
  the database, which is how a cut-off tail or an emptied table is found.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import hashlib
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from django.db.models.signals import post_save
from django.utils import timezone

from vertebra.registry.auditseal import (
    Checkpoint,
    CheckpointLog,
    Keyring,
    append_checkpoint,
    keyring,
    read_checkpoints,
)
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AuditEvent
from vertebra.registry.permissions import Action, Actor, verify_actor

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Arbitrary constant key of the PostgreSQL advisory lock that serialises chain appends.
_CHAIN_LOCK_KEY = 0x5645525445425241  # "VERTEBRA"

#: The fields covered by the hash, in the order they are documented (the JSON sorts keys anyway).
HASHED_FIELDS = (
    "seq",
    "occurred_at",
    "actor_user_id",
    "actor_username",
    "role",
    "clinic_id",
    "patient_id",
    "action",
    "object_type",
    "object_id",
    "old_values",
    "new_values",
    "reason",
    "request_id",
    "prev_hash",
)


def to_json_value(value: Any) -> Any:
    """Return ``value`` as plain JSON data (dates as ISO strings, decimals as strings, ...).

    Raises TypeError for values with no faithful JSON form, rather than storing a lossy guess.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError("audit values cannot hold NaN or infinity")
        return value
    if isinstance(value, dt.datetime):
        if timezone.is_aware(value):
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(to_json_value(item) for item in value)
    if isinstance(value, Model):
        return value.pk
    raise TypeError(f"cannot record a {type(value).__name__} in the audit trail")


def snapshot(instance: Model, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The JSON form of a model row's concrete fields (foreign keys as ``<name>_id``)."""
    values: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if fields is not None and field.name not in fields and field.attname not in fields:
            continue
        values[field.attname] = to_json_value(getattr(instance, field.attname))
    return values


def _canonical_number(value: Any) -> Any:
    """Make numbers compare equal across databases before hashing.

    PostgreSQL's jsonb keeps numbers as decimals, so a float such as 1e16 comes back as the
    integer 10000000000000000; an integral float is hashed as that integer on both sides.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical_number(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_number(item) for item in value]
    return value


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of one value: sorted keys, no spaces, UTF-8 kept, integral floats
    as integers (see :func:`_canonical_number`). Raises ValueError for NaN or infinity."""
    return json.dumps(
        _canonical_number(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


_SORTED_HASHED_FIELDS = tuple(sorted(HASHED_FIELDS))


def record_template(fixed: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """A ``%``-format template of the canonical JSON of an audit row, and its open fields.

    ``fixed`` maps some hashed fields to their canonical JSON text (:func:`canonical_json`);
    the template has a ``%s`` for each other hashed field, in the order of the returned names.
    ``template % texts`` (each text canonical JSON) is exactly the text :func:`compute_hash`
    hashes, because a JSON object with sorted keys is its members' texts joined in key order.
    Bulk writers (``vertebra.cohort``) fill it per row instead of re-serialising whole rows.
    """
    unknown = set(fixed) - set(HASHED_FIELDS)
    if unknown:
        raise ValueError(f"not hashed audit fields: {sorted(unknown)}")
    members, open_fields = [], []
    for name in _SORTED_HASHED_FIELDS:
        if name in fixed:
            members.append(f'"{name}":' + fixed[name].replace("%", "%%"))
        else:
            members.append(f'"{name}":%s')
            open_fields.append(name)
    return "{" + ",".join(members) + "}", tuple(open_fields)


def hash_text(text: str) -> str:
    """SHA-256 (hex) of a canonical audit-row text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the hashed fields of one audit row.

    One dump of the whole row (the hot path of every append and of verification);
    :func:`record_template` yields the same text field by field for bulk writers, and
    ``tests/cohort/test_jsontext.py`` checks the two agree for arbitrary rows.
    """
    payload = {name: fields[name] for name in HASHED_FIELDS}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    return hash_text(canonical_json(payload))


def timestamp_json(value: dt.datetime) -> str:
    """The canonical JSON text of ``occurred_at`` as hashed (UTC, microseconds)."""
    return canonical_json(_timestamp(value))


def lock_chain() -> None:
    """Serialise appends until the end of the current transaction (see module docstring).

    The chain lock is the *last* lock a writer takes (the lock order, module docstring). On
    PostgreSQL, Django's foreign keys are ``DEFERRABLE INITIALLY DEFERRED``: their checks, and
    the ``FOR KEY SHARE`` row locks they take on the referenced rows (the patient, the
    episode, ...), would otherwise run at COMMIT, after this lock, and deadlock with a writer
    that holds such a row and waits here. ``SET CONSTRAINTS ALL IMMEDIATE`` runs the pending
    checks now, before the lock, and every later one at its statement.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    elif connection.vendor != "sqlite":  # SQLite: BEGIN IMMEDIATE already serialises writers
        raise RuntimeError(f"no audit-chain lock for database vendor {connection.vendor!r}")


def _lock_and_read_head() -> tuple[int, str]:
    """Take the chain lock (:func:`lock_chain`) and return the head's (seq, hash).

    On PostgreSQL in one round trip: the constraint switch, the lock and the head read are
    three statements of one simple query. Each statement of it takes its own snapshot (READ
    COMMITTED), so the head is read after the lock is granted and sees every earlier append.
    """
    if connection.vendor != "postgresql":
        lock_chain()
        last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    else:
        table = connection.ops.quote_name(AuditEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                "SET CONSTRAINTS ALL IMMEDIATE; "
                f"SELECT pg_advisory_xact_lock({int(_CHAIN_LOCK_KEY)}); "
                f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1"
            )
            cursor.nextset()
            cursor.nextset()
            row = cursor.fetchone()
        last = None if row is None else {"seq": int(row[0]), "hash": str(row[1])}
    return (last["seq"], last["hash"]) if last else (0, GENESIS_HASH)


def record_audit(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object = "",
    clinic_id: int | None = None,
    patient_id: int | None = None,
    old_values: Mapping[str, Any] | None = None,
    new_values: Mapping[str, Any] | None = None,
    reason: str = "",
    occurred_at: dt.datetime | None = None,
) -> AuditEvent:
    """Append one audit record, in the caller's transaction, and return it.

    ``occurred_at`` defaults to now (UTC). ``old_values``/``new_values`` are field → value maps
    (field-level changes for updates, the initial values for creates). Raises RuntimeError when
    called outside a transaction, because an audit row committed apart from its change could
    describe a change that never happened (or miss one that did).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("record_audit must be called inside transaction.atomic()")
    when = occurred_at or timezone.now()
    if timezone.is_naive(when):
        raise ValueError("occurred_at must be timezone-aware")
    # Everything that does not depend on the chain's head is prepared before the chain lock,
    # which every writer waits for; a missing key fails here without holding anyone up.
    ring = keyring()
    fields: dict[str, Any] = {
        "occurred_at": when.astimezone(dt.UTC),
        "actor_user_id": actor.user.pk,
        "actor_username": actor.user.get_username(),
        "role": actor.role,
        "clinic_id": clinic_id,
        "patient_id": patient_id,
        "action": action,
        "object_type": object_type,
        "object_id": "" if object_id is None else str(object_id),
        "old_values": None if old_values is None else to_json_value(old_values),
        "new_values": None if new_values is None else to_json_value(new_values),
        "reason": reason,
        "request_id": actor.request_id,
    }
    event = AuditEvent(**fields)
    pending: list[tuple[AuditEvent, Callable[[], None]]] | None = getattr(
        connection, "_vertebra_audit_pending", None
    )
    if pending is not None:
        # Deferred: chained at the end of the transaction (:func:`deferred_audit`). The marker
        # is a no-op commit hook; Django drops it if a savepoint around this call rolls back,
        # which is how the flush knows this record's change was undone.
        def marker() -> None:
            return None

        transaction.on_commit(marker)
        pending.append((event, marker))
        return event
    _append_chain([event], ring)
    return event


def _append_chain(events: Sequence[AuditEvent], ring: Keyring) -> None:
    """Chain ``events`` (in order) after the head and INSERT them, under the chain lock.

    Fills in ``seq``, ``prev_hash``, ``hash``, ``mac`` and ``mac_key`` of each event and saves
    it (one INSERT for all). Runs in the caller's transaction; the lock is held to its end.
    """
    if not events:
        return
    seq, prev_hash = _lock_and_read_head()
    for event in events:
        seq += 1
        event.seq = seq
        event.prev_hash = prev_hash
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
        event.hash = prev_hash = compute_hash(fields)
        event.mac = ring.row_mac(event.hash)
        event.mac_key = ring.current_id
    if len(events) == 1:
        events[0].save(force_insert=True)
        return
    AuditEvent.objects.bulk_create(events)  # one INSERT under the lock, not one per record
    for event in events:  # bulk_create sends no post_save; its receivers expect one per row
        post_save.send(
            sender=AuditEvent, instance=event, created=True, update_fields=None, raw=False,
            using=connection.alias,
        )  # fmt: skip


def flush_pending_audit() -> None:
    """Chain the records deferred so far in this transaction (those not rolled back)."""
    pending = getattr(connection, "_vertebra_audit_pending", None)
    if not pending:
        return
    connection._vertebra_audit_pending = []  # type: ignore[attr-defined]
    # Entries are (savepoint ids, callback, robust); the stubs know only the first two.
    alive = {id(entry[1]) for entry in connection.run_on_commit}
    _append_chain([event for event, marker in pending if id(marker) in alive], keyring())


@contextlib.contextmanager
def deferred_audit() -> Iterator[None]:
    """Within this block, :func:`record_audit` defers the chain append to the block's end.

    Use inside the transaction, as its last step: ``with transaction.atomic(),
    deferred_audit():``. The records are still written in the same transaction as their
    change (the block ends before the commit), but the chain lock, which every writer waits
    for, is taken only for that final append and the commit, not from the first record on.
    A record made inside a savepoint that rolled back is dropped with its change; a block
    that raises appends nothing (its transaction rolls back). Reading the trail inside the
    block (:class:`~vertebra.registry.models.AuditEvent` queries) first appends what is
    pending, so a transaction always sees its own records. Nested blocks join the outer one.
    """
    if getattr(connection, "_vertebra_audit_pending", None) is not None:
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("deferred_audit must be used inside transaction.atomic()")
    connection._vertebra_audit_pending = []  # type: ignore[attr-defined]
    try:
        yield
        if not connection.needs_rollback:
            flush_pending_audit()
    finally:
        connection._vertebra_audit_pending = None  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ChainProblem:
    """One defect of the audit chain, located by ``seq`` (the row's position in the chain)."""

    seq: int
    kind: str  # see PROBLEM_KINDS
    message: str


#: What :func:`check_audit_chain` can report, in the words a person reads.
PROBLEM_KINDS = {
    "altered": "a row's fields no longer hash to its stored hash",
    "missing": "rows are missing (a gap in seq)",
    "broken_link": "a row does not follow the row before it (prev_hash mismatch)",
    "bad_mac": "a row was re-hashed without the key: its MAC does not match",
    "unknown_key": "a row's MAC names a key this server does not have",
    "unsigned": "rows carry no MAC and nothing signed vouches for them",
    "checkpoint_mismatch": "a row differs from the signed checkpoint recorded for it",
    "truncated": "rows recorded by a checkpoint (or the expected head) are gone",
    "bad_checkpoint": "a checkpoint line is unreadable or its signature does not match",
}


@dataclass
class ChainReport:
    """The result of one verification: problems (oldest first) and what was looked at."""

    problems: list[ChainProblem]
    rows: int
    head_seq: int
    head_hash: str
    checkpoints: int

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self, source: str) -> dict[str, Any]:
        """The ``new_values`` of the ``verify`` audit row (first 20 problems spelled out)."""
        first = self.problems[0] if self.problems else None
        return {
            "source": source,
            "intact": self.intact,
            "rows": self.rows,
            "head_seq": self.head_seq,
            "checkpoints": self.checkpoints,
            "problem_count": len(self.problems),
            "first_problem": None if first is None else {"seq": first.seq, "kind": first.kind},
            "problems": [problem.message for problem in self.problems[:20]],
        }


_ROW_FIELDS = (*HASHED_FIELDS, "hash", "mac", "mac_key")


def _rows() -> Iterator[dict[str, Any]]:
    yield from AuditEvent.objects.order_by("seq").values(*_ROW_FIELDS).iterator(chunk_size=2000)


def _usable_checkpoints(
    log: CheckpointLog | Sequence[Checkpoint] | None, ring: Keyring, problems: list[ChainProblem]
) -> tuple[dict[int, list[Checkpoint]], int]:
    """Checkpoints whose signature holds, by seq; bad ones become problems."""
    if log is None:
        return {}, 0
    checkpoints = log.checkpoints if isinstance(log, CheckpointLog) else tuple(log)
    if isinstance(log, CheckpointLog):
        for number in log.unreadable:
            problems.append(
                ChainProblem(0, "bad_checkpoint", f"checkpoint file line {number} is unreadable")
            )
    usable: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        ok = checkpoint.signature_ok(ring)
        if not ok:
            why = (
                "its signature does not match" if ok is False else "it is signed by an unknown key"
            )
            problems.append(
                ChainProblem(
                    checkpoint.seq,
                    "bad_checkpoint",
                    f"the checkpoint of {checkpoint.at} for row {checkpoint.seq} is not "
                    f"trustworthy: {why}",
                )
            )
            continue
        usable.setdefault(checkpoint.seq, []).append(checkpoint)
    return usable, len(checkpoints)


def check_audit_chain(
    *,
    expected_head: str | None = None,
    checkpoints: CheckpointLog | Sequence[Checkpoint] | None = None,
    ring: Keyring | None = None,
) -> ChainReport:
    """Recompute the chain and its MACs, compare it with ``checkpoints``; return the report.

    Problems (kinds in :data:`PROBLEM_KINDS`), each located by ``seq``:

    * ``altered``: a row's fields no longer hash to its stored ``hash``;
    * ``missing``: a gap in ``seq`` (rows removed);
    * ``broken_link``: a row's ``prev_hash`` is not the previous row's hash;
    * ``bad_mac`` / ``unknown_key``: the row's MAC is wrong (re-hashed with the public
      algorithm) or made with a key this keyring lacks;
    * ``unsigned``: a row without MAC after a signed row, or unsigned rows (from before MACs
      existed, ADR 0008) that no later signed row or checkpoint vouches for;
    * ``checkpoint_mismatch``: the row at a checkpoint's seq is not the row it recorded;
    * ``truncated``: the table ends before a checkpoint's row (or its head is not
      ``expected_head``): rows were cut off, or the table emptied;
    * ``bad_checkpoint``: a checkpoint line that cannot be read or whose signature fails.

    The first problem is the oldest (``bad_checkpoint`` of an unreadable line has seq 0).
    Read-only. Load ``checkpoints`` *before* calling, so every checkpoint describes rows this
    scan can see.
    """
    ring = ring or keyring()
    problems: list[ChainProblem] = []
    by_seq, checkpoint_count = _usable_checkpoints(checkpoints, ring, problems)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    signed_seen = False
    unvouched: int | None = None  # first unsigned row not yet vouched for
    for row in _rows():
        seq = row["seq"]
        if seq != expected_seq:
            problems.append(
                ChainProblem(
                    seq, "missing", f"rows {expected_seq}..{seq - 1} are missing before row {seq}"
                )
            )
        if compute_hash(row) != row["hash"]:
            problems.append(
                ChainProblem(seq, "altered", f"row {seq} was altered: its hash does not match")
            )
        if row["prev_hash"] != prev_hash:
            problems.append(
                ChainProblem(
                    seq,
                    "broken_link",
                    f"row {seq} does not follow the row before it (prev_hash mismatch)",
                )
            )
        if not row["mac"]:
            if signed_seen:
                problems.append(
                    ChainProblem(seq, "unsigned", f"row {seq} carries no MAC after signed rows")
                )
            elif unvouched is None:
                unvouched = seq
        else:
            ok = ring.row_mac_ok(row["hash"], row["mac"], row["mac_key"] or "")
            if ok is None:
                problems.append(
                    ChainProblem(
                        seq,
                        "unknown_key",
                        f"row {seq} is signed with key {row['mac_key']!r}, which this server "
                        "does not have (a retired key missing from the keyring?)",
                    )
                )
            elif not ok:
                problems.append(
                    ChainProblem(
                        seq,
                        "bad_mac",
                        f"row {seq} was altered and re-hashed: its MAC does not match",
                    )
                )
            else:
                signed_seen = True
                unvouched = None
        for checkpoint in by_seq.get(seq, ()):
            if checkpoint.hash != row["hash"] or checkpoint.mac != (row["mac"] or ""):
                problems.append(
                    ChainProblem(
                        seq,
                        "checkpoint_mismatch",
                        f"row {seq} is not the row the checkpoint of {checkpoint.at} recorded",
                    )
                )
            else:
                unvouched = None
        expected_seq = seq + 1
        prev_hash = row["hash"]
    last_seq = expected_seq - 1
    if unvouched is not None:
        problems.append(
            ChainProblem(
                unvouched,
                "unsigned",
                f"rows {unvouched}..{last_seq} carry no MAC and no signed row or checkpoint "
                "vouches for them (run `vertebra audit checkpoint` after upgrading)",
            )
        )
    beyond = [cp for seq, cps in by_seq.items() if seq > last_seq for cp in cps]
    if beyond:
        latest = max(beyond, key=lambda cp: cp.seq)
        problems.append(
            ChainProblem(
                last_seq + 1,
                "truncated",
                f"the table ends at row {last_seq}, but the checkpoint of {latest.at} recorded "
                f"row {latest.seq}: rows {last_seq + 1}..{latest.seq} were removed",
            )
        )
    if expected_head is not None and prev_hash != expected_head:
        problems.append(
            ChainProblem(
                last_seq,
                "truncated",
                "the newest row is not the expected head: rows were cut off or added",
            )
        )
    problems.sort(key=lambda problem: problem.seq)  # stable: a row's problems keep their order
    return ChainReport(problems, last_seq, last_seq, prev_hash, checkpoint_count)


def verify_audit_chain(
    *,
    expected_head: str | None = None,
    checkpoints: CheckpointLog | Sequence[Checkpoint] | None = None,
) -> list[ChainProblem]:
    """The problems of :func:`check_audit_chain` (empty list: chain intact)."""
    return check_audit_chain(expected_head=expected_head, checkpoints=checkpoints).problems


_P = ParamSpec("_P")
_R = TypeVar("_R")

#: SQLSTATEs of failures that say "run the transaction again": serialization_failure and
#: deadlock_detected. Nothing was committed; the same work may well succeed at once.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
#: Default number of retries (settings.TRANSACTION_RETRIES) after the first attempt.
DEFAULT_TRANSACTION_RETRIES = 4
_BACKOFF_SECONDS = 0.02  # first backoff ceiling; doubles per retry (full jitter)
_BACKOFF_CAP_SECONDS = 0.5


def transient_failure(exc: BaseException, elapsed: float) -> str | None:
    """Why ``exc`` is worth retrying ("deadlock", "serialization", "sqlite_busy"), or None.

    PostgreSQL: SQLSTATE 40P01/40001 anywhere in the exception's chain. SQLite: "database is
    locked" only when it came quicker than half the busy timeout, i.e. SQLite refused without
    waiting (a busy snapshot); a lock held for the whole ``DATABASE_TIMEOUT`` is a database
    that is really stuck, which the web layer answers with 503 (docs/reliability.md).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if state in TRANSIENT_SQLSTATES:
            return "deadlock" if state == "40P01" else "serialization"
        if type(current).__module__.startswith("sqlite3") and "locked" in str(current):
            timeout = float(getattr(settings, "DATABASE_TIMEOUT", 3))
            return "sqlite_busy" if elapsed < timeout / 2 else None
        current = current.__cause__ or current.__context__
    return None


def retrying(func: Callable[[], _R], *, what: str = "transaction") -> _R:
    """Run ``func`` (which opens and commits its own transaction); run it again, at most
    settings.TRANSACTION_RETRIES times with jittered exponential backoff, when it fails with a
    transient database error (:func:`transient_failure`). Nothing of a failed attempt was
    committed, so running it again is safe. Inside an enclosing transaction nothing is retried
    (the enclosing transaction is the unit that failed; its owner decides).
    """
    if connection.in_atomic_block:
        return func()
    retries = int(getattr(settings, "TRANSACTION_RETRIES", DEFAULT_TRANSACTION_RETRIES))
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            return func()
        except DatabaseError as exc:
            kind = transient_failure(exc, time.monotonic() - started)
            if kind is None or attempt >= retries:
                raise
            attempt += 1
            ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_SECONDS * 2**attempt)
            logger.warning("%s: transient %s, retry %d of %d", what, kind, attempt, retries)
            time.sleep(random.uniform(0, ceiling))  # jitter, not a secret


def _operation_of(exc: BaseException, name: str) -> str:
    """The innermost audited operation that raised ``exc`` (set once, on the way out)."""
    if not hasattr(exc, "audited_operation"):
        exc.audited_operation = name  # type: ignore[attr-defined]
    return str(exc.audited_operation)  # type: ignore[attr-defined]


def audited_transaction(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a service or selector in one transaction, retried when transient, and audit refusals.

    The wrapped function is called with keyword arguments including ``actor``.

    * Transient failures (deadlock, serialization failure, an immediate SQLite busy) roll the
      transaction back and run it again (:func:`retrying`), so a caller never sees one unless
      the database keeps failing.
    * If it raises PermissionDeniedError or NotFound, its transaction is rolled back, then one
      ``denied`` audit row (who, which operation, the refusal) is committed in a new
      transaction and the error is re-raised: refused access is itself part of the trail
      (HIPAA 164.312(b)).
    * Services may call services: only the outermost audited call retries and records the
      denial (naming the innermost operation that refused), so a composed service such as
      ``start_episode_with_follow_up`` is one transaction. When the caller wraps the call in
      its own plain transaction, rolling that back also drops the denial row.
    """

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if getattr(connection, "_vertebra_audited", False):
            try:
                with transaction.atomic():
                    return func(*args, **kwargs)
            except (PermissionDeniedError, NotFound) as exc:
                _operation_of(exc, func.__name__)
                raise

        def attempt() -> _R:
            connection._vertebra_audited = True  # type: ignore[attr-defined]
            try:
                with transaction.atomic(), deferred_audit():
                    return func(*args, **kwargs)
            finally:
                connection._vertebra_audited = False  # type: ignore[attr-defined]

        try:
            return retrying(attempt, what=func.__name__)
        except (PermissionDeniedError, NotFound) as exc:
            actor = kwargs.get("actor")
            if isinstance(actor, Actor):
                with transaction.atomic():
                    record_audit(
                        actor=actor,
                        action="denied",
                        object_type=exc.object_type if isinstance(exc, NotFound) else "",
                        object_id=exc.object_id if isinstance(exc, NotFound) else "",
                        new_values={
                            "operation": _operation_of(exc, func.__name__),
                            "action": exc.action if isinstance(exc, PermissionDeniedError) else "",
                        },
                        reason=str(exc),
                    )
            raise

    return wrapper


@audited_transaction
def verify_audit_chain_as(*, actor: Actor) -> list[ChainProblem]:
    """Verify the chain (against the checkpoint file too) for an actor allowed to (registry
    admins); the check itself is audited, so who inspected the trail, and what they found,
    is on the trail."""
    verify_actor(actor, Action.AUDIT_VERIFY)
    report = check_audit_chain(checkpoints=read_checkpoints())
    record_audit(
        actor=actor, action="verify", object_type="audit_chain", new_values=report.summary("page")
    )
    return report.problems


# ------------------------------------------------------------------ operators and the worker


@dataclass(frozen=True)
class SystemPrincipal:
    """A non-person actor (command line, worker): enough of a user for the audit trail."""

    username: str
    pk: None = None
    is_active: bool = True

    def get_username(self) -> str:
        return self.username


def system_actor(name: str, *, request_id: str = "") -> Actor:
    """The Actor of a system job; its audit rows say ``system:<name>`` with no user id."""
    return Actor(
        user=SystemPrincipal(f"system:{name}"),
        role="system",
        clinic_ids=frozenset(),
        request_id=request_id,
    )


def verify_and_record(*, actor: Actor, source: str) -> tuple[ChainReport, AuditEvent]:
    """Verify the chain against the checkpoint file and append the ``verify`` audit row
    (action ``verify``, object ``audit_chain``, :meth:`ChainReport.summary`); return both.

    For system callers (command line, worker) that hold no permission to check; the page
    uses :func:`verify_audit_chain_as`.
    """
    report = check_audit_chain(checkpoints=read_checkpoints())

    def record() -> AuditEvent:
        with transaction.atomic():
            row = record_audit(
                actor=actor,
                action="verify",
                object_type="audit_chain",
                new_values=report.summary(source),
            )
            flush_pending_audit()  # chained now even inside a deferred block: its seq is used
            return row

    row = retrying(record, what="verify_and_record")
    level = logging.INFO if report.intact else logging.ERROR
    logger.log(
        level,
        "audit chain verified by %s: %s",
        source,
        "intact"
        if report.intact
        else f"{len(report.problems)} problem(s), first: row {report.problems[0].seq} "
        f"{report.problems[0].kind}",
    )
    return report, row


def write_checkpoint(
    *, actor: Actor, head: AuditEvent | None = None, verified: bool = False
) -> Checkpoint:
    """Record a signed checkpoint of ``head`` outside the database (file and log line).

    Without ``head``, first appends a ``checkpoint`` audit row (signed with the current key,
    so it also vouches for any older unsigned rows) and records that. The file line is
    written after the row committed.
    """
    if head is None:

        def append() -> AuditEvent:
            with transaction.atomic():
                row = record_audit(actor=actor, action="checkpoint", object_type="audit_chain")
                flush_pending_audit()  # chained now even inside a deferred block
                return row

        head = retrying(append, what="write_checkpoint")
    ring = keyring()
    checkpoint = Checkpoint(
        seq=head.seq,
        hash=head.hash,
        mac=head.mac or "",
        at=_timestamp(timezone.now()),
        key=ring.current_id,
        verified=verified,
    ).signed(ring)
    append_checkpoint(checkpoint)
    return checkpoint
