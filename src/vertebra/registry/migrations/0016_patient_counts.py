"""Patients per clinic, kept by triggers (ADR 0023 §10).

The patient list's total, the homes' "N patients" and the registry admin's per-clinic counts
counted patient rows on every view (1,000,000 for a network account). ``PatientCount`` holds
signed deltas per clinic; triggers on ``registry_patient`` write them in the writer's own
transaction, for every path (ORM, the bulk loader's COPY, the importer), so ``SUM(n)`` per
clinic always equals the live count. PostgreSQL: statement-level triggers with transition
tables (one grouped INSERT per statement); SQLite: row-level triggers. Backfilled from the
existing rows. No foreign key on the counter rows (``db_constraint=False``).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

PATIENT = "registry_patient"
COUNT = "registry_patientcount"

POSTGRES_CREATE = [
    f"""
    CREATE FUNCTION registry_patientcount_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, n)
        SELECT clinic_id, COUNT(*) FROM new_rows GROUP BY clinic_id ORDER BY 1;
        RETURN NULL;
    END $$;
    """,
    f"""
    CREATE FUNCTION registry_patientcount_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, n)
        SELECT clinic_id, -COUNT(*) FROM old_rows GROUP BY clinic_id ORDER BY 1;
        RETURN NULL;
    END $$;
    """,
    f"""
    CREATE FUNCTION registry_patientcount_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, n)
        SELECT d.clinic_id, SUM(d.n) FROM (
            SELECT o.clinic_id, -1 AS n FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.clinic_id <> w.clinic_id
            UNION ALL
            SELECT w.clinic_id, 1 FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.clinic_id <> w.clinic_id
        ) d GROUP BY d.clinic_id HAVING SUM(d.n) <> 0 ORDER BY 1;
        RETURN NULL;
    END $$;
    """,
    f"""CREATE TRIGGER registry_patientcount_insert AFTER INSERT ON {PATIENT}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION registry_patientcount_insert();""",
    f"""CREATE TRIGGER registry_patientcount_delete AFTER DELETE ON {PATIENT}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION registry_patientcount_delete();""",
    f"""CREATE TRIGGER registry_patientcount_update AFTER UPDATE ON {PATIENT}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION registry_patientcount_update();""",
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS registry_patientcount_insert ON {PATIENT};",
    f"DROP TRIGGER IF EXISTS registry_patientcount_delete ON {PATIENT};",
    f"DROP TRIGGER IF EXISTS registry_patientcount_update ON {PATIENT};",
    "DROP FUNCTION IF EXISTS registry_patientcount_insert();",
    "DROP FUNCTION IF EXISTS registry_patientcount_delete();",
    "DROP FUNCTION IF EXISTS registry_patientcount_update();",
]

SQLITE_CREATE = [
    f"""CREATE TRIGGER registry_patientcount_insert AFTER INSERT ON {PATIENT} BEGIN
        INSERT INTO {COUNT} (clinic_id, n) VALUES (NEW.clinic_id, 1);
    END;""",
    f"""CREATE TRIGGER registry_patientcount_delete AFTER DELETE ON {PATIENT} BEGIN
        INSERT INTO {COUNT} (clinic_id, n) VALUES (OLD.clinic_id, -1);
    END;""",
    f"""CREATE TRIGGER registry_patientcount_update AFTER UPDATE OF clinic_id ON {PATIENT}
    WHEN OLD.clinic_id IS NOT NEW.clinic_id BEGIN
        INSERT INTO {COUNT} (clinic_id, n) VALUES (OLD.clinic_id, -1);
        INSERT INTO {COUNT} (clinic_id, n) VALUES (NEW.clinic_id, 1);
    END;""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS registry_patientcount_insert;",
    "DROP TRIGGER IF EXISTS registry_patientcount_delete;",
    "DROP TRIGGER IF EXISTS registry_patientcount_update;",
]

BACKFILL = f"""
    INSERT INTO {COUNT} (clinic_id, n)
    SELECT clinic_id, COUNT(*) FROM {PATIENT} GROUP BY clinic_id ORDER BY 1
"""


def create_triggers(apps: Any, schema_editor: Any) -> None:
    """Backfill the counts of the existing patients, then keep them with triggers."""
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:  # no patient may be written between the backfill and the triggers
        schema_editor.execute(f"LOCK TABLE {PATIENT} IN SHARE ROW EXCLUSIVE MODE", params=None)
    schema_editor.execute(BACKFILL, params=None)
    for sql in POSTGRES_CREATE if postgres else SQLITE_CREATE:
        schema_editor.execute(sql, params=None)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.connection.vendor == "postgresql"
    for sql in POSTGRES_DROP if postgres else SQLITE_DROP:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0015_audit_verify_index")]

    operations = [
        migrations.CreateModel(
            name="PatientCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("n", models.BigIntegerField()),
                (
                    "clinic",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="registry.clinic",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["clinic"], name="registry_patientcount_clinic")],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
