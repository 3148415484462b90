"""Live latency: a device frame sent → a dashboard websocket receiving its reading, under load.

Real processes all the way: simulated devices (a child process) stream 12-channel batches every
2 seconds over TLS to the real gateway (`manage.py rungateway`, a child process), which publishes
each verified batch to the Redis channel layer and acks it after the durable enqueue; Daphne (a child process)
runs the portal's consumers, and 50 websocket clients (this process), signed in with portal
sessions, each watch one facility's dashboard. Every frame of every device is timed: the simulator
records the wall-clock time it writes each READINGS frame, the clients the time each `readings`
message arrives, and the two are joined on (device, sample time).

Baseline, in the same run and under the same load: a bare channel-layer round trip, group_send →
receive on a plain layer channel of this process. This process keeps its garbage collector off
during the measured window, so its own pauses are not counted as the platform's latency.

Needs PostgreSQL (BENCH_DATABASE_URL, default the energybox_bench_live database on the DATABASE_URL
server or 127.0.0.1) and Redis (REDIS_URL, default redis://127.0.0.1:6379/0, under a prefix of its
own). With CELERY_BROKER_URL set the gateway enqueues to that broker (the production path, its
ingest queue is purged afterwards); without it the batches are stored in-process.

The gateway runs with overload mode off (`--overload-lag-ms 0`: overload mode trades latency for
throughput) on the event loop `--loop` names (default auto: uvloop when installed).

    .venv/bin/python bench/live_latency.py [--devices 1000] [--clients 50] [--seconds 60] [--breakdown]
                                           [--sim-processes 1] [--loop auto|uvloop|asyncio]
                                           [--store-processes N]

Prints progress, then one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from _common import ROOT, setup  # bench/ is this script's folder, so it is on sys.path

INTERVAL_MS = 2000
SAMPLE_BLOCK = 64  # samples a simulated device's meter model computes at once (see TimedDevice)


def log(message: str) -> None:
    print(f"[live_latency] {message}", flush=True)


# --- Set-up --------------------------------------------------------------------------------------


def configure() -> dict[str, str]:
    """Environment shared by this process and its children; creates and migrates the database."""
    os.environ.update(
        {
            "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            "CHANNEL_LAYER_PREFIX": f"bench-live-{os.getpid()}",
            "ENERGYBOX_DATA_DIR": tempfile.mkdtemp(prefix="energybox-bench-live-"),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",  # Daphne and the gateway announce their ports at INFO
            # The gateway and Daphne run with the platform's own default, not _common's 600 s.
            "DATABASE_CONN_MAX_AGE": os.environ.get("DATABASE_CONN_MAX_AGE", "60"),
        }
    )
    setup(default_name="energybox_bench_live")
    return dict(os.environ)


def provision(*, devices: int, facilities: int) -> tuple[list[dict], dict[int, list[int]], str]:
    """Facilities of 12-channel meters with fresh keys; returns device specs, facility → devices, a session."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import Membership, Role, Tenant, User
    from devices.demo import METER_12
    from devices.keys import private_key_load
    from devices.models import Device, DeviceType, Facility, Load
    from devices.services import device_key_rotate, device_provision, device_type_create, facility_create, load_create

    tenant, _ = Tenant.objects.get_or_create(
        slug="bench-live", defaults={"name": "Bench live", "kind": Tenant.Kind.ENTERPRISE}
    )
    meter = DeviceType.objects.filter(model_name="bench-live-m12").first() or device_type_create(
        model_name="bench-live-m12", channels=METER_12, firmware_line="eb-meter"
    )
    per_facility = devices // facilities
    specs: list[dict] = []
    by_facility: dict[int, list[int]] = {}
    for f in range(facilities):
        facility = Facility.objects.filter(tenant=tenant, name=f"Site {f:03d}").first() or facility_create(
            tenant=tenant, name=f"Site {f:03d}", timezone="Europe/Berlin", kind=Facility.Kind.SUPERMARKET
        )
        load = facility.loads.first() or load_create(facility=facility, name="Mains", kind=Load.Kind.MAINS)
        by_facility[facility.pk] = []
        for d in range(per_facility):
            serial = f"BL-{f:03d}-{d:03d}"
            device = Device.objects.filter(serial=serial).first()
            issued = (
                device_key_rotate(device=device)
                if device is not None
                else device_provision(
                    tenant=tenant, serial=serial, device_type=meter, facility=facility, firmware_version="1.0.0"
                )
            )
            issued.device.channels.update(load=load)
            by_facility[facility.pk].append(issued.device.pk)
            specs.append(
                {
                    "device_id": issued.device.pk,
                    "serial": serial,
                    "key": private_key_load(issued.private_key_pem).private_bytes_raw(),
                    "channels": [(c.quantity, c.scale, c.phase) for c in issued.device.channels.order_by("index")],
                }
            )
    user, _ = User.objects.get_or_create(username="bench-live")
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": Role.ADMIN})
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return specs, by_facility, session.session_key or ""


