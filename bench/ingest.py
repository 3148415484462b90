"""Ingest throughput: readings_enqueue → RabbitMQ (confirms) → Celery worker processes → PostgreSQL.

Until the gateway (issue 3) is on main this measures from the seam: the batches a gateway would
hand over are built in this process and enqueued with `readings_enqueue` (one confirmed message per
group of device batches), real worker processes store them with COPY, and the clock stops when the
last reading is in PostgreSQL. Baseline, same run, same readings: one plain binary COPY into
(channel_id, ts, value) with a primary key. Last line: one JSON object.

    BENCH_DATABASE_URL=postgres://...  CELERY_BROKER_URL=amqp://.../vhost  .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import ROOT, bench_database_url, fleet, report, setup, truncate_readings

CHANNELS = [{"name": f"P L{i}", "quantity": "active_power", "unit": "W", "phase": f"L{i}"} for i in (1, 2, 3)] + [
    {"name": "E", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
    {"name": "U L1", "quantity": "voltage", "unit": "V", "phase": "L1"},
    {"name": "I L1", "quantity": "current", "unit": "A", "phase": "L1"},
    {"name": "T", "quantity": "temperature", "unit": "°C"},
    {"name": "RH", "quantity": "humidity", "unit": "%RH"},
]


def build_rounds(devices, rounds: int, per_batch: int, start_ms: int):
    """rounds × devices batches of `per_batch` 2-second timestamps, device values quantized like a meter."""
    import numpy as np

    from readings.batch import ReadingsBatch

    rng = np.random.default_rng(1)
    channel_ids = [np.array(sorted(d.channels.values_list("pk", flat=True)), dtype=np.int64) for d in devices]
    result = []
    for r in range(rounds):
        ts = start_ms + (r * per_batch + np.arange(per_batch, dtype=np.int64)) * 2_000
        group = []
        for device, ids in zip(devices, channel_ids, strict=True):
            raw = rng.integers(0, 40_000, size=(len(ids), per_batch))
            group.append(ReadingsBatch(device.tenant_id, device.pk, r, ids, ts, raw * 0.1))
        result.append(group)
    return result


def plain_copy(rounds) -> float:
    """Seconds for one binary COPY of the same readings into a plain table with a primary key."""
    import numpy as np
    from django.db import connection

    channels, stamps, values = [], [], []
    for group in rounds:
        for batch in group:
            c, n = batch.values.shape
            channels.append(np.repeat(batch.channel_ids, n))
            stamps.append(np.tile(batch.timestamps_ms, c))
            values.append(batch.values.reshape(-1))
    channel = np.concatenate(channels)
    ts_us = (np.concatenate(stamps) - 946_684_800_000) * 1_000  # timestamptz: µs since 2000-01-01
    value = np.concatenate(values)
    row = np.dtype(
        [("n", ">i2"), ("l1", ">i4"), ("c", ">i8"), ("l2", ">i4"), ("t", ">i8"), ("l3", ">i4"), ("v", ">f8")]
    )
    body = np.empty(len(channel), dtype=row)
    body["n"], body["l1"], body["l2"], body["l3"] = 3, 8, 8, 8
    body["c"], body["t"], body["v"] = channel, ts_us, value
    payload = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + body.tobytes() + b"\xff\xff"
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute("DROP TABLE IF EXISTS bench_plain_readings")
        raw.execute(
            "CREATE TABLE bench_plain_readings (channel_id bigint, ts timestamptz, value double precision, "
            "PRIMARY KEY (channel_id, ts))"
        )
        connection.commit() if not connection.get_autocommit() else None
        started = time.perf_counter()
        with raw.copy("COPY bench_plain_readings (channel_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy:
            for offset in range(0, len(payload), 1 << 20):
                copy.write(payload[offset : offset + (1 << 20)])
        elapsed = time.perf_counter() - started
        (count,) = raw.execute("SELECT count(*) FROM bench_plain_readings").fetchone()
        assert count == len(channel), (count, len(channel))
        raw.execute("DROP TABLE bench_plain_readings")
    return elapsed


def stored() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(count), 0) FROM readings_bucket")
        return int(cursor.fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    # 100k readings/s of 8-channel meters sending every 10 s is 2,500 device batches a second; a
    # gateway that flushes its batches to the queue every 100 ms sends ~250 of them per message.
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=24, help="10-second rounds of every device")
    parser.add_argument("--group", type=int, default=250, help="device batches per broker message")
    parser.add_argument("--per-batch", type=int, default=5, help="timestamps per device batch")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (the machine is shared: medians)")
    args = parser.parse_args()

    setup(needs_broker=True)
    import numpy as np

    from energybox.celery import app
    from readings.services import readings_enqueue, rollups_refresh

    devices = fleet(slug="bench-ingest", devices=args.devices, channels=CHANNELS)
    truncate_readings()
    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge("readings")
        except Exception:  # noqa: BLE001 - not declared yet
            pass
    start_ms = int(time.time() * 1000) - 86_400_000
    warmup = build_rounds(devices[:10], 1, args.per_batch, start_ms - 3_600_000)

    env = {**os.environ, "DATABASE_URL": bench_database_url(), "DJANGO_SETTINGS_MODULE": "energybox.settings.test"}
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "celery", "-A", "energybox", "worker", "-Q", "readings", "--pool", "prefork"]
        + ["--concurrency", str(args.concurrency), "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    rates: list[float] = []
    copy_rates: list[float] = []
    rollup_rates: list[float] = []
    try:
        readings_enqueue(batches=warmup[0])
        deadline = time.monotonic() + 120
        while stored() < warmup_count(warmup) and time.monotonic() < deadline:
            time.sleep(0.05)
        for repetition in range(args.repeat):
            # Each run writes new timestamps, so nothing is deduplicated away.
            rounds = build_rounds(devices, args.rounds, args.per_batch, start_ms + repetition * 3_600_000)
            total = sum(b.reading_count for group in rounds for b in group)
            truncate_readings()  # keeps the progress query below (a scan of the bucket table) small
            base = stored()
            started = time.perf_counter()
            messages = 0
            for group in rounds:
                for offset in range(0, len(group), args.group):
                    readings_enqueue(batches=group[offset : offset + args.group])
                    messages += 1
            deadline = time.monotonic() + 600
            while stored() < base + total:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench ingest: only {stored() - base} of {total} readings arrived")
                time.sleep(0.1)
            rates.append(total / (time.perf_counter() - started))
            # Not on the timed path (beat runs it every 10 s), but it has to keep up: timed separately.
            started = time.perf_counter()
            while rollups_refresh(limit=20_000):
                pass
            rollup_rates.append(total / (time.perf_counter() - started))
            copy_rates.append(total / plain_copy(rounds))
            print(
                f"bench ingest run {repetition + 1}: {total} readings in {messages} messages, "
                f"{rates[-1]:.0f}/s end to end, plain COPY {copy_rates[-1]:.0f}/s",
                file=sys.stderr,
            )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    rate, copy_rate = float(np.median(rates)), float(np.median(copy_rates))
    report(
        {
            "readings_per_s": round(rate),
            "copy_readings_per_s": round(copy_rate),
            "ratio": round(rate / copy_rate, 3),
            "runs_readings_per_s": [round(r) for r in rates],
            "runs_copy_readings_per_s": [round(r) for r in copy_rates],
            "rollups_readings_per_s": round(float(np.median(rollup_rates))),
            "readings_per_run": total,
            "messages_per_run": messages,
            "worker_processes": args.concurrency,
            "path": "readings_enqueue -> RabbitMQ (confirms) -> Celery worker -> PostgreSQL COPY (no gateway yet)",
        }
    )


def warmup_count(warmup) -> int:
    return sum(b.reading_count for group in warmup for b in group)


if __name__ == "__main__":
    main()
