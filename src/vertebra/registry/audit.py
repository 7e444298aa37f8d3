"""The audit trail: append records in the writer's transaction, seal them, verify it all.

Contracts (ADR 0004, 0008, 0021)
--------------------------------
* :func:`record_audit` must run inside the transaction of the change it describes (it raises
  RuntimeError otherwise), so a change and its audit row commit or roll back together.
* A row carries ``hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of
  its content (:data:`CONTENT_FIELDS`) and ``mac`` = HMAC-SHA256 of it with a key kept outside
  the database (``mac_key`` names it; :mod:`vertebra.registry.auditseal`). It depends on no
  other row, so writers take **no lock** for it: different patients' transactions commit
  concurrently. Values are normalised to JSON *before* storing, so what is stored is exactly
  what was hashed. Services insert their records at the end of their transaction in one
  statement (:func:`deferred_audit`, entered by :func:`audited_transaction`).
* **The seal chain** (:class:`~vertebra.registry.models.AuditSeal`) orders committed rows:
  :func:`seal_pending` takes the chain lock (a PostgreSQL advisory lock, try-lock by default)
  in its own short transaction, and appends one seal per committed unsealed row, in the order
  it reads them. It runs after every audited commit (``on_commit``; in a web request, once
  the response has been sent, so no client waits for it), in ``vertebra worker``
  (backstop, every row) and before verification and checkpoints; a committed row is sealed
  within ``AUDIT_SEAL_WITHIN_SECONDS`` (default 60). SQLite (one writer at a time) seals each
  row in the writer's own transaction. Rows written before the seal chain keep their in-row
  chain (``seq``, ``prev_hash``); the first seal's ``prev_hash`` is that chain's last hash.
* **Lock order** (every writer, so that no two can wait for each other in a circle): the
  patient row first (:func:`vertebra.registry.services.lock_patient`), then the rows below it
  (episode, time point, reminder, ...). The chain lock is taken only by the sealer (which
  holds no other lock) and by bulk loaders (:func:`lock_chain`, first). Transient failures
  that still happen (deadlock, serialization failure) are retried by
  :func:`audited_transaction` / :func:`retrying`, never shown to the user.
* :func:`check_audit_chain` recomputes everything and reports altered, removed, inserted,
  re-hashed, unsigned, unsealed and doubly sealed rows, and compares the seal chain with the
  signed checkpoints kept outside the database, which is how a cut-off tail or an emptied
  table is found.
"""

from __future__ import annotations

import contextlib
import contextvars
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from django.db.models.signals import post_save
from django.utils import timezone

from vertebra.registry.auditseal import (
    ROWS_CHAIN,
    SEALS_CHAIN,
    Checkpoint,
    CheckpointLog,
    Keyring,
    append_checkpoint,
    keyring,
    read_checkpoints,
)
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AuditEvent, AuditSeal
from vertebra.registry.permissions import Action, Actor, verify_actor

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Arbitrary constant key of the PostgreSQL advisory lock that serialises seal appends.
_CHAIN_LOCK_KEY = 0x5645525445425241  # "VERTEBRA"

#: The fields covered by the hash of a row of the old in-row chain (before ADR 0021), in the
#: order they are documented (the JSON sorts keys anyway).
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


#: The fields of a row written since the seal chain (ADR 0021): its content, no position.
CONTENT_FIELDS = tuple(name for name in HASHED_FIELDS if name not in ("seq", "prev_hash"))
#: AUDIT_SEAL_WITHIN_SECONDS: a committed row older than this without a seal is a problem.
DEFAULT_SEAL_WITHIN_SECONDS = 60
#: AUDIT_SEAL_LOOKBACK_ROWS: the sealer after a commit looks at ids above the newest sealed id
#: less this many (rows of transactions that commit later than that many newer rows are
#: sealed by the worker's full pass, well within the delay).
DEFAULT_SEAL_LOOKBACK_ROWS = 1000


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


