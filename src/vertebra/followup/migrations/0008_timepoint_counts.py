"""Time points per clinic and status, kept by triggers (ADR 0023 §10).

The staff homes showed due/overdue/completed/missed counts by aggregating every time point of
the actor's clinics (6 M rows for a network account at 1,000,000 patients). ``TimePointCount``
holds signed deltas per (clinic, status); triggers on the time-point table write them in the
writer's own transaction, for every path (ORM saves and ``update()``, the bulk loader's COPY,
the importer), so ``SUM(n)`` always equals the live count.

* PostgreSQL: statement-level triggers with transition tables: one grouped INSERT per
  statement (a COPY of 60,000 time points adds a handful of rows, not 60,000).
* SQLite (the demo): row-level triggers.
* Backfill: one grouped INSERT of the existing rows (seconds at 6 M time points).
* The counter table has no foreign key (``db_constraint=False``): a counter row must never
  make a time point's write wait on, or fail for, the clinic row.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

TP = "followup_followuptimepoint"
COUNT = "followup_timepointcount"
PATIENT = "registry_patient"

POSTGRES_CREATE = [
    f"""
    CREATE FUNCTION followup_tpcount_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT p.clinic_id, t.status, COUNT(*)
        FROM new_rows t JOIN {PATIENT} p ON p.id = t.patient_id
        GROUP BY p.clinic_id, t.status ORDER BY 1, 2;
        RETURN NULL;
    END $$;
    """,
    f"""
    CREATE FUNCTION followup_tpcount_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT p.clinic_id, t.status, -COUNT(*)
        FROM old_rows t JOIN {PATIENT} p ON p.id = t.patient_id
        GROUP BY p.clinic_id, t.status ORDER BY 1, 2;
        RETURN NULL;
    END $$;
    """,
    f"""
    CREATE FUNCTION followup_tpcount_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT p.clinic_id, d.status, SUM(d.n)
        FROM (
            SELECT o.patient_id, o.status, -1 AS n FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.status <> w.status OR o.patient_id <> w.patient_id
            UNION ALL
            SELECT w.patient_id, w.status, 1 FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.status <> w.status OR o.patient_id <> w.patient_id
        ) d JOIN {PATIENT} p ON p.id = d.patient_id
        GROUP BY p.clinic_id, d.status HAVING SUM(d.n) <> 0 ORDER BY 1, 2;
        RETURN NULL;
    END $$;
    """,
    f"""CREATE TRIGGER followup_tpcount_insert AFTER INSERT ON {TP}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION followup_tpcount_insert();""",
    f"""CREATE TRIGGER followup_tpcount_delete AFTER DELETE ON {TP}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION followup_tpcount_delete();""",
    f"""CREATE TRIGGER followup_tpcount_update AFTER UPDATE ON {TP}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION followup_tpcount_update();""",
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS followup_tpcount_insert ON {TP};",
    f"DROP TRIGGER IF EXISTS followup_tpcount_delete ON {TP};",
    f"DROP TRIGGER IF EXISTS followup_tpcount_update ON {TP};",
    "DROP FUNCTION IF EXISTS followup_tpcount_insert();",
    "DROP FUNCTION IF EXISTS followup_tpcount_delete();",
    "DROP FUNCTION IF EXISTS followup_tpcount_update();",
]

SQLITE_CREATE = [
    f"""CREATE TRIGGER followup_tpcount_insert AFTER INSERT ON {TP} BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT clinic_id, NEW.status, 1 FROM {PATIENT} WHERE id = NEW.patient_id;
    END;""",
    f"""CREATE TRIGGER followup_tpcount_delete AFTER DELETE ON {TP} BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT clinic_id, OLD.status, -1 FROM {PATIENT} WHERE id = OLD.patient_id;
    END;""",
    f"""CREATE TRIGGER followup_tpcount_update AFTER UPDATE OF status, patient_id ON {TP}
    WHEN OLD.status IS NOT NEW.status OR OLD.patient_id IS NOT NEW.patient_id BEGIN
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT clinic_id, OLD.status, -1 FROM {PATIENT} WHERE id = OLD.patient_id;
        INSERT INTO {COUNT} (clinic_id, status, n)
        SELECT clinic_id, NEW.status, 1 FROM {PATIENT} WHERE id = NEW.patient_id;
    END;""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS followup_tpcount_insert;",
    "DROP TRIGGER IF EXISTS followup_tpcount_delete;",
    "DROP TRIGGER IF EXISTS followup_tpcount_update;",
]

BACKFILL = f"""
    INSERT INTO {COUNT} (clinic_id, status, n)
    SELECT p.clinic_id, t.status, COUNT(*) FROM {TP} t JOIN {PATIENT} p ON p.id = t.patient_id
    GROUP BY p.clinic_id, t.status ORDER BY 1, 2
"""


def create_triggers(apps: Any, schema_editor: Any) -> None:
    """Backfill the counts of the existing time points, then keep them with triggers."""
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:  # no time point may be written between the backfill and the triggers
        schema_editor.execute(f"LOCK TABLE {TP} IN SHARE ROW EXCLUSIVE MODE", params=None)
    schema_editor.execute(BACKFILL, params=None)
    for sql in POSTGRES_CREATE if postgres else SQLITE_CREATE:
        schema_editor.execute(sql, params=None)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.connection.vendor == "postgresql"
    for sql in POSTGRES_DROP if postgres else SQLITE_DROP:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("followup", "0007_open_target_index"),
        ("registry", "0015_audit_verify_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="TimePointCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Not open yet"),
                            ("open", "Open"),
                            ("completed", "Completed"),
                            ("missed", "Missed"),
                            ("cancelled", "Cancelled"),
                        ],
                        max_length=12,
                    ),
                ),
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
                "indexes": [models.Index(fields=["clinic", "status"], name="followup_tpcount_clinic")],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