# --- Child processes -------------------------------------------------------------------------------


class Child:
    """A child process whose output is read continuously (so its pipe never fills)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(  # noqa: S603
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := regex.search(line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not start:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def gateway_argv(*, loop: str = "auto", store_processes: int | None = None) -> list[str]:
    # Overload mode (on by default in rungateway) off: it would trade latency for throughput here.
    return [
        sys.executable,
        "manage.py",
        "rungateway",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--stats-every",
        os.environ.get("BENCH_GATEWAY_STATS_EVERY", "20"),
        "--overload-lag-ms",
        "0",
        "--loop",
        loop,
        *(["--store-processes", str(store_processes)] if store_processes is not None else []),
    ]


def simulate(specs: list[dict], port: int, cafile: str, seconds: float, out_path: str) -> None:
    """Child process: the devices. Each records when it writes each READINGS frame."""
    from gateway import protocol as p
    from gateway.simulator import ChannelSpec, DeviceSpec, SentBatch, SimStats, SimulatedDevice
    from gateway.tls import client_context

    sent: list[tuple[int, int, float]] = []

    class TimedDevice(SimulatedDevice):
        """Samples drawn from blocks the meter model computes ahead, not one model call per frame.

        The model's numpy work is nearly the same for 1 sample as for 64, and per frame it was a
        simulator process's largest cost after the READINGS encoding (which a live frame now skips):
        the bench must measure the platform, not its simulator.
        """

        device_id = 0
        _block = None
        _block_start = 0

        def _generate(self, samples=None):  # type: ignore[no-untyped-def]
            samples = samples or self.batch
            start, step = self.next_start_ms, self.interval_ms
            block = self._block
            if block is None or not (self._block_start <= start and start + samples * step <= self._block_end):
                n = max(SAMPLE_BLOCK, samples)
                block = self._block = self.meter.sample(start + step * np.arange(n, dtype=np.int64), step)
                self._block_start, self._block_end = start, start + n * step
            offset = (start - self._block_start) // step
            self.next_start_ms = start + samples * step
            self.generated += 1
            self._batch_start = start
            return SentBatch(
                start_ms=start, interval_ms=step, raw=block[:, offset : offset + samples].copy(), live=self.live
            )

        def _send(self, writer, frame_type, payload, flags=0):  # type: ignore[no-untyped-def]
            super()._send(writer, frame_type, payload, flags)
            if frame_type == p.FrameType.READINGS and not flags & p.Flag.RESEND:
                sent.append((self.device_id, self._batch_start, time.time()))

        def _send_compact(self, writer, batch):  # type: ignore[no-untyped-def]
            super()._send_compact(writer, batch)  # a live frame (protocol version 2)
            sent.append((self.device_id, batch.start_ms, time.time()))

    async def main() -> SimStats:
        context = client_context(cafile=Path(cafile))
        stats = SimStats(devices=len(specs))
        now = time.time_ns() // 1_000_000 // 10 * 10  # live sample times are whole 10 ms
        rng = np.random.default_rng(5)
        devices = []
        for spec in specs:
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
                batch=1,
                interval_ms=INTERVAL_MS,
                realtime=True,
                # A fleet booted at random moments: each device on its own 2-second phase.
                start_ms=now + 10 * int(rng.integers(0, INTERVAL_MS // 10)),
                stats=stats,
                seed=spec["device_id"],
            )
            device.device_id = spec["device_id"]
            devices.append(device)

        async def run(device: SimulatedDevice, delay: float) -> None:
            await asyncio.sleep(delay)
            await device.run(duration_s=seconds - delay)

        await asyncio.gather(*(run(d, i * 0.003) for i, d in enumerate(devices)))
        return stats

    cpu0, wall0 = time.process_time(), time.monotonic()
    # The devices are the load generator, not the platform: BENCH_SIM_LOOP=uvloop runs them on uvloop
    # (as the gateway runs), so that a simulator process spends less of the shared machine per frame.
    loop = os.environ.get("BENCH_SIM_LOOP", "asyncio")
    if loop == "uvloop":
        import uvloop

        stats = uvloop.run(main())
    else:
        stats = asyncio.run(main())
    cpu = {"cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - wall0}
    Path(out_path).write_text(json.dumps({"sent": sent, "stats": stats.line(), **cpu}))


# --- Clients and the baseline ------------------------------------------------------------------------


async def dashboard_client(
    url: str,
    origin: str,
    cookie: str,
    received: list[tuple[int, int, float]],
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        url,
        origin=origin,
        additional_headers={"Cookie": cookie},
        max_size=None,
        open_timeout=60,  # type: ignore[arg-type]
    ) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            at = time.time()
            message = json.loads(raw)
            if message["type"] == "snapshot":
                ready.set()
            elif message["type"] == "readings":
                for ts in message["ts"]:
                    received.append((message["device_id"], ts, at))


async def baseline(latencies: list[float], stop: asyncio.Event) -> None:
    """A bare channel-layer round trip every 50 ms: group_send → receive, same Redis, same load."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("bench.baseline", channel)
    while not stop.is_set():
        sent = time.time()
        await layer.group_send("bench.baseline", {"type": "ping", "sent": sent})
        message = await layer.receive(channel)
        latencies.append((time.time() - message["sent"]) * 1000)
        await asyncio.sleep(0.05)
    await layer.group_discard("bench.baseline", channel)


