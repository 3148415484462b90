"""Acked ingest throughput of one gateway process: simulated meters over TLS → gateway → seam → store.

The gateway runs in this process on the embedded defaults (temp SQLite store, queue in-process), so a
batch is acked only after `readings_enqueue` stored it. The meters (12 channels × 15 samples per
batch, as fast as acks allow) run in separate processes. Baseline, measured in the same run: the same
gateway and clients with a seam that returns at once, i.e. the gateway's own ceiling without the store.
Last line: {"frames_per_s": …, "readings_per_s": …, …}
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as _setup  # noqa: E402

DEVICES = int(os.environ.get("BENCH_DEVICES", "200"))
CLIENT_PROCESSES = int(os.environ.get("BENCH_CLIENT_PROCESSES", "2"))
WARMUP_S = 4.0
MEASURE_S = float(os.environ.get("BENCH_SECONDS", "15"))


def client(port: int, cafile: str, devices: list[tuple[str, bytes]], run_s: float) -> None:
    _setup.raise_nofile()
    import logging

    # At the end of the run the clients stop in mid-stream; asyncio's warnings about writes to the
    # sockets they just closed say nothing about the gateway.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    import numpy as np

    from gateway import protocol as p
    from gateway.simulator import DeviceSpec, Meter, SentBatch, SimulatedDevice
    from gateway.tls import client_context

    channels = _setup.meter_channels()

    class BenchDevice(SimulatedDevice):
        """Realistic payloads, generated once: per batch only the 6-byte start time is re-packed, so the
        clients spend their CPU on TLS and the protocol, not on load physics."""

        templates: list[bytes] = []

        def _generate(self) -> SentBatch:
            start = self.next_start_ms
            self.next_start_ms = start + self.batch * self.interval_ms
            template = self.templates[self.generated % len(self.templates)]
            self.generated += 1
            return SentBatch(start, self.interval_ms, EMPTY, start.to_bytes(6, "big") + template[6:])

    EMPTY = np.zeros((12, 15), dtype=np.int64)  # size only: the stats count raw.size readings
    meter = Meter(DeviceSpec("T", b"\0" * 32, channels, load_kind="mains"), np.random.default_rng(1))
    for k in range(32):
        ts = 1_764_170_000_000 + 30_000 * k + 2000 * np.arange(15, dtype=np.int64)
        raw = meter.sample(ts, 2000)
        BenchDevice.templates.append(p.encode_readings(start_ms=int(ts[0]), interval_ms=2000, raw=raw))

    async def main() -> None:
        context = client_context(cafile=Path(cafile))
        sims = [
            BenchDevice(
                DeviceSpec(serial, seed, channels, load_kind="mains"),
                host="127.0.0.1",
                port=port,
                ssl_context=context,
                batch=15,
                interval_ms=2000,
                realtime=False,
                reconnect_delay_s=0.2,
            )
            for serial, seed in devices
        ]
        tasks = [asyncio.create_task(sim.run(duration_s=run_s)) for sim in sims]
        await asyncio.gather(*tasks)

    asyncio.run(main())


async def measure(gateway_factory, devices, data: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    gateway = gateway_factory()
    _, port = await gateway.start(host="127.0.0.1", port=0)
    ctx = mp.get_context("spawn")
    share = (len(devices) + CLIENT_PROCESSES - 1) // CLIENT_PROCESSES
    run_s = WARMUP_S + MEASURE_S + 3
    processes = [
        ctx.Process(
            target=client,
            args=(port, str(data / "gateway-dev-cert.pem"), devices[i * share : (i + 1) * share], run_s),
            daemon=True,
        )
        for i in range(CLIENT_PROCESSES)
    ]
    for process in processes:
        process.start()
    await asyncio.sleep(WARMUP_S)
    frames0, readings0, t0 = (
        gateway.stats.get("frames_acked", 0),
        gateway.stats.get("readings_acked", 0),
        time.monotonic(),
    )
    groups0 = gateway.batcher.enqueued_batches
    await asyncio.sleep(MEASURE_S)
    elapsed = time.monotonic() - t0
    frames = gateway.stats.get("frames_acked", 0) - frames0
    readings = gateway.stats.get("readings_acked", 0) - readings0
    connected = len(gateway.connections)
    for process in processes:
        await asyncio.get_running_loop().run_in_executor(None, process.join, 30)
    await gateway.shutdown()
    del groups0
    return {
        "frames_per_s": round(frames / elapsed, 1),
        "readings_per_s": round(readings / elapsed),
        "devices_connected": connected,
        "nacks": {k: v for k, v in gateway.stats.items() if k.startswith("nack_")},
    }


def broker_main() -> None:
    """Child process: the real seam against RabbitMQ (publisher confirms); prints one JSON line."""
    data = _setup.django_services("gateway")
    devices = _setup.provision_meters(DEVICES, prefix=f"GW{time.time_ns() % 10**9}")

    from gateway.server import Gateway, GatewayConfig
    from gateway.tls import dev_certificate, server_context

    cert, key = dev_certificate(data)
    config = GatewayConfig(rate_per_s=10_000, rate_burst=10_000, max_unacked=16, presence_interval_s=5.0)

    def real() -> Gateway:
        # No channel layer: this run measures ingest, and the developer's Redis is not ours to fill.
        return Gateway(ssl_context=server_context(cert=cert, key=key), config=config, channel_layer=None)

    try:
        figures = asyncio.run(measure(real, devices, data))
    finally:
        from energybox.celery import app

        with app.connection_for_write() as conn:
            conn.channel().queue_purge("readings")  # nobody consumes in this benchmark
    print(json.dumps(figures))


def broker_run() -> dict[str, float] | None:
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("amqp"):
        return None
    import subprocess

    done = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--broker"], capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"  broker run failed: {done.stderr[-2000:]}", flush=True)
        return None
    return json.loads(lines[-1])


def main() -> None:
    import faulthandler

    # A benchmark must stop by itself: if anything hangs, dump every thread's stack and exit.
    faulthandler.dump_traceback_later(480, exit=True)
    broker = broker_run()
    if broker is not None:
        print(f"  RabbitMQ (confirms) run: {broker}", flush=True)
    data = _setup.django_embedded("gateway")
    _setup.raise_nofile()
    print(f"provisioning {DEVICES} devices ...", flush=True)
    devices = _setup.provision_meters(DEVICES)

    from channels.layers import get_channel_layer

    from gateway.server import Gateway, GatewayConfig
    from gateway.tls import dev_certificate, server_context
    from readings.store import get_store

    cert, key = dev_certificate(data)
    config = GatewayConfig(rate_per_s=10_000, rate_burst=10_000, max_unacked=16, presence_interval_s=5.0)

    def real() -> Gateway:
        return Gateway(ssl_context=server_context(cert=cert, key=key), config=config, channel_layer=get_channel_layer())

    def null_seam() -> Gateway:
        return Gateway(
            ssl_context=server_context(cert=cert, key=key),
            config=config,
            channel_layer=get_channel_layer(),
            enqueue=lambda batches: None,
        )

    print("measuring with the store (embedded seam) ...", flush=True)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        stored = profile.runcall(asyncio.run, measure(real, devices, data))
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    else:
        stored = asyncio.run(measure(real, devices, data))
    print(f"  {stored}", flush=True)
    print("measuring the baseline (a seam that returns at once) ...", flush=True)
    baseline = asyncio.run(measure(null_seam, devices, data))
    print(f"  {baseline}", flush=True)
    store = get_store()
    result = {
        "frames_per_s": stored["frames_per_s"],
        "readings_per_s": stored["readings_per_s"],
        "mode": "embedded: SQLite store, in-process queue, one gateway process",
        "store": type(store).__name__,
        "devices": DEVICES,
        "client_processes": CLIENT_PROCESSES,
        "baseline_null_seam_frames_per_s": baseline["frames_per_s"],
        "baseline_null_seam_readings_per_s": baseline["readings_per_s"],
        "bar_readings_per_s": 100_000,
        "cpus": os.cpu_count(),
    }
    if broker is not None:
        result["rabbitmq_confirmed_frames_per_s"] = broker["frames_per_s"]
        result["rabbitmq_confirmed_readings_per_s"] = broker["readings_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    if "--broker" in sys.argv:
        broker_main()
    else:
        main()
