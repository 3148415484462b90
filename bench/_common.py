"""Shared set-up of the benchmarks: Django on their own database, a fleet, meters, and reporting.

Two set-ups: `setup()` / `django_services()` use their own PostgreSQL database, BENCH_DATABASE_URL
(default: energybox_bench on the DATABASE_URL server, or on 127.0.0.1), created and migrated when
missing (the benchmarks empty the tables they use); `django_embedded()` an isolated embedded
platform (temp SQLite, in-process queue). Every benchmark imports this one module.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_database_url(default_name: str = "energybox_bench") -> str:
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        base = "postgres://postgres@127.0.0.1:5432/energybox"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{default_name}"))


def setup(*, needs_broker: bool = False, default_name: str = "energybox_bench") -> str:
    """Create and migrate the benchmark's database (BENCH_DATABASE_URL, else `default_name`); set up Django."""
    import psycopg

    url = bench_database_url(default_name)
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "energybox.settings.test"
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
    if needs_broker and not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        raise SystemExit("bench: set CELERY_BROKER_URL to a RabbitMQ vhost (amqp://...) for the ingest benchmark")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def fleet(*, slug: str, devices: int, channels: list[dict[str, str]], tz: str = "Europe/Berlin") -> list[Any]:
    """A tenant with `devices` devices of one type; returns the devices (channels via device.channels)."""
    from accounts.models import Tenant
    from devices import services
    from devices.models import Device, DeviceType

    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug, "kind": Tenant.Kind.ENTERPRISE})
    existing = list(Device.objects.filter(tenant=tenant).order_by("pk"))
    if len(existing) >= devices:
        return existing[:devices]
    model_name = f"{slug}-meter-{len(channels)}"
    device_type = DeviceType.objects.filter(model_name=model_name).first() or services.device_type_create(
        model_name=model_name, channels=channels, firmware_line="bench"
    )
    facility = tenant and services.facility_create(tenant=tenant, name=f"{slug} site {time.time_ns()}", timezone=tz)
    for i in range(len(existing), devices):
        services.device_create(
            tenant=tenant, facility=facility, device_type=device_type, serial=f"{slug.upper()}-{i:06d}"
        )
    return list(Device.objects.filter(tenant=tenant).order_by("pk"))[:devices]


def truncate_readings() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE readings_bucket, readings_rollup, readings_dirty")


def report(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, sort_keys=False))


def percentile(samples: list[float], p: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.array(samples), p)), 3)


DAY_MS = 86_400_000
STORE_CHANNELS = [
    {"name": "P", "quantity": "active_power", "unit": "W", "phase": "total"},
    {"name": "E", "quantity": "active_energy", "unit": "Wh", "phase": "total"},
    {"name": "U L1", "quantity": "voltage", "unit": "V", "phase": "L1"},
]


