"""A mean-power interval's energy is now the mean × the time its readings cover (`readings.demand`), not
× 15 minutes: without its `DemandState`, a facility's stored demand and peaks are recomputed whole at the
next settle, so no quarter cut by a gap keeps the old figure."""

from django.db import migrations


def forget_states(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("billing", "DemandState").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_recompute_stored_demand"),
    ]

    operations = [
        migrations.RunPython(forget_states, migrations.RunPython.noop),
    ]