def record_template(
    fixed: Mapping[str, str], fields: Sequence[str] = CONTENT_FIELDS
) -> tuple[str, tuple[str, ...]]:
    """A ``%``-format template of the canonical JSON of an audit row, and its open fields.

    ``fields`` are the hashed fields (:data:`CONTENT_FIELDS` for rows written now,
    :data:`HASHED_FIELDS` for the old in-row chain); ``fixed`` maps some of them to their
    canonical JSON text (:func:`canonical_json`); the template has a ``%s`` for each other
    field, in the order of the returned names. ``template % texts`` (each text canonical
    JSON) is exactly the text :func:`compute_hash` hashes, because a JSON object with sorted
    keys is its members' texts joined in key order. Bulk writers (``vertebra.cohort``) fill it
    per row instead of re-serialising whole rows.
    """
    unknown = set(fixed) - set(fields)
    if unknown:
        raise ValueError(f"not hashed audit fields: {sorted(unknown)}")
    members, open_fields = [], []
    for name in sorted(fields):
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

    A row of the old in-row chain (``seq`` set) hashes :data:`HASHED_FIELDS`, its position
    included; a row written now (``seq`` missing or None) hashes its content only,
    :data:`CONTENT_FIELDS` (ADR 0021: its position is kept by its seal). One dump of the whole
    row (the hot path of every append and of verification); :func:`record_template` yields the
    same text field by field for bulk writers (``tests/cohort/test_jsontext.py``).
    """
    names = HASHED_FIELDS if fields.get("seq") is not None else CONTENT_FIELDS
    payload = {name: fields[name] for name in names}
    payload["occurred_at"] = _timestamp(payload["occurred_at"])
    return hash_text(canonical_json(payload))


def timestamp_json(value: dt.datetime) -> str:
    """The canonical JSON text of ``occurred_at`` as hashed (UTC, microseconds)."""
    return canonical_json(_timestamp(value))


def seal_hash(seq: int, event_id: int, row_hash: str, prev_hash: str) -> str:
    """SHA-256 (hex) of one seal: the canonical JSON of ``{event_id, prev_hash, row_hash,
    seq}`` (integers and hex strings, so the f-string below *is* that canonical text)."""
    text = (
        f'{{"event_id":{int(event_id)},"prev_hash":"{prev_hash}",'
        f'"row_hash":"{row_hash}","seq":{int(seq)}}}'
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def lock_chain() -> None:
    """Hold the chain lock until the end of the current transaction (bulk writers).

    Only whoever appends *seals* takes it: the sealer (:func:`seal_pending`, briefly) and the
    bulk loaders, which write rows and their seals together for a whole load. Writers of audit
    rows take no lock (ADR 0021). On PostgreSQL, Django's foreign keys are ``DEFERRABLE
    INITIALLY DEFERRED``: ``SET CONSTRAINTS ALL IMMEDIATE`` runs their checks (and the row
    locks they take) at each statement rather than at COMMIT, after a long load.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    elif connection.vendor != "sqlite":  # SQLite: BEGIN IMMEDIATE already serialises writers
        raise RuntimeError(f"no audit-chain lock for database vendor {connection.vendor!r}")


def _tables() -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(AuditEvent._meta.db_table), quote(AuditSeal._meta.db_table)


def _head_sql() -> str:
    """One query for the seal chain's head (seq, hash): the last seal, else (0, the last hash
    of the old in-row chain); no row at all when both are empty."""
    events, seals = _tables()
    return (
        f"SELECT * FROM (SELECT seq, hash FROM {seals} ORDER BY seq DESC LIMIT 1) AS s "
        f"UNION ALL SELECT * FROM (SELECT 0, hash FROM {events} WHERE seq IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1) AS o"
    )


def _pick_head(rows: Sequence[Sequence[Any]]) -> tuple[int, str]:
    if not rows:
        return 0, GENESIS_HASH
    seq, head = max(rows, key=lambda row: int(row[0]))
    return int(seq), str(head)


