"""The clinic on each follow-up time point, backfilled, and the homes' partial index
(ADR 0023 §12).

The clinician's and coordinator's homes found a clinic's open time points by walking every open
time point of the registry (200,000 at 1,000,000 patients) and joining each to its patient:
0.1-0.3 s per query, several per page. The clinic is now on the row (denormalised like
``patient_id``: a patient's clinic never changes), with a partial index
``(clinic_id, target, id) INCLUDE (patient_id) WHERE status = 'open'``.

The column is added and backfilled in SQL rather than by ``AddField`` (the model state gets
the NOT NULL foreign key all the same):

* PostgreSQL: added without its foreign key, filled by one ``UPDATE ... FROM`` (6 M rows at
  1,000,000 patients), then made NOT NULL and given the foreign key, which PostgreSQL checks in
  one pass (a foreign key in place during the UPDATE would queue one check per row). The
  table is locked against writers from the start. The count trigger on UPDATE (``followup
  0008``) is disabled for the backfill only: it would build two 6 M-row transition tables to
  find that no status and no patient changed.
* SQLite: ``ALTER TABLE ADD COLUMN`` (nullable, with its REFERENCES) and a correlated UPDATE.
  The column stays nullable in SQLite's table: NOT NULL would need Django's table remake, which
  drops the count triggers of ``followup 0008`` (ADR 0023 §10). The UPDATE sets only
  ``clinic_id``, so the row trigger ``AFTER UPDATE OF status, patient_id`` does not fire.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

TABLE = "followup_followuptimepoint"
PATIENT = "registry_patient"
CLINIC = "registry_clinic"
FK_NAME = "followup_followuptimepoint_clinic_id_fk_registry_clinic_id"
COUNT_TRIGGER = "followup_tpcount_update"


def add_clinic(apps: Any, schema_editor: Any) -> None:
    """Add ``clinic_id``, fill it from each time point's patient, then constrain it."""
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE", params=None)
        run(f"ALTER TABLE {TABLE} ADD COLUMN clinic_id bigint NULL", params=None)
        run(f"ALTER TABLE {TABLE} DISABLE TRIGGER {COUNT_TRIGGER}", params=None)
        run(
            f"UPDATE {TABLE} t SET clinic_id = p.clinic_id FROM {PATIENT} p "
            "WHERE p.id = t.patient_id",
            params=None,
        )
        run(f"ALTER TABLE {TABLE} ENABLE TRIGGER {COUNT_TRIGGER}", params=None)
        run(f"ALTER TABLE {TABLE} ALTER COLUMN clinic_id SET NOT NULL", params=None)
        run(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {FK_NAME} FOREIGN KEY (clinic_id) "
            f"REFERENCES {CLINIC} (id) DEFERRABLE INITIALLY DEFERRED",
            params=None,
        )
    else:
        run(
            f"ALTER TABLE {TABLE} ADD COLUMN clinic_id bigint NULL "
            f"REFERENCES {CLINIC} (id) DEFERRABLE INITIALLY DEFERRED",
            params=None,
        )
        run(
            f"UPDATE {TABLE} SET clinic_id = "
            f"(SELECT p.clinic_id FROM {PATIENT} p WHERE p.id = {TABLE}.patient_id)",
            params=None,
        )


def drop_clinic(apps: Any, schema_editor: Any) -> None:
    """Drop the column (``ALTER TABLE DROP COLUMN``: no table remake on SQLite either)."""
    schema_editor.execute(f"ALTER TABLE {TABLE} DROP COLUMN clinic_id", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("followup", "0008_timepoint_counts"),
        ("registry", "0017_adverse_event_clinic"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="followuptimepoint",
                    name="clinic",
                    field=models.ForeignKey(
                        db_index=False,
                        default=None,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="registry.clinic",
                    ),
                    preserve_default=False,
                ),
            ],
            database_operations=[migrations.RunPython(add_clinic, drop_clinic, elidable=False)],
        ),
        migrations.AddIndex(
            model_name="followuptimepoint",
            index=models.Index(
                condition=models.Q(("status", "open")),
                fields=["clinic", "target", "id"],
                include=("patient",),
                name="followup_tp_open_clinic",
            ),
        ),
    ]
