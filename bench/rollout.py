"""Firmware rollout benchmark: 2,000 simulated TLS devices, a 256 KiB image, waves of 1 %, 10 % and 100 %.

Three kinds of process share the machine, as they would in production:
- this one: one gateway process (the figure under test), with its database work;
- BENCH_DEVICE_PROCS device processes holding the simulated devices (default 2);
- one tick process: the beat task's service `rollout_tick`, every 0.5 s, as a Celery worker runs it.

The fleet is split in two rollouts started together: one sends the whole image, one a bsdiff4 delta.

Reports, beside their baselines measured in the same run:
- time to complete both rollouts;
- image bytes per device, whole and delta (from the transfers' recorded offsets);
- chunk throughput of the gateway process while the rollouts ran (bar ≥ 20 MB/s): wall-clock MB/s,
  and MB per CPU-second of the gateway process (its getrusage time while serving, which counts all of its
  work: TLS, ingest acks, status writes). The devices run in their own processes, so their CPU is not in
  the second figure; on a machine where they compete for the same cores the wall figure is lower;
- live ingest p95 (a device's batch → the gateway's ack) during the rollouts, beside the same fleet
  streaming without a rollout (bar ≤ 2×).

BENCH_DEVICES overrides the fleet size, BENCH_CHUNK_MAX_LAG_MS and BENCH_CHUNK_MB_S the gateway's chunk
budget (GatewayConfig.firmware_chunk_max_lag_ms, firmware_chunk_mb_s; 0 switches a bound off),
BENCH_SWITCH_INTERVAL_S the gateway process's sys.setswitchinterval (how long a thread holds the GIL before
another may take it), BENCH_SLOW_MS times every callback of the gateway's loop (the costliest to stderr),
BENCH_GC_FREEZE=0 leaves the gateway process's collector unfrozen, BENCH_GC_THRESHOLD=a,b,c sets its
thresholds after the freeze (gc.set_threshold; the third: generation-1 passes before a full one),
BENCH_RATE_PER_MINUTE sets the rollouts'
rate, BENCH_PROFILE=path writes a cProfile of the gateway process, BENCH_PYSPY=folder py-spy samples (raw,
one file per pid) of the gateway and device processes.
Progress goes to stderr every 10 s; the figures are one JSON line on stdout.

The chunk rate that counts against the bar is `chunk_throughput_mb_s_busiest_5s`: the 100 % wave in
full flow. The wall figure spreads the same bytes over the pauses between waves, in which a wave waits
for the devices of the one before to reboot and report their new version.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import resource
import sys
import time
from collections import OrderedDict
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from _common import percentile, report, setup

DEVICES = int(os.environ.get("BENCH_DEVICES", "2000"))
DEVICE_PROCS = int(os.environ.get("BENCH_DEVICE_PROCS", "2"))
IMAGE_SIZE = 256 * 1024
WAVES = (1, 10, 100)
BASELINE_S = float(os.environ.get("BENCH_BASELINE_S", "15"))
# Each device sends a one-sample batch this often: the live ingest whose p95 is measured.
INTERVAL_MS = int(os.environ.get("BENCH_INTERVAL_MS", "5000"))


class TimedUnacked(OrderedDict):  # type: ignore[type-arg]
    """The simulator's unacked batches, remembering when each was queued and how long its ack took.

    Each ack also says whether its batch outlived the connection it was sent on (the device rebooted
    into the new image before the ack came, and resent the batch after its reconnect): such an ack's
    time includes the device's own reboot, reconnect and handshake.
    """

    def __init__(self, sink: list[tuple[float, float, bool]], stats: Any) -> None:
        super().__init__()
        self.sink = sink
        self.stats = stats
        self.sent_at: dict[int, tuple[float, int]] = {}

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        self.sent_at.setdefault(key, (time.monotonic(), self.stats.reconnects))
        super().__setitem__(key, value)

    def pop(self, key, *default):  # type: ignore[no-untyped-def]
        value = super().pop(key, *default)
        started = self.sent_at.pop(key, None)
        if started is not None:
            now = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable with the gateway process's
            self.sink.append((now, (now - started[0]) * 1000, self.stats.reconnects != started[1]))
        return value


async def sample_loop_lag(sink: list[tuple[float, float]], every_s: float = 0.05) -> None:
    """How late this process's event loop wakes a sleeper: (when, ms late), forever."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(every_s)
        now = time.monotonic()
        sink.append((now, (now - before - every_s) * 1000))