async def tap(facility_ids: list[int], arrivals: list[tuple[int, int, float]], stop: asyncio.Event) -> None:
    """A bare channel in every facility group: when the gateway's messages reach the channel layer."""
    from channels.layers import get_channel_layer

    from readings.live import batch_readings, facility_group

    layer = get_channel_layer()
    channel = await layer.new_channel()
    for facility_id in facility_ids:
        await layer.group_add(facility_group(facility_id), channel)
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(layer.receive(channel), 0.5)
        except TimeoutError:
            continue
        at = time.time()
        if message.get("type") == "readings.live":
            for batch in message["batches"]:
                for ts in batch_readings(batch)[0]:
                    arrivals.append((batch["device_id"], ts, at))
    for facility_id in facility_ids:
        await layer.group_discard(facility_group(facility_id), channel)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(np.array(values), [50, 95, 99])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1)}


def purge_ingest_queue() -> int:
    from django.conf import settings

    from energybox.celery import app

    queue = settings.CELERY_TASK_ROUTES["readings.ingest"]["queue"]
    with app.connection_for_write() as connection:
        return int(connection.default_channel.queue_purge(queue) or 0)


# --- Main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50, help="dashboards, one facility each")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds, after a 15-s warm-up")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time when each message reaches the channel layer (adds a subscriber to every facility group)",
    )
    parser.add_argument("--sim-processes", type=int, default=1, help="processes the simulated devices are split over")
    parser.add_argument("--loop", default="auto", help="the gateway's event loop (rungateway --loop)")
    parser.add_argument(
        "--store-processes", type=int, default=None, help="rungateway --store-processes (default: its own)"
    )
    args = parser.parse_args()
    warmup = 15.0

    env = configure()
    broker = env.get("CELERY_BROKER_URL", "")
    log(
        f"database {env['DATABASE_URL']}, redis {env['REDIS_URL']} (prefix {env['CHANNEL_LAYER_PREFIX']}), "
        f"ingest {'broker ' + urlsplit(broker).hostname if broker else 'embedded (in-process store)'}"
    )
    started = time.monotonic()
    specs, by_facility, session_key = provision(devices=args.devices, facilities=args.clients)
    log(f"provisioned {len(specs)} devices in {len(by_facility)} facilities in {time.monotonic() - started:.0f} s")

    python = sys.executable
    gateway = Child("gateway", gateway_argv(loop=args.loop, store_processes=args.store_processes), env)
    web = Child(
        "daphne", [python, "-m", "daphne", "-v", "1", "-b", "127.0.0.1", "-p", "0", "energybox.asgi:application"], env
    )
    try:
        gateway_port = int(gateway.wait_for(r"listening on [\d.]+:(\d+)").group(1))
        web_port = int(web.wait_for(r"Listening on TCP address [\d.]+:(\d+)").group(1))
        log(f"gateway on :{gateway_port}, daphne on :{web_port}")
        cafile = str(Path(env["ENERGYBOX_DATA_DIR"]) / "gateway-dev-cert.pem")
        result = asyncio.run(measure(args, warmup, specs, by_facility, session_key, gateway_port, web_port, cafile))
    except BaseException:
        # What Daphne said, for a run that ended early (a consumer's error closes its socket with 1011).
        starts = [i for i, line in enumerate(web.lines) if "Traceback" in line]
        for line in web.lines[starts[0] : starts[0] + 80] if starts else web.lines[-20:]:
            log(f"daphne: {line[:400]}")
        raise
    finally:
        gateway.stop()
        web.stop()
        if broker:
            log(f"purged {purge_ingest_queue()} ingest messages from the broker (no worker ran)")
    warnings = [line for line in gateway.lines if " WARNING " in line or " ERROR " in line]
    for line in warnings[:3]:
        log(f"gateway: {line[:300]}")
    if len(warnings) > 3:
        log(f"gateway: … {len(warnings) - 3} more warnings")
    for line in [line for line in gateway.lines if "live sent" in line] + gateway.lines[-1:]:
        log(f"gateway: {line[:300]}")
    print(json.dumps(result), flush=True)


