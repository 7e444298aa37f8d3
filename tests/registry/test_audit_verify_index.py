"""The newest chain verification is read from the partial index of migration 0015 (ADR 0023).

The registry admin's home (``web.worklist_selectors.latest_verification``) and the audit worker
(``registry.auditjob.latest_verification``) both ask for the newest ``verify`` / ``audit_chain``
row. Without the index PostgreSQL walks the whole trail backwards to find it; with it the read
is one probe. The answer must stay the newest such row, whatever else the trail holds.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from vertebra.registry import auditjob
from vertebra.registry.audit import record_audit
from vertebra.registry.models import AuditEvent
from vertebra.registry.permissions import Actor
from vertebra.web import worklist_selectors

pytestmark = pytest.mark.django_db


def _record(actor: Actor, action: str, object_type: str, rows: int = 0) -> AuditEvent:
    """One audit row, written as the services write them (own transaction)."""
    with transaction.atomic():
        return record_audit(
            actor=actor, action=action, object_type=object_type, new_values={"rows": rows}
        )


def test_the_newest_verification_is_found_among_other_rows(registry_admin: Actor) -> None:
    assert worklist_selectors.latest_verification() is None
    assert auditjob.latest_verification() is None
    _record(registry_admin, "verify", "audit_chain", rows=1)
    newest = _record(registry_admin, "verify", "audit_chain", rows=7)
    # Newer rows that are not chain verifications: never the answer.
    _record(registry_admin, "verify", "something_else", rows=99)
    for _ in range(5):
        _record(registry_admin, "read", "audit_chain", rows=98)
    found = worklist_selectors.latest_verification()
    assert found is not None and found.checked == 7
    assert found.at == newest.occurred_at
    row = auditjob.latest_verification()
    assert row is not None and row.pk == newest.pk


def _plan(sql: str) -> str:
    """The database's plan for ``sql`` (PostgreSQL EXPLAIN, SQLite EXPLAIN QUERY PLAN)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Tiny tables: forbid the whole-table plans so the test asks "can", not "would".
            for plan in ("seqscan", "bitmapscan"):
                cursor.execute(f"SET LOCAL enable_{plan} = off")
            cursor.execute("EXPLAIN " + sql)
            return "\n".join(str(row[0]) for row in cursor.fetchall())
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def test_the_newest_verification_is_read_from_the_partial_index(registry_admin: Actor) -> None:
    """The very queries both readers send can use the index (0015), on either database."""
    for _ in range(3):
        _record(registry_admin, "read", "patient")
    _record(registry_admin, "verify", "audit_chain")
    with CaptureQueriesContext(connection) as sent:
        assert worklist_selectors.latest_verification() is not None
        assert auditjob.latest_verification() is not None
    reads = [q["sql"] for q in sent if "audit_chain" in q["sql"]]
    assert len(reads) == 2, [q["sql"] for q in sent]
    for sql in reads:
        plan = _plan(sql)
        assert "audit_verify_id" in plan, (sql, plan)
