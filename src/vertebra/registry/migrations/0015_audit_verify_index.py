"""A partial index on the audit trail's chain verifications (ADR 0023).

The registry admin's home and the audit worker read the newest ``verify`` / ``audit_chain``
row (``ORDER BY id DESC LIMIT 1``). Without an index PostgreSQL walks the primary key backwards
through every newer row until it meets one: millions of rows on a busy trail. The partial index
holds only the verification rows (a few a day), so the read is one index probe. SQLite has
partial indexes too (3.8+), so the same operation runs on both.

Only an index is added: the rows, their hashes and the seals (ADR 0021) are untouched, and the
append-only triggers (0002, 0008) do not fire on ``CREATE INDEX``.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0014_patient_list_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                condition=models.Q(action="verify", object_type="audit_chain"),
                fields=["id"],
                name="audit_verify_id",
            ),
        ),
    ]
