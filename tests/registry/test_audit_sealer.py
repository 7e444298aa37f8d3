"""The audit sealer (ADR 0021, step 2): rows commit with no lock, seals chain them afterwards.

* Two patients' portal submissions commit while a third transaction holds the sealer's lock
  (PostgreSQL): nothing an audited writer does waits for the chain.
* Any interleaving of commits (in any id order: ids can commit out of order) and sealer runs
  (try-lock or waiting, recent rows or all of them) seals each row exactly once, in a chain
  without gaps, and the trail verifies (property test, both databases).
* The worker seals what the sealer after the commit did not reach.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.followup.helpers import PSFS_NAMES, T0, answers_for, at, make_schedule, point
from tests.registry.factories import make_actor, make_clinic
from vertebra.followup.services import submit_responses
from vertebra.followup.worker import run_once
from vertebra.registry import audit
from vertebra.registry.audit import (
    check_audit_chain,
    compute_hash,
    record_audit,
    seal_pending,
    verify_audit_chain,
)
from vertebra.registry.auditseal import keyring
from vertebra.registry.models import AuditEvent, AuditSeal, Role


def _unsealed() -> set[int]:
    sealed = set(AuditSeal.objects.values_list("event_id", flat=True))
    return set(AuditEvent.objects.values_list("id", flat=True)) - sealed


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_patients_submissions_commit_while_the_sealer_lock_is_held() -> None:
    assert connection.vendor == "postgresql"
    clinic = make_clinic()
    points = [point(make_schedule(start=T0, today=T0, clinic=clinic), "baseline") for _ in range(2)]
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_the_sealer_lock() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit._CHAIN_LOCK_KEY])
                holding.set()
                if not release.wait(timeout=30):
                    raise TimeoutError("never released")
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    def submit(n: int) -> None:
        try:
            tp = points[n]
            result = submit_responses(
                tp, answers_for(tp), f"key-{n}-0123456789abcdef", at(T0), psfs_names=PSFS_NAMES
            )
            assert result.created
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_sealer_lock)
    holder.start()
    try:
        assert holding.wait(timeout=30)
        before = AuditEvent.objects.count()
        writers = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(timeout=20)
        assert not any(w.is_alive() for w in writers), "a submission waited for the sealer lock"
        assert errors == []
        submitted = AuditEvent.objects.filter(object_type="followup_submission")
        assert submitted.count() == 2  # both committed, their rows with them
        assert AuditEvent.objects.count() > before
        # Their commit hooks found the lock taken and left the rows to the next sealer.
        assert set(submitted.values_list("id", flat=True)) <= _unsealed()
        assert seal_pending() == 0  # a try-lock while the lock is held does nothing
    finally:
        release.set()
        holder.join(timeout=30)
    assert errors == []
    assert seal_pending() > 0
    assert _unsealed() == set()
    assert verify_audit_chain() == []


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_commit_seals_its_own_rows_when_the_lock_is_free() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic():
        row = record_audit(actor=actor, action="read", object_type="patient", object_id=1)
        assert not AuditSeal.objects.filter(event_id=row.pk).exists()  # not before the commit
    seal = AuditSeal.objects.get(event_id=row.pk)  # the on_commit sealer ran
    assert (seal.seq, seal.row_hash) == (1, row.hash)


def _event(position: int, base: int, actor: Any) -> AuditEvent:
    """A signed audit row with the explicit id ``base + position`` (ids decide seal order
    within one sealer run; inserting them in another order models late commits)."""
    fields: dict[str, Any] = {
        "occurred_at": dt.datetime.now(dt.UTC),
        "actor_user_id": actor.user.pk,
        "actor_username": actor.user.get_username(),
        "role": actor.role,
        "clinic_id": None,
        "patient_id": position,
        "action": "read",
        "object_type": "patient",
        "object_id": str(position),
        "old_values": None,
        "new_values": None,
        "reason": "",
        "request_id": "",
    }
    row_hash = compute_hash(fields)
    ring = keyring()
    return AuditEvent(
        id=base + position, **fields, hash=row_hash, mac=ring.row_mac(row_hash),
        mac_key=ring.current_id,
    )  # fmt: skip


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.lists(st.integers(0, 60), min_size=1, max_size=4)),
        st.tuples(st.just("seal"), st.booleans(), st.booleans(), st.integers(1, 5)),
    ),
    max_size=14,
)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, lookback=st.integers(0, 8))
def test_any_interleaving_of_commits_and_seals_seals_each_row_exactly_once(
    steps: list[Any], lookback: int
) -> None:
    """``commit`` makes rows visible at ids in any order (a late commit of a low id);
    ``seal`` runs the sealer (waiting or try-lock, every row or the recent ones with a small
    look-back, small batches). Every sealer run leaves each row sealed at most once and the
    seal chain gapless; a final full run seals every row exactly once; the trail verifies."""
    from django.conf import settings as django_settings

    saved = django_settings.AUDIT_SEAL_LOOKBACK_ROWS
    django_settings.AUDIT_SEAL_LOOKBACK_ROWS = lookback
    try:
        with transaction.atomic():
            actor = make_actor(Role.CLINICIAN, make_clinic())
            base = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
            base += 1000
            used: set[int] = set()
            for step in steps:
                if step[0] == "commit":
                    fresh = [p for p in dict.fromkeys(step[1]) if p not in used]
                    used.update(fresh)
                    with transaction.atomic():
                        AuditEvent.objects.bulk_create([_event(p, base, actor) for p in fresh])
                else:
                    _, wait, full, batch = step
                    seal_pending(wait=wait, full=full, batch=batch)
                seals = list(AuditSeal.objects.values_list("seq", "event_id"))
                events = [e for _, e in seals]
                assert len(events) == len(set(events))  # never sealed twice
                assert sorted(s for s, _ in seals) == list(range(1, len(seals) + 1))
            seal_pending(wait=True, full=True)
            assert _unsealed() == set()
            assert sorted(AuditSeal.objects.values_list("event_id", flat=True)) == sorted(
                AuditEvent.objects.values_list("id", flat=True)
            )
            assert check_audit_chain().problems == []
            transaction.set_rollback(True)  # each example leaves the tables as it found them
    finally:
        django_settings.AUDIT_SEAL_LOOKBACK_ROWS = saved


@pytest.mark.django_db
def test_the_worker_seals_what_the_sealer_after_commit_missed() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic():
        AuditEvent.objects.bulk_create([_event(n, 10_000, actor) for n in range(3)])
    assert len(_unsealed()) == 3
    report = run_once(dt.datetime.now(dt.UTC))
    assert report.sealed == 3
    assert _unsealed() == set()
    assert verify_audit_chain() == []