def seal_head() -> tuple[int, str]:
    """The seal chain's head (seq, hash); (0, old chain's last hash or genesis) before the
    first seal. The caller holds the chain lock (or SQLite's write transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(_head_sql())
        return _pick_head(cursor.fetchall())


#: The columns of a seal, in the order :func:`chain_seals` gives them.
SEAL_COLUMNS = ("seq", "event_id", "row_hash", "prev_hash", "hash", "mac", "mac_key")


def chain_seals(
    rows: Iterable[tuple[int, str]], head: tuple[int, str], ring: Keyring
) -> tuple[list[tuple[int, int, str, str, str, str, str]], tuple[int, str]]:
    """The seals (tuples of :data:`SEAL_COLUMNS`) of ``rows`` ((event id, row hash), in the
    order given) after ``head``, and the new head. Bulk writers use the tuples directly."""
    seq, prev = head
    kid, mac_of = ring.current_id, ring.seal_mac
    seals = []
    for event_id, row_hash in rows:
        seq += 1
        digest = seal_hash(seq, event_id, row_hash, prev)
        seals.append((seq, event_id, row_hash, prev, digest, mac_of(digest), kid))
        prev = digest
    return seals, (seq, prev)


def make_seals(
    rows: Iterable[tuple[int, str]], head: tuple[int, str], ring: Keyring
) -> tuple[list[AuditSeal], tuple[int, str]]:
    """:func:`chain_seals` as (unsaved) model instances."""
    seals, head = chain_seals(rows, head, ring)
    return [AuditSeal(**dict(zip(SEAL_COLUMNS, s, strict=True))) for s in seals], head


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
    describe a change that never happened (or miss one that did). The row carries its content
    hash and MAC and takes no lock; it is sealed after the commit (PostgreSQL) or at once, in
    this transaction (SQLite).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("record_audit must be called inside transaction.atomic()")
    when = occurred_at or timezone.now()
    if timezone.is_naive(when):
        raise ValueError("occurred_at must be timezone-aware")
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
    row_hash = compute_hash(fields)
    event = AuditEvent(**fields, hash=row_hash, mac=ring.row_mac(row_hash), mac_key=ring.current_id)
    pending: list[tuple[AuditEvent, Callable[[], None]]] | None = getattr(
        connection, "_vertebra_audit_pending", None
    )
    if pending is not None:
        # Deferred: inserted at the end of the transaction (:func:`deferred_audit`), in one
        # statement. The marker is a no-op commit hook; Django drops it if a savepoint around
        # this call rolls back, which is how the flush knows this record's change was undone.
        def marker() -> None:
            return None

        transaction.on_commit(marker)
        pending.append((event, marker))
        return event
    _insert([event])
    return event


def _insert(events: Sequence[AuditEvent]) -> None:
    """INSERT ``events`` (one statement) and see that they are sealed.

    SQLite seals them at once, in this transaction (one writer at a time anyway); PostgreSQL
    runs :func:`seal_pending` after the commit (one hook per transaction), outside any lock
    the writer holds.
    """
    if not events:
        return
    if len(events) == 1:
        events[0].save(force_insert=True)
    else:
        AuditEvent.objects.bulk_create(events)
        for event in events:  # bulk_create sends no post_save; its receivers expect one per row
            post_save.send(
                sender=AuditEvent, instance=event, created=True, update_fields=None, raw=False,
                using=connection.alias,
            )  # fmt: skip
    if connection.vendor == "sqlite":
        seals, _ = make_seals(((e.pk, e.hash) for e in events), seal_head(), keyring())
        AuditSeal.objects.bulk_create(seals)
    elif not any(entry[1] is _seal_after_commit for entry in connection.run_on_commit):
        transaction.on_commit(_seal_after_commit)


def _seal_after_commit() -> None:
    """The commit hook of audited transactions: seal what is committed, if nobody else is.

    While a web request is being served, the sealing waits until its response has been sent
    (:func:`_seal_after_response`): the client does not wait for the sealer's transaction
    (ADR 0021 §7). Elsewhere (worker, commands, tests calling services) it runs at once.
    """
    scope = _request_scope.get()
    if scope is not None:
        scope.append(True)
        return
    _seal_now()


def _seal_now() -> None:
    try:
        seal_pending()
    except Exception:  # never fail the request whose change already committed
        logger.warning("audit sealer after commit failed; the worker will seal", exc_info=True)


#: Set while a web request is served (between Django's ``request_started`` and
#: ``request_finished``): commits made meanwhile note here that there is something to seal.
_request_scope: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "vertebra_audit_request_scope", default=None
)


def _open_request_scope(**_: Any) -> None:
    _request_scope.set([])


def _seal_after_response(**_: Any) -> None:
    """``request_finished``: the WSGI server sends it once the response has gone out (the
    response's ``close()``); seal what the request's commits left, in the same thread."""
    scope = _request_scope.get()
    _request_scope.set(None)
    if scope:
        _seal_now()


def seal_before_streaming() -> None:
    """Seal now what this request's commits left, if anything: for a streaming response,
    whose ``close()`` comes only when the last byte has gone out (a long download would
    otherwise hold its rows unsealed for as long). Called by the outermost middleware."""
    scope = _request_scope.get()
    if scope:
        scope.clear()
        _seal_now()


request_started.connect(_open_request_scope, dispatch_uid="vertebra.audit.request_scope")
request_finished.connect(_seal_after_response, dispatch_uid="vertebra.audit.seal_after_response")


def flush_pending_audit() -> None:
    """Insert the records deferred so far in this transaction (those not rolled back)."""
    pending = getattr(connection, "_vertebra_audit_pending", None)
    if not pending:
        return
    connection._vertebra_audit_pending = []  # type: ignore[attr-defined]
    # Entries are (savepoint ids, callback, robust); the stubs know only the first two.
    alive = {id(entry[1]) for entry in connection.run_on_commit}
    _insert([event for event, marker in pending if id(marker) in alive])


def _unsealed_sql(*, full: bool, limit: int) -> str:
    """Committed rows without a seal, in id order. Not ``full``: only ids above the newest
    sealed id less the lookback (a row commits at most that many rows "late"; the worker's
    full pass finds any other)."""
    events, seals = _tables()
    window = inner = ""
    if not full:
        lookback = int(getattr(settings, "AUDIT_SEAL_LOOKBACK_ROWS", DEFAULT_SEAL_LOOKBACK_ROWS))
        bound = f"COALESCE((SELECT MAX(event_id) FROM {seals}), 0) - {lookback}"
        window = f"AND e.id > {bound} "
        # The same bound on the seals side (implied by s.event_id = e.id): without it
        # PostgreSQL, planning for an unknown bound, merge-joins against the whole seal index
        # (11.8 s per audited request at 14 M seals, 1,000,000 patients; 0.7 ms with it).
        inner = f" AND s.event_id > {bound}"
    return (
        f"SELECT e.id, e.hash FROM {events} e WHERE e.seq IS NULL {window}"
        f"AND NOT EXISTS (SELECT 1 FROM {seals} s WHERE s.event_id = e.id{inner}) "
        f"ORDER BY e.id LIMIT {int(limit)}"
    )


def _seal_batch(*, wait: bool, full: bool, limit: int) -> int | None:
    """One sealing transaction; the number of rows sealed, or None if the lock was busy."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                key = int(_CHAIN_LOCK_KEY)
                take = (
                    f"SELECT true FROM (SELECT pg_advisory_xact_lock({key})) AS locked"
                    if wait
                    else f"SELECT pg_try_advisory_xact_lock({key})"
                )
                # One round trip: lock, head, rows. Each statement reads with its own snapshot
                # (READ COMMITTED), so head and rows are read after the lock is granted.
                cursor.execute(f"{take}; {_head_sql()}; {_unsealed_sql(full=full, limit=limit)}")
                granted = bool(cursor.fetchone()[0])
                cursor.nextset()
                head_rows = cursor.fetchall()
                cursor.nextset()
                rows = cursor.fetchall()
                if not granted:
                    return None
                head = _pick_head(head_rows)
            else:
                lock_chain()
                head = seal_head()
                cursor.execute(_unsealed_sql(full=full, limit=limit))
                rows = cursor.fetchall()
        seals, _ = chain_seals(((int(i), str(h)) for i, h in rows), head, keyring())
        _insert_seals(seals)
        return len(seals)


def _insert_seals(seals: Sequence[tuple[int, int, str, str, str, str, str]]) -> None:
    """INSERT seal tuples (:data:`SEAL_COLUMNS`), 2,000 a statement (no model instances:
    this runs after every audited commit)."""
    _, table = _tables()
    columns = ", ".join(SEAL_COLUMNS)
    one = "(" + ", ".join(["%s"] * len(SEAL_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(seals), 2000):
            part = seals[start : start + 2000]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(part))}",
                [value for seal in part for value in seal],
            )


