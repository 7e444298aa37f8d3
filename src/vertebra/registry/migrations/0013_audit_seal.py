"""The audit sealer (ADR 0021): audit rows without a global lock, chained by a seal table.

* ``AuditEvent.seq`` / ``prev_hash`` become nullable: rows written from now on carry only
  their content hash and MAC; rows written before keep their in-row chain, verified as before.
  The unique constraint on ``hash`` goes (a content hash covers no position).
* ``AuditSeal``: one row per sealed audit row, append-only exactly like the trail: UPDATE and
  DELETE refused by triggers on PostgreSQL and SQLite, TRUNCATE refused on PostgreSQL.
* SQLite rebuilds a table it alters (create a copy, drop the original), which drops the
  trail's append-only triggers of 0002: they are created again right after (0002's own SQL).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models

TABLE = "registry_auditseal"
MESSAGE = "registry_auditseal is append-only: UPDATE, DELETE and TRUNCATE are refused"
TRUNCATE_TRIGGER = "registry_auditseal_no_truncate"

POSTGRES_CREATE = [
    f"""
    CREATE OR REPLACE FUNCTION registry_audit_seal_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE} (%)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    """,
    f"""
    CREATE TRIGGER registry_auditseal_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION registry_audit_seal_append_only();
    """,
    f"""
    CREATE TRIGGER {TRUNCATE_TRIGGER}
    BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION registry_audit_seal_append_only();
    """,
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {TABLE};",
    f"DROP TRIGGER IF EXISTS registry_auditseal_append_only ON {TABLE};",
    "DROP FUNCTION IF EXISTS registry_audit_seal_append_only();",
]
SQLITE_CREATE = [
    f"""
    CREATE TRIGGER registry_auditseal_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
    f"""
    CREATE TRIGGER registry_auditseal_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS registry_auditseal_no_update;",
    "DROP TRIGGER IF EXISTS registry_auditseal_no_delete;",
]

#: Per vendor: (create, drop); tests/conftest.py uses the SQLite pair around the test flush.
STATEMENTS = {
    "postgresql": (POSTGRES_CREATE, POSTGRES_DROP),
    "sqlite": (SQLITE_CREATE, SQLITE_DROP),
}


def create_triggers(apps: Any, schema_editor: Any) -> None:
    """The seal table's triggers, and (SQLite) the trail's again after its rebuild."""
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"no append-only audit triggers for database vendor {vendor!r}")
    for sql in STATEMENTS[vendor][0]:
        schema_editor.execute(sql, params=None)
    if vendor == "sqlite":
        trail = importlib.import_module("vertebra.registry.migrations.0002_audit_append_only")
        for sql in trail.SQLITE_DROP + trail.SQLITE_CREATE:
            schema_editor.execute(sql, params=None)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    """Remove the seal table's triggers (reverse migration)."""
    for sql in STATEMENTS.get(schema_editor.connection.vendor, ((), ()))[1]:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0012_episode_cost")]

    operations = [
        migrations.RemoveConstraint(model_name="auditevent", name="audit_hash_unique"),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["id"]}),
        migrations.AlterField(
            model_name="auditalert",
            name="verify_seq",
            field=models.BigIntegerField(
                null=True, verbose_name="audit row (id) recording the verification"
            ),
        ),
        migrations.CreateModel(
            name="AuditSeal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.PositiveBigIntegerField(unique=True)),
                ("event_id", models.BigIntegerField(unique=True)),
                ("row_hash", models.CharField(max_length=64)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
                ("mac", models.CharField(max_length=64)),
                ("mac_key", models.CharField(max_length=16)),
            ],
            options={"ordering": ["seq"]},
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