async def measure(args, warmup, specs, by_facility, session_key, gateway_port, web_port, cafile) -> dict:  # type: ignore[no-untyped-def]
    from django.conf import settings

    received: list[tuple[int, int, float]] = []
    stop = asyncio.Event()
    readies = []
    clients = []
    origin = f"http://127.0.0.1:{web_port}"
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
    for facility_id in by_facility:
        ready = asyncio.Event()
        readies.append(ready)
        url = f"ws://127.0.0.1:{web_port}/ws/facilities/{facility_id}/live"
        clients.append(asyncio.create_task(dashboard_client(url, origin, cookie, received, ready, stop)))
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    log(f"{len(clients)} dashboards connected and got their snapshots")

    # The devices in processes of their own (--sim-processes), so they do not share a core's loop.
    workers = max(1, getattr(args, "sim_processes", 1))
    out_paths = [tempfile.mktemp(prefix="bench-live-sent-", suffix=".json") for _ in range(workers)]  # noqa: S306
    context = multiprocessing.get_context("spawn")
    sims = [
        context.Process(
            target=simulate, args=(specs[k::workers], gateway_port, cafile, warmup + args.seconds + 5, out_paths[k])
        )
        for k in range(workers)
    ]
    for sim in sims:
        sim.start()
    log(f"{len(specs)} devices streaming a batch every {INTERVAL_MS / 1000:.0f} s; warming up {warmup:.0f} s")
    window_start = time.time() + warmup
    await asyncio.sleep(warmup)
    # This process timestamps every arrival: its own garbage collector must not pause it (a full
    # pass over the growing arrival lists took up to 100 ms, which would count as latency).
    gc.freeze()
    gc.disable()
    base: list[float] = []
    pinger = asyncio.create_task(baseline(base, stop))
    tapped: list[tuple[int, int, float]] = []
    tapper = asyncio.create_task(tap(list(by_facility), tapped, stop) if args.breakdown else asyncio.sleep(0))
    for elapsed in range(0, int(args.seconds), 10):
        await asyncio.sleep(min(10, args.seconds - elapsed))
        log(f"measuring: {elapsed + 10:.0f}/{args.seconds:.0f} s, {len(received):,} readings received")
    window_end = time.time()
    for sim in sims:
        await asyncio.get_running_loop().run_in_executor(None, sim.join, 60)
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(pinger, tapper, *clients, return_exceptions=True)
    gc.enable()  # only now: the first collection after the window is a long one

    return summarize(args, specs, by_facility, out_paths, window_start, window_end, received, tapped, base)


