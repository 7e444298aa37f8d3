"""One live patient link per time point: links can be retired (replaced by a newer link, or
revoked by staff). Existing duplicates are retired first, keeping the newest live link of each
time point, so the partial unique constraint can be added."""

from django.db import migrations, models
from django.db.models import Exists, OuterRef
from django.db.models.functions import Now


def retire_older_live_links(apps, schema_editor):
    PatientLink = apps.get_model("followup", "PatientLink")
    newer = PatientLink.objects.filter(
        time_point=OuterRef("time_point"), used_at__isnull=True, pk__gt=OuterRef("pk")
    )
    PatientLink.objects.filter(used_at__isnull=True).filter(Exists(newer)).update(
        retired_at=Now(), retired_reason="replaced"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("followup", "0003_corrections"),
    ]

    operations = [
        migrations.AddField(
            model_name="patientlink",
            name="retired_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="patientlink",
            name="retired_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("replaced", "Replaced by a newer link"),
                    ("revoked", "Withdrawn by the care team"),
                ],
                max_length=12,
            ),
        ),
        migrations.RunPython(retire_older_live_links, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="patientlink",
            constraint=models.UniqueConstraint(
                condition=models.Q(("retired_at__isnull", True), ("used_at__isnull", True)),
                fields=("time_point",),
                name="followup_one_live_link",
            ),
        ),
        migrations.AddConstraint(
            model_name="patientlink",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("retired_at__isnull", True), ("retired_reason", "")),
                    models.Q(
                        ("retired_at__isnull", False),
                        models.Q(("retired_reason", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="followup_link_retired_with_reason",
            ),
        ),
    ]
