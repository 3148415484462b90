"""Firmware rollout benchmark: 2,000 simulated TLS devices, a 256 KiB image, waves of 1 %, 10 % and 100 %.

One process runs the gateway, the devices and the rollout tick (the beat task's service, every 0.5 s).
The fleet is split in two rollouts started together: one sends the whole image, one a bsdiff4 delta.

Reports, beside their baselines measured in the same run:
- time to complete both rollouts;
- image bytes per device, whole and delta (from the transfers' recorded offsets);
- chunk throughput of the gateway process while the rollouts ran (bar ≥ 20 MB/s);
- live ingest p95 (a device's batch → the gateway's ack) during the rollouts, beside the same fleet
  streaming without a rollout (bar ≤ 2×).

The device side shares the process and its CPU with the gateway, so every figure is a lower bound
for a gateway process of its own. BENCH_DEVICES overrides the fleet size.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from tempfile import mkdtemp

from _common import percentile, report, setup

DEVICES = int(os.environ.get("BENCH_DEVICES", "2000"))
IMAGE_SIZE = 256 * 1024
BASELINE_S = float(os.environ.get("BENCH_BASELINE_S", "15"))
# Each device sends a one-sample batch this often: the live ingest whose p95 is measured.
INTERVAL_MS = int(os.environ.get("BENCH_INTERVAL_MS", "5000"))


class TimedUnacked(OrderedDict):  # type: ignore[type-arg]
    """The simulator's unacked batches, remembering when each was queued and how long its ack took."""

    def __init__(self, sink: list[tuple[float, float]]) -> None:
        super().__init__()
        self.sink = sink
        self.sent_at: dict[int, float] = {}

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        self.sent_at.setdefault(key, time.monotonic())
        super().__setitem__(key, value)

    def pop(self, key, *default):  # type: ignore[no-untyped-def]
        value = super().pop(key, *default)
        started = self.sent_at.pop(key, None)
        if started is not None:
            now = time.monotonic()
            self.sink.append((now, (now - started) * 1000))
        return value