def time_callbacks(slow_ms: float) -> dict[str, list[float]]:
    """BENCH_SLOW_MS: time every callback of this process's event loop; {callback: [count, total s, slow count]}.

    For finding what makes the gateway's loop late: the loop-lag figure says how late, this says who.
    """
    import asyncio.events

    totals: dict[str, list[float]] = {}
    run = asyncio.events.Handle._run

    def timed(handle: Any) -> None:
        started = time.perf_counter()
        run(handle)
        took = time.perf_counter() - started
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            frame = owner.get_coro().cr_frame if hasattr(owner.get_coro(), "cr_frame") else None
            name = owner.get_coro().__qualname__ + (f":{frame.f_lineno}" if frame is not None else "")
        else:
            name = getattr(callback, "__qualname__", repr(callback))
        row = totals.setdefault(name, [0, 0.0, 0])
        row[0] += 1
        row[1] += took
        if took * 1000 >= slow_ms:
            row[2] += 1

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    return totals


def time_collections(sink: list[tuple[float, int, float]]) -> None:
    """Every pass of this process's garbage collector: (when it ended, generation, ms), appended to `sink`."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            started[0] = now
        else:
            sink.append((now, info["generation"], (now - started[0]) * 1000))

    gc.callbacks.append(callback)


def progress(message: str) -> None:
    print(f"  [rollout {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_py_spy(pids: list[int]) -> list[Any]:
    """BENCH_PYSPY=folder: py-spy samples the gateway and the device processes while the rollouts run."""
    import subprocess

    folder = os.environ.get("BENCH_PYSPY")
    if not folder:
        return []
    import shutil

    # The venv's py-spy if it has one, else whichever the PATH names (a wheel unpacked by hand).
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        found = shutil.which("py-spy")
        if found is None:
            raise SystemExit("bench: BENCH_PYSPY is set but no py-spy is installed (pip install py-spy)")
        spy = Path(found)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(  # noqa: S603 - our own pids, our own tool
            [str(spy), "record", "--nonblocking", "-r", "50", "-f", "raw", "-p", str(pid), "-o", f"{folder}/{pid}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def stop_py_spy(spies: list[Any]) -> None:
    import signal

    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
    for spy in spies:
        spy.wait(60)


def run_device_process(job: dict[str, Any], stop: Any, results: Any) -> None:
    """One device process: its share of the fleet, until `stop`; sends back ack latencies and counts."""
    from gateway.simulator import ChannelSpec, DeviceSpec, SimulatedDevice
    from gateway.tls import client_context

    async def main() -> None:
        acks: list[tuple[float, float, bool]] = []
        lags: list[tuple[float, float]] = []
        lag_sampler = asyncio.create_task(sample_loop_lag(lags))
        ctx = client_context(cafile=job["cafile"])
        devices = []
        # Real meters are not in step: each sends at its own phase of the interval, so the gateway
        # sees a steady stream rather than the whole fleet in the same millisecond.
        aligned = (time.time_ns() // 1_000_000 // INTERVAL_MS) * INTERVAL_MS
        for serial, key, seed in job["devices"]:
            spec = DeviceSpec(
                serial=serial,
                private_key=key,
                channels=tuple(ChannelSpec(q) for q in job["quantities"]),
                firmware_line=job["line"],
                firmware_version="1.0.0",
            )
            device = SimulatedDevice(
                spec,
                host="127.0.0.1",
                port=job["port"],
                ssl_context=ctx,
                batch=1,
                interval_ms=INTERVAL_MS,
                realtime=True,
                start_ms=aligned + seed * INTERVAL_MS // job["fleet"],
                firmware_public_key=job["public_key"],
                firmware_image=job["old_image"],
                reconnect_delay_s=0.5,
                seed=seed,
            )
            device.unacked = TimedUnacked(acks, device.stats)
            devices.append(device)
        tasks = []
        for device in devices:
            tasks.append(asyncio.create_task(device.run()))
            await asyncio.sleep(0.004)
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing event
            await asyncio.sleep(0.2)
        for device in devices:
            device.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        lag_sampler.cancel()
        results.put(
            {
                "acks": acks,
                "loop_lags": lags,
                "received": sum(d.firmware_bytes_received for d in devices),
                "installed": sum(d.stats.firmware_installed for d in devices),
                "cpu_s": cpu_s(),
            }
        )

    asyncio.run(main())


def run_tick_process(go: Any, stop: Any) -> None:
    """The beat task's service, every 0.5 s, in a process of its own as a Celery worker would run it.

    Started with the devices and ready before the rollouts are: its start-up is not the rollout's time.
    The parent's setup() put the database and settings into the environment this process inherited.
    """
    import django

    django.setup()
    from firmware.services.rollouts import rollout_tick

    go.wait()
    while not stop.is_set():
        rollout_tick()
        stop.wait(0.5)


async def main() -> None:  # noqa: PLR0915
    from concurrent.futures import ThreadPoolExecutor

    # The benchmark's own queries run on a thread of their own: on the gateway's shared database
    # thread they would add to the load under test and wait behind it.
    own_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench")

    def sync_to_async(fn):  # type: ignore[no-untyped-def]
        async def run():  # type: ignore[no-untyped-def]
            return await asyncio.get_running_loop().run_in_executor(own_thread, fn)

        return run

    from django.db import connection, transaction
    from django.db.models import Count

    from accounts.access import Access
    from accounts.models import Role, Tenant
    from devices.demo import METER_12
    from devices.keys import private_key_load
    from devices.models import Device, DeviceType, Facility
    from devices.services import device_provision
    from firmware.models import FirmwareTransfer, Rollout, RolloutDevice
    from firmware.planning import RolloutSpec
    from firmware.services import firmware_image_create
    from firmware.services.rollouts import rollout_create
    from firmware.signing import signing_public_key
    from gateway.server import Gateway, GatewayConfig
    from gateway.tls import dev_certificate, server_context

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
        firmware_image_create(firmware_line="bench-rollout", version="1.0.0", image=old)
        new_image = firmware_image_create(firmware_line="bench-rollout", version="1.1.0", image=bytes(new))
        issued = []
        for start in range(0, DEVICES, 500):  # a transaction per 500: not one commit (and fsync) per device
            with transaction.atomic():
                issued += [
                    device_provision(
                        tenant=tenant,
                        serial=f"BENCH-RO-{run}-{i:05d}",
                        device_type=device_type,
                        facility=facility,
                        firmware_version="1.0.0",
                    )
                    for i in range(start, min(DEVICES, start + 500))
                ]
            progress(f"{len(issued)} devices provisioned")
        keys = [
            (k.device.serial, private_key_load(k.private_key_pem).private_bytes_raw(), i) for i, k in enumerate(issued)
        ]
        quantities = [c["quantity"] for c in channels]
        return tenant, device_type, new_image, old, keys, quantities, [k.device.pk for k in issued]

    progress(f"provisioning {DEVICES} devices")
    tenant, device_type, new_image, old_bytes, keys, quantities, device_ids = await sync_to_async(build)()
    public_key = await sync_to_async(signing_public_key)()
    folder = Path(mkdtemp())
    cert, key = dev_certificate(folder)
    budget = {}  # the gateway's chunk budget (gateway.firmware.ChunkTurns): its defaults unless overridden
    if "BENCH_CHUNK_MAX_LAG_MS" in os.environ:
        budget["firmware_chunk_max_lag_ms"] = float(os.environ["BENCH_CHUNK_MAX_LAG_MS"])
    if "BENCH_CHUNK_MB_S" in os.environ:
        budget["firmware_chunk_mb_s"] = float(os.environ["BENCH_CHUNK_MB_S"])
    config = GatewayConfig(idle_timeout_s=300, firmware_poll_s=1.0, rate_per_s=1000, **budget)
    gateway = Gateway(ssl_context=server_context(cert=cert, key=key), config=config, enqueue=lambda batches: None)
    _, port = await gateway.start(host="127.0.0.1", port=0)
    gateway_lags: list[tuple[float, float]] = []
    gateway_lag_sampler = asyncio.create_task(sample_loop_lag(gateway_lags))

    spawn = mp.get_context("spawn")  # a fresh interpreter: no Django, no inherited sockets
    stop = spawn.Event()
    results = spawn.Queue()
    workers = [
        spawn.Process(
            target=run_device_process,
            args=(
                {
                    "devices": keys[n::DEVICE_PROCS],
                    "fleet": DEVICES,
                    "cafile": str(cert),
                    "port": port,
                    "quantities": quantities,
                    "line": "bench-rollout",
                    "public_key": public_key,
                    "old_image": old_bytes,
                },
                stop,
                results,
            ),
            daemon=True,
        )
        for n in range(DEVICE_PROCS)
    ]
    for worker in workers:
        worker.start()
    go = spawn.Event()
    ticker = spawn.Process(target=run_tick_process, args=(go, stop), daemon=True)
    ticker.start()

    def online() -> int:
        return Device.objects.filter(tenant=tenant, status=Device.Status.ONLINE).count()

    progress(f"connecting {DEVICES} devices in {DEVICE_PROCS} processes")
    deadline = time.monotonic() + 300
    while (count := await sync_to_async(online)()) < DEVICES and time.monotonic() < deadline:
        progress(f"{count} online")
        await asyncio.sleep(3)
    connected_at = time.monotonic()
    # As rungateway does once it listens: what is loaded by now lives as long as the process, and the
    # collector's full passes over it paused this process's loop (the gateway's) for 100 ms and more.
    # BENCH_GC_FREEZE=0 leaves it out, as the benchmark ran before.
    if os.environ.get("BENCH_GC_FREEZE", "1") != "0":
        from gateway.management.commands.rungateway import GC_FULL_EVERY, collector_settle

        collector_settle(GC_FULL_EVERY)  # rungateway's own step: the freeze, and its spacing of full passes
    if os.environ.get("BENCH_GC_THRESHOLD"):
        gc.set_threshold(*(int(v) for v in os.environ["BENCH_GC_THRESHOLD"].split(",")))
    collections: list[tuple[float, int, float]] = []
    time_collections(collections)
    online_at_start = await sync_to_async(online)()
    progress(f"{online_at_start} online; {BASELINE_S:.0f} s of ingest without a rollout (the baseline)")
    await asyncio.sleep(BASELINE_S)

    access = Access(tenant_id=tenant.pk, role=Role.ADMIN, facility_ids=None, user_id=None)
    half = len(device_ids) // 2

    def start():  # type: ignore[no-untyped-def]
        common = {
            "image": new_image,
            "device_type": device_type,
            "target_kind": Rollout.TargetKind.DEVICES,
            "wave_kind": Rollout.WaveKind.PERCENT,
            "wave_values": WAVES,
            "success_threshold_percent": 90,
            "device_timeout_s": 600,
            # BENCH_RATE_PER_MINUTE: each rollout starts at most so many devices a minute (the rollout's rate).
            "rate_per_minute": int(os.environ["BENCH_RATE_PER_MINUTE"])
            if os.environ.get("BENCH_RATE_PER_MINUTE")
            else None,
        }
        whole = rollout_create(
            access=access,
            spec=RolloutSpec(name="whole", target_device_ids=device_ids[:half], delta_updates=False, **common),
        )
        delta = rollout_create(
            access=access, spec=RolloutSpec(name="delta", target_device_ids=device_ids[half:], **common)
        )
        return whole.pk, delta.pk

    profile = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    spies = start_py_spy([os.getpid(), *(w.pid for w in workers if w.pid is not None)])
    callbacks = time_callbacks(float(os.environ["BENCH_SLOW_MS"])) if os.environ.get("BENCH_SLOW_MS") else None
    started_at = time.monotonic()
    whole_id, delta_id = await sync_to_async(start)()
    bytes_before = gateway.stats.get("firmware_chunk_bytes", 0)
    go.set()

    def finished() -> bool:
        return not Rollout.objects.filter(pk__in=[whole_id, delta_id], state=Rollout.State.RUNNING).exists()

    def statuses() -> dict[str, int]:
        rows = RolloutDevice.objects.filter(rollout_id__in=[whole_id, delta_id]).values_list("status")
        return dict(rows.annotate(n=Count("id")).values_list("status", "n"))

    # (wall, gateway CPU, bytes served) every half second; first/last: the first and the last in which chunks went out
    samples = [(time.monotonic(), cpu_s(), bytes_before)]
    first: tuple[float, float, int] | None = None
    last: tuple[float, float, int] | None = None
    peak = 0.0
    deadline = time.monotonic() + 1800
    progress("rollouts started")
    told = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if time.monotonic() - told >= 10:
            told = time.monotonic()
            served_mb = (gateway.stats.get("firmware_chunk_bytes", 0) - bytes_before) / 1e6
            progress(f"{told - started_at:.0f} s: {served_mb:.1f} MB served, devices {await sync_to_async(statuses)()}")
        previous, sample = samples[-1], (time.monotonic(), cpu_s(), gateway.stats.get("firmware_chunk_bytes", 0))
        samples.append(sample)
        if sample[2] != previous[2]:
            first = first or previous
            last = sample
            peak = max(peak, (sample[2] - previous[2]) / (sample[0] - previous[0]) / 1e6)
        if await sync_to_async(finished)():
            break
    # The busiest 5 s: the 100 % wave in full flow, without the pauses between waves (a wave waits for
    # the devices of the one before to reboot and report their new version).
    busiest = max(
        ((b[2] - a[2]) / (b[0] - a[0]) / 1e6 for i, a in enumerate(samples) for b in samples[i + 10 : i + 11]),
        default=0.0,
    )
    completed_s = time.monotonic() - started_at
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    stop_py_spy(spies)
    if callbacks is not None:
        for name, (count, total, slow) in sorted(callbacks.items(), key=lambda kv: -kv[1][1])[:25]:
            progress(f"callback {name}: {count} runs, {total:.2f} s, {slow} slow")
    stop.set()
    outputs = [results.get(timeout=120) for _ in workers]
    gateway_lag_sampler.cancel()
    for process in [*workers, ticker]:
        process.join(30)
    await gateway.shutdown()
    acks = [a for out in outputs for a in out["acks"]]
    ended_at = started_at + completed_s

    def without(rows: list[Any]) -> list[float]:
        return [row[1] for row in rows if connected_at + 2 <= row[0] < started_at]

    def while_running(rows: list[Any]) -> list[float]:
        return [row[1] for row in rows if started_at <= row[0] <= ended_at]

    baseline = without(acks)
    during = while_running(acks)
    # The acks of batches sent and acked on one connection: without those the device's reboot held up.
    during_same = while_running([a for a in acks if not a[2]])
    device_lags = [lag for out in outputs for lag in out["loop_lags"]]

    def p95(values: list[float]) -> float | None:
        return round(percentile(values, 95), 1) if values else None

    def outcome():  # type: ignore[no-untyped-def]
        states = dict(Rollout.objects.filter(pk__in=[whole_id, delta_id]).values_list("name", "state"))
        rows = FirmwareTransfer.objects.filter(state=FirmwareTransfer.State.INSTALLED).values_list("delta_id", "offset")
        whole = [offset for delta, offset in rows if delta is None]
        delta = [offset for delta, offset in rows if delta is not None]
        return states, whole, delta

    states, whole_bytes, delta_bytes = await sync_to_async(outcome)()
    served = (last[2] - first[2]) if first and last else 0
    wall_s = (last[0] - first[0]) if first and last else 0.0
    gateway_cpu_s = (last[1] - first[1]) if first and last else 0.0
    p95_base = percentile(baseline, 95) if baseline else 0.0
    p95_during = percentile(during, 95) if during else 0.0
    report(
        {
            "benchmark": "rollout",
            "devices": DEVICES,
            "device_processes": DEVICE_PROCS,
            "devices_online_at_start": online_at_start,
            "batch_interval_ms": INTERVAL_MS,
            "image_bytes": IMAGE_SIZE,
            "chunk_bytes": gateway.firmware_chunk_size(),
            "waves_percent": list(WAVES),
            "rollout_states": states,
            "time_to_complete_s": round(completed_s, 1),
            "installed_whole": len(whole_bytes),
            "installed_delta": len(delta_bytes),
            "bytes_per_device_whole": round(sum(whole_bytes) / len(whole_bytes)) if whole_bytes else None,
            "bytes_per_device_delta": round(sum(delta_bytes) / len(delta_bytes)) if delta_bytes else None,
            "chunk_bytes_served": served,
            "chunk_bytes_received_by_devices": sum(out["received"] for out in outputs),
            "chunk_throughput_mb_s_wall": round(served / wall_s / 1e6, 2) if wall_s else 0.0,
            "chunk_throughput_mb_s_peak_half_second": round(peak, 2),
            "chunk_throughput_mb_s_busiest_5s": round(busiest, 2),
            "chunk_throughput_mb_per_gateway_cpu_s": round(served / gateway_cpu_s / 1e6, 2) if gateway_cpu_s else 0.0,
            "gateway_cpu_share_while_serving": round(gateway_cpu_s / wall_s, 2) if wall_s else 0.0,
            "device_processes_cpu_s": round(sum(out["cpu_s"] for out in outputs), 1),
            "chunk_throughput_bar_mb_s": 20,
            "ingest_ack_p95_ms_without_rollout": round(p95_base, 1),
            "ingest_ack_p95_ms_during_rollout": round(p95_during, 1),
            "ingest_p95_ratio": round(p95_during / p95_base, 2) if p95_base else None,
            "ingest_p95_ratio_bar": 2.0,
            "ingest_samples": {"without": len(baseline), "during": len(during)},
            "ingest_ack_p95_ms_during_rollout_same_connection": p95(during_same),
            "ingest_acks_during_across_a_reconnect": len(during) - len(during_same),
            "ingest_ack_max_ms_during_rollout": round(max(during), 1) if during else None,
            "gateway_loop_lag_p95_ms": {
                "without": p95(without(gateway_lags)),
                "during": p95(while_running(gateway_lags)),
            },
            "device_processes_loop_lag_p95_ms": {
                "without": p95(without(device_lags)),
                "during": p95(while_running(device_lags)),
            },
            "chunk_budget": {
                "per_turn": config.firmware_chunks_per_turn,
                "max_lag_ms": config.firmware_chunk_max_lag_ms,
                "mb_s": config.firmware_chunk_mb_s,
                "turns_held_for_lag": gateway.firmware.chunk_turns.held_for_lag,
                "turns_held_for_rate": gateway.firmware.chunk_turns.held_for_rate,
            },
            "gateway_gc": {
                "frozen": os.environ.get("BENCH_GC_FREEZE", "1") != "0",
                "thresholds": list(gc.get_threshold()),
                "full_passes_during": len([c for c in collections if c[1] == 2 and started_at <= c[0] <= ended_at]),
                "pause_max_ms_during": round(max(while_running([(c[0], c[2]) for c in collections]), default=0.0), 1),
                "pause_total_ms_during": round(sum(while_running([(c[0], c[2]) for c in collections])), 1),
                "pause_max_ms_by_generation": [
                    round(max(while_running([(c[0], c[2]) for c in collections if c[1] == g]), default=0.0), 1)
                    for g in range(3)
                ],
            },
            "gateway_status_rounds": gateway.firmware.rounds,
            "gateway_statuses_written": gateway.firmware.statuses,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "note": "gateway, device processes and the tick share one loaded 2-core machine",
        }
    )


if __name__ == "__main__":
    if os.environ.get("BENCH_SWITCH_INTERVAL_S"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL_S"]))
    setup()
    asyncio.run(main())
