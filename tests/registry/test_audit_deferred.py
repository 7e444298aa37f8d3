"""Deferred appends (ADR 0021): records are inserted at the end of their transaction.

A service's audit records are still written in the transaction of its change, but inserted
only at the end of :func:`deferred_audit`, in one statement. They take no lock (step 2: the
seal chain orders them once committed), so on PostgreSQL a transaction that is still working
never blocks another patient's write.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from tests.registry.audit_tamper import seal_all
from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient
from vertebra.followup.services import submit_responses
from vertebra.registry import services
from vertebra.registry.audit import (
    check_audit_chain,
    deferred_audit,
    record_audit,
    verify_audit_chain,
)
from vertebra.registry.models import AuditEvent, AuditSeal, Condition, Role


def _stored() -> list[tuple[int, str]]:
    """(position, object_id) of the stored rows in id order (position 1, 2, ...), read
    without the manager (which would flush)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT object_id FROM registry_auditevent ORDER BY id")
        return [(n, str(row[0])) for n, row in enumerate(cursor.fetchall(), start=1)]


def _sealed() -> list[tuple[int, str]]:
    """(seal seq, object_id) of every seal, in seal order (sealing what is pending first)."""
    seal_all()
    names = dict(AuditEvent.objects.values_list("id", "object_id"))
    return [(seq, names[e]) for seq, e in AuditSeal.objects.values_list("seq", "event_id")]


@pytest.mark.django_db
def test_records_are_inserted_at_the_end_of_the_block_and_sealed_in_call_order() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic(), deferred_audit():
        first = record_audit(actor=actor, action="read", object_type="patient", object_id=1)
        second = record_audit(actor=actor, action="read", object_type="patient", object_id=2)
        assert first.pk is None  # not inserted yet
        assert _stored() == []
    assert _stored() == [(1, "1"), (2, "2")]
    assert (first.seq, first.prev_hash) == (None, None)
    assert _sealed() == [(1, "1"), (2, "2")]
    seal = AuditSeal.objects.get(seq=2)
    assert (seal.event_id, seal.row_hash) == (second.pk, second.hash)
    assert seal.prev_hash == AuditSeal.objects.get(seq=1).hash
    assert verify_audit_chain() == []


@pytest.mark.django_db
def test_a_record_inside_a_rolled_back_savepoint_is_dropped_with_its_change() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic(), deferred_audit():
        record_audit(actor=actor, action="read", object_type="patient", object_id="kept-1")
        try:
            with transaction.atomic():
                record_audit(actor=actor, action="read", object_type="patient", object_id="lost")
                raise ValueError("undo this savepoint")
        except ValueError:
            pass
        with transaction.atomic():  # a savepoint that is released keeps its record
            record_audit(actor=actor, action="read", object_type="patient", object_id="kept-2")
    assert _stored() == [(1, "kept-1"), (2, "kept-2")]
    assert verify_audit_chain() == []


@pytest.mark.django_db
def test_a_block_that_raises_appends_nothing() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with pytest.raises(ValueError), transaction.atomic(), deferred_audit():
        record_audit(actor=actor, action="read", object_type="patient", object_id=1)
        raise ValueError("the change failed")
    assert _stored() == []


@pytest.mark.django_db
def test_reading_the_trail_inside_the_block_sees_its_own_records() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic(), deferred_audit():
        record_audit(actor=actor, action="read", object_type="patient", object_id=7)
        assert list(AuditEvent.objects.values_list("object_id", flat=True)) == ["7"]
        record_audit(actor=actor, action="read", object_type="patient", object_id=8)
    assert _stored() == [(1, "7"), (2, "8")]
    assert verify_audit_chain() == []


@pytest.mark.django_db(transaction=True)
def test_deferred_audit_outside_a_transaction_is_refused() -> None:
    with pytest.raises(RuntimeError), deferred_audit():
        pass


