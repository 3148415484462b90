from django.db import migrations, models


class Migration(migrations.Migration):
    # Pending per-channel marks cannot be mapped without a query per row; this runs before any
    # deployment had data (the store landed in the same release), so they are simply dropped.

    dependencies = [
        ("readings", "0002_drop_tenant_window_index"),
    ]

    operations = [
        migrations.RunSQL("DELETE FROM readings_dirty", migrations.RunSQL.noop),
        migrations.RemoveConstraint(model_name="dirtyinterval", name="dirty_unique_interval"),
        migrations.RemoveField(model_name="dirtyinterval", name="channel_id"),
        migrations.AddField(
            model_name="dirtyinterval",
            name="device_id",
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="dirtyinterval",
            constraint=models.UniqueConstraint(fields=("device_id", "start_ms"), name="dirty_unique_device_interval"),
        ),
    ]
