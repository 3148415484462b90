"""Ack latency of one well-behaved device, alone and beside a busy fleet, on the embedded mode of `make run`.

The platform runs as `make run` runs it on the embedded defaults: SQLite in a temp data folder, ingest
in-process in the gateway, and the embedded task worker (`manage.py runtaskworker`: its own beat,
rollups every 10 s, compaction) as a separate process on the same database. The probe device sends a
one-sample batch every 250 ms throughout and times each batch from the write to its ACK. Its batches
fall in two sets: alone (the baseline, same run) and beside BENCH_FLEET meters that send 15-sample
batches as fast as their acks allow (back-filling history, so every refresh has work). Alone and
busy windows of 20 s alternate, so the load of a shared machine falls on both alike.
Last line: {"ack_p99_busy_ms": …, "ack_p99_alone_ms": …, "ratio": …, …}; the bar is ratio ≤ 2.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as _setup  # noqa: E402

FLEET = int(os.environ.get("BENCH_FLEET", "20"))
PHASE_S = float(os.environ.get("BENCH_SECONDS", "60"))  # per phase, alone and busy each
WINDOW_S = 20.0
# Each fleet meter sends a batch this often (0: back to back, as fast as its acks come, which saturates
# this 2-core machine, so the probe then measures the saturation rather than the platform).
FLEET_BATCH_MS = float(os.environ.get("BENCH_FLEET_BATCH_MS", "100"))
PROBE_INTERVAL_MS = 250


def _quiet() -> None:
    import logging

    logging.getLogger("asyncio").setLevel(logging.ERROR)


def probe(port: int, cafile: str, device: tuple[str, bytes], run_s: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One device at a steady cadence; puts the list of its ack latencies (ms) on `out`."""
    _quiet()
    from gateway import protocol as p
    from gateway.simulator import DeviceSpec, SimulatedDevice
    from gateway.tls import client_context

    latencies: list[tuple[float, float]] = []  # (when sent, time.time(); ack latency ms)

    class Probe(SimulatedDevice):
        sent_at: dict[int, float] = {}

        def _send(self, writer, frame_type, payload, flags=0):  # type: ignore[no-untyped-def]
            super()._send(writer, frame_type, payload, flags)
            if frame_type == p.FrameType.READINGS:
                self.sent_at[self._out_seq] = time.time()

        async def _on_frame(self, writer, frame):  # type: ignore[no-untyped-def]
            if frame.type == p.FrameType.ACK:
                sent = self.sent_at.pop(p.Ack.decode(frame.payload).ref_seq, None)
                if sent is not None:
                    latencies.append((sent, (time.time() - sent) * 1000))
                    if latencies[-1][1] > 250 and os.environ.get("BENCH_VERBOSE"):
                        print(f"  slow ack {latencies[-1][1]:.0f} ms at {time.strftime('%H:%M:%S')}", flush=True)
            await super()._on_frame(writer, frame)

    async def main() -> None:
        serial, seed = device
        sim = Probe(
            DeviceSpec(serial, seed, _setup.meter_channels(), load_kind="mains"),
            host="127.0.0.1",
            port=port,
            ssl_context=client_context(cafile=Path(cafile)),
            batch=1,
            interval_ms=PROBE_INTERVAL_MS,
            realtime=True,
            reconnect_delay_s=0.2,
        )
        await sim.run(duration_s=run_s)

    asyncio.run(main())
    out.put(latencies)


