"""The audit trail: append-only in the database, signed, sealed in a chain, verifiable.

Requirement ids: P11-11.10(e) (secure, time-stamped trail that does not obscure prior entries),
HIPAA-164.312(b) (audit controls), HIPAA-164.312(c) (integrity), T20 (immutability).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction

from tests.registry.audit_tamper import drop_triggers, seal_all, seal_of, seal_seqs
from tests.registry.factories import make_actor
from vertebra.registry.audit import (
    GENESIS_HASH,
    check_audit_chain,
    compute_hash,
    record_audit,
    seal_hash,
    verify_audit_chain,
    verify_audit_chain_as,
)
from vertebra.registry.errors import PermissionDeniedError
from vertebra.registry.models import AuditEvent, AuditSeal, Clinic, Role
from vertebra.registry.permissions import Actor

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table
_CONTENT = (
    "occurred_at", "actor_user_id", "actor_username", "role", "clinic_id", "patient_id",
    "action", "object_type", "object_id", "old_values", "new_values", "reason", "request_id",
)  # fmt: skip


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
    seal_all()
    return rows


def _drop_triggers() -> None:
    """Remove the append-only triggers inside the test's transaction (rolled back afterwards):
    the stand-in for an attacker with DDL rights, to prove the MACs and seals still catch them."""
    drop_triggers()


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


def test_rows_are_sealed_in_a_chain_from_genesis_and_carry_actor_and_utc_time(
    actor: Actor,
) -> None:
    first, second = _append(actor, 2)
    assert (first.seq, first.prev_hash) == (None, None)  # no in-row chain any more (ADR 0021)
    one, two = seal_of(first), seal_of(second)
    assert (one.seq, two.seq) == (1, 2)
    assert (one.row_hash, two.row_hash) == (first.hash, second.hash)
    assert one.prev_hash == GENESIS_HASH
    assert two.prev_hash == one.hash
    assert two.hash == seal_hash(2, second.pk, second.hash, one.hash)
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


@pytest.mark.parametrize(
    "sql",
    [
        f"UPDATE {AuditSeal._meta.db_table} SET row_hash = 'tampered'",
        f"DELETE FROM {AuditSeal._meta.db_table}",
    ],
    ids=["update", "delete"],
)
def test_database_refuses_update_and_delete_of_seals(actor: Actor, sql: str) -> None:
    _append(actor, 2)
    with pytest.raises(DatabaseError, match="append-only"):  # noqa: SIM117 - savepoint needed
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert AuditSeal.objects.count() == 2
    assert verify_audit_chain() == []


@pytest.mark.parametrize(
    ("table", "postgresql", "sqlite"),
    [
        (
            TABLE,
            {"registry_auditevent_append_only", "registry_auditevent_no_truncate"},
            {"registry_auditevent_no_update", "registry_auditevent_no_delete"},
        ),
        (
            AuditSeal._meta.db_table,
            {"registry_auditseal_append_only", "registry_auditseal_no_truncate"},
            {"registry_auditseal_no_update", "registry_auditseal_no_delete"},
        ),
    ],
    ids=["trail", "seals"],
)
def test_triggers_are_installed(table: str, postgresql: set[str], sqlite: set[str]) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [table],
            )
            names = {row[0] for row in cursor.fetchall()}
            assert names == postgresql
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table]
            )
            names = {row[0] for row in cursor.fetchall()}
            assert names == sqlite


def test_one_changed_byte_is_detected(actor: Actor) -> None:
    rows = _append(actor, 5)
    _drop_triggers()
    target = rows[2]
    with connection.cursor() as cursor:
        # "typo" -> "typp": one byte, written behind the application's back.
        cursor.execute(f"UPDATE {TABLE} SET reason = %s WHERE id = %s", ["typp", target.pk])
    problems = verify_audit_chain()
    (sealed_at,) = seal_seqs([target])
    assert [(p.seq, p.kind, p.event_id) for p in problems] == [(sealed_at, "altered", target.pk)]
    assert f"audit row {target.pk} (seal {sealed_at}) was altered" in problems[0].message


def test_a_changed_json_value_is_detected(actor: Actor) -> None:
    rows = _append(actor, 3)
    _drop_triggers()
    AuditEvent.objects.filter(pk=rows[0].pk).update(old_values={"given_name": "Forged0"})
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(1, "altered")]


def test_rehashing_an_altered_row_fails_its_mac_and_its_seal(actor: Actor) -> None:
    rows = _append(actor, 3)
    _drop_triggers()
    forged = AuditEvent.objects.filter(pk=rows[1].pk).values().get()
    forged["reason"] = "forged"
    new_hash = compute_hash(forged)
    AuditEvent.objects.filter(pk=rows[1].pk).update(reason="forged", hash=new_hash)
    # The row's MAC fails, and it is not the row its seal vouched for (the seal's row_hash).
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(2, "bad_mac"), (2, "altered")]


def test_a_row_swapped_in_place_with_a_valid_mac_is_not_the_sealed_row(actor: Actor) -> None:
    """Copying another row's content, hash and MAC over a row keeps every MAC valid: only the
    seal's ``row_hash`` shows that the row is not the one sealed there."""
    rows = _append(actor, 3)
    _drop_triggers()
    donor = AuditEvent.objects.filter(pk=rows[0].pk).values().get()
    del donor["id"]
    AuditEvent.objects.filter(pk=rows[2].pk).update(**donor)
    assert [(p.seq, p.kind) for p in verify_audit_chain()] == [(3, "altered")]


