"""Disk use per reading, indexes and TOAST included, after compaction, beside a plain table.

30 days of realistic 2-second data (bench/_common.py: realistic_day) for one meter's three
channels (power, energy counter, voltage) go through the ingest service, are compacted, and the
bucket table is measured with pg_total_relation_size after VACUUM FULL. The plain table holds the
same readings as (channel_id, ts, value) with a primary key. Every channel-day is its own bucket,
so bytes per reading do not depend on the number of channels; this is measured, not extrapolated.
Last line: one JSON object.
"""

from __future__ import annotations

import sys
import time

from _common import (
    DAY_MS,
    STORE_CHANNELS,
    compacted_size,
    fleet,
    ingest_days,
    plain_table,
    report,
    setup,
    truncate_readings,
)


def main() -> None:
    setup()
    import numpy as np
    from django.db import connection

    from readings.services import readings_compact

    days = 30
    (device,) = fleet(slug="bench-storage", devices=1, channels=STORE_CHANNELS)
    channel_ids = sorted(device.channels.values_list("pk", flat=True))
    truncate_readings()
    start_ms = (int(time.time() * 1000) // DAY_MS - days - 2) * DAY_MS
    started = time.perf_counter()
    total = ingest_days(device=device, channel_ids=channel_ids, start_ms=start_ms, days=days)
    ingest_s = time.perf_counter() - started
    merged = 0
    started = time.perf_counter()
    while True:
        step = readings_compact(max_windows=500)
        merged += step
        if step == 0:
            break
    compact_s = time.perf_counter() - started
    bucket_bytes = compacted_size("readings_bucket")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), sum(count) FROM readings_bucket")
        rows, stored = cursor.fetchone()
    assert stored == total, (stored, total)
    quantities = dict(device.channels.values_list("pk", "quantity"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT channel_id, sum(length(data)), sum(count) FROM readings_bucket GROUP BY channel_id")
        payload = {quantities[c]: round(int(size) / int(n), 3) for c, size, n in cursor.fetchall()}

    from readings.store import get_store

    points = get_store().read(
        tenant_id=device.tenant_id, channel_ids=channel_ids, start_ms=start_ms, end_ms=start_ms + days * DAY_MS
    )
    channels = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in points.items()])
    plain_table(
        "bench_plain_storage",
        channels,
        np.concatenate([p.timestamps_ms for p in points.values()]),
        np.concatenate([p.values for p in points.values()]),
    )
    plain_bytes = compacted_size("bench_plain_storage")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_storage")
    print(f"bench storage: {total} readings in {rows} buckets ({merged} windows compacted)", file=sys.stderr)
    report(
        {
            "bytes_per_reading": round(bucket_bytes / total, 3),
            "plain_bytes_per_reading": round(plain_bytes / total, 3),
            "readings": int(total),
            "channels": len(channel_ids),
            "days": days,
            "buckets": int(rows),
            "bucket_table_bytes": int(bucket_bytes),
            "plain_table_bytes": int(plain_bytes),
            "payload_bytes_per_reading_by_quantity": payload,
            "ingest_readings_per_s_in_process": round(total / ingest_s),
            "compaction_readings_per_s": round(total / compact_s),
        }
    )


if __name__ == "__main__":
    main()