def summarize(args, specs, by_facility, out_paths, window_start, window_end, received, tapped, base) -> dict:  # type: ignore[no-untyped-def]
    sent: dict[tuple[int, int], float] = {}
    stats = []
    simulator_cpu: list[float] = []  # % of a core, per simulator process, over its whole run
    for out_path in out_paths:
        data = json.loads(Path(out_path).read_text())
        os.unlink(out_path)
        sent.update({(d, ts): t for d, ts, t in data["sent"] if window_start <= t <= window_end})
        stats.append(data["stats"])
        simulator_cpu.append(100 * data["cpu_s"] / data["wall_s"])
    arrivals: dict[tuple[int, int], float] = {}
    for device_id, ts, at in received:
        arrivals.setdefault((device_id, ts), at)
    latencies = [(arrivals[key] - t) * 1000 for key, t in sent.items() if key in arrivals]
    at_layer: dict[tuple[int, int], float] = {}
    for device_id, ts, at in tapped:
        at_layer.setdefault((device_id, ts), at)
    to_layer = [(at_layer[key] - t) * 1000 for key, t in sent.items() if key in at_layer]
    layer_to_ws = [(arrivals[key] - at_layer[key]) * 1000 for key in sent if key in at_layer and key in arrivals]
    missing = sum(1 for key in sent if key not in arrivals)
    for line in stats:
        log(f"simulator: {line}")
    log(f"{len(latencies):,} frames timed in the window, {missing:,} not received by a dashboard")
    return {
        **percentiles(latencies),
        "devices": len(specs),
        "clients": len(by_facility),
        "frames": len(latencies),
        "frames_not_received": missing,
        "seconds": args.seconds,
        # --breakdown: device → gateway → channel layer, then layer → consumer → websocket.
        **(
            {"frame_to_channel_layer": percentiles(to_layer), "channel_layer_to_websocket": percentiles(layer_to_ws)}
            if args.breakdown
            else {}
        ),
        "baseline_channel_layer": {"what": "group_send -> receive, bare Redis channel layer", **percentiles(base)},
        # What the bench's own devices cost (the platform competes with them for the cores).
        "simulator_cpu_percent": [round(c, 1) for c in simulator_cpu],
        "bar_p95_ms": 100,
        "window": [round(window_start, 3), round(window_end, 3)],  # wall clock (time.time) of the measured window
    }


if __name__ == "__main__":
    main()
