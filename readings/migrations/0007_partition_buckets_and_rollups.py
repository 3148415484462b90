"""The bucket and rollup tables partitioned by month of their time column, on PostgreSQL only.

The existing rows move into the new partitioned tables in this migration's one transaction: the
plain table is renamed, the partitioned one created under its name with the same columns, keys and
indexes, its month partitions and DEFAULT partition made, the rows copied and the old table dropped.
SQLite keeps plain tables. There is no way back short of a restore: the reverse refuses.
"""

from __future__ import annotations

import time

from django.db import migrations

MONTHS_AHEAD = 2


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from readings import partitions

    now_ms = int(time.time() * 1000)
    with schema_editor.connection.cursor() as cursor:
        for spec in partitions.TABLES:
            partitions.convert(cursor, spec, now_ms=now_ms, months_ahead=MONTHS_AHEAD)


def refuse(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        raise RuntimeError("readings_bucket and readings_rollup stay partitioned: restore a backup to go back")


class Migration(migrations.Migration):
    dependencies = [("readings", "0006_merge_0005_rollup_packs_0005_worker_heartbeat")]

    operations = [migrations.RunPython(partition, refuse)]
