"""The stored demand follows the bills' rule now (`billing.selectors._usage`): without its `DemandState`, a
facility's stored demand and peaks are recomputed whole at the next settle, so none keeps the old rule's."""

from django.db import migrations


def forget_states(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("billing", "DemandState").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_stored_demand"),
    ]

    operations = [
        migrations.RunPython(forget_states, migrations.RunPython.noop),
    ]