def realistic_day(day_index: int, *, step_ms: int = 2_000, seed: int = 0):
    """One day of a supermarket meter at `step_ms`: (ts offsets, power W, energy Wh, voltage V).

    Power: a daily load curve, refrigeration compressors cycling, measurement noise, at the
    meter's 0.1 W resolution. Energy: the meter's counter at 0.1 Wh. Voltage: 230 V ± drift and
    noise at 0.1 V. About 0.1 % of samples are missing.
    """
    import numpy as np

    rng = np.random.default_rng(seed * 1_000 + day_index)
    n = DAY_MS // step_ms
    t = np.arange(n, dtype=np.int64) * step_ms
    hours = t / 3_600_000
    load = 1_500 + 900 * np.clip(np.sin((hours - 6) / 14 * np.pi), 0, None)
    compressor = 600 * ((t // (13 * 60_000)) % 2)
    noise = rng.normal(0, 8, n)
    power_raw = np.rint((load + compressor + noise) * 10).astype(np.int64)
    power = power_raw * 0.1
    energy_raw = 10_000_000 * (day_index + 1) + np.cumsum(power_raw) * step_ms // 3_600_000
    energy = energy_raw * 0.1
    voltage_raw = np.rint((230 + 2 * np.sin(hours / 24 * 2 * np.pi) + rng.normal(0, 0.3, n)) * 10)
    voltage = voltage_raw * 0.1
    keep = rng.random(n) > 0.001
    return t[keep], power[keep], energy[keep], voltage[keep]


def ingest_days(*, device, channel_ids, start_ms: int, days: int, step_ms: int = 2_000, columns=(1, 2, 3)):
    """Ingest `days` of realistic data through the ingest service, one batch per device-hour."""
    import numpy as np

    from readings.batch import ReadingsBatch
    from readings.services import readings_ingest

    total = 0
    now_ms = start_ms + (days + 1) * DAY_MS
    for day in range(days):
        arrays = realistic_day(day, step_ms=step_ms)
        ts = start_ms + day * DAY_MS + arrays[0]
        values = np.vstack([arrays[c] for c in columns])
        per_hour = 3_600_000 // step_ms
        for lo in range(0, len(ts), per_hour):
            batch = ReadingsBatch(
                device.tenant_id,
                device.pk,
                lo,
                np.array(channel_ids, dtype=np.int64),
                ts[lo : lo + per_hour],
                values[:, lo : lo + per_hour],
            )
            total += readings_ingest(batches=[batch], now_ms=now_ms).stored
        if (day + 1) % 30 == 0 or day + 1 == days:
            print(f"  ingested {day + 1}/{days} days", file=sys.stderr)
    return total


def plain_table(name: str, channels, timestamps_ms, values) -> None:
    """(channel_id, ts, value) rows with a primary key, loaded with one binary COPY."""
    import numpy as np
    from django.db import connection

    row = np.dtype(
        [("n", ">i2"), ("l1", ">i4"), ("c", ">i8"), ("l2", ">i4"), ("t", ">i8"), ("l3", ">i4"), ("v", ">f8")]
    )
    body = np.empty(len(channels), dtype=row)
    body["n"], body["l1"], body["l2"], body["l3"] = 3, 8, 8, 8
    body["c"], body["t"], body["v"] = channels, (timestamps_ms - 946_684_800_000) * 1_000, values
    payload = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + body.tobytes() + b"\xff\xff"
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(f"DROP TABLE IF EXISTS {name}")
        raw.execute(
            f"CREATE TABLE {name} (channel_id bigint, ts timestamptz, value double precision, "
            "PRIMARY KEY (channel_id, ts))"
        )
        with raw.copy(f"COPY {name} (channel_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy:
            for offset in range(0, len(payload), 1 << 22):
                copy.write(payload[offset : offset + (1 << 22)])


def compacted_size(table: str) -> int:
    """pg_total_relation_size after VACUUM FULL, repeated until stable: a concurrent snapshot (an
    autovacuum ANALYZE, say) can keep dead rows for a moment, and we measure live data only."""
    from django.db import connection

    best = None
    for _ in range(6):
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM FULL ANALYZE {table}")
            # A partitioned table has no storage of its own: its partitions hold the bytes.
            cursor.execute("SELECT COALESCE(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)", [table])
            size = int(cursor.fetchone()[0])
        if best is not None and size >= best:
            return best
        best = size
        time.sleep(2)
    assert best is not None
    return best


def django_embedded(name: str) -> Path:
    """Configure Django on a fresh SQLite database in a temp folder; returns the data folder."""
    data = Path(tempfile.mkdtemp(prefix=f"energybox-bench-{name}-"))
    # Benchmarks measure the embedded defaults: none of the developer's services are touched.
    for var in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(var, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "energybox.settings.local"
    os.environ["ENERGYBOX_DATA_DIR"] = str(data)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return data


def django_services(name: str) -> Path:
    """Configure Django on the benchmark PostgreSQL database (BENCH_DATABASE_URL, else energybox_bench on
    the DATABASE_URL server) with the configured broker (CELERY_BROKER_URL); returns a temp data folder."""
    data = Path(tempfile.mkdtemp(prefix=f"energybox-bench-{name}-"))
    os.environ["ENERGYBOX_DATA_DIR"] = str(data)
    os.environ["LOG_LEVEL"] = "WARNING"
    setup(needs_broker=True)
    return data


def provision_meters(count: int, *, prefix: str = "BENCH") -> list[tuple[str, bytes]]:
    """`count` 12-channel meters with fresh key pairs, bulk-created; returns (serial, private seed) pairs."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from accounts.models import Tenant
    from devices.demo import METER_12
    from devices.keys import public_key_bytes
    from devices.models import Channel, Device, DeviceType, Facility
    from devices.services import channels_from_template

    tenant = Tenant.objects.create(name=f"{prefix} tenant", slug=f"{prefix.lower()}-tenant", kind="enterprise")
    facility = Facility.objects.create(tenant=tenant, name="Bench site", timezone="Europe/Berlin")
    device_type = DeviceType.objects.create(model_name=f"{prefix} meter", channels=METER_12, firmware_line="eb-meter")
    seeds = [Ed25519PrivateKey.generate() for _ in range(count)]
    devices = Device.objects.bulk_create(
        [
            Device(
                tenant=tenant,
                facility=facility,
                device_type=device_type,
                serial=f"{prefix}-{n:06d}",
                public_key=public_key_bytes(key),
                key_version=1,
                firmware_version="1.0.0",
            )
            for n, key in enumerate(seeds)
        ],
        batch_size=1000,
    )
    Channel.objects.bulk_create(
        [channel for device in devices for channel in channels_from_template(device=device, specs=METER_12)],
        batch_size=2000,
    )
    return [(device.serial, key.private_bytes_raw()) for device, key in zip(devices, seeds, strict=True)]


# devices.demo.METER_12 as (quantity, scale, phase), without importing Django (client processes).
METER_12_SPEC = [
    ("active_power", 1.0, "L1"), ("active_power", 1.0, "L2"), ("active_power", 1.0, "L3"),
    ("voltage", 0.1, "L1"), ("voltage", 0.1, "L2"), ("voltage", 0.1, "L3"),
    ("current", 0.01, "L1"), ("current", 0.01, "L2"), ("current", 0.01, "L3"),
    ("active_power", 1.0, "total"), ("active_energy", 1.0, "total"), ("power_factor", 0.001, "total"),
]  # fmt: skip


def meter_channels():  # type: ignore[no-untyped-def]
    from gateway.simulator import ChannelSpec

    return tuple(ChannelSpec(quantity, scale, phase) for quantity, scale, phase in METER_12_SPEC)


def raise_nofile() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kb(pid: int | None = None) -> int:
    path = f"/proc/{pid or 'self'}/status"
    for line in Path(path).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
