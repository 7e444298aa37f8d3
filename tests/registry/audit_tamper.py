"""Helpers for the audit tamper tests (ADR 0021): seal what is committed, find a row's seal,
and drop the append-only triggers as an attacker with DDL rights would (inside the test's
transaction, rolled back afterwards)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

from vertebra.registry.audit import seal_pending
from vertebra.registry.models import AuditEvent, AuditSeal

TABLE = AuditEvent._meta.db_table
SEAL_TABLE = AuditSeal._meta.db_table


def seal_all() -> int:
    """Seal every unsealed row now (PostgreSQL seals after the commit, which a test
    transaction never reaches; SQLite has sealed them already)."""
    return seal_pending(wait=True, full=True)


def seal_of(row: AuditEvent | int) -> AuditSeal:
    """The seal of ``row`` (sealing pending rows first)."""
    seal_all()
    return AuditSeal.objects.get(event_id=row if isinstance(row, int) else row.pk)


def seal_seqs(rows: Iterable[AuditEvent]) -> list[int]:
    """The seal seq of each row, in the order given."""
    seal_all()
    by_event = dict(AuditSeal.objects.values_list("event_id", "seq"))
    return [by_event[row.pk] for row in rows]


def drop_triggers(*, seals: bool = True) -> None:
    """Remove the append-only triggers of the trail (and of the seal table)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER registry_auditevent_append_only ON {TABLE}")
            if seals:
                cursor.execute(f"DROP TRIGGER registry_auditseal_append_only ON {SEAL_TABLE}")
        else:
            cursor.execute("DROP TRIGGER registry_auditevent_no_update")
            cursor.execute("DROP TRIGGER registry_auditevent_no_delete")
            if seals:
                cursor.execute("DROP TRIGGER registry_auditseal_no_update")
                cursor.execute("DROP TRIGGER registry_auditseal_no_delete")