def fleet(port: int, cafile: str, devices: list[tuple[str, bytes]], run_s: float, start_ms: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Meters back-filling history from `start_ms` in 15-sample batches, one every FLEET_BATCH_MS each
    (at most one unacked): far beyond a real cadence, and every rollup refresh has work."""
    _quiet()
    from gateway.simulator import DeviceSpec, SimStats, SimulatedDevice
    from gateway.tls import client_context

    stats = SimStats()

    class Meter(SimulatedDevice):
        async def _wait_until(self, writer, when_ms):  # type: ignore[no-untyped-def]
            await asyncio.sleep(FLEET_BATCH_MS / 1000)

    async def main() -> None:
        context = client_context(cafile=Path(cafile))
        sims = [
            Meter(
                DeviceSpec(serial, seed, _setup.meter_channels(), load_kind="mains"),
                host="127.0.0.1",
                port=port,
                ssl_context=context,
                batch=15,
                interval_ms=2000,
                realtime=FLEET_BATCH_MS > 0,
                start_ms=start_ms,
                reconnect_delay_s=0.2,
                stats=stats,
                seed=n,
            )
            for n, (serial, seed) in enumerate(devices)
        ]
        await asyncio.gather(*(sim.run(duration_s=run_s) for sim in sims))

    asyncio.run(main())
    out.put({"batches_acked": stats.batches_acked, "readings_acked": stats.readings_acked, "nacks": stats.nacks})


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies),
        "p50_ms": _setup_percentile(latencies, 50),
        "p99_ms": _setup_percentile(latencies, 99),
        "max_ms": round(max(latencies), 1) if latencies else 0.0,
    }


def _setup_percentile(samples: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.array(samples), q)), 1) if samples else 0.0


async def run_gateway(data: Path, devices: list[tuple[str, bytes]]) -> dict[str, object]:
    from channels.layers import get_channel_layer

    from gateway.server import Gateway, GatewayConfig
    from gateway.tls import dev_certificate, server_context

    cert, key = dev_certificate(data)
    config = GatewayConfig(rate_per_s=10_000, rate_burst=10_000)
    gateway = Gateway(ssl_context=server_context(cert=cert, key=key), config=config, channel_layer=get_channel_layer())
    _, port = await gateway.start(host="127.0.0.1", port=0)
    cafile = str(data / "gateway-dev-cert.pem")
    ctx = mp.get_context("spawn")
    loop = asyncio.get_running_loop()

    # Alone and busy windows alternate while the probe runs throughout, so the machine's other load
    # (it is shared) falls on both alike; each window spans about two rollup refreshes.
    windows = max(1, round(PHASE_S / WINDOW_S))
    out = ctx.Queue()
    probe_process = ctx.Process(
        target=probe, args=(port, cafile, devices[0], 2 * windows * WINDOW_S + 2, out), daemon=True
    )
    probe_process.start()
    busy_spans: list[tuple[float, float]] = []
    fleet_totals = {"batches_acked": 0, "readings_acked": 0, "nacks": 0}
    week_ago_ms = (time.time_ns() // 1_000_000 - 7 * 86_400_000) // 30_000 * 30_000
    for window in range(windows):
        print(
            f"window {window + 1}/{windows}: the probe alone for {WINDOW_S:.0f} s, then beside {FLEET} meters",
            flush=True,
        )
        await asyncio.sleep(WINDOW_S)
        fleet_out = ctx.Queue()
        started = time.time()
        meters = ctx.Process(
            target=fleet,
            args=(port, cafile, devices[1:], WINDOW_S, week_ago_ms + window * 86_400_000, fleet_out),
            daemon=True,
        )
        meters.start()
        stats = await loop.run_in_executor(None, fleet_out.get, True, WINDOW_S + 120)
        await loop.run_in_executor(None, meters.join, 30)
        busy_spans.append((started, time.time()))
        for name in fleet_totals:
            fleet_totals[name] += stats[name]
    samples = await loop.run_in_executor(None, out.get, True, 120)
    await loop.run_in_executor(None, probe_process.join, 30)

    def busy(when: float) -> bool:
        return any(lo <= when <= hi for lo, hi in busy_spans)

    alone = [latency for when, latency in samples if not busy(when)]
    beside = [latency for when, latency in samples if busy(when)]
    refreshes = refresh_spans(data / "worker.log")

    def refreshing(when: float) -> bool:
        return any(lo <= when <= hi for lo, hi in refreshes)

    during = [latency for when, latency in samples if busy(when) and refreshing(when)]
    outside = [latency for when, latency in samples if busy(when) and not refreshing(when)]
    print(f"  alone {summary(alone)}", flush=True)
    print(f"  busy  {summary(beside)} fleet {fleet_totals}", flush=True)
    await gateway.shutdown()
    return {
        "alone": summary(alone),
        "busy": summary(beside),
        "busy_during_refresh": summary(during),
        "busy_outside_refresh": summary(outside),
        "refreshes": len(refreshes),
        "fleet": fleet_totals,
        "windows": windows,
    }


def refresh_spans(log: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of the worker's rollup refreshes, from Celery's trace lines."""
    import datetime as dt
    import re

    pattern = re.compile(r"^\[(\S+ \S+): INFO/\S+\] Task readings\.rollups_refresh\[\S+\] succeeded in ([0-9.]+)s")
    spans = []
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match:
            end = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
            spans.append((end - float(match.group(2)), end))
    return spans


def main() -> None:
    import faulthandler

    faulthandler.dump_traceback_later(900, exit=True)
    faulthandler.register(signal.SIGUSR1)
    data = _setup.django_embedded("ack")
    _setup.raise_nofile()
    devices = _setup.provision_meters(1 + FLEET, prefix="ACK")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["CELERY_TASK_LOG_LEVEL"] = "INFO"  # "Task … succeeded in 1.2s": when each refresh ran
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, str(_setup.ROOT / "manage.py"), "runtaskworker", "--loglevel", "WARNING"]
        if not os.environ.get("BENCH_NO_WORKER")
        else [sys.executable, "-c", "import time; time.sleep(3600)"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "worker.log", "w"),  # noqa: SIM115
        preexec_fn=(lambda: os.nice(int(os.environ["BENCH_WORKER_NICE"])))
        if os.environ.get("BENCH_WORKER_NICE")
        else None,
    )
    print(f"worker log: {data / 'worker.log'}", flush=True)
    try:
        time.sleep(3)  # the worker's beat is up before the first phase starts
        figures = asyncio.run(run_gateway(data, devices))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM readings_rollup")
        rollups = cursor.fetchone()[0]
    alone, busy = figures["alone"], figures["busy"]
    assert isinstance(alone, dict) and isinstance(busy, dict)
    result = {
        "ack_p99_busy_ms": busy["p99_ms"],
        "ack_p99_alone_ms": alone["p99_ms"],
        "ratio": round(busy["p99_ms"] / alone["p99_ms"], 2) if alone["p99_ms"] else None,
        "bar_ratio": 2.0,
        "ack_max_busy_ms": busy["max_ms"],
        "ack_max_alone_ms": alone["max_ms"],
        "ack_p50_busy_ms": busy["p50_ms"],
        "ack_p99_busy_during_refresh_ms": figures["busy_during_refresh"]["p99_ms"],  # type: ignore[index]
        "ack_p99_busy_outside_refresh_ms": figures["busy_outside_refresh"]["p99_ms"],  # type: ignore[index]
        "acks_during_refresh": figures["busy_during_refresh"]["n"],  # type: ignore[index]
        "refreshes": figures["refreshes"],
        "ack_p50_alone_ms": alone["p50_ms"],
        "probe_batches": [alone["n"], busy["n"]],
        "fleet_devices": FLEET,
        "fleet_batch_every_ms": FLEET_BATCH_MS,
        "fleet_batches_acked": (figures["fleet"] or {}).get("batches_acked"),  # type: ignore[union-attr]
        "rollup_rows_written": rollups,
        "seconds_each": PHASE_S,
        "windows": figures["windows"],
        "mode": "embedded (make run): SQLite, in-process ingest, runtaskworker with beat (rollups every 10 s)",
        "cpus": os.cpu_count(),
        "note": "shared 2-core machine under other load",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
