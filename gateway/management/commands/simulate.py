"""`manage.py simulate`: simulated meters streaming realistic loads to the gateway over TLS."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.demo import METER_12, demo_keys_load, demo_keys_path, demo_keys_save
from devices.keys import private_key_load
from devices.models import Device, DeviceType, Facility
from firmware.signing import signing_public_key
from gateway.simulator import ChannelSpec, DeviceSpec, SimStats, SimulatedDevice, run_devices
from gateway.tls import DEV_CERT_NAME, client_context
from readings.store import get_store

SIM_TENANT = "simulator"


def device_specs(keys: dict[str, str], *, limit: int | None) -> list[DeviceSpec]:
    """Specs of the devices whose private keys we hold, with the load each one meters."""
    devices = (
        Device.objects.filter(serial__in=list(keys), key_revoked_at__isnull=True)
        .select_related("device_type", "facility")
        .prefetch_related("channels__load")
        .order_by("serial")
    )
    if limit is not None:
        devices = devices[:limit]
    specs = []
    for device in devices:
        channels = sorted(device.channels.all(), key=lambda c: c.index)
        # A restarted meter goes on counting from where its stored history ends: no phantom energy.
        counters = [c.pk for c in channels if c.quantity == "active_energy" and c.unit == "Wh"]
        latest = get_store().latest(tenant_id=device.tenant_id, channel_ids=counters) if counters else {}
        energy_wh = float(latest[counters[0]].values[-1]) if counters and counters[0] in latest else None
        kinds = Counter(c.load.kind for c in channels if c.load is not None)
        load_kind = (
            kinds.most_common(1)[0][0] if kinds else ("appliances" if device.facility.kind == "home" else "other")
        )
        specs.append(
            DeviceSpec(
                serial=device.serial,
                private_key=private_key_load(keys[device.serial]).private_bytes_raw(),
                channels=tuple(ChannelSpec(c.quantity, c.scale, c.phase) for c in channels),
                load_kind=load_kind,
                name=device.name,
                firmware_line=device.device_type.firmware_line,
                firmware_version=device.firmware_version or "1.0.0",
                energy_wh=energy_wh,
            )
        )
    return specs


def provision_simulated(count: int, keys: dict[str, str]) -> int:
    """Create up to `count` extra 12-channel meters in a "simulator" tenant, keys into `keys`."""
    from accounts.models import Tenant
    from devices.services import device_provision, device_type_create, facility_create

    tenant, _ = Tenant.objects.get_or_create(
        slug=SIM_TENANT, defaults={"name": "Simulator", "kind": Tenant.Kind.ENTERPRISE}
    )
    facility = Facility.objects.filter(tenant=tenant).first() or facility_create(
        tenant=tenant, name="Simulated site", timezone="Europe/Berlin", kind=Facility.Kind.SUPERMARKET
    )
    device_type = DeviceType.objects.filter(model_name="EB-M12 three-phase meter").first() or device_type_create(
        model_name="EB-M12 three-phase meter", channels=METER_12, firmware_line="eb-meter", manufacturer="Energybox"
    )
    existing = Device.objects.filter(tenant=tenant).count()
    for n in range(existing + 1, existing + count + 1):
        issued = device_provision(
            tenant=tenant, serial=f"SIM-{n:06d}", device_type=device_type, facility=facility, firmware_version="1.0.0"
        )
        keys[issued.device.serial] = issued.private_key_pem
    return count


class Command(BaseCommand):
    help = (
        "Simulate devices (refrigeration, HVAC, lighting, fuel pumps, households) sending readings to the "
        "gateway over TLS, with at-least-once delivery and the device side of firmware updates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--devices", type=int, default=None, help="How many devices (default: all with keys).")
        parser.add_argument("--batch", type=int, default=15, help="Samples per batch (1..255).")
        parser.add_argument("--interval-ms", type=int, default=2000, help="Sampling interval.")
        parser.add_argument("--duration", type=float, default=None, help="Seconds to run (default: until Ctrl-C).")
        parser.add_argument("--host", default=settings.GATEWAY_HOST)
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT)
        parser.add_argument("--cafile", type=Path, default=None, help="CA of the gateway (default: the dev cert).")
        parser.add_argument("--server-name", default="localhost", help="Name the gateway certificate must carry.")
        parser.add_argument("--keys", type=Path, default=None, help="JSON {serial: private key PEM}.")
        parser.add_argument("--fast", action="store_true", help="Send as fast as acks allow (back-filled time).")
        parser.add_argument("--failure-share", type=float, default=0.0, help="Share of firmware updates to fail.")
        parser.add_argument(
            "--provision", action="store_true", help="Create simulator devices (and keys) until --devices exist."
        )
        parser.add_argument("--progress-every", type=float, default=5.0, help="Seconds between progress lines.")
        parser.add_argument(
            "--door-opens-per-hour",
            type=float,
            default=0.0,
            help="Devices with a door channel open their door this often (random, 20-180 s each) and send door "
            "EVENT frames at each change (default 0: doors stay as the load model has them).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["batch"] <= 255:
            raise CommandError("--batch must lie between 1 and 255.")
        if not 0.0 <= options["failure_share"] <= 1.0:
            raise CommandError("--failure-share must lie between 0 and 1.")
        if not 0.0 <= options["door_opens_per_hour"] <= 3600.0:
            raise CommandError("--door-opens-per-hour must lie between 0 and 3600.")
        keys_path = options["keys"] or demo_keys_path()
        keys = demo_keys_load(keys_path)
        wanted = options["devices"]
        specs = device_specs(keys, limit=wanted)
        if options["provision"] and wanted is not None and len(specs) < wanted:
            provision_simulated(wanted - len(specs), keys)
            demo_keys_save(keys, keys_path)
            specs = device_specs(keys, limit=wanted)
        if not specs:
            raise CommandError(
                f"No device keys in {keys_path}. Run `manage.py seed_demo` (demo keys) or pass --provision --devices N."
            )
        cafile = options["cafile"] or Path(settings.DATA_DIR) / DEV_CERT_NAME
        # Started next to the gateway (`make run`), give it a moment to generate its development certificate.
        for _ in range(60):
            if cafile.exists() or options["cafile"]:
                break
            time.sleep(0.5)
        if not cafile.exists():
            raise CommandError(f"{cafile} does not exist: start `manage.py rungateway` once, or pass --cafile.")
        firmware_key = signing_public_key()
        self.stdout.write(
            f"Simulating {len(specs)} devices → {options['host']}:{options['port']}, "
            f"{options['batch']} samples × {options['interval_ms']} ms per batch"
            + (" (fast)" if options["fast"] else "")
        )
        asyncio.run(self._run(specs, options, cafile, firmware_key))

    async def _run(self, specs: list[DeviceSpec], options: dict[str, Any], cafile: Path, firmware_key: bytes) -> None:
        stats = SimStats()
        context = client_context(cafile=cafile)
        devices = [
            SimulatedDevice(
                spec,
                host=options["host"],
                port=options["port"],
                ssl_context=context,
                server_hostname=options["server_name"],
                batch=options["batch"],
                interval_ms=options["interval_ms"],
                realtime=not options["fast"],
                firmware_public_key=firmware_key,
                failure_share=options["failure_share"],
                stats=stats,
                door_opens_per_hour=options["door_opens_per_hour"],
            )
            for spec in specs
        ]
        try:
            await run_devices(
                devices, duration_s=options["duration"], progress=sys.stdout, progress_every_s=options["progress_every"]
            )
        except asyncio.CancelledError:
            pass