def seal_pending(*, wait: bool = False, full: bool = False, batch: int = 10_000) -> int:
    """Seal committed audit rows that have no seal yet, in the order read; return how many.

    Each batch is its own short transaction holding the chain lock. ``wait`` False (after
    each audited commit): a try-lock, and nothing done if someone else holds the lock (they,
    or the next commit, or the worker seal these rows). ``wait`` True (``audit verify``,
    ``audit checkpoint``): wait for the lock. ``full``: look at every row, not only the recent
    ones (the worker's backstop, verification). Inside a caller's transaction the batches are
    savepoints of it and the lock is held to its end.
    """
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:  # read first: no write transaction when idle
            cursor.execute(_unsealed_sql(full=full, limit=1))
            if cursor.fetchone() is None:
                return 0
    total = 0
    while True:
        done = retrying(lambda: _seal_batch(wait=wait, full=full, limit=batch), what="seal_pending")
        if done is None:
            return total
        total += done
        if done < batch:
            return total


@contextlib.contextmanager
def deferred_audit() -> Iterator[None]:
    """Within this block, :func:`record_audit` defers the INSERT of its rows to the block's end.

    Use inside the transaction, as its last step: ``with transaction.atomic(),
    deferred_audit():``. The records are still written in the same transaction as their
    change (the block ends before the commit), all in one statement. A record made inside a
    savepoint that rolled back is dropped with its change; a block that raises inserts nothing
    (its transaction rolls back). Reading the trail inside the block
    (:class:`~vertebra.registry.models.AuditEvent` queries) first inserts what is pending, so a
    transaction always sees its own records. Nested blocks join the outer one.
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
    """One defect of the audit trail. ``seq`` locates it in its chain: the row's ``seq`` in
    the old in-row chain (``chain`` "rows"), the seal's ``seq`` in the seal chain ("seals"; a
    row that was never sealed is placed just after the last seal). ``event_id`` names the
    audit row (its id) when the problem is about one."""

    seq: int
    kind: str  # see PROBLEM_KINDS
    message: str
    event_id: int | None = None
    chain: str = ROWS_CHAIN


#: What :func:`check_audit_chain` can report, in the words a person reads.
PROBLEM_KINDS = {
    "altered": "a row's fields no longer hash to its stored hash",
    "missing": "rows are missing (a gap in seq, or a seal whose row is gone)",
    "broken_link": "a row does not follow the row before it (prev_hash mismatch)",
    "bad_mac": "a row was re-hashed without the key: its MAC does not match",
    "unknown_key": "a row's MAC names a key this server does not have",
    "unsigned": "rows carry no MAC and nothing signed vouches for them",
    "checkpoint_mismatch": "a row differs from the signed checkpoint recorded for it",
    "truncated": "rows recorded by a checkpoint (or the expected head) are gone",
    "bad_checkpoint": "a checkpoint line is unreadable or its signature does not match",
    "unsealed": "a row stayed unsealed longer than the stated delay (inserted, or no sealer)",
    "double_seal": "a row is sealed more than once",
}


@dataclass
class ChainReport:
    """The result of one verification: problems (oldest first) and what was looked at.

    ``head_seq``/``head_hash``: the seal chain's head (the old in-row chain's before the
    first seal); ``unsealed``: rows not sealed yet but still within the stated delay."""

    problems: list[ChainProblem]
    rows: int
    head_seq: int
    head_hash: str
    checkpoints: int
    unsealed: int = 0

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
_CONTENT_ROW_FIELDS = ("id", *CONTENT_FIELDS, "hash", "mac", "mac_key")
_SEAL_FIELDS = ("seq", "event_id", "row_hash", "prev_hash", "hash", "mac", "mac_key")


def _rows() -> Iterator[dict[str, Any]]:
    """The old in-row chain, in seq order."""
    rows = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
    yield from rows.values(*_ROW_FIELDS).iterator(chunk_size=2000)


def _usable_checkpoints(
    log: CheckpointLog | Sequence[Checkpoint] | None, ring: Keyring, problems: list[ChainProblem]
) -> tuple[dict[str, dict[int, list[Checkpoint]]], int]:
    """Checkpoints whose signature holds, by chain and seq; bad ones become problems."""
    usable: dict[str, dict[int, list[Checkpoint]]] = {ROWS_CHAIN: {}, SEALS_CHAIN: {}}
    if log is None:
        return usable, 0
    checkpoints = log.checkpoints if isinstance(log, CheckpointLog) else tuple(log)
    if isinstance(log, CheckpointLog):
        for number in log.unreadable:
            problems.append(
                ChainProblem(0, "bad_checkpoint", f"checkpoint file line {number} is unreadable")
            )
    for checkpoint in checkpoints:
        ok = checkpoint.signature_ok(ring)
        if not ok or checkpoint.chain not in usable:
            why = (
                "its signature does not match" if ok is False else "it is signed by an unknown key"
            )
            problems.append(
                ChainProblem(
                    checkpoint.seq,
                    "bad_checkpoint",
                    f"the checkpoint of {checkpoint.at} for row {checkpoint.seq} is not "
                    f"trustworthy: {why}",
                    chain=checkpoint.chain,
                )
            )
            continue
        usable[checkpoint.chain].setdefault(checkpoint.seq, []).append(checkpoint)
    return usable, len(checkpoints)


def _mac_problem(
    ok: bool | None, where: str, kid: str | None, seq: int, event_id: int | None, chain: str
) -> ChainProblem | None:
    if ok is None:
        return ChainProblem(
            seq,
            "unknown_key",
            f"{where} is signed with key {kid!r}, which this server does not have (a retired "
            "key missing from the keyring?)",
            event_id,
            chain,
        )
    if not ok:
        return ChainProblem(
            seq, "bad_mac", f"{where} was altered and re-hashed: its MAC does not match",
            event_id, chain,
        )  # fmt: skip
    return None


@dataclass
class _OldChain:
    """What the check of the old in-row chain hands to the seal chain's."""

    rows: int
    last_seq: int
    last_hash: str
    unvouched: int | None  # first unsigned row not yet vouched for