def test_a_removed_row_is_detected(actor: Actor) -> None:
    rows = _append(actor, 4)
    _drop_triggers()
    AuditEvent.objects.filter(pk=rows[1].pk).delete()
    kinds = [(p.seq, p.kind, p.event_id) for p in verify_audit_chain()]
    assert kinds == [(2, "missing", rows[1].pk)]  # its seal names a row that is gone


def test_a_removed_row_and_its_seal_break_the_seal_chain(actor: Actor) -> None:
    rows = _append(actor, 4)
    _drop_triggers()
    AuditSeal.objects.filter(event_id=rows[1].pk).delete()
    AuditEvent.objects.filter(pk=rows[1].pk).delete()
    kinds = [(p.seq, p.kind) for p in verify_audit_chain()]
    assert kinds == [(3, "missing"), (3, "broken_link")]


def test_reordered_seals_are_detected(actor: Actor) -> None:
    """Swapping which rows two seals vouch for (the order of the trail) breaks both seals:
    their hashes cover ``event_id`` and the MAC pins the hash."""
    rows = _append(actor, 3)
    _drop_triggers()
    one, two = seal_of(rows[0]), seal_of(rows[1])
    AuditSeal.objects.filter(pk=one.pk).update(event_id=-1)
    AuditSeal.objects.filter(pk=two.pk).update(event_id=rows[0].pk, row_hash=rows[0].hash)
    AuditSeal.objects.filter(pk=one.pk).update(event_id=rows[1].pk, row_hash=rows[1].hash)
    kinds = {(p.seq, p.kind) for p in verify_audit_chain()}
    assert {(1, "altered"), (2, "altered")} <= kinds


def test_a_rehashed_seal_fails_its_mac(actor: Actor) -> None:
    rows = _append(actor, 3)
    _drop_triggers()
    seal = seal_of(rows[1])
    forged = AuditEvent.objects.get(pk=rows[1].pk)
    new_hash = seal_hash(seal.seq, seal.event_id, "f" * 64, seal.prev_hash)
    AuditSeal.objects.filter(pk=seal.pk).update(row_hash="f" * 64, hash=new_hash)
    problems = [(p.seq, p.kind) for p in verify_audit_chain()]
    assert (2, "bad_mac") in problems  # the seal
    assert (2, "altered") in problems  # it no longer vouches for the row it sealed
    assert (3, "broken_link") in problems
    assert forged.hash != "f" * 64


