"""The audit trail: append-only in the database, hash-chained, verifiable.

Requirement ids: P11-11.10(e) (secure, time-stamped trail that does not obscure prior entries),
HIPAA-164.312(b) (audit controls), HIPAA-164.312(c) (integrity), T20 (immutability).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction

from tests.registry.factories import make_actor
from vertebra.registry.audit import (
    GENESIS_HASH,
    compute_hash,
    record_audit,
    verify_audit_chain,
    verify_audit_chain_as,
)
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import AuditEvent, Clinic, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def _append(actor: Actor, n: int) -> list[AuditEvent]:
    rows = []
    with transaction.atomic():
        for i in range(n):
            rows.append(
                record_audit(
                    actor=actor,
                    action="update",
                    object_type="patient",
                    object_id=i,
                    clinic_id=1,
                    patient_id=i,
                    old_values={"given_name": f"Old{i}", "dose": 0.1, "big": 1e16},
                    new_values={"given_name": f"Nëw{i}", "on": dt.date(2024, 1, i + 1)},
                    reason="typo",
                )
            )
    return rows


def _drop_triggers() -> None:
    """Remove the append-only triggers inside the test's transaction (rolled back afterwards):
    the stand-in for an attacker with DDL rights, to prove the hash chain still catches them."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER registry_auditevent_append_only ON {TABLE}")
        else:
            cursor.execute("DROP TRIGGER registry_auditevent_no_update")
            cursor.execute("DROP TRIGGER registry_auditevent_no_delete")


@pytest.fixture
def actor(clinic: Clinic) -> Actor:
    return make_actor(Role.CLINICIAN, clinic, request_id="req-42")


def test_record_audit_refuses_to_run_outside_a_transaction(actor: Actor) -> None:
    # The test itself runs inside a transaction, so pretend it does not.
    previous = connection.in_atomic_block
    connection.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
            record_audit(actor=actor, action="read", object_type="patient")
    finally:
        connection.in_atomic_block = previous


def test_rows_chain_from_genesis_and_carry_actor_and_utc_time(actor: Actor) -> None:
    first, second = _append(actor, 2)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    stored = AuditEvent.objects.get(pk=first.pk)
    assert stored.actor_user_id == actor.user.pk
    assert stored.actor_username == actor.user.username
    assert stored.role == "clinician"
    assert stored.request_id == "req-42"
    assert stored.occurred_at.utcoffset() == dt.timedelta(0)
    assert stored.new_values == {"given_name": "Nëw0", "on": "2024-01-01"}
    assert verify_audit_chain() == []


def test_stored_row_hashes_to_its_hash_after_a_database_round_trip(actor: Actor) -> None:
    # Floats, big numbers and non-ASCII text must hash identically after jsonb / JSON text.
    (row,) = _append(actor, 1)
    stored = AuditEvent.objects.filter(pk=row.pk).values().get()
    assert compute_hash(stored) == row.hash


def test_occurred_at_may_be_passed_in_but_must_be_aware(actor: Actor) -> None:
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    with transaction.atomic():
        row = record_audit(actor=actor, action="read", object_type="patient", occurred_at=when)
        with pytest.raises(ValueError, match="timezone-aware"):
            record_audit(
                actor=actor,
                action="read",
                object_type="patient",
                occurred_at=dt.datetime(2024, 5, 1, 12, 30),
            )
    assert AuditEvent.objects.get(pk=row.pk).occurred_at == when
    assert verify_audit_chain() == []


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {TABLE} SET reason = 'tampered'",
        f"DELETE FROM {TABLE}",
    ],
    ids=["update", "delete"],
)
def test_database_refuses_update_and_delete_of_audit_rows(actor: Actor, sql: str) -> None:
    _append(actor, 2)
    with pytest.raises(DatabaseError, match="append-only"):  # noqa: SIM117 - savepoint needed
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditEvent.objects.filter(reason="typo").count() == 2
    assert verify_audit_chain() == []


def test_orm_update_delete_and_save_are_refused_too(actor: Actor) -> None:
    (row,) = _append(actor, 1)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).update(reason="x")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).delete()
    row.reason = "changed"
    with pytest.raises(DatabaseError), transaction.atomic():
        row.save()
    assert AuditEvent.objects.get(pk=row.pk).reason == "typo"


def test_triggers_are_installed() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [TABLE],
            )
            names = {row[0] for row in cursor.fetchall()}
            assert names == {"registry_auditevent_append_only", "registry_auditevent_no_truncate"}
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE]
            )
            names = {row[0] for row in cursor.fetchall()}
            assert names == {"registry_auditevent_no_update", "registry_auditevent_no_delete"}


def test_one_changed_byte_is_detected(actor: Actor) -> None:
    rows = _append(actor, 5)
    _drop_triggers()
    target = rows[2]
    with connection.cursor() as cursor:
        # "typo" -> "typp": one byte, written behind the application's back.
        cursor.execute(f"UPDATE {TABLE} SET reason = %s WHERE id = %s", ["typp", target.pk])
    problems = verify_audit_chain()
    assert [(p.seq, p.kind) for p in problems] == [(target.seq, "altered")]
    assert f"row {target.seq} was altered" in problems[0].message


def test_a_changed_json_value_is_detected(actor: Actor) -> None:
    rows = _append(actor, 3)
    _drop_triggers()
    AuditEvent.objects.filter(pk=rows[0].pk).update(old_values={"given_name": "Forged0"})
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(1, "altered")]


def test_rehashing_an_altered_row_fails_its_mac_and_breaks_the_next_link(actor: Actor) -> None:
    rows = _append(actor, 3)
    _drop_triggers()
    forged = AuditEvent.objects.filter(pk=rows[1].pk).values().get()
    forged["reason"] = "forged"
    new_hash = compute_hash(forged)
    AuditEvent.objects.filter(pk=rows[1].pk).update(reason="forged", hash=new_hash)
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(2, "bad_mac"), (3, "broken_link")]


def test_a_removed_row_is_detected(actor: Actor) -> None:
    rows = _append(actor, 4)
    _drop_triggers()
    AuditEvent.objects.filter(pk=rows[1].pk).delete()
    kinds = [(p.seq, p.kind) for p in verify_audit_chain()]
    assert kinds == [(3, "missing"), (3, "broken_link")]


def test_a_cut_off_tail_is_detected_against_the_recorded_head(actor: Actor) -> None:
    rows = _append(actor, 3)
    head = rows[-1].hash
    assert verify_audit_chain(expected_head=head) == []
    _drop_triggers()
    AuditEvent.objects.filter(pk=rows[-1].pk).delete()
    assert verify_audit_chain() == []  # a chain alone cannot see its own end removed
    assert [p.kind for p in verify_audit_chain(expected_head=head)] == ["truncated"]


def test_verifying_the_chain_is_for_registry_admins_and_is_audited(
    actor: Actor, registry_admin: Actor
) -> None:
    _append(actor, 2)
    assert verify_audit_chain_as(actor=registry_admin) == []
    last = AuditEvent.objects.order_by("-seq").first()
    assert last is not None
    assert (last.action, last.actor_user_id) == ("verify", registry_admin.user.pk)
    with pytest.raises(PermissionDeniedError):
        verify_audit_chain_as(actor=actor)
    denied = AuditEvent.objects.order_by("-seq").first()
    assert denied is not None
    assert (denied.action, denied.actor_user_id) == ("denied", actor.user.pk)
    assert verify_audit_chain() == []
