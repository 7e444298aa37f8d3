"""Tamper evidence beyond the database (ADR 0008): a MAC per audit row, TRUNCATE refused,
and stored alerts for failed verifications.

* ``mac`` / ``mac_key``: nullable columns, added with ``ALTER TABLE ... ADD COLUMN`` on both
  databases (no table rebuild on SQLite, so the append-only triggers of 0002 stay in place).
  Rows written before this migration keep NULL: the first signed row after them vouches for
  them, because its hash covers theirs (ADR 0008, "existing rows").
* PostgreSQL: a ``BEFORE TRUNCATE`` statement trigger using 0002's refusing function. (SQLite
  has no TRUNCATE; its ``DELETE FROM`` is already refused row by row.) Django's test flush
  truncates, so the tests disable this one trigger around their flush only
  (``tests/conftest.py``).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "registry_auditevent"
TRUNCATE_TRIGGER = "registry_auditevent_no_truncate"

POSTGRES_CREATE = [
    f"""
    CREATE TRIGGER {TRUNCATE_TRIGGER}
    BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION registry_audit_append_only();
    """,
]
POSTGRES_DROP = [f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {TABLE};"]


def create_truncate_trigger(apps: Any, schema_editor: Any) -> None:
    """Refuse TRUNCATE of the audit table (PostgreSQL; nothing to do on SQLite)."""
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_CREATE:
            schema_editor.execute(sql, params=None)


def drop_truncate_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in POSTGRES_DROP:
            schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0007_lean_indexes")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="mac",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="mac_key",
            field=models.CharField(max_length=16, null=True),
        ),
        migrations.CreateModel(
            name="AuditAlert",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("raised_at", models.DateTimeField()),
                ("source", models.CharField(max_length=30)),
                ("first_seq", models.BigIntegerField(verbose_name="first row with a problem")),
                ("first_kind", models.CharField(max_length=30)),
                ("problem_count", models.PositiveIntegerField(verbose_name="problems")),
                ("message", models.TextField()),
                (
                    "verify_seq",
                    models.BigIntegerField(null=True, verbose_name="row recording the verification"),
                ),
                (
                    "emailed_to",
                    models.PositiveIntegerField(default=0, verbose_name="registry admins e-mailed"),
                ),
            ],
            options={"ordering": ["-raised_at"]},
        ),
        migrations.RunPython(create_truncate_trigger, drop_truncate_trigger, elidable=False),
    ]
