"""Make the audit table append-only in the database itself (21 CFR 11.10(e)).

The application has no code path that updates or deletes an audit row; these triggers make the
database refuse it too, for anyone connecting with the application's credentials:

* PostgreSQL: a plpgsql function raising ``insufficient_privilege``, fired BEFORE UPDATE OR DELETE
  for each row. TRUNCATE is deliberately not trapped, because Django's ``flush`` (used between
  transactional tests) truncates every table; production should additionally
  ``REVOKE UPDATE, DELETE, TRUNCATE ON registry_auditevent FROM <app role>``.
* SQLite: two BEFORE UPDATE / BEFORE DELETE triggers doing ``SELECT RAISE(ABORT, ...)``.

WARNING for later migrations: on SQLite, Django alters a table by rebuilding it (create a copy,
drop the original), which silently drops these triggers. Any migration that alters AuditEvent
must re-run :func:`create_triggers` afterwards; ``tests/registry/test_audit.py`` fails if a
trigger is missing on either database.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "registry_auditevent"
MESSAGE = "registry_auditevent is append-only: UPDATE and DELETE are refused"

POSTGRES_CREATE = [
    f"""
    CREATE OR REPLACE FUNCTION registry_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE} (%)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    f"""
    CREATE TRIGGER registry_auditevent_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION registry_audit_append_only();
    """,
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS registry_auditevent_append_only ON {TABLE};",
    "DROP FUNCTION IF EXISTS registry_audit_append_only();",
]

SQLITE_CREATE = [
    f"""
    CREATE TRIGGER registry_auditevent_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
    f"""
    CREATE TRIGGER registry_auditevent_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS registry_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS registry_auditevent_no_delete;",
]

STATEMENTS = {
    "postgresql": (POSTGRES_CREATE, POSTGRES_DROP),
    "sqlite": (SQLITE_CREATE, SQLITE_DROP),
}


def _statements(vendor: str, index: int) -> list[str]:
    try:
        return STATEMENTS[vendor][index]
    except KeyError:
        raise RuntimeError(
            f"no append-only audit triggers for database vendor {vendor!r}; "
            "Vertebra supports SQLite and PostgreSQL"
        ) from None


def create_triggers(apps: Any, schema_editor: Any) -> None:
    """Install the triggers for the connection's database vendor."""
    for sql in _statements(schema_editor.connection.vendor, 0):
        # params=None: the SQL is sent as is, so plpgsql's '%' is not read as a placeholder.
        schema_editor.execute(sql, params=None)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    """Remove the triggers (reverse migration)."""
    for sql in _statements(schema_editor.connection.vendor, 1):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, elidable=False)]
