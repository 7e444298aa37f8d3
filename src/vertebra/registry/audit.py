"""The audit trail: append records in the writer's transaction, and verify the hash chain.

Contracts
---------
* :func:`record_audit` must run inside the transaction of the change it describes (it raises
  RuntimeError otherwise), so a change and its audit row commit or roll back together.
* Appends are serialised, so ``seq`` has no gaps and each row's ``prev_hash`` is the hash of the
  row before it: on PostgreSQL with a transaction-scoped advisory lock held until commit; on
  SQLite every write transaction is ``BEGIN IMMEDIATE`` (see ``vertebra.config``), which already
  admits one writer at a time.
* ``hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the row's fields,
  ``prev_hash`` included. Values are normalised to JSON *before* storing, so what is stored is
  exactly what was hashed.
* :func:`verify_audit_chain` recomputes everything and reports altered, removed and inserted
  rows. A chain cannot by itself show that its newest rows were cut off: pass the head hash
  recorded elsewhere (``expected_head``) to detect that too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AuditEvent
from vertebra.registry.permissions import Action, Actor, verify_actor

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
    """Serialise appends until the end of the current transaction (see module docstring)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    elif connection.vendor != "sqlite":  # SQLite: BEGIN IMMEDIATE already serialises writers
        raise RuntimeError(f"no audit-chain lock for database vendor {connection.vendor!r}")


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
    lock_chain()
    last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    fields: dict[str, Any] = {
        "seq": (last["seq"] + 1) if last else 1,
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
        "prev_hash": last["hash"] if last else GENESIS_HASH,
    }
    fields["hash"] = compute_hash(fields)
    return AuditEvent.objects.create(**fields)


@dataclass(frozen=True)
class ChainProblem:
    """One defect of the audit chain, located by ``seq`` (the row's position in the chain)."""

    seq: int
    kind: str  # "altered", "missing", "broken_link", "truncated"
    message: str


def _rows() -> Iterator[dict[str, Any]]:
    fields = (*HASHED_FIELDS, "hash")
    yield from AuditEvent.objects.order_by("seq").values(*fields).iterator(chunk_size=2000)


def verify_audit_chain(*, expected_head: str | None = None) -> list[ChainProblem]:
    """Recompute the chain; return its problems in chain order (empty list: chain intact).

    * ``altered``: a row's fields no longer hash to its stored ``hash``;
    * ``missing``: a gap in ``seq`` (rows removed);
    * ``broken_link``: a row's ``prev_hash`` is not the previous row's hash (a row before it
      was removed, re-hashed or inserted);
    * ``truncated``: the last row's hash differs from ``expected_head``, when one is given.

    The first element is the first (oldest) problem. Read-only; call it from a job or the
    registry admin's check page.
    """
    problems: list[ChainProblem] = []
    expected_seq = 1
    prev_hash = GENESIS_HASH
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
        expected_seq = seq + 1
        prev_hash = row["hash"]
    if expected_head is not None and prev_hash != expected_head:
        problems.append(
            ChainProblem(
                expected_seq - 1,
                "truncated",
                "the newest row is not the expected head: rows were cut off or added",
            )
        )
    return problems


_P = ParamSpec("_P")
_R = TypeVar("_R")


def audited_transaction(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a service or selector in one transaction and audit refusals.

    The wrapped function is called with keyword arguments including ``actor``. If it raises
    PermissionDeniedError or NotFound, its transaction is rolled back, then one ``denied``
    audit row (who, what was attempted, the refusal) is committed in a new transaction and the
    error is re-raised: refused access is itself part of the trail (HIPAA 164.312(b)). When the
    caller wraps the call in its own transaction, rolling that back also drops the denial row.
    """

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            with transaction.atomic():
                return func(*args, **kwargs)
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
                            "operation": func.__name__,
                            "action": exc.action if isinstance(exc, PermissionDeniedError) else "",
                        },
                        reason=str(exc),
                    )
            raise

    return wrapper


@audited_transaction
def verify_audit_chain_as(*, actor: Actor) -> list[ChainProblem]:
    """:func:`verify_audit_chain` for an actor allowed to (registry admins); the check itself is
    audited, so who inspected the trail, and what they found, is on the trail."""
    verify_actor(actor, Action.AUDIT_VERIFY)
    problems = verify_audit_chain()
    record_audit(
        actor=actor,
        action="verify",
        object_type="audit_chain",
        new_values={"problems": [problem.message for problem in problems]},
    )
    return problems
