"""The test-flush fix (tests/conftest.py) empties the audit table between transactional tests
without weakening it: afterwards the triggers are back and still refuse changes (SQLite: the
dropped triggers are recreated; PostgreSQL: the TRUNCATE guard is enabled again).

The two tests run in file order: the first writes audit rows in a real transaction (its
teardown flush used to fail on SQLite); the second checks the triggers survived.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from tests.registry.factories import make_actor, make_clinic
from vertebra.registry.audit import record_audit, seal_pending
from vertebra.registry.models import AuditEvent, AuditSeal, Role


@pytest.mark.django_db(transaction=True)
def test_a_transactional_test_may_write_audit_rows() -> None:
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic():
        record_audit(actor=actor, action="read", object_type="patient", object_id=1)
    assert AuditEvent.objects.count() == 1
    assert AuditSeal.objects.count() == 1  # sealed after the commit (PostgreSQL) or inline


@pytest.mark.django_db
def test_after_the_flush_the_table_is_empty_and_still_append_only() -> None:
    assert AuditEvent.objects.count() == 0
    assert AuditSeal.objects.count() == 0
    actor = make_actor(Role.CLINICIAN, make_clinic())
    with transaction.atomic():
        record_audit(actor=actor, action="read", object_type="patient", object_id=1)
    seal_pending(wait=True, full=True)
    refused = [
        "UPDATE registry_auditevent SET reason = 'x'",
        "DELETE FROM registry_auditevent",
        "UPDATE registry_auditseal SET row_hash = 'x'",
        "DELETE FROM registry_auditseal",
    ]
    if connection.vendor == "postgresql":
        refused += ["TRUNCATE registry_auditevent", "TRUNCATE registry_auditseal"]
    for sql in refused:
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
