"""The gateway cluster under a fleet: 2 gateways behind HAProxy, 2 ingest workers, one gateway SIGKILLed.

Real processes: two `manage.py rungateway` behind HAProxy in TCP mode (`gateway/haproxy.py`), two
Celery workers on RabbitMQ (CELERY_BROKER_URL, use a vhost of your own), Redis for the channel layer
and the cluster's ownership keys, PostgreSQL (BENCH_DATABASE_URL). The devices run in one child
process over TLS through HAProxy: 10 % stream a batch every 2 s (live cadence), the rest batch 15
samples (one frame per 30 s). Mid-run the first gateway is SIGKILLed; its devices reconnect through
HAProxy to the survivor (jittered exponential backoff) and resend what was unacked.

Reported, with the devices' acked batches as the ledger:
  - seconds until every device is connected again, and the reconnect handshakes/s of that storm;
  - readings acked but not stored, and readings stored twice (after compaction): both must be 0;
  - the live p95 (device frame written → the message on the channel layer) before, during, after;
  - baseline in the same run: a bare channel-layer round trip.

    .venv/bin/python bench/scale.py [--devices 20000] [--seconds 120] [--kill-at 50] [--cpu-hog]

`--cpu-hog` adds a busy process that takes one core for the whole run (the issue's overload case):
compare devices connected near the end, reconnects and acked-but-not-stored with a run without it.

The issue's figure is 20,000 devices; a loaded 2-core machine runs a few hundred (say so with the
figure). Prints progress, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is this script's folder, so it is on sys.path; the fleet, the tap and the baseline are live_latency's.
from live_latency import Child, baseline, configure, percentiles, provision, purge_ingest_queue, tap

LIVE_SHARE = 0.1
INTERVAL_MS = 2000


def log(message: str) -> None:
    print(f"[scale] {message}", flush=True)


def simulate(specs: list[dict], port: int, cafile: str, seconds: float, out_path: str) -> None:
    """Child process: the fleet. Records live frames' send times, acked batches and connected counts."""
    from benchlib import raise_nofile

    from gateway import protocol as p
    from gateway.simulator import ChannelSpec, DeviceSpec, SimStats, SimulatedDevice
    from gateway.tls import client_context

    raise_nofile()
    sent: list[tuple[int, int, float]] = []
    timeline: list[tuple[float, int]] = []

    class TimedDevice(SimulatedDevice):
        device_id = 0
        live = False

        def _generate(self):  # type: ignore[no-untyped-def]
            batch = super()._generate()
            self._batch_start = batch.start_ms
            return batch

        def _send(self, writer, frame_type, payload, flags=0):  # type: ignore[no-untyped-def]
            super()._send(writer, frame_type, payload, flags)
            if self.live and frame_type == p.FrameType.READINGS and not flags & p.Flag.RESEND:
                sent.append((self.device_id, self._batch_start, time.time()))

    async def main() -> tuple[SimStats, list[TimedDevice]]:
        context = client_context(cafile=Path(cafile))
        stats = SimStats(devices=len(specs))
        now = time.time_ns() // 1_000_000
        rng = np.random.default_rng(5)
        devices = []
        for n, spec in enumerate(specs):
            live = n < max(1, int(len(specs) * LIVE_SHARE))
            batch = 1 if live else 15
            device = TimedDevice(
                DeviceSpec(
                    serial=spec["serial"],
                    private_key=spec["key"],
                    channels=tuple(ChannelSpec(q, s, ph) for q, s, ph in spec["channels"]),
                    load_kind="mains",
                ),
                host="127.0.0.1",
                port=port,
                ssl_context=context,
                batch=batch,
                interval_ms=INTERVAL_MS,
                realtime=True,
                start_ms=now - batch * INTERVAL_MS + int(rng.integers(0, batch * INTERVAL_MS)),
                stats=stats,
                seed=spec["device_id"],
                record=True,
                reconnect_delay_s=0.5,
                reconnect_max_s=8.0,
            )
            device.device_id, device.live = spec["device_id"], live
            devices.append(device)

        async def sample() -> None:
            while True:
                timeline.append((time.time(), stats.connected))
                await asyncio.sleep(0.1)

        async def run(device: SimulatedDevice, delay: float) -> None:
            await asyncio.sleep(delay)
            await device.run(duration_s=seconds - delay)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(run(d, i * 0.005) for i, d in enumerate(devices)))
        sampler.cancel()
        return stats, devices

    stats, devices = asyncio.run(main())
    acked = {
        d.device_id: [(b.start_ms, b.interval_ms, int(b.raw.shape[0]), int(b.raw.shape[1])) for b in d.acked]
        for d in devices
    }
    Path(out_path).write_text(
        json.dumps(
            {
                "sent": sent,
                "timeline": timeline,
                "acked": acked,
                "reconnects": stats.reconnects,
                "unacked_at_end": sum(len(d.unacked) for d in devices),
                "stats": stats.line(),
            }
        )
    )


