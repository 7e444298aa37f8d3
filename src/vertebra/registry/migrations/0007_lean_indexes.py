"""The audit hash stays unique through a named constraint instead of ``unique=True``.

On PostgreSQL ``unique=True`` on a CharField also builds a ``varchar_pattern_ops`` index for
LIKE queries; nobody searches hashes by pattern, and every audit append paid for it. On SQLite
altering the field rebuilds the table, which drops the append-only triggers: they are
re-created here (see the warning in 0002_audit_append_only).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models

_triggers = importlib.import_module("vertebra.registry.migrations.0002_audit_append_only")


def recreate_sqlite_triggers(apps: Any, schema_editor: Any) -> None:
    """SQLite only: put back the triggers the table rebuild dropped (PostgreSQL kept them)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    _triggers.drop_triggers(apps, schema_editor)
    _triggers.create_triggers(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0006_diagnosis_modified_pfirrmann_grade"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(max_length=64),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("hash",), name="audit_hash_unique"),
        ),
        migrations.RunPython(recreate_sqlite_triggers, recreate_sqlite_triggers, elidable=False),
    ]
