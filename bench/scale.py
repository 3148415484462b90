"""The gateway cluster under a fleet: 2 gateways behind HAProxy, 2 ingest workers, one gateway SIGKILLed.

Real processes: two `manage.py rungateway` behind HAProxy in TCP mode (`gateway/haproxy.py`), two
Celery workers on RabbitMQ (CELERY_BROKER_URL, use a vhost of your own), Redis for the channel layer
and the cluster's ownership keys, PostgreSQL (BENCH_DATABASE_URL). The devices run over TLS through
HAProxy, spread over `--sim-processes` child processes (one event loop each). 10 % of them are
watched: this process holds a live lease on each (the control bus's `device.live`, renewed every 5 s,
as a dashboard's socket does), so the gateway switches them to live mode (a frame every 2 s); the
rest batch 15 samples (one frame per 30 s). Overload mode is on (rungateway's default), and it must
leave the watched devices live. Mid-run the first gateway is SIGKILLed; its devices reconnect through
HAProxy to the survivor (jittered exponential backoff) and resend what was unacked.

Reported, with the devices' acked batches as the ledger:
  - seconds until every device is connected again, and the reconnect handshakes/s of that storm;
  - readings acked but not stored, and readings stored twice (after compaction): both must be 0;
  - the live p95 (a watched device's frame written → the message on the channel layer) before the
    kill, during the reconnect storm, and after everyone is back;
  - baseline in the same run: a bare channel-layer round trip.

    .venv/bin/python bench/scale.py [--devices 20000] [--sim-processes N] [--connect-rate 70]
                                    [--seconds S] [--kill-at K] [--cpu-hog]

Connections: the devices start staggered at `--connect-rate` a second (default 70, the issue's
figure for full TLS + Ed25519 handshakes; a fleet does not power up in one instant, and on this
machine 100/s for 2,000 devices ended with a quarter of them connected and thousands of handshake
timeouts). TLS session resumption does not help the first connect (there is no session yet), and
bench/tls_resumption.py measured it at 1.08x for reconnects, so the ramp is staggered instead. The
kill comes `--kill-at` seconds in (default: 20 s after the ramp), the run lasts `--seconds` (default: the
kill plus the storm, the killed gateway's share of the fleet at 70 handshakes/s, plus 60 s). The fd
limit is raised for every process (the hard limit too where that is allowed; HAProxy needs two
descriptors per device). New devices are provisioned in bulk (`device_bulk_provision`, as a CSV
import), and their keys kept in `/tmp/energybox-bench-scale-<db>.json`, so a later run at the same
size reuses them (a key that no longer matches is rotated).

Where the fd limit cannot be raised (a container without CAP_SYS_RESOURCE: 20,000 here), one
process cannot hold 20,000 TLS connections, and HAProxy needs two descriptors a connection: the
bench then runs as many HAProxy fronts as the limit needs (the devices split over them, as behind
DNS round robin) and enough gateways that the survivors of the kill can hold the fleet (3 for
20,000 at 20,000 fds); the JSON says how many.

`--cpu-hog` adds a busy process that takes one core for the whole run (the issue's overload case).
Prints progress, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

# bench/ is this script's folder, so it is on sys.path; the tap and the baseline are live_latency's.
from live_latency import Child, baseline, configure, percentiles, purge_ingest_queue

LIVE_SHARE = 0.1
INTERVAL_MS = 2000
BATCH = 15
LEASE_S = 30
LEASE_EVERY_S = 5.0
FD_LIMIT = 262_144
TICKS_PER_S = 2
LIVE_STATS = re.compile(
    r"live sent (\d+) dropped (\d+) failed (\d+)"
)  # connected counts are summed over the simulator processes per half second


def log(message: str) -> None:
    print(f"[scale] {message}", flush=True)


def raise_fd_limit(want: int = FD_LIMIT) -> int:
    """As high as the process may go (children inherit it): the hard limit too, where that is allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:  # root with CAP_SYS_RESOURCE; a container without it keeps its hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


# --- What each process costs ---------------------------------------------------------------------------