def ledger_check(acked: dict[str, list]) -> dict[str, int]:
    """Acked (channel, timestamp) keys against the store, and physical copies after compaction."""
    from devices.models import Channel, Device
    from readings import metadata
    from readings.models import Bucket
    from readings.services import readings_compact
    from readings.store import get_store

    expected: set[tuple[int, int]] = set()
    tenant_id = 0
    channel_ids: list[int] = []
    for device_id, batches in acked.items():
        device = Device.objects.get(pk=int(device_id))
        tenant_id = device.tenant_id
        ids = list(Channel.objects.filter(device=device).order_by("index").values_list("id", flat=True))
        channel_ids += ids
        for start_ms, interval_ms, channels, samples in batches:
            for ts in range(start_ms, start_ms + interval_ms * samples, interval_ms):
                expected.update((channel_id, ts) for channel_id in ids[:channels])
    stored_series = get_store().read(tenant_id=tenant_id, channel_ids=channel_ids, start_ms=0, end_ms=2**62)
    stored = {(c, int(ts)) for c, series in stored_series.items() for ts in series.timestamps_ms}
    metadata.clear_caches()
    readings_compact(max_windows=100_000)
    physical = sum(Bucket.objects.filter(channel_id__in=channel_ids).values_list("count", flat=True))
    return {
        "readings_acked": len(expected),
        "acked_not_stored": len(expected - stored),
        "stored_twice": int(physical) - len(stored),
    }


def phases(sent, arrivals, warm_at: float, kill_at: float, back_at: float | None, end: float) -> dict[str, dict]:
    first: dict[tuple[int, int], float] = {}
    for device_id, ts, at in arrivals:
        first.setdefault((device_id, ts), at)
    windows = {"before": (warm_at, kill_at), "during": (kill_at, back_at or end), "after": (back_at or end, end)}
    out = {}
    for name, (start, stop) in windows.items():
        latencies = [(first[(d, ts)] - t) * 1000 for d, ts, t in sent if start <= t < stop and (d, ts) in first]
        lost = sum(1 for d, ts, t in sent if start <= t < stop and (d, ts) not in first)
        out[name] = {**percentiles(latencies), "frames": len(latencies), "not_published": lost}
    return out


def _spin() -> None:
    """The CPU hog: one process that never sleeps."""
    while True:
        pass


def _read_once(path: str) -> dict:
    data = json.loads(Path(path).read_text())
    os.unlink(path)
    return data


