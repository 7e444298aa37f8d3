"""Indexes for the patient list and search at a national registry's size (ADR 0023).

* B-tree indexes for each order the list and the API offer (``registry.selectors.SORTS``): per
  clinic by name, across clinics by name (covering clinic and MRN, so a deep page's ids come
  from the index alone), by creation time and by MRN.
* On PostgreSQL only, trigram (``pg_trgm``) GIN indexes on ``UPPER(column)`` for the three
  columns the search matches: Django writes ``icontains``/``istartswith`` as
  ``UPPER(col::text) LIKE UPPER(%s)``, which such an index answers without reading every row.
  ``pg_trgm`` is a trusted extension (PostgreSQL 13+): the database owner may create it. SQLite
  gets nothing (its search stays a scan; the demo's sizes do not need more).
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

#: (index name, column) of the trigram indexes.
TRIGRAM = (
    ("patient_family_trgm", "family_name"),
    ("patient_given_trgm", "given_name"),
    ("patient_mrn_trgm", "mrn"),
)


def create_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in TRIGRAM:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON registry_patient "
            f"USING gin ((UPPER({column}::text)) gin_trgm_ops)"
        )


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in TRIGRAM:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0013_audit_seal"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(
                fields=["clinic", "family_name", "given_name", "id"], name="patient_clinic_name"
            ),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(
                fields=["family_name", "given_name", "id"],
                include=["clinic", "mrn"],
                name="patient_name",
            ),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["created_at", "id"], name="patient_created"),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["mrn", "id"], name="patient_mrn"),
        ),
        TrigramExtension(),
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes),
    ]
