"""The clinic on each adverse event, backfilled, and the adjudication queue's partial index
(ADR 0023 §12).

The queue and the clinician's home found a clinic's pending events by joining every pending
event of the registry to its patient (0.1-0.3 s per query at 1,000,000 patients). The clinic is
now on the row (denormalised like ``patient_id``: a patient's clinic never changes), with a
partial index ``(clinic_id, onset, id) INCLUDE (serious) WHERE status = 'pending'``.

The column is added and backfilled in SQL rather than by ``AddField`` (the model state gets
the NOT NULL foreign key all the same):

* PostgreSQL: added without its foreign key, filled by one ``UPDATE ... FROM``, then made
  NOT NULL and given the foreign key, which PostgreSQL then checks in one pass (a foreign key
  in place during the UPDATE would queue one check per row). The table is locked against
  writers from the start, so no row can be written without a clinic in between.
* SQLite: ``ALTER TABLE ADD COLUMN`` (nullable, with its REFERENCES) and a correlated UPDATE.
  A NOT NULL column would need Django's table remake; the remake is avoided on purpose on the
  follow-up table, whose count triggers it would drop (ADR 0023 §10), and this table follows the
  same shape.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

TABLE = "registry_adverseevent"
PATIENT = "registry_patient"
CLINIC = "registry_clinic"
FK_NAME = "registry_adverseevent_clinic_id_fk_registry_clinic_id"


def add_clinic(apps: Any, schema_editor: Any) -> None:
    """Add ``clinic_id``, fill it from each event's patient, then constrain it."""
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE", params=None)
        run(f"ALTER TABLE {TABLE} ADD COLUMN clinic_id bigint NULL", params=None)
        run(
            f"UPDATE {TABLE} e SET clinic_id = p.clinic_id FROM {PATIENT} p "
            "WHERE p.id = e.patient_id",
            params=None,
        )
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
    schema_editor.execute(f"ALTER TABLE {TABLE} DROP COLUMN clinic_id", params=None)


class Migration(migrations.Migration):
    dependencies = [("registry", "0016_patient_counts")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="adverseevent",
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
            model_name="adverseevent",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["clinic", "onset", "id"],
                include=("serious",),
                name="adverse_event_pending_clinic",
            ),
        ),
    ]
