"""Concurrent appends keep the trail intact (PostgreSQL; SQLite admits one writer by design).

Runs with real transactions (``transactional_db``): several threads, each with its own database
connection, append audit rows at once, with no lock (ADR 0021); each commit runs the try-lock
sealer. The seal chain must end up with every row exactly once, no gaps, no fork.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from tests.registry.factories import make_actor, make_clinic
from vertebra.registry.audit import record_audit, seal_pending, verify_audit_chain
from vertebra.registry.models import AuditEvent, AuditSeal, Role

THREADS = 4
APPENDS = 10


@pytest.mark.postgresql  # SQLite admits one writer at a time by design: nothing to race
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_unbroken_chain() -> None:
    assert connection.vendor == "postgresql"
    actor = make_actor(Role.CLINICIAN, make_clinic())
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(APPENDS):
                with transaction.atomic():
                    record_audit(actor=actor, action="read", object_type="patient", object_id=i)
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    seal_pending(wait=True, full=True)  # what the try-locks skipped (the worker's backstop)
    seqs = list(AuditSeal.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, THREADS * APPENDS + 1))
    sealed = set(AuditSeal.objects.values_list("event_id", flat=True))
    assert sealed == set(AuditEvent.objects.values_list("id", flat=True))
    assert verify_audit_chain() == []