async def main() -> None:  # noqa: PLR0915
    from asgiref.sync import sync_to_async
    from django.db import connection

    from accounts.access import Access
    from accounts.models import Role, Tenant
    from devices.demo import METER_12
    from devices.keys import private_key_load
    from devices.models import Device, DeviceType, Facility
    from devices.services import device_provision
    from firmware.models import FirmwareTransfer, Rollout
    from firmware.planning import RolloutSpec
    from firmware.services import firmware_image_create
    from firmware.services.rollouts import rollout_create, rollout_tick
    from firmware.signing import signing_public_key
    from gateway.server import Gateway, GatewayConfig
    from gateway.simulator import ChannelSpec, DeviceSpec, SimulatedDevice
    from gateway.tls import client_context, dev_certificate, server_context

    def build():  # type: ignore[no-untyped-def]
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE firmware_rolloutdevice, firmware_rolloutwave, firmware_rollout_target_groups, "
                "firmware_rollout, firmware_firmwaretransfer, firmware_firmwaredelta, firmware_firmwareimage CASCADE"
            )
        run = time.time_ns() // 1_000_000  # serials are unique platform-wide: each run brings its own fleet
        tenant = Tenant.objects.create(slug=f"bench-rollout-{run}", name="bench rollout", kind=Tenant.Kind.ENTERPRISE)
        channels = [dict(c) for c in METER_12[:2]]
        device_type = DeviceType.objects.create(
            model_name=f"bench-rollout-{time.time_ns()}", channels=channels, firmware_line="bench-rollout"
        )
        facility = Facility.objects.create(tenant=tenant, name="bench site", timezone="Europe/Berlin")
        old = os.urandom(IMAGE_SIZE)
        new = bytearray(old)
        for offset in range(0, IMAGE_SIZE, 4096):  # a release that changes a little in every page
            new[offset : offset + 32] = os.urandom(32)
        old_image = firmware_image_create(firmware_line="bench-rollout", version="1.0.0", image=old)
        new_image = firmware_image_create(firmware_line="bench-rollout", version="1.1.0", image=bytes(new))
        issued = [
            device_provision(
                tenant=tenant,
                serial=f"BENCH-RO-{run}-{i:05d}",
                device_type=device_type,
                facility=facility,
                firmware_version="1.0.0",
            )
            for i in range(DEVICES)
        ]
        specs = [
            DeviceSpec(
                serial=k.device.serial,
                private_key=private_key_load(k.private_key_pem).private_bytes_raw(),
                channels=tuple(ChannelSpec(c["quantity"]) for c in channels),
                firmware_line="bench-rollout",
                firmware_version="1.0.0",
            )
            for k in issued
        ]
        return tenant, device_type, old_image, new_image, old, specs, [k.device.pk for k in issued]

    tenant, device_type, old_image, new_image, old_bytes, specs, device_ids = await sync_to_async(build)()
    public_key = await sync_to_async(signing_public_key)()
    folder = Path(mkdtemp())
    cert, key = dev_certificate(folder)
    config = GatewayConfig(idle_timeout_s=300, firmware_poll_s=0.5, presence_interval_s=2.0, rate_per_s=1000)
    gateway = Gateway(ssl_context=server_context(cert=cert, key=key), config=config, enqueue=lambda batches: None)
    _, port = await gateway.start(host="127.0.0.1", port=0)
    client_ctx = client_context(cafile=cert)
    acks: list[tuple[float, float]] = []
    devices = []
    for i, spec in enumerate(specs):
        device = SimulatedDevice(
            spec,
            host="127.0.0.1",
            port=port,
            ssl_context=client_ctx,
            batch=1,
            interval_ms=INTERVAL_MS,
            realtime=True,
            firmware_public_key=public_key,
            firmware_image=old_bytes,
            reconnect_delay_s=0.5,
            seed=i,
        )
        device.unacked = TimedUnacked(acks)
        devices.append(device)
    tasks = []
    for device in devices:
        tasks.append(asyncio.create_task(device.run()))
        await asyncio.sleep(0.002)

    def online() -> int:
        return Device.objects.filter(tenant=tenant, status=Device.Status.ONLINE).count()

    deadline = time.monotonic() + 300
    while await sync_to_async(online)() < DEVICES and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(1)
    connected_at = time.monotonic()
    online_at_start = await sync_to_async(online)()
    await asyncio.sleep(BASELINE_S)
    baseline = [ms for at, ms in acks if connected_at + 2 <= at]

    access = Access(tenant_id=tenant.pk, role=Role.ADMIN, facility_ids=None, user_id=None)
    half = len(device_ids) // 2

    def start():  # type: ignore[no-untyped-def]
        common = {
            "image": new_image,
            "device_type": device_type,
            "target_kind": Rollout.TargetKind.DEVICES,
            "wave_kind": Rollout.WaveKind.PERCENT,
            "wave_values": (1, 10, 100),
            "success_threshold_percent": 90,
            "device_timeout_s": 600,
        }
        whole = rollout_create(
            access=access,
            spec=RolloutSpec(name="whole", target_device_ids=device_ids[:half], delta_updates=False, **common),
        )
        delta = rollout_create(
            access=access, spec=RolloutSpec(name="delta", target_device_ids=device_ids[half:], **common)
        )
        return whole.pk, delta.pk

    started_at = time.monotonic()
    whole_id, delta_id = await sync_to_async(start)()
    bytes_before = gateway.stats.get("firmware_chunk_bytes", 0)
    stop_ticking = threading.Event()

    def ticking() -> None:
        while not stop_ticking.is_set():
            rollout_tick()
            stop_ticking.wait(0.5)
        connection.close()

    ticker = threading.Thread(target=ticking, daemon=True)
    ticker.start()

    def finished() -> bool:
        return not Rollout.objects.filter(pk__in=[whole_id, delta_id], state=Rollout.State.RUNNING).exists()

    first_chunk_at = last_chunk_at = None
    last_bytes = bytes_before
    peak = 0.0
    sampled_at = time.monotonic()
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        served = gateway.stats.get("firmware_chunk_bytes", 0)
        now = time.monotonic()
        if served != last_bytes:
            first_chunk_at = first_chunk_at or now
            last_chunk_at = now
            peak = max(peak, (served - last_bytes) / (now - sampled_at) / 1e6)
            last_bytes = served
        sampled_at = now
        if await sync_to_async(finished)():
            break
    completed_s = time.monotonic() - started_at
    during = [ms for at, ms in acks if started_at <= at <= started_at + completed_s]
    stop_ticking.set()
    ticker.join(10)
    for device in devices:
        device.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await gateway.shutdown()

    def outcome():  # type: ignore[no-untyped-def]
        states = dict(Rollout.objects.filter(pk__in=[whole_id, delta_id]).values_list("name", "state"))
        rows = FirmwareTransfer.objects.filter(state=FirmwareTransfer.State.INSTALLED).values_list("delta_id", "offset")
        whole = [offset for delta, offset in rows if delta is None]
        delta = [offset for delta, offset in rows if delta is not None]
        return states, whole, delta

    states, whole_bytes, delta_bytes = await sync_to_async(outcome)()
    served_bytes = last_bytes - bytes_before
    serving_s = (last_chunk_at - first_chunk_at) if first_chunk_at and last_chunk_at else 0
    throughput = served_bytes / serving_s / 1e6 if serving_s else 0.0
    p95_base = percentile(baseline, 95) if baseline else 0.0
    p95_during = percentile(during, 95) if during else 0.0
    report(
        {
            "benchmark": "rollout",
            "devices": DEVICES,
            "devices_online_at_start": online_at_start,
            "batch_interval_ms": INTERVAL_MS,
            "image_bytes": IMAGE_SIZE,
            "waves_percent": [1, 10, 100],
            "rollout_states": states,
            "time_to_complete_s": round(completed_s, 1),
            "installed_whole": len(whole_bytes),
            "installed_delta": len(delta_bytes),
            "bytes_per_device_whole": round(sum(whole_bytes) / len(whole_bytes)) if whole_bytes else None,
            "bytes_per_device_delta": round(sum(delta_bytes) / len(delta_bytes)) if delta_bytes else None,
            "chunk_bytes_served": served_bytes,
            "chunk_throughput_mb_s_average_while_serving": round(throughput, 2),
            "chunk_throughput_mb_s_peak_half_second": round(peak, 2),
            "chunk_throughput_bar_mb_s": 20,
            "ingest_ack_p95_ms_without_rollout": round(p95_base, 1),
            "ingest_ack_p95_ms_during_rollout": round(p95_during, 1),
            "ingest_p95_ratio": round(p95_during / p95_base, 2) if p95_base else None,
            "ingest_p95_ratio_bar": 2.0,
            "ingest_samples": {"without": len(baseline), "during": len(during)},
            "note": "one process holds the gateway, all simulated devices and the tick; shared, loaded 2-core machine",
        }
    )


if __name__ == "__main__":
    setup()
    asyncio.run(main())
