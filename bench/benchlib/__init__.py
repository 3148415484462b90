"""Shared set-up for the benchmarks: an isolated embedded platform (temp SQLite, in-process queue) and devices."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def django_embedded(name: str) -> Path:
    """Configure Django on a fresh SQLite database in a temp folder; returns the data folder."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
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
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import setup

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