def test_an_inserted_row_without_the_key_is_detected(actor: Actor) -> None:
    rows = _append(actor, 2)
    forged = AuditEvent.objects.filter(pk=rows[0].pk).values().get()
    del forged["id"]
    forged["reason"] = "never happened"
    forged["hash"] = compute_hash(forged)
    with connection.cursor() as cursor:  # a plain INSERT: the triggers allow it
        cursor.execute(
            f"INSERT INTO {TABLE} (occurred_at, actor_user_id, actor_username, role, clinic_id, "
            "patient_id, action, object_type, object_id, old_values, new_values, reason, "
            "request_id, hash, mac, mac_key) "
            "SELECT occurred_at, actor_user_id, actor_username, role, clinic_id, patient_id, "
            "action, object_type, object_id, old_values, new_values, %s, request_id, %s, mac, "
            f"mac_key FROM {TABLE} WHERE id = %s",
            ["never happened", forged["hash"], rows[0].pk],
        )
    inserted = AuditEvent.objects.get(reason="never happened")
    seal_all()  # the sealer seals whatever is committed: it is the MAC that gives it away
    assert [(p.kind, p.event_id) for p in verify_audit_chain()] == [("bad_mac", inserted.pk)]


def test_a_row_unsealed_past_the_stated_delay_is_reported(actor: Actor, settings) -> None:
    settings.AUDIT_SEAL_WITHIN_SECONDS = 60
    rows = _append(actor, 2)
    with transaction.atomic():  # a row the sealer has not reached: seal it never
        stale = AuditEvent(
            **{
                name: getattr(rows[0], name)
                for name in ("actor_user_id", "actor_username", "role", "action", "object_type")
            },
            occurred_at=rows[0].occurred_at - dt.timedelta(minutes=5),
            request_id="stale",
        )
        stale.hash = compute_hash({**{f: getattr(stale, f) for f in _CONTENT}, "seq": None})
        from vertebra.registry.auditseal import keyring

        stale.mac, stale.mac_key = keyring().row_mac(stale.hash), keyring().current_id
        AuditEvent.objects.bulk_create([stale])  # no seal, no commit hook
    now = stale.occurred_at
    report = check_audit_chain(now=now + dt.timedelta(seconds=30))
    assert report.problems == [] and report.unsealed == 1  # within the delay: pending
    late = check_audit_chain(now=now + dt.timedelta(minutes=10))
    assert [(p.kind, p.event_id, p.seq) for p in late.problems] == [("unsealed", stale.pk, 3)]
    assert "not sealed after 60 s" in late.problems[0].message
    seal_all()
    assert check_audit_chain(now=now + dt.timedelta(minutes=10)).problems == []


def test_a_cut_off_tail_is_detected_against_the_recorded_head(actor: Actor) -> None:
    rows = _append(actor, 3)
    head = seal_of(rows[-1]).hash
    assert verify_audit_chain(expected_head=head) == []
    _drop_triggers()
    AuditSeal.objects.filter(event_id=rows[-1].pk).delete()
    AuditEvent.objects.filter(pk=rows[-1].pk).delete()
    assert verify_audit_chain() == []  # a chain alone cannot see its own end removed
    assert [p.kind for p in verify_audit_chain(expected_head=head)] == ["truncated"]


def test_verifying_the_chain_is_for_registry_admins_and_is_audited(
    actor: Actor, registry_admin: Actor
) -> None:
    _append(actor, 2)
    assert verify_audit_chain_as(actor=registry_admin) == []
    last = AuditEvent.objects.order_by("-id").first()
    assert last is not None
    assert (last.action, last.actor_user_id) == ("verify", registry_admin.user.pk)
    with pytest.raises(PermissionDeniedError):
        verify_audit_chain_as(actor=actor)
    denied = AuditEvent.objects.order_by("-id").first()
    assert denied is not None
    assert (denied.action, denied.actor_user_id) == ("denied", actor.user.pk)
    assert verify_audit_chain() == []