def _check_old_chain(
    ring: Keyring, by_seq: dict[int, list[Checkpoint]], problems: list[ChainProblem]
) -> _OldChain:
    """ADR 0004/0008's checks of the rows written before the seal chain (``seq`` set)."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    signed_seen = False
    unvouched: int | None = None
    rows = 0
    for row in _rows():
        rows += 1
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
            problem = _mac_problem(ok, f"row {seq}", row["mac_key"], seq, None, ROWS_CHAIN)
            if problem is not None:
                problems.append(problem)
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
    return _OldChain(rows, last_seq, prev_hash, unvouched)


def _seals_by_event() -> Iterator[dict[str, Any]]:
    yield from (AuditSeal.objects.order_by("event_id", "seq").values(*_SEAL_FIELDS).iterator(2000))


def _check_rows_against_seals(
    ring: Keyring, now: dt.datetime, after_seq: int, problems: list[ChainProblem]
) -> tuple[int, int]:
    """Every row written since the seal chain (``seq`` NULL): its hash, its MAC and its seal(s),
    by a merge of rows (id order) and seals (event id order). Returns (rows, unsealed rows
    still within the stated delay). Seals naming no such row are reported ``missing``."""
    delay = dt.timedelta(seconds=seal_within_seconds())
    rows = AuditEvent.objects.filter(seq__isnull=True).order_by("id")
    seals = _seals_by_event()
    seal = next(seals, None)
    count = fresh = 0

    def orphan(s: dict[str, Any]) -> ChainProblem:
        return ChainProblem(
            s["seq"],
            "missing",
            f"seal {s['seq']} vouches for audit row {s['event_id']}, which is gone",
            s["event_id"],
            SEALS_CHAIN,
        )

    for row in rows.values(*_CONTENT_ROW_FIELDS).iterator(chunk_size=2000):
        count += 1
        event_id = row["id"]
        while seal is not None and seal["event_id"] < event_id:
            problems.append(orphan(seal))
            seal = next(seals, None)
        mine = []
        while seal is not None and seal["event_id"] == event_id:
            mine.append(seal)
            seal = next(seals, None)
        at = mine[0]["seq"] if mine else after_seq + 1
        where = f"audit row {event_id}" + (f" (seal {at})" if mine else "")
        if compute_hash(row) != row["hash"]:
            problems.append(
                ChainProblem(
                    at, "altered", f"{where} was altered: its hash does not match", event_id,
                    SEALS_CHAIN,
                )
            )  # fmt: skip
        if not row["mac"]:
            problems.append(
                ChainProblem(at, "unsigned", f"{where} carries no MAC", event_id, SEALS_CHAIN)
            )
        else:
            ok = ring.row_mac_ok(row["hash"], row["mac"], row["mac_key"] or "")
            problem = _mac_problem(ok, where, row["mac_key"], at, event_id, SEALS_CHAIN)
            if problem is not None:
                problems.append(problem)
        for s in mine:
            if s["row_hash"] != row["hash"]:
                problems.append(
                    ChainProblem(
                        s["seq"],
                        "altered",
                        f"{where} is not the row seal {s['seq']} vouched for (replaced in place)",
                        event_id,
                        SEALS_CHAIN,
                    )
                )
        if len(mine) > 1:
            problems.append(
                ChainProblem(
                    mine[1]["seq"],
                    "double_seal",
                    f"audit row {event_id} is sealed {len(mine)} times (seals "
                    f"{', '.join(str(s['seq']) for s in mine)})",
                    event_id,
                    SEALS_CHAIN,
                )
            )
        if not mine:
            if row["occurred_at"] < now - delay:
                problems.append(
                    ChainProblem(
                        at,
                        "unsealed",
                        f"audit row {event_id} of {_timestamp(row['occurred_at'])} is not sealed "
                        f"after {int(delay.total_seconds())} s (inserted, or no sealer running)",
                        event_id,
                        SEALS_CHAIN,
                    )
                )
            else:
                fresh += 1
    while seal is not None:
        problems.append(orphan(seal))
        seal = next(seals, None)
    return count, fresh


def _check_seal_chain(
    ring: Keyring,
    start_hash: str,
    by_seq: dict[int, list[Checkpoint]],
    problems: list[ChainProblem],
) -> tuple[int, str, bool]:
    """The seal chain in seq order: gaps, links, hashes, MACs and checkpoints. Returns the
    head (seq, hash) and whether the first seal is sound and follows ``start_hash`` (it then
    vouches for the old chain's unsigned rows)."""
    expected_seq = 1
    prev_hash = start_hash
    first_vouches = False
    for s in AuditSeal.objects.order_by("seq").values(*_SEAL_FIELDS).iterator(chunk_size=2000):
        seq = s["seq"]
        sound = True
        if seq != expected_seq:
            sound = False
            problems.append(
                ChainProblem(
                    seq, "missing", f"seals {expected_seq}..{seq - 1} are missing before seal "
                    f"{seq}", chain=SEALS_CHAIN,
                )
            )  # fmt: skip
        if seal_hash(seq, s["event_id"], s["row_hash"], s["prev_hash"]) != s["hash"]:
            sound = False
            problems.append(
                ChainProblem(
                    seq, "altered", f"seal {seq} was altered: its hash does not match",
                    s["event_id"], SEALS_CHAIN,
                )
            )  # fmt: skip
        if s["prev_hash"] != prev_hash:
            sound = False
            problems.append(
                ChainProblem(
                    seq, "broken_link", f"seal {seq} does not follow the seal before it "
                    "(prev_hash mismatch)", s["event_id"], SEALS_CHAIN,
                )
            )  # fmt: skip
        if not s["mac"]:
            problem: ChainProblem | None = ChainProblem(
                seq, "unsigned", f"seal {seq} carries no MAC", s["event_id"], SEALS_CHAIN
            )
        else:
            ok = ring.seal_mac_ok(s["hash"], s["mac"], s["mac_key"] or "")
            problem = _mac_problem(ok, f"seal {seq}", s["mac_key"], seq, s["event_id"], SEALS_CHAIN)
        if problem is not None:
            sound = False
            problems.append(problem)
        if seq == 1:
            first_vouches = sound
        for checkpoint in by_seq.get(seq, ()):
            if checkpoint.hash != s["hash"] or checkpoint.mac != s["mac"]:
                problems.append(
                    ChainProblem(
                        seq, "checkpoint_mismatch", f"seal {seq} is not the seal the checkpoint "
                        f"of {checkpoint.at} recorded", chain=SEALS_CHAIN,
                    )
                )  # fmt: skip
        expected_seq = seq + 1
        prev_hash = s["hash"]
    last_seq = expected_seq - 1
    beyond = [cp for seq, cps in by_seq.items() if seq > last_seq for cp in cps]
    if beyond:
        latest = max(beyond, key=lambda cp: cp.seq)
        problems.append(
            ChainProblem(
                last_seq + 1,
                "truncated",
                f"the seal chain ends at seal {last_seq}, but the checkpoint of {latest.at} "
                f"recorded seal {latest.seq}: seals {last_seq + 1}..{latest.seq} (and the rows "
                "they vouched for) were removed",
                chain=SEALS_CHAIN,
            )
        )
    return last_seq, prev_hash, first_vouches


def seal_within_seconds() -> int:
    """The stated sealing delay (``AUDIT_SEAL_WITHIN_SECONDS``, default 60)."""
    return int(getattr(settings, "AUDIT_SEAL_WITHIN_SECONDS", DEFAULT_SEAL_WITHIN_SECONDS))


def check_audit_chain(
    *,
    expected_head: str | None = None,
    checkpoints: CheckpointLog | Sequence[Checkpoint] | None = None,
    ring: Keyring | None = None,
    now: dt.datetime | None = None,
) -> ChainReport:
    """Recompute both chains, the rows' hashes and every MAC, compare them with
    ``checkpoints``; return the report (ADR 0004, 0008, 0021).

    Problems (kinds in :data:`PROBLEM_KINDS`):

    * old in-row chain (rows before the seal chain, located by their ``seq``): ``altered``,
      ``missing`` (a gap), ``broken_link``, ``bad_mac`` / ``unknown_key``, ``unsigned`` (no
      MAC after a signed row, or unsigned rows nothing signed vouches for; the first sound
      seal vouches for the old chain's head);
    * rows written since (located by their seal's ``seq``): ``altered`` (content no longer
      hashes to ``hash``, or not the ``row_hash`` its seal vouched for), ``bad_mac`` /
      ``unknown_key`` / ``unsigned``, ``double_seal``, ``unsealed`` (not sealed ``now``
      more than ``AUDIT_SEAL_WITHIN_SECONDS`` after ``occurred_at``: an inserted row, or no
      sealer running; placed after the last seal);
    * the seal chain: ``missing`` (a seq gap, or a seal whose row is gone), ``broken_link``
      (its first ``prev_hash`` must be the old chain's last hash), ``altered``, ``bad_mac`` /
      ``unknown_key``;
    * checkpoints (each of the chain it names): ``checkpoint_mismatch``, ``truncated`` (the
      chain ends before a checkpoint, which includes an emptied table; or the head is not
      ``expected_head``), ``bad_checkpoint``.

    Problems come oldest first: unreadable checkpoint lines, then the old chain, then the seal
    chain, each by seq. Read-only. Load ``checkpoints`` *before* calling, so every checkpoint
    describes rows this scan can see; run :func:`seal_pending` first to seal what is pending.
    """
    ring = ring or keyring()
    now = now or timezone.now()
    problems: list[ChainProblem] = []
    usable, checkpoint_count = _usable_checkpoints(checkpoints, ring, problems)
    old_problems: list[ChainProblem] = []
    old = _check_old_chain(ring, usable[ROWS_CHAIN], old_problems)
    seal_problems: list[ChainProblem] = []
    head_seq, head_hash, first_vouches = _check_seal_chain(
        ring, old.last_hash, usable[SEALS_CHAIN], seal_problems
    )
    new_rows, fresh = _check_rows_against_seals(ring, now, head_seq, seal_problems)
    if old.unvouched is not None and not first_vouches:
        old_problems.append(
            ChainProblem(
                old.unvouched,
                "unsigned",
                f"rows {old.unvouched}..{old.last_seq} carry no MAC and no signed row or "
                "checkpoint vouches for them (run `vertebra audit checkpoint` after upgrading)",
            )
        )
    if head_seq == 0:
        head_seq, head_hash = old.last_seq, old.last_hash
    if expected_head is not None and head_hash != expected_head:
        seal_problems.append(
            ChainProblem(
                head_seq,
                "truncated",
                "the newest seal (or row) is not the expected head: entries were cut off or added",
                chain=SEALS_CHAIN,
            )
        )
    old_problems.sort(key=lambda problem: problem.seq)  # stable: a row's problems keep order
    seal_problems.sort(key=lambda problem: problem.seq)
    problems.sort(key=lambda problem: problem.seq)
    problems += old_problems + seal_problems
    return ChainReport(problems, old.rows + new_rows, head_seq, head_hash, checkpoint_count, fresh)


def verify_audit_chain(
    *,
    expected_head: str | None = None,
    checkpoints: CheckpointLog | Sequence[Checkpoint] | None = None,
) -> list[ChainProblem]:
    """Seal what is committed (as ``vertebra audit verify`` does), then the problems of
    :func:`check_audit_chain` (empty list: chain intact)."""
    seal_pending(wait=True, full=True)
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
    seal_pending(wait=True, full=True)
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
    """Seal what is pending, verify the trail against the checkpoint file and append the
    ``verify`` audit row (action ``verify``, object ``audit_chain``,
    :meth:`ChainReport.summary`), sealed before returning; return both.

    For system callers (command line, worker) that hold no permission to check; the page
    uses :func:`verify_audit_chain_as`.
    """
    seal_pending(wait=True, full=True)
    report = check_audit_chain(checkpoints=read_checkpoints())

    def record() -> AuditEvent:
        with transaction.atomic():
            row = record_audit(
                actor=actor,
                action="verify",
                object_type="audit_chain",
                new_values=report.summary(source),
            )
            flush_pending_audit()  # inserted now even inside a deferred block: it is sealed next
            return row

    row = retrying(record, what="verify_and_record")
    seal_pending(wait=True)
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
    """Record a signed checkpoint of the seal of ``head`` outside the database (file and log).

    Without ``head``, first appends a ``checkpoint`` audit row and records that. The row is
    sealed first (waiting for the chain lock), and the checkpoint names its seal ``{seq,
    hash, mac}`` in the seal chain (ADR 0021); the seal's MAC vouches for every seal before
    it. The file line is written after the row and its seal committed.
    """
    if head is None:

        def append() -> AuditEvent:
            with transaction.atomic():
                row = record_audit(actor=actor, action="checkpoint", object_type="audit_chain")
                flush_pending_audit()  # inserted now even inside a deferred block
                return row

        head = retrying(append, what="write_checkpoint")
    seal_pending(wait=True)
    seal = AuditSeal.objects.filter(event_id=head.pk).first()
    if seal is None:  # sealed by a full pass only (it committed long after newer rows)
        seal_pending(wait=True, full=True)
        seal = AuditSeal.objects.get(event_id=head.pk)
    ring = keyring()
    checkpoint = Checkpoint(
        seq=seal.seq,
        hash=seal.hash,
        mac=seal.mac,
        at=_timestamp(timezone.now()),
        key=ring.current_id,
        verified=verified,
        chain=SEALS_CHAIN,
    ).signed(ring)
    append_checkpoint(checkpoint)
    return checkpoint
