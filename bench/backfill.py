"""`make run`'s demo history backfill on PostgreSQL, beside two baselines measured in the same run.

The backfill writes 21 days of the demo devices' simulated readings (one a minute) with their
rollups, through the store's interface (gateway/backfill.py). Beside it:
- the same readings as (channel_id, ts, value) rows with a primary key, loaded with one binary
  COPY into a plain table (no rollups): the floor of a bulk write;
- one day of the same kind of data through the normal path, `readings_ingest` then
  `rollups_refresh` until no dirty mark is left, per reading: what the backfill replaces.
Last line: one JSON object.
"""

from __future__ import annotations

import time

from _common import DAY_MS, plain_table, report, setup, truncate_readings


def main() -> None:
    setup(default_name="energybox_bench")
    import numpy as np

    from devices.demo import DEMO_TENANTS, seed_demo
    from devices.models import Device
    from gateway.backfill import demo_history_backfill
    from readings.batch import ReadingsBatch
    from readings.services import readings_ingest, rollups_refresh
    from readings.store import get_store

    seed_demo()
    truncate_readings()
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    result = demo_history_backfill(tenant_slugs=DEMO_TENANTS, days=21, now_ms=now_ms)
    backfill_s = time.perf_counter() - started

    # Baseline 1: the same number of readings, COPYed into a plain table.
    devices = list(Device.objects.filter(tenant__slug__in=DEMO_TENANTS).prefetch_related("channels"))
    channel_ids = [c.pk for d in devices for c in d.channels.all()]
    store = get_store()
    ids, stamps, values = [], [], []
    for channel_id, tenant_id in ((c.pk, c.tenant_id) for d in devices for c in d.channels.all()):
        points = store.read(
            tenant_id=tenant_id, channel_ids=[channel_id], start_ms=now_ms - 22 * DAY_MS, end_ms=now_ms
        ).get(channel_id)
        if points is not None:
            ids.append(np.full(len(points), channel_id, dtype=np.int64))
            stamps.append(points.timestamps_ms)
            values.append(points.values)
    all_ids, all_ts, all_values = np.concatenate(ids), np.concatenate(stamps), np.concatenate(values)
    assert len(all_ids) == result.readings, (len(all_ids), result.readings)
    started = time.perf_counter()
    plain_table("bench_backfill_plain", all_ids, all_ts, all_values)
    copy_s = time.perf_counter() - started

    # Baseline 2: one day of the first 12-channel meter's readings through ingest and rollups_refresh.
    device = next(d for d in devices if d.channels.count() == 12)
    channels = sorted(device.channels.all(), key=lambda c: c.index)
    truncate_readings()
    rows = [np.flatnonzero(all_ids == c.pk)[:1440] for c in channels]  # its first day, one reading a minute
    n = len(rows[0])
    ts = all_ts[rows[0]]  # a device's channels share their timestamps
    batch_values = np.stack([all_values[r] for r in rows])
    started = time.perf_counter()
    for first in range(0, n, 15):  # 15-minute batches, as a gateway would group them
        readings_ingest(
            batches=[
                ReadingsBatch(
                    tenant_id=device.tenant_id,
                    device_id=device.pk,
                    seq=first,
                    channel_ids=np.array([c.pk for c in channels], dtype=np.int64),
                    timestamps_ms=ts[first : first + 15],
                    values=batch_values[:, first : first + 15],
                )
            ],
            now_ms=now_ms,
        )
    while rollups_refresh():
        pass
    normal_s = time.perf_counter() - started
    normal_readings = n * len(channels)

    report(
        {
            "benchmark": "demo history backfill (21 days, 1 reading/min, 10 demo devices, rollups included)",
            "machine": "shared 2-core machine under load from other engineers' work",
            "readings": result.readings,
            "channels": len(channel_ids),
            "backfill_s": round(backfill_s, 2),
            "backfill_readings_per_s": round(result.readings / backfill_s),
            "baseline_plain_copy_s": round(copy_s, 2),
            "baseline_plain_copy_readings_per_s": round(result.readings / copy_s),
            "baseline_ingest_and_refresh_readings": normal_readings,
            "baseline_ingest_and_refresh_readings_per_s": round(normal_readings / normal_s),
        }
    )


if __name__ == "__main__":
    main()