@pytest.mark.django_db
def test_services_and_submissions_chain_their_records_and_the_chain_verifies() -> None:
    clinic = make_clinic()
    actor = make_actor(Role.CLINICIAN, clinic)
    patient = make_patient(clinic)
    services.record_diagnosis(
        actor=actor,
        patient_id=patient.pk,
        condition=Condition.DEGENERATIVE_DISC_DISEASE,
        icd10="M51.36",
        diagnosed_on=DAY0,
        level="L4-L5",
    )
    baseline = point(make_schedule(start=T0, today=T0), "baseline")
    result = submit_responses(
        baseline, answers_for(baseline), "key-0123456789abcdef", at(T0), psfs_names=PSFS_NAMES
    )
    assert result.created
    rows = list(AuditEvent.objects.values_list("action", "object_type"))
    assert ("create", "followup_submission") in set(rows)
    assert [seq for seq, _ in _sealed()] == list(range(1, len(rows) + 1))
    assert check_audit_chain().intact


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_another_patients_submission_commits_while_a_transaction_is_open() -> None:
    """Thread A writes and audits for patient 1 and keeps its transaction open; meanwhile a
    portal submission and a service write for other patients commit. Before ADR 0021 both
    waited for A's commit (A held the chain lock from its first record on)."""
    assert connection.vendor == "postgresql"
    clinic = make_clinic()
    actor = make_actor(Role.CLINICIAN, clinic)
    held, other = make_patient(clinic), make_patient(clinic)
    baseline = point(make_schedule(start=T0, today=T0), "baseline")
    answers = answers_for(baseline)
    recorded, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def open_transaction() -> None:
        try:
            with transaction.atomic(), deferred_audit():
                services.lock_patient(held.pk)
                record_audit(
                    actor=actor, action="read", object_type="patient", object_id=held.pk,
                    patient_id=held.pk, clinic_id=clinic.pk,
                )  # fmt: skip
                recorded.set()
                if not release.wait(timeout=30):
                    raise TimeoutError("never released")
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    def others() -> None:
        try:
            submit_responses(
                baseline, answers, "other-0123456789abcdef", at(T0), psfs_names=PSFS_NAMES
            )
            services.record_diagnosis(
                actor=actor,
                patient_id=other.pk,
                condition=Condition.DEGENERATIVE_DISC_DISEASE,
                icd10="M51.36",
                diagnosed_on=DAY0,
                level="L4-L5",
            )
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=open_transaction)
    holder.start()
    try:
        assert recorded.wait(timeout=30)
        writer = threading.Thread(target=others)
        writer.start()
        writer.join(timeout=20)
        assert not writer.is_alive(), "the other patients' writes waited for the open transaction"
        assert errors == []
        committed = set(AuditEvent.objects.values_list("object_type", flat=True))
        assert {"followup_submission", "diagnosis"} <= committed
        assert not AuditEvent.objects.filter(object_id=str(held.pk), action="read").exists()
    finally:
        release.set()
        holder.join(timeout=30)
    assert errors == []
    assert AuditEvent.objects.filter(object_id=str(held.pk), action="read").count() == 1
    seqs = [seq for seq, _ in _sealed()]
    assert seqs == list(range(1, AuditEvent.objects.count() + 1))
    assert verify_audit_chain() == []


# A program of nested blocks: ("record", name) appends a record; ("block", keep, body) runs
# body in a savepoint that is released (keep) or rolled back (not keep).
_names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
_programs = st.recursive(
    st.lists(st.tuples(st.just("record"), _names), max_size=3),
    lambda inner: st.lists(
        st.one_of(
            st.tuples(st.just("record"), _names), st.tuples(st.just("block"), st.booleans(), inner)
        ),
        max_size=4,
    ),
    max_leaves=10,
)


def _run(program: list[Any], actor: Any, expected: list[str]) -> None:
    """Run ``program`` inside the current transaction; ``expected`` gets the names that must
    end up on the chain, in the order they were recorded."""
    for step in program:
        if step[0] == "record":
            record_audit(actor=actor, action="read", object_type="patient", object_id=step[1])
            expected.append(step[1])
            continue
        _, keep, body = step
        inner: list[str] = []
        try:
            with transaction.atomic():
                _run(body, actor, inner)
                if not keep:
                    raise _Undo()
        except _Undo:
            continue
        expected.extend(inner)


class _Undo(Exception):
    """Rolls one savepoint back."""


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=_programs)
def test_the_chain_holds_exactly_the_surviving_records_in_call_order(program: list[Any]) -> None:
    expected: list[str] = []
    with transaction.atomic():
        actor = make_actor(Role.CLINICIAN, make_clinic())
        before = len(_stored())
        with deferred_audit():
            _run(program, actor, expected)
        after = _stored()[before:]
        transaction.set_rollback(True)  # each example leaves the table as it found it
    assert [name for _, name in after] == expected
    assert [n for n, _ in after] == list(range(before + 1, before + len(expected) + 1))


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_deferred_blocks_form_one_unbroken_seal_chain() -> None:
    """Four threads, each committing blocks of two deferred records at once, each commit
    followed by its try-lock sealer: every row ends up sealed exactly once, the seal chain
    has no fork and no gap, and a block's records keep their order."""
    assert connection.vendor == "postgresql"
    actor = make_actor(Role.CLINICIAN, make_clinic())
    threads_n, blocks = 4, 8
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(blocks):
                with transaction.atomic(), deferred_audit():
                    for part in ("a", "b"):
                        record_audit(
                            actor=actor, action="read", object_type="patient",
                            object_id=f"{n}-{i}-{part}",
                        )  # fmt: skip
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    rows = _sealed()
    assert [seq for seq, _ in rows] == list(range(1, threads_n * blocks * 2 + 1))
    names = [name for _, name in rows]
    assert sorted(names) == sorted(
        f"{n}-{i}-{part}" for n in range(threads_n) for i in range(blocks) for part in "ab"
    )
    for name in names:  # one transaction's records are sealed in the order recorded
        if name.endswith("-a"):
            assert names.index(name) < names.index(name[:-1] + "b")
    assert verify_audit_chain() == []
