"""Deferred chain appends (ADR 0021): records are chained at the end of their transaction.

A service's audit records are still written in the transaction of its change, but chained
(seq, prev_hash, hash, MAC) and inserted only at the end of :func:`deferred_audit`, so the
chain lock is held for the final append and the commit alone. On PostgreSQL a transaction that
is still working therefore no longer blocks another patient's write.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from tests.registry.factories import DAY0, make_actor, make_clinic, make_patient
from vertebra.followup.services import submit_responses
from vertebra.registry import services
from vertebra.registry.audit import (
    check_audit_chain,
    deferred_audit,
    record_audit,
    verify_audit_chain,
)
from vertebra.registry.models import AuditEvent, Condition, Role


def _stored() -> list[tuple[int, str]]:
    """(seq, object_id) of the stored rows, read without the manager (which would flush)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq, object_id FROM registry_auditevent ORDER BY seq")
        return [(int(seq), str(object_id)) for seq, object_id in cursor.fetchall()]


@pytest.mark.django_db
def test_records_are_chained_at_the_end_of_the_block_in_call_order() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic(), deferred_audit():
        first = record_audit(actor=actor, action="read", object_type="patient", object_id=1)
        second = record_audit(actor=actor, action="read", object_type="patient", object_id=2)
        assert first.pk is None and first.seq is None  # not chained yet
        assert _stored() == []
    assert _stored() == [(1, "1"), (2, "2")]
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert AuditEvent.objects.get(seq=2).hash == second.hash
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
    rows = list(AuditEvent.objects.values_list("seq", "action", "object_type"))
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert ("create", "followup_submission") in {(a, o) for _, a, o in rows}
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
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
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
    assert [seq for seq, _ in after] == list(range(before + 1, before + len(expected) + 1))


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_deferred_blocks_form_one_unbroken_chain() -> None:
    """Four threads, each committing blocks of two deferred records at once: the single-trip
    lock-and-head read must always see the previous block's commit (no fork, no gap)."""
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
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "object_id"))
    assert [seq for seq, _ in rows] == list(range(1, threads_n * blocks * 2 + 1))
    # A block's two records are adjacent: one transaction's records are appended together.
    for (_, first), (_, second) in zip(rows[::2], rows[1::2], strict=True):
        assert first.endswith("-a") and second == first[:-1] + "b"
    assert verify_audit_chain() == []
