"""Ingest throughput, end to end and from the seam, each beside a plain COPY of the same readings.

1. Gateway path (the headline figure): simulated 12-channel meters (`manage.py simulate --fast`)
   over TLS → `manage.py rungateway` → `readings_enqueue` → RabbitMQ with confirms → Celery
   worker processes → PostgreSQL. The rate is readings stored per second over the steady part
   of the run; afterwards every reading the gateway acked must be stored, exactly once.
2. Seam path: the batches a gateway would hand over, built in this process and enqueued with
   `readings_enqueue` (250 device batches per confirmed message), stored by the same workers;
   repeated, medians reported. It shows what the store side can take beyond the gateway.
Baseline for each, in the same run: one binary COPY of exactly the same readings into
(channel_id, ts, value) with a primary key. Last line: one JSON object.

    BENCH_DATABASE_URL=postgres://...  CELERY_BROKER_URL=amqp://.../vhost  .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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

    channels, stamps, values = [], [], []
    for group in rounds:
        for batch in group:
            c, n = batch.values.shape
            channels.append(np.repeat(batch.channel_ids, n))
            stamps.append(np.tile(batch.timestamps_ms, c))
            values.append(batch.values.reshape(-1))
    return plain_copy_arrays(np.concatenate(channels), np.concatenate(stamps), np.concatenate(values))


def plain_copy_arrays(channel, stamps_ms, value) -> float:
    import numpy as np
    from django.db import connection

    ts_us = (stamps_ms - 946_684_800_000) * 1_000  # timestamptz: µs since 2000-01-01
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_path(*, devices: int, seconds: float, batch: int, concurrency: int) -> dict[str, float | int]:
    """Simulated TLS meters → gateway process → RabbitMQ → worker processes → PostgreSQL.

    The simulator runs `--fast` (each device sends as fast as the gateway's acks allow, with
    back-filled timestamps), so the figure is the pipeline's capacity. The rate is taken over the
    steady part of the run (after the first quarter, once every device is connected).
    """
    import re
    import tempfile

    from devices.demo import demo_keys_load, demo_keys_save
    from gateway.management.commands.simulate import device_specs, provision_simulated
    from gateway.tls import DEV_CERT_NAME

    folder = Path(tempfile.mkdtemp(prefix="energybox-bench-"))
    keys_path = Path(tempfile.gettempdir()) / f"energybox-bench-keys-{bench_database_url().rsplit('/', 1)[1]}.json"
    keys = demo_keys_load(keys_path)
    have = len(device_specs(keys, limit=devices))
    if have < devices:
        provision_simulated(devices - have, keys)
        demo_keys_save(keys, keys_path)
    env = {
        **os.environ,
        "DATABASE_URL": bench_database_url(),
        "DJANGO_SETTINGS_MODULE": "energybox.settings.test",
        "ENERGYBOX_DATA_DIR": str(folder),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    port = free_port()
    truncate_readings()
    processes = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "energybox", "worker", "-Q", "readings", "--pool", "prefork"]
            + ["--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(  # noqa: S603
            [*manage, "rungateway", "--host", "127.0.0.1", "--port", str(port), "--stats-every", "3600"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        ),
    ]
    try:
        deadline = time.monotonic() + 60
        while not (folder / DEV_CERT_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # the gateway binds its port after writing the certificate
        simulator = subprocess.Popen(  # noqa: S603
            [*manage, "simulate", "--keys", str(keys_path), "--devices", str(devices), "--fast"]
            + ["--duration", str(seconds), "--port", str(port), "--cafile", str(folder / DEV_CERT_NAME)]
            + ["--batch", str(batch), "--progress-every", "1"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        while simulator.poll() is None:
            samples.append((time.monotonic() - started, stored()))
            time.sleep(0.5)
        output = simulator.stdout.read() if simulator.stdout else ""
        acked_lines = re.findall(r"acked ([\d,]+)", output)
        acked = int(acked_lines[-1].replace(",", "")) if acked_lines else -1
        # Drain: every acked reading must reach PostgreSQL.
        deadline = time.monotonic() + 300
        while stored() < acked and time.monotonic() < deadline:
            time.sleep(0.2)
        final = stored()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    steady = [(t, n) for t, n in samples if t >= seconds / 4]
    rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) if len(steady) >= 2 else 0.0
    # The baseline COPYs exactly the readings this run stored.
    import numpy as np
    from django.db import connection

    from readings.store import get_store

    with connection.cursor() as cursor:
        cursor.execute("SELECT tenant_id, channel_id, min(first_ms), max(last_ms) FROM readings_bucket GROUP BY 1, 2")
        spans = cursor.fetchall()
    channels, stamps, values = [], [], []
    for tenant_id, channel_id, first, last in spans:
        points = get_store().read(tenant_id=tenant_id, channel_ids=[channel_id], start_ms=first, end_ms=last + 1)
        for cid, p in points.items():
            channels.append(np.full(len(p), cid, dtype=np.int64))
            stamps.append(p.timestamps_ms)
            values.append(p.values)
    copy_s = plain_copy_arrays(np.concatenate(channels), np.concatenate(stamps), np.concatenate(values))
    return {
        "readings_per_s": rate,
        "copy_readings_per_s": final / copy_s,
        "acked": acked,
        "stored": final,
        "devices": devices,
    }


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
    parser.add_argument("--gateway-devices", type=int, default=100, help="simulated TLS meters (12 channels)")
    parser.add_argument("--gateway-seconds", type=float, default=20.0)
    parser.add_argument("--gateway-batch", type=int, default=15, help="samples per device batch frame")
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
    seam_rate, seam_copy_rate = float(np.median(rates)), float(np.median(copy_rates))
    print(f"bench ingest: gateway path, {args.gateway_devices} simulated TLS meters", file=sys.stderr)
    gateway = gateway_path(
        devices=args.gateway_devices,
        seconds=args.gateway_seconds,
        batch=args.gateway_batch,
        concurrency=args.concurrency,
    )
    # Stored may exceed acked: when the simulator stops, each device has batches in flight that the
    # gateway already enqueued but whose ack it did not wait for. Acked but not stored is a loss.
    if gateway["stored"] < gateway["acked"]:
        raise SystemExit(
            f"bench ingest: the gateway acked {gateway['acked']} readings, only {gateway['stored']} stored"
        )
    report(
        {
            "readings_per_s": round(gateway["readings_per_s"]),
            "copy_readings_per_s": round(gateway["copy_readings_per_s"]),
            "ratio": round(gateway["readings_per_s"] / gateway["copy_readings_per_s"], 3),
            "path": "simulated TLS meters -> gateway -> RabbitMQ (confirms) -> Celery worker -> PostgreSQL",
            "gateway_devices": args.gateway_devices,
            "gateway_readings_acked_to_devices": gateway["acked"],
            "gateway_readings_stored": gateway["stored"],
            "seam_readings_per_s": round(seam_rate),
            "seam_copy_readings_per_s": round(seam_copy_rate),
            "seam_ratio": round(seam_rate / seam_copy_rate, 3),
            "seam_runs_readings_per_s": [round(r) for r in rates],
            "seam_path": "readings_enqueue (250 device batches/message) -> RabbitMQ -> Celery worker -> PostgreSQL",
            "rollups_readings_per_s": round(float(np.median(rollup_rates))),
            "worker_processes": args.concurrency,
        }
    )


def warmup_count(warmup) -> int:
    return sum(b.reading_count for group in warmup for b in group)


if __name__ == "__main__":
    main()