class ProcessWatch:
    """CPU seconds and peak resident memory per role (gateway, worker, simulator, haproxy), from /proc.

    A thread samples every process (and its children: a Celery worker's pool) every 2 s, so a process
    that is killed keeps the figures of its last sample. Divided by the devices, these are the per-device
    costs the sizing in docs/operations.md extrapolates from.
    """

    def __init__(self) -> None:
        self._roles: dict[int, str] = {}
        self._cpu: dict[int, float] = {}
        self._rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")
        self._marks: dict[str, tuple[float, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def add(self, role: str, pid: int | None) -> None:
        if pid is not None:
            self._roles[pid] = role

    def start(self) -> None:
        self._thread.start()

    def mark(self, name: str) -> None:
        """CPU seconds per role now (the JSON's `cpu_s_at`), to tell the ramp's cost from the steady state's."""
        self._sample()
        self._marks[name] = (time.monotonic(), {role: self._cpu_of(role) for role in set(self._roles.values())})

    def _cpu_of(self, role: str) -> float:
        return sum(self._cpu.get(pid, 0.0) for pid, r in self._roles.items() if r == role)

    def _tree(self, pid: int) -> list[int]:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                pids += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
        return pids

    def _sample(self) -> None:
        with self._lock:
            self._sample_locked()

    def _sample_locked(self) -> None:
        for pid in list(self._roles):
            cpu, rss = 0.0, 0
            try:
                for member in self._tree(pid):
                    fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu += (int(fields[11]) + int(fields[12])) / self._tick
                    rss += int(fields[21]) * resource.getpagesize()
            except (OSError, IndexError, ValueError):
                continue  # gone (the killed gateway): its last sample stands
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), cpu)
            self._rss[pid] = max(self._rss.get(pid, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(2.0):
            self._sample()

    def report(self, devices: int) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._sample()
        out: dict[str, dict[str, float]] = {}
        for role in sorted(set(self._roles.values())):
            pids = [pid for pid, r in self._roles.items() if r == role]
            cpu = sum(self._cpu.get(pid, 0.0) for pid in pids)
            peak = max((self._rss.get(pid, 0) for pid in pids), default=0)
            out[role] = {
                "processes": len(pids),
                "cpu_s": round(cpu, 1),
                "cpu_ms_per_device": round(1000 * cpu / devices, 1),
                "peak_rss_mb_per_process": round(peak / 2**20, 1),
                "peak_rss_kb_per_device_all": round(sum(self._rss.get(pid, 0) for pid in pids) / 1024 / devices, 1),
            }
        # Between two marks: CPU seconds per role per second of wall time (cores busy), e.g. from the
        # end of the ramp to the kill, the steady state of the whole fleet.
        names = list(self._marks)
        for first, second in zip(names, names[1:], strict=False):
            (t0, cpu0), (t1, cpu1) = self._marks[first], self._marks[second]
            for role, entry in out.items():
                entry[f"cores_{first}_to_{second}"] = round((cpu1.get(role, 0.0) - cpu0.get(role, 0.0)) / (t1 - t0), 3)
        return out


# --- Provisioning ------------------------------------------------------------------------------------


def provision(*, devices: int, facilities: int, cache: Path) -> tuple[list[dict], dict[int, list[int]]]:
    """12-channel meters in `facilities` sites, new ones in bulk (`device_bulk_provision`, as a CSV
    import does); keys that are still the device's are reused from `cache`, others are rotated."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from accounts.access import Access
    from accounts.models import Role, Tenant
    from devices.csvimport import BulkRow
    from devices.demo import METER_12
    from devices.keys import private_key_load
    from devices.models import Channel, Device, DeviceType, Facility, Load
    from devices.services import (
        device_bulk_provision,
        device_key_rotate,
        device_type_create,
        facility_create,
        load_create,
    )

    keys: dict[str, str] = json.loads(cache.read_text()) if cache.exists() else {}
    tenant, _ = Tenant.objects.get_or_create(
        slug="bench-scale", defaults={"name": "Bench scale", "kind": Tenant.Kind.ENTERPRISE}
    )
    meter = DeviceType.objects.filter(model_name="bench-scale-m12").first() or device_type_create(
        model_name="bench-scale-m12", channels=METER_12, firmware_line="eb-meter"
    )
    per_facility = math.ceil(devices / facilities)
    plan: list[tuple[str, Facility]] = []
    for f in range(facilities):
        facility = Facility.objects.filter(tenant=tenant, name=f"Site {f:03d}").first() or facility_create(
            tenant=tenant, name=f"Site {f:03d}", timezone="Europe/Berlin", kind=Facility.Kind.SUPERMARKET
        )
        if not Load.objects.filter(facility=facility, name="Mains").exists():
            load_create(facility=facility, name="Mains", kind=Load.Kind.MAINS)
        plan += [(f"BS-{f:03d}-{d:05d}", facility) for d in range(min(per_facility, devices - len(plan)))]
    existing = {d.serial: d for d in Device.objects.filter(tenant=tenant, serial__in=[s for s, _ in plan])}
    missing = [(serial, facility) for serial, facility in plan if serial not in existing]
    if missing:
        access = Access(tenant_id=tenant.pk, role=Role.ADMIN, facility_ids=None)
        mains = tuple((str(i), "Mains") for i in range(len(METER_12)))
        rows = [
            BulkRow(line=n + 1, serial=serial, device_type=meter.model_name, facility=facility.name, allocations=mains)
            for n, (serial, facility) in enumerate(missing)
        ]
        result = device_bulk_provision(
            access=access, rows=rows, progress=lambda done, total: log(f"  provisioned {done}/{total} new devices")
        )
        if not result.ok:
            raise SystemExit(f"bench: provisioning failed: {list(result.errors.items())[:3]}")
        for item in result.issued:
            keys[item.device.serial] = private_key_load(item.private_key_pem).private_bytes_raw().hex()
            existing[item.device.serial] = item.device
    rotated = 0
    for serial, _facility in plan:
        device = existing[serial]
        seed = bytes.fromhex(keys[serial]) if serial in keys else None
        public = (
            Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            if seed
            else None
        )
        if device.public_key is None or public is None or bytes(device.public_key) != public:
            issued = device_key_rotate(device=device)
            keys[serial] = private_key_load(issued.private_key_pem).private_bytes_raw().hex()
            rotated += 1
    cache.write_text(json.dumps(keys))
    log(f"  {len(missing)} devices new, {rotated} keys rotated, {len(plan) - len(missing) - rotated} reused")
    channels_of: dict[int, list[tuple[str, float, str]]] = defaultdict(list)
    for device_id, quantity, scale, phase in (
        Channel.objects.filter(device__tenant=tenant)
        .order_by("device_id", "index")
        .values_list("device_id", "quantity", "scale", "phase")
    ):
        channels_of[device_id].append((quantity, scale, phase))
    specs: list[dict] = []
    by_facility: dict[int, list[int]] = defaultdict(list)
    for serial, facility in plan:
        device = existing[serial]
        by_facility[facility.pk].append(device.pk)
        specs.append(
            {
                "device_id": device.pk,
                "serial": serial,
                "key": bytes.fromhex(keys[serial]),
                "channels": channels_of[device.pk],
            }
        )
    return specs, dict(by_facility)


# --- The fleet (child processes) -------------------------------------------------------------------


def simulate(specs: list[dict], watched: list[int], cafile: str, plan: dict, out_path: str, live_counts) -> None:  # type: ignore[no-untyped-def]
    """One child process's share of the fleet: records watched devices' live frames, acks, connected counts.

    `live_counts[plan["index"]]` is kept at this process's connected count, for the parent's progress lines.
    """
    import asyncio.sslproto

    from gateway import protocol as p
    from gateway.simulator import ChannelSpec, DeviceSpec, SimStats, SimulatedDevice
    from gateway.tls import client_context

    raise_fd_limit()
    # asyncio gives every TLS connection a 256 KiB read buffer; a device reads frames of a few hundred
    # bytes. The gateway cuts it to 16 KiB the same way (Gateway.start).
    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024
    sent: list[tuple[int, int, float]] = []
    timeline: dict[int, int] = {}
    watched_ids = set(watched)

    class TimedDevice(SimulatedDevice):
        device_id = 0

        def _generate(self, samples=None):  # type: ignore[no-untyped-def]
            batch = super()._generate(samples)
            self._batch_start = batch.start_ms
            return batch

        def _send(self, writer, frame_type, payload, flags=0):  # type: ignore[no-untyped-def]
            super()._send(writer, frame_type, payload, flags)
            if self.live and frame_type == p.FrameType.READINGS and not flags & p.Flag.RESEND:
                sent.append((self.device_id, self._batch_start, time.time()))

        def _send_compact(self, writer, batch):  # type: ignore[no-untyped-def]
            super()._send_compact(writer, batch)  # a live frame (protocol version 2)
            sent.append((self.device_id, batch.start_ms, time.time()))

    async def main() -> tuple[SimStats, list[TimedDevice]]:
        context = client_context(cafile=Path(cafile))
        stats = SimStats(devices=len(specs))
        rng = np.random.default_rng(plan["seed"])
        # Staggered over the whole fleet: this process's n-th device starts at its slot of the ramp.
        slots = plan["first_slot"] + np.arange(len(specs)) * plan["slot_every"]
        starts = plan["start"] + slots / plan["rate"]
        devices = []
        for spec, at in zip(specs, starts, strict=True):
            # A device powers up at its slot with at most one batch buffered (live sample times are whole
            # 10 ms), not with every sample since the bench began: a late device would otherwise open with
            # a burst of catch-up batches, and the fleet would store readings it never had to measure.
            at_ms = int(at * 1000) // 10 * 10
            device = TimedDevice(
                DeviceSpec(
                    serial=spec["serial"],
                    private_key=spec["key"],
                    channels=tuple(ChannelSpec(q, s, ph) for q, s, ph in spec["channels"]),
                    load_kind="mains",
                ),
                host="127.0.0.1",
                port=spec["port"],  # one of the HAProxy fronts (a fleet behind DNS round robin)
                ssl_context=context,
                batch=BATCH,
                interval_ms=INTERVAL_MS,
                realtime=True,
                start_ms=at_ms - BATCH * INTERVAL_MS + 10 * int(rng.integers(0, BATCH * INTERVAL_MS // 10)),
                stats=stats,
                seed=spec["device_id"],
                record=True,
                reconnect_delay_s=0.5,
                reconnect_max_s=8.0,
            )
            device.device_id = spec["device_id"]
            devices.append(device)

        async def sample() -> None:
            while True:
                timeline[int(time.time() * TICKS_PER_S)] = stats.connected
                live_counts[plan["index"]] = stats.connected
                await asyncio.sleep(0.5 / TICKS_PER_S)

        async def run(device: SimulatedDevice, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.time()))
            await device.run(duration_s=plan["end"] - time.time())

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(run(d, float(at)) for d, at in zip(devices, starts, strict=True)))
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
                "sent": [s for s in sent if s[0] in watched_ids],
                "timeline": timeline,
                "acked": acked,
                "reconnects": stats.reconnects,
                "unacked_at_end": sum(len(d.unacked) for d in devices),
                "stats": stats.line(),
            }
        )
    )


# --- The ledger ----------------------------------------------------------------------------------------


def _keys(channel_ids: np.ndarray, timestamps_ms: np.ndarray) -> np.ndarray:
    # (channel, ms) packed in one int64: ms < 2**41 until the year 2039, channel ids < 2**22.
    return (channel_ids.astype(np.int64) << 41) | timestamps_ms.astype(np.int64)


def ledger_check(acked: dict[str, list], *, chunk: int = 500) -> dict[str, int]:
    """Acked (channel, timestamp) keys against the store, and physical copies after compaction, by chunks.

    A reading can be stored twice only where two buckets of a channel overlap (a batch that came again:
    a resend after the kill, a redelivered message). Compaction merges a window's buckets, so it is run
    only on the channels whose buckets hold more readings than distinct timestamps; every other window
    would compact to exactly the copies it has. Compacting the whole store instead (one transaction per
    channel and day) took 243 s for 2,000 devices on the loaded machine: 2 hours for 20,000.
    """
    from django.db.models import Sum

    from devices.models import Channel, Device
    from readings import metadata
    from readings.models import Bucket
    from readings.services import readings_compact
    from readings.store import get_store

    device_ids = sorted(int(d) for d in acked)
    tenant_of = dict(Device.objects.filter(pk__in=device_ids).values_list("pk", "tenant_id"))
    channels: dict[int, list[int]] = defaultdict(list)
    for device_id, channel_id in (
        Channel.objects.filter(device_id__in=device_ids).order_by("device_id", "index").values_list("device_id", "id")
    ):
        channels[device_id].append(channel_id)
    metadata.clear_caches()
    store = get_store()

    def copies(channel_ids: list[int]) -> dict[int, int]:
        rows = Bucket.objects.filter(channel_id__in=channel_ids).values("channel_id").annotate(n=Sum("count"))
        return {row["channel_id"]: int(row["n"]) for row in rows}

    expected_total = not_stored = 0
    overlapping: dict[int, list[int]] = defaultdict(list)  # tenant → channels with more copies than readings
    started = time.monotonic()
    for start in range(0, len(device_ids), chunk):
        part = device_ids[start : start + chunk]
        pieces = []
        for device_id in part:
            ids = np.array(channels[device_id], dtype=np.int64)
            for start_ms, interval_ms, n_channels, samples in acked[str(device_id)]:
                stamps = start_ms + interval_ms * np.arange(samples, dtype=np.int64)
                pieces.append(_keys(np.repeat(ids[:n_channels], samples), np.tile(stamps, n_channels)))
        expected = np.unique(np.concatenate(pieces)) if pieces else np.zeros(0, dtype=np.int64)
        channel_ids = [c for d in part for c in channels[d]]
        series = store.read(tenant_id=tenant_of[part[0]], channel_ids=channel_ids, start_ms=0, end_ms=2**62)
        stored = np.unique(
            np.concatenate(
                [_keys(np.full(len(s.timestamps_ms), c), np.asarray(s.timestamps_ms)) for c, s in series.items()]
                or [np.zeros(0, dtype=np.int64)]
            )
        )
        expected_total += len(expected)
        not_stored += len(np.setdiff1d(expected, stored, assume_unique=True))
        distinct = {c: len(s.timestamps_ms) for c, s in series.items()}
        for channel_id, n in copies(channel_ids).items():
            if n > distinct.get(channel_id, 0):
                overlapping[tenant_of[part[0]]].append(channel_id)
        if start and start // chunk % 10 == 0:
            log(f"  ledger: {start:,}/{len(device_ids):,} devices read back in {time.monotonic() - started:.0f} s")
    stored_twice = windows = 0
    for tenant_id, channel_ids in overlapping.items():
        # Overlapping windows only, in the store's own transaction per window (as the beat task compacts).
        windows += readings_compact(max_windows=2**31 - 1, tenant_id=tenant_id, channel_ids=channel_ids)
        series = store.read(tenant_id=tenant_id, channel_ids=channel_ids, start_ms=0, end_ms=2**62)
        after = copies(channel_ids)
        stored_twice += sum(after.get(c, 0) - len(series[c].timestamps_ms) if c in series else 0 for c in channel_ids)
    log(
        f"  ledger: read back in {time.monotonic() - started:.0f} s; "
        f"{sum(map(len, overlapping.values())):,} channels had overlapping batches, {windows:,} windows compacted"
    )
    return {
        "readings_acked": expected_total,
        "acked_not_stored": not_stored,
        "stored_twice": stored_twice,
        "channels_with_overlapping_batches": sum(map(len, overlapping.values())),
    }


# --- Measuring ---------------------------------------------------------------------------------------


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


def ingest_queue_depth() -> int:
    """Messages in the ingest queue, ready or delivered and not yet acked by a worker."""
    import kombu
    from django.conf import settings

    queue = settings.CELERY_TASK_ROUTES["readings.ingest"]["queue"]
    with kombu.Connection(os.environ["CELERY_BROKER_URL"]) as connection:
        channel = connection.channel()
        try:
            _, ready, _ = channel.queue_declare(queue, passive=True)
        finally:
            channel.close()
    # `ready` leaves out what a worker holds unacked; the ledger re-checks until nothing is missing.
    return int(ready)


def _spin() -> None:
    """The CPU hog: one process that never sleeps."""
    while True:
        pass


def _read_once(path: str) -> dict:
    data = json.loads(Path(path).read_text())
    os.unlink(path)
    return data


async def tap(facility_ids: list[int], arrivals: list[tuple[int, int, float]], stop: asyncio.Event) -> None:
    """A bare channel in every facility group: when the gateway's messages reach the channel layer.

    One receive that is never cancelled until the end (a receive cancelled by a timeout every half
    second stalled the pub/sub layer's channel under load: live_latency's tap saw no more messages).
    """
    from channels.layers import get_channel_layer

    from readings.live import batch_readings, facility_group

    layer = get_channel_layer()
    channel = await layer.new_channel()
    for facility_id in facility_ids:
        await layer.group_add(facility_group(facility_id), channel)

    async def receive() -> None:
        while True:
            message = await layer.receive(channel)
            at = time.time()
            if message.get("type") == "readings.live":
                for batch in message["batches"]:
                    for ts in batch_readings(batch)[0]:
                        arrivals.append((batch["device_id"], ts, at))

    receiver = asyncio.create_task(receive())
    await stop.wait()
    receiver.cancel()
    results = await asyncio.gather(receiver, return_exceptions=True)
    if results and isinstance(results[0], Exception) and not isinstance(results[0], asyncio.CancelledError):
        log(f"the tap failed: {results[0]!r}")


async def leases(watched: list[int], stop: asyncio.Event) -> None:
    """What the watched devices' dashboards do: a live lease each, renewed, released at the end."""
    from channels.layers import get_channel_layer

    from devices.control import LIVE, device_control_send_async

    layer = get_channel_layer()

    async def send(lease_s: int) -> None:
        for start in range(0, len(watched), 500):
            await asyncio.gather(
                *(
                    device_control_send_async(
                        device_id=d, kind=LIVE, layer=layer, viewer="bench-scale", lease_s=lease_s
                    )
                    for d in watched[start : start + 500]
                )
            )

    while not stop.is_set():
        await send(LEASE_S)
        try:
            await asyncio.wait_for(stop.wait(), LEASE_EVERY_S)
        except TimeoutError:
            pass
    await send(0)


async def measure(args, specs, facility_ids, cafile: str, victim: Child, watch: ProcessWatch) -> dict:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    arrivals: list[tuple[int, int, float]] = []
    base: list[float] = []
    watched = [s["device_id"] for s in specs[: max(1, int(len(specs) * LIVE_SHARE))]]
    tapper = asyncio.create_task(tap(facility_ids, arrivals, stop))
    pinger = asyncio.create_task(baseline(base, stop))
    leaser = asyncio.create_task(leases(watched, stop))
    started = time.time() + 3.0  # the children need a moment to import and build their devices
    plan = {"start": started, "end": started + args.seconds, "rate": args.connect_rate}
    children, out_paths = [], []
    n = args.sim_processes
    connected_now = multiprocessing.get_context("spawn").Array("i", n, lock=False)
    for k in range(n):
        out_path = tempfile.mktemp(prefix="bench-scale-", suffix=".json")  # noqa: S306 - the child writes it
        # Round robin, so every process has watched and batching devices and the ramp interleaves them.
        share = specs[k::n]
        child_plan = {**plan, "first_slot": k, "slot_every": n, "seed": 5 + k, "index": k}
        process = multiprocessing.get_context("spawn").Process(
            target=simulate, args=(share, watched, cafile, child_plan, out_path, connected_now)
        )
        process.start()
        children.append(process)
        out_paths.append(out_path)
        watch.add("simulator", process.pid)
    watch.mark("start")
    loop = asyncio.get_running_loop()
    ramp_s = len(specs) / args.connect_rate

    def progress(what: str = "") -> None:
        elapsed = time.time() - started
        due = min(len(specs), max(0, int(elapsed * args.connect_rate)))
        log(
            f"  {elapsed:4.0f} s{what}: {sum(connected_now):,}/{len(specs):,} connected "
            f"({due:,} due by the ramp), {len(arrivals):,} live readings seen, "
            f"load average {os.getloadavg()[0]:.1f}"
        )

    ramp_marked = False
    while time.time() < started + args.kill_at:
        await asyncio.sleep(min(10.0, max(0.1, started + args.kill_at - time.time())))
        if not ramp_marked and time.time() >= started + ramp_s:
            watch.mark("ramp_end")
            ramp_marked = True
        progress()
    if not ramp_marked:
        watch.mark("ramp_end")
    watch.mark("kill")
    kill_at = time.time()
    os.kill(victim.proc.pid, signal.SIGKILL)
    log(f"SIGKILLed gateway pid {victim.proc.pid} at {kill_at - started:.0f} s")
    while any(c.is_alive() for c in children) and time.time() < started + args.seconds + 120:
        await asyncio.sleep(5 if time.time() < kill_at + 60 else 10)
        progress(f" ({time.time() - kill_at:.0f} s after the kill)")
    for child in children:
        await loop.run_in_executor(None, child.join, 30)
    watch.mark("fleet_end")
    stop.set()
    await asyncio.gather(tapper, pinger, leaser, return_exceptions=True)
    sent: list = []
    acked: dict[str, list] = {}
    reconnects = unacked = 0
    ticks: dict[int, list[int]] = defaultdict(list)
    for out_path in out_paths:
        data = _read_once(out_path)
        log(f"simulator: {data['stats']}")
        sent += data["sent"]
        acked.update(data["acked"])
        reconnects += data["reconnects"]
        unacked += data["unacked_at_end"]
        for tick, connected in data["timeline"].items():
            ticks[int(tick)].append(connected)
    # Only the half-seconds every process reported: a sum of some processes would look like a dip.
    timeline = sorted((tick / TICKS_PER_S, sum(c)) for tick, c in ticks.items() if len(c) == n)
    before = next((c for t, c in reversed(timeline) if t < kill_at), 0)
    # The dip: the killed gateway's devices notice (HAProxy closes their sessions) and come back
    # through the survivors. Everyone is back when as many are connected as were at the kill.
    # Until 5 s before the planned end: devices that reach the end stop, which is not a drop.
    after_kill = [(t, c) for t, c in timeline if kill_at <= t <= min(kill_at + 180, started + args.seconds - 5)]
    low_at, low = min(after_kill, key=lambda tc: (tc[1], tc[0]), default=(kill_at, before))
    back_at = next((t for t, c in timeline if t >= low_at and c >= before), None)
    reconnected = max(0, before - low)  # stragglers still connecting can hide the dip
    recovery = None if back_at is None else back_at - kill_at
    return {
        "devices": len(specs),
        "live_devices": len(watched),
        "sim_processes": n,
        "gateways": args.gateways,
        "balancers": args.balancers,
        "connect_rate_per_s": args.connect_rate,
        "seconds": args.seconds,
        "kill_at_s": args.kill_at,
        "connected_before_kill": before,
        # 3 s before the fleet's planned end (devices that reached it stop, which is not a drop).
        "connected_near_end": next((c for t, c in reversed(timeline) if t <= started + args.seconds - 3), 0),
        "batches_unacked_at_end": unacked,
        "lowest_after_kill": low,
        "seconds_until_all_reconnected": None if recovery is None else round(recovery, 2),
        "reconnect_handshakes_per_s": None if not recovery else round(reconnected / recovery, 1),
        "seconds_until_lowest": round(low_at - kill_at, 2),
        "reconnects": reconnects,
        # "before" starts once the watched devices are all connected and live (the first fifth of the
        # ramp holds them, see the round robin) plus 10 s, or half-way to the kill.
        "live": phases(sent, arrivals, started + min(ramp_s + 10.0, args.kill_at / 2), kill_at, back_at, time.time()),
        "baseline_channel_layer": {"what": "group_send -> receive, bare Redis channel layer", **percentiles(base)},
        "_acked": acked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--facilities", type=int, default=20)
    parser.add_argument(
        "--sim-processes", type=int, default=None, help="processes the devices are spread over (default: 1 per 2,500)"
    )
    parser.add_argument("--connect-rate", type=float, default=70.0, help="devices started per second (staggered)")
    parser.add_argument("--seconds", type=float, default=None, help="fleet run time (default: from the fleet size)")
    parser.add_argument(
        "--kill-at", type=float, default=None, help="seconds in the first gateway dies (default: ramp + 20)"
    )
    parser.add_argument("--cpu-hog", action="store_true", help="a busy process takes one core for the whole run")
    parser.add_argument(
        "--gateways",
        type=int,
        default=None,
        help="gateway processes (default 2, more when one fd limit cannot hold the rest)",
    )
    args = parser.parse_args()
    ramp_s = args.devices / args.connect_rate
    fds = raise_fd_limit()
    # After the kill the survivors hold the whole fleet, one descriptor a device plus the process's own;
    # each HAProxy needs two a device (gateway/haproxy.py sizes its maxconn from the same limit).
    per_gateway = fds - 500
    args.gateways = args.gateways or max(2, 1 + math.ceil(args.devices / per_gateway))
    if math.ceil(args.devices / (args.gateways - 1)) > per_gateway:
        raise SystemExit(
            f"bench: {args.gateways - 1} surviving gateways cannot hold {args.devices} devices at {fds} fds"
        )
    args.balancers = max(1, math.ceil(args.devices / ((fds - 64) // 2 - 100)))
    args.sim_processes = args.sim_processes or max(1, math.ceil(args.devices / 2500))
    args.kill_at = args.kill_at if args.kill_at is not None else round(ramp_s + 20)
    # After the kill: the storm (half the fleet at ~70 handshakes/s on a quiet gateway) and 60 s more.
    args.seconds = args.seconds if args.seconds is not None else round(args.kill_at + args.devices / 2 / 70 + 60)
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        raise SystemExit("bench: set CELERY_BROKER_URL to a RabbitMQ vhost of your own (amqp://…/vhost)")
    env = configure()
    from django.conf import settings
    from django.db import connections

    from gateway.tests.processes import free_port, start_haproxy, wait_listening
    from gateway.tls import dev_certificate

    log(
        f"{args.devices} devices over {args.sim_processes} processes, {args.connect_rate:.0f}/s (ramp {ramp_s:.0f} s), "
        f"kill at {args.kill_at:.0f} s of {args.seconds:.0f} s; fd limit {fds}: "
        f"{args.gateways} gateways behind {args.balancers} HAProxy"
    )
    begun = time.monotonic()
    cache = Path(tempfile.gettempdir()) / f"energybox-bench-scale-{settings.DATABASES['default']['NAME']}.json"
    specs, by_facility = provision(devices=args.devices, facilities=args.facilities, cache=cache)
    facility_ids = list(by_facility)
    connections.close_all()
    log(f"provisioned {len(specs)} devices in {len(facility_ids)} facilities in {time.monotonic() - begun:.0f} s")
    data = Path(env["ENERGYBOX_DATA_DIR"])
    cert, key = dev_certificate(data)
    python = sys.executable
    try:
        purge_ingest_queue()
    except Exception as exc:  # noqa: BLE001 - a fresh vhost has no ingest queue yet: nothing to purge
        log(f"no ingest queue to purge ({exc})")
    worker_argv = [python, "-m", "celery", "-A", "energybox", "worker", "-Q", "readings,celery", "-c", "1"]
    workers = [
        Child(f"worker{n}", [*worker_argv, "--hostname", f"scale{n}@%h", "--without-gossip", "-l", "WARNING"], env)
        for n in range(2)
    ]
    ports = [free_port() for _ in range(args.gateways)]
    gateway_argv = [python, "manage.py", "rungateway", "--cert", str(cert), "--key", str(key), "--stats-every", "10"]
    gateways = [Child(f"gateway{n}", [*gateway_argv, "--port", str(port)], env) for n, port in enumerate(ports)]
    balancers: list = []
    watch = ProcessWatch()
    hog = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) if args.cpu_hog else None
    if hog is not None:
        hog.start()
    try:
        for port, gateway in zip(ports, gateways, strict=True):
            wait_listening(port, process=gateway.proc, timeout=240)
            watch.add("gateway", gateway.proc.pid)
        for worker in workers:
            watch.add("worker", worker.proc.pid)
        fronts = [free_port() for _ in range(args.balancers)]
        for n, front in enumerate(fronts):
            folder = data / f"haproxy{n}"
            folder.mkdir()
            balancers.append(start_haproxy(folder=folder, frontend_port=front, backend_ports=ports))
            watch.add("haproxy", balancers[-1].pid)
        watch.start()
        for n, spec in enumerate(specs):
            spec["port"] = fronts[n % len(fronts)]
        log(f"HAProxy :{fronts} → gateways {ports}; 2 workers")
        fleet_started = time.monotonic()
        result = asyncio.run(measure(args, specs, facility_ids, str(cert), gateways[0], watch))
        result["fleet_wall_s"] = round(time.monotonic() - fleet_started)
        acked = result.pop("_acked")
        log("waiting for the workers to store every acked reading (the ingest queue empty)")
        drain_started = time.monotonic()
        deadline = time.monotonic() + 300 + args.devices / 20  # the backlog grows with the fleet
        while (depth := ingest_queue_depth()) and time.monotonic() < deadline:
            log(f"  {depth} ingest messages still queued")
            time.sleep(5)
        result["drain_s"] = round(time.monotonic() - drain_started)
        ledger_started = time.monotonic()
        check = ledger_check(acked)
        while check["acked_not_stored"] and time.monotonic() < deadline:
            log(f"  {check['acked_not_stored']:,} acked readings not stored yet")
            time.sleep(5)
            check = ledger_check(acked)
        result["ledger_s"] = round(time.monotonic() - ledger_started)
        result.update(check)
    finally:
        for child in [*gateways, *workers]:
            child.stop()
        for gateway in gateways:
            for line in [line for line in gateway.lines if "overloaded" in line][:2]:
                log(f"{gateway.name}: {line[:300]}")
            for line in [line for line in gateway.lines if "devices connected" in line][-1:] + gateway.lines[-2:]:
                log(f"{gateway.name}: {line[:400]}")
        if hog is not None:
            hog.terminate()
        for balancer in balancers:
            balancer.terminate()
            balancer.wait(10)
        connections.close_all()
    publishes = {}
    for gateway in gateways:
        stats = [m for line in gateway.lines if (m := LIVE_STATS.search(line))]
        if stats:
            publishes[gateway.name] = dict(
                zip(("sent", "dropped", "failed"), map(int, stats[-1].groups()), strict=True)
            )
    # The gateways' own count of live messages to the channel layer (a failed one is a timeout there).
    result["gateway_live_publishes"] = publishes
    result["processes"] = watch.report(args.devices)
    result["cpu_hog"] = args.cpu_hog
    result["wall_s"] = round(time.monotonic() - begun)
    result["machine"] = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