async def measure(args, specs, facility_ids, port: int, cafile: str, victim: Child) -> dict:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    arrivals: list[tuple[int, int, float]] = []
    base: list[float] = []
    tapper = asyncio.create_task(tap(facility_ids, arrivals, stop))
    pinger = asyncio.create_task(baseline(base, stop))
    out_path = tempfile.mktemp(prefix="bench-scale-", suffix=".json")  # noqa: S306 - the child writes it
    sim = multiprocessing.get_context("spawn").Process(
        target=simulate, args=(specs, port, cafile, args.seconds, out_path)
    )
    started = time.time()
    sim.start()
    await asyncio.sleep(args.kill_at)
    kill_at = time.time()
    os.kill(victim.proc.pid, signal.SIGKILL)
    log(f"SIGKILLed gateway pid {victim.proc.pid} at {kill_at - started:.0f} s")
    await asyncio.get_running_loop().run_in_executor(None, sim.join, args.seconds + 120)
    stop.set()
    await asyncio.gather(tapper, pinger, return_exceptions=True)
    data = _read_once(out_path)
    log(f"simulator: {data['stats']}")
    timeline = data["timeline"]
    before = max((c for t, c in timeline if t < kill_at), default=0)
    after_kill = [(t, c) for t, c in timeline if t >= kill_at]
    back_at = next((t for t, c in after_kill if c >= len(specs) and t > kill_at + 0.5), None)
    # The devices that lost their gateway: the dip between the kill and everyone being back.
    low = min((c for t, c in after_kill if back_at is None or t <= back_at), default=before)
    reconnected = len(specs) - low
    recovery = None if back_at is None else back_at - kill_at
    return {
        "devices": len(specs),
        "live_devices": max(1, int(len(specs) * LIVE_SHARE)),
        "connected_before_kill": before,
        # 3 s before the fleet's planned end (devices that reached it stop, which is not a drop).
        "connected_near_end": next((c for t, c in reversed(timeline) if t <= started + args.seconds - 3), 0),
        "batches_unacked_at_end": data["unacked_at_end"],
        "lowest_after_kill": low,
        "seconds_until_all_reconnected": None if recovery is None else round(recovery, 2),
        "reconnect_handshakes_per_s": None if not recovery else round(reconnected / recovery, 1),
        "reconnects": data["reconnects"],
        # "before" starts once the fleet has connected and warmed up (10 s, or half-way to the kill).
        "live": phases(data["sent"], arrivals, started + min(10.0, args.kill_at / 2), kill_at, back_at, time.time()),
        "baseline_channel_layer": {"what": "group_send -> receive, bare Redis channel layer", **percentiles(base)},
        "_acked": data["acked"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--facilities", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120, help="fleet run time")
    parser.add_argument("--kill-at", type=float, default=50, help="seconds into the run the first gateway dies")
    parser.add_argument("--cpu-hog", action="store_true", help="a busy process takes one core for the whole run")
    args = parser.parse_args()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        raise SystemExit("bench: set CELERY_BROKER_URL to a RabbitMQ vhost of your own (amqp://…/vhost)")
    env = configure()
    from django.db import connections

    from gateway.tests.processes import free_port, start_haproxy, wait_listening
    from gateway.tls import dev_certificate

    specs, by_facility, _ = provision(devices=args.devices, facilities=args.facilities)
    facility_ids = list(by_facility)
    connections.close_all()
    log(f"provisioned {len(specs)} devices in {len(facility_ids)} facilities")
    data = Path(env["ENERGYBOX_DATA_DIR"])
    cert, key = dev_certificate(data)
    python = sys.executable
    purge_ingest_queue()
    worker_argv = [python, "-m", "celery", "-A", "energybox", "worker", "-Q", "readings,celery", "-c", "1"]
    workers = [
        Child(f"worker{n}", [*worker_argv, "--hostname", f"scale{n}@%h", "--without-gossip", "-l", "WARNING"], env)
        for n in range(2)
    ]
    ports = [free_port(), free_port()]
    gateway_argv = [python, "manage.py", "rungateway", "--cert", str(cert), "--key", str(key), "--stats-every", "10"]
    gateways = [Child(f"gateway{n}", [*gateway_argv, "--port", str(port)], env) for n, port in enumerate(ports)]
    haproxy = None
    hog = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) if args.cpu_hog else None
    if hog is not None:
        hog.start()
    try:
        for port, gateway in zip(ports, gateways, strict=True):
            wait_listening(port, process=gateway.proc, timeout=240)
        front = free_port()
        haproxy = start_haproxy(folder=data, frontend_port=front, backend_ports=ports)
        log(f"HAProxy :{front} → gateways {ports}; 2 workers")
        result = asyncio.run(measure(args, specs, facility_ids, front, str(cert), gateways[0]))
        acked = result.pop("_acked")
        log("waiting for the workers to store every acked reading")
        deadline = time.monotonic() + 300
        check = ledger_check(acked)
        while check["acked_not_stored"] and time.monotonic() < deadline:
            time.sleep(5)
            check = ledger_check(acked)
        result.update(check)
    finally:
        for child in [*gateways, *workers]:
            child.stop()
        for gateway in gateways:
            for line in [line for line in gateway.lines if "devices connected" in line][-1:] + gateway.lines[-2:]:
                log(f"{gateway.name}: {line[:400]}")
        if hog is not None:
            hog.terminate()
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        connections.close_all()
    result["cpu_hog"] = args.cpu_hog
    result["machine"] = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
